/*
 * loop: the event loop. The only module that touches epoll.
 *
 * Objects that wait for I/O embed a struct loop_io and objects that wait for time embed a struct
 * loop_timer, so that waiting allocates nothing; callbacks get the embedded struct back and use
 * container_of() to find their object. The loop never owns these structs nor the descriptors in
 * them: the owner removes them (loop_io_del, loop_timer_stop) before freeing.
 *
 * Descriptors are registered once; a callback receives the epoll event bits. Registrations may be
 * edge-triggered (LOOP_ET): the owner then keeps its own readable/writable flags and works until
 * EAGAIN. Time is CLOCK_MONOTONIC in milliseconds, read once per loop iteration (loop_now).
 *
 * One loop per thread; nothing here is thread-safe.
 */
#ifndef PORTGATE_LOOP_H
#define PORTGATE_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/epoll.h>

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#define LOOP_IN EPOLLIN
#define LOOP_OUT EPOLLOUT
#define LOOP_RDHUP EPOLLRDHUP
#define LOOP_ERR EPOLLERR
#define LOOP_HUP EPOLLHUP
#define LOOP_ET EPOLLET

struct loop;
struct loop_io;
struct loop_timer;

typedef void (*loop_io_cb)(struct loop_io *io, uint32_t events);
typedef void (*loop_timer_cb)(struct loop_timer *t);

struct loop_io {
    int fd;          /* public, set by the owner */
    uint32_t events; /* read-only: what is registered */
    loop_io_cb cb;   /* private */
};

struct loop_timer {
    uint64_t when_ms; /* read-only: deadline, valid while armed */
    size_t heap_idx;  /* private: position in the heap, 0 when not armed */
    loop_timer_cb cb; /* private */
};

/* Returns a new loop, or NULL with errno set. */
struct loop *loop_new(void);
/* Frees the loop. Registered descriptors are not closed. loop_free(NULL) is a no-op. */
void loop_free(struct loop *l);

/* Monotonic milliseconds as of the start of this loop iteration. */
uint64_t loop_now(const struct loop *l);
/* Reads the clock again (after blocking work such as a reload). */
void loop_update_time(struct loop *l);

/*
 * Busy polling: after each round of events, poll without sleeping for up to us microseconds
 * (at most LOOP_BUSY_POLL_MAX_US; 0, the default, turns it off) before blocking in epoll_wait,
 * yielding the CPU to any other runnable thread between polls. A message that arrives in that
 * time is handled without the wake-up of a sleeping thread, which in a virtual machine or on a
 * CPU in a deep idle state costs tens of microseconds; the price is CPU time spent polling.
 */
#define LOOP_BUSY_POLL_MAX_US 1000u
void loop_set_busy_poll(struct loop *l, uint32_t us);

/* Registers fd for events (LOOP_IN | LOOP_OUT | LOOP_ET ...) and sets io->fd to it. Returns 0,
 * or -errno with io->fd set to -1: fd is then still the caller's to close, and closing io
 * (loop_io_close) does nothing. */
int loop_io_add(struct loop *l, struct loop_io *io, int fd, uint32_t events, loop_io_cb cb);
/* Changes the registered events. Returns 0 or -errno. Costs a syscall only if they differ. */
int loop_io_mod(struct loop *l, struct loop_io *io, uint32_t events);
/* Unregisters. Safe to call on an io that was never added (fd < 0). Does not close the fd. */
void loop_io_del(struct loop *l, struct loop_io *io);
/* Unregisters and closes io->fd, and sets it to -1, without the EPOLL_CTL_DEL: close(2) takes a
 * descriptor out of epoll when no other descriptor refers to its file, which holds for every
 * socket portgate opens (none is dup()ed, and the process never forks). Safe on fd < 0. */
void loop_io_close(struct loop *l, struct loop_io *io);

void loop_timer_init(struct loop_timer *t, loop_timer_cb cb);
/* Arms (or re-arms) the timer to fire once, after_ms from now. Returns 0 or -ENOMEM. */
int loop_timer_start(struct loop *l, struct loop_timer *t, uint64_t after_ms);
/* Arms the timer for an absolute monotonic deadline. Returns 0 or -ENOMEM. */
int loop_timer_start_at(struct loop *l, struct loop_timer *t, uint64_t when_ms);
/* Disarms; a no-op if not armed. */
void loop_timer_stop(struct loop *l, struct loop_timer *t);
static inline bool loop_timer_armed(const struct loop_timer *t)
{
    return t->heap_idx != 0;
}

/*
 * Runs until loop_stop() is called. Callbacks may add and remove any io or timer, including the
 * one being called and ones whose events are already pending in this iteration: an object freed by
 * a callback must first be unregistered, and the loop then never calls it again (see loop_io_del).
 * Returns 0, or -errno if epoll_wait fails.
 */
int loop_run(struct loop *l);
void loop_stop(struct loop *l);

#endif
