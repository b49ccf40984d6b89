#include "core/loop.h"

#include <assert.h>
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define LOOP_BATCH 256

struct loop {
    int epfd;
    bool stop;
    uint64_t now_ms;
    uint32_t busy_poll_us;
    /* The events of the current iteration, so that loop_io_del can forget pending ones. */
    struct epoll_event ev[LOOP_BATCH];
    int nev;
    /* Binary min-heap of armed timers, 1-based: heap[1] is the earliest. */
    struct loop_timer **heap;
    size_t heap_len, heap_cap;
};

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t mono_ms(void)
{
    return mono_us() / 1000u;
}

struct loop *loop_new(void)
{
    struct loop *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        return NULL;
    }
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epfd == -1) {
        int e = errno;
        free(l);
        errno = e;
        return NULL;
    }
    l->now_ms = mono_ms();
    return l;
}

void loop_free(struct loop *l)
{
    if (l == NULL) {
        return;
    }
    close(l->epfd);
    free(l->heap);
    free(l);
}

uint64_t loop_now(const struct loop *l)
{
    return l->now_ms;
}

void loop_update_time(struct loop *l)
{
    l->now_ms = mono_ms();
}

int loop_io_add(struct loop *l, struct loop_io *io, int fd, uint32_t events, loop_io_cb cb)
{
    struct epoll_event ev = {.events = events, .data.ptr = io};
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) == -1) {
        io->fd = -1; /* fd stays the caller's: nothing here may close it */
        return -errno;
    }
    io->fd = fd;
    io->cb = cb;
    io->events = events;
    return 0;
}

int loop_io_mod(struct loop *l, struct loop_io *io, uint32_t events)
{
    if (io->events == events) {
        return 0;
    }
    struct epoll_event ev = {.events = events, .data.ptr = io};
    if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, io->fd, &ev) == -1) {
        return -errno;
    }
    io->events = events;
    return 0;
}

static void forget(struct loop *l, struct loop_io *io)
{
    io->cb = NULL;
    io->events = 0;
    /* The owner may free io right after this: forget any event of this batch still pending. */
    for (int i = 0; i < l->nev; i++) {
        if (l->ev[i].data.ptr == io) {
            l->ev[i].data.ptr = NULL;
        }
    }
}

void loop_io_close(struct loop *l, struct loop_io *io)
{
    if (io->fd < 0) {
        return;
    }
    if (io->cb != NULL) {
        forget(l, io);
    }
    close(io->fd);
    io->fd = -1;
}

void loop_io_del(struct loop *l, struct loop_io *io)
{
    if (io->fd < 0 || io->cb == NULL) {
        return;
    }
    epoll_ctl(l->epfd, EPOLL_CTL_DEL, io->fd, NULL);
    forget(l, io);
}

/* ---- timers: a binary heap keyed by deadline ---- */

static void heap_set(struct loop *l, size_t i, struct loop_timer *t)
{
    l->heap[i] = t;
    t->heap_idx = i;
}

static void heap_up(struct loop *l, size_t i)
{
    struct loop_timer *t = l->heap[i];
    while (i > 1 && l->heap[i / 2]->when_ms > t->when_ms) {
        heap_set(l, i, l->heap[i / 2]);
        i /= 2;
    }
    heap_set(l, i, t);
}

static void heap_down(struct loop *l, size_t i)
{
    struct loop_timer *t = l->heap[i];
    for (;;) {
        size_t c = 2 * i;
        if (c > l->heap_len) {
            break;
        }
        if (c + 1 <= l->heap_len && l->heap[c + 1]->when_ms < l->heap[c]->when_ms) {
            c++;
        }
        if (l->heap[c]->when_ms >= t->when_ms) {
            break;
        }
        heap_set(l, i, l->heap[c]);
        i = c;
    }
    heap_set(l, i, t);
}

void loop_timer_init(struct loop_timer *t, loop_timer_cb cb)
{
    t->when_ms = 0;
    t->heap_idx = 0;
    t->cb = cb;
}

int loop_timer_start_at(struct loop *l, struct loop_timer *t, uint64_t when_ms)
{
    if (t->heap_idx != 0) {
        uint64_t old = t->when_ms;
        t->when_ms = when_ms;
        if (when_ms < old) {
            heap_up(l, t->heap_idx);
        } else {
            heap_down(l, t->heap_idx);
        }
        return 0;
    }
    if (l->heap_len + 1 >= l->heap_cap) {
        size_t cap = l->heap_cap ? l->heap_cap * 2 : 64;
        struct loop_timer **h = realloc(l->heap, cap * sizeof(*h));
        if (h == NULL) {
            return -ENOMEM;
        }
        l->heap = h;
        l->heap_cap = cap;
    }
    t->when_ms = when_ms;
    l->heap_len++;
    heap_set(l, l->heap_len, t);
    heap_up(l, l->heap_len);
    return 0;
}

int loop_timer_start(struct loop *l, struct loop_timer *t, uint64_t after_ms)
{
    return loop_timer_start_at(l, t, l->now_ms + after_ms);
}

void loop_timer_stop(struct loop *l, struct loop_timer *t)
{
    size_t i = t->heap_idx;
    if (i == 0) {
        return;
    }
    assert(i <= l->heap_len && l->heap[i] == t);
    struct loop_timer *last = l->heap[l->heap_len--];
    t->heap_idx = 0;
    if (last != t) {
        heap_set(l, i, last);
        heap_up(l, i);
        heap_down(l, last->heap_idx);
    }
}

static int next_timeout(const struct loop *l)
{
    if (l->heap_len == 0) {
        return -1;
    }
    uint64_t when = l->heap[1]->when_ms;
    if (when <= l->now_ms) {
        return 0;
    }
    uint64_t d = when - l->now_ms;
    return d > 60000 ? 60000 : (int)d;
}

static void run_timers(struct loop *l)
{
    while (l->heap_len > 0 && l->heap[1]->when_ms <= l->now_ms) {
        struct loop_timer *t = l->heap[1];
        loop_timer_stop(l, t);
        t->cb(t);
    }
}

void loop_set_busy_poll(struct loop *l, uint32_t us)
{
    l->busy_poll_us = us < LOOP_BUSY_POLL_MAX_US ? us : LOOP_BUSY_POLL_MAX_US;
}

/* epoll_wait, after busy polling (loop_set_busy_poll) unless a timer is due. */
static int wait_events(struct loop *l)
{
    int timeout = next_timeout(l);
    if (l->busy_poll_us > 0 && timeout != 0) {
        uint64_t until = mono_us() + l->busy_poll_us;
        do {
            int n = epoll_wait(l->epfd, l->ev, LOOP_BATCH, 0);
            if (n != 0) {
                return n;
            }
            sched_yield(); /* a thread that has work on this CPU goes first */
        } while (mono_us() < until);
        l->now_ms = mono_ms(); /* the next timer is nearer by the time spent polling */
        timeout = next_timeout(l);
    }
    return epoll_wait(l->epfd, l->ev, LOOP_BATCH, timeout);
}

int loop_run(struct loop *l)
{
    l->stop = false;
    while (!l->stop) {
        int n = wait_events(l);
        if (n == -1) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        l->now_ms = mono_ms();
        l->nev = n;
        for (int i = 0; i < n; i++) {
            struct loop_io *io = l->ev[i].data.ptr;
            if (io != NULL && io->cb != NULL) {
                io->cb(io, l->ev[i].events);
            }
        }
        l->nev = 0;
        run_timers(l);
    }
    return 0;
}

void loop_stop(struct loop *l)
{
    l->stop = true;
}
