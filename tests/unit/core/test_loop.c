#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/loop.h"

struct tm_rec {
    struct loop_timer t;
    struct loop *l;
    int id;
    int *order;
    int *n;
};

static void on_timer(struct loop_timer *t)
{
    struct tm_rec *r = container_of(t, struct tm_rec, t);
    r->order[(*r->n)++] = r->id;
    if (*r->n == 5) {
        loop_stop(r->l);
    }
}

static void test_timers_fire_in_order(void **state)
{
    (void)state;
    struct loop *l = loop_new();
    assert_non_null(l);
    int order[8], n = 0;
    struct tm_rec r[6];
    static const unsigned after[6] = {30, 10, 50, 20, 40, 5};
    for (int i = 0; i < 6; i++) {
        r[i] = (struct tm_rec){.l = l, .id = i, .order = order, .n = &n};
        loop_timer_init(&r[i].t, on_timer);
        assert_int_equal(loop_timer_start(l, &r[i].t, after[i]), 0);
    }
    loop_timer_stop(l, &r[5].t); /* a stopped timer never fires */
    assert_false(loop_timer_armed(&r[5].t));
    assert_int_equal(loop_timer_start(l, &r[2].t, 1), 0); /* re-arming moves it */
    assert_int_equal(loop_run(l), 0);
    int want[5] = {2, 1, 3, 0, 4};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(order[i], want[i]);
    }
    loop_free(l);
}

struct io_rec {
    struct loop_io io;
    struct loop *l;
    struct io_rec *victim;
    int calls;
};

static void on_io(struct loop_io *io, uint32_t ev)
{
    struct io_rec *r = container_of(io, struct io_rec, io);
    assert_true(ev & LOOP_IN);
    r->calls++;
    if (r->victim != NULL) {
        /* Removing another io whose event is pending in this same batch: it must not be called. */
        loop_io_del(r->l, &r->victim->io);
        r->victim = NULL;
    }
    loop_stop(r->l);
}

static void test_io_and_deletion_in_batch(void **state)
{
    (void)state;
    struct loop *l = loop_new();
    int p1[2], p2[2];
    assert_int_equal(pipe(p1), 0);
    assert_int_equal(pipe(p2), 0);
    struct io_rec a = {.l = l}, b = {.l = l};
    a.victim = &b;
    b.victim = &a;
    assert_int_equal(loop_io_add(l, &a.io, p1[0], LOOP_IN, on_io), 0);
    assert_int_equal(loop_io_add(l, &b.io, p2[0], LOOP_IN, on_io), 0);
    assert_int_equal(write(p1[1], "x", 1), 1);
    assert_int_equal(write(p2[1], "x", 1), 1);
    assert_int_equal(loop_run(l), 0);
    assert_int_equal(a.calls + b.calls, 1);
    assert_int_equal(loop_io_mod(l, a.calls ? &a.io : &b.io, LOOP_IN | LOOP_OUT), 0);
    loop_io_del(l, &a.io);
    loop_io_del(l, &b.io);
    close(p1[0]);
    close(p1[1]);
    close(p2[0]);
    close(p2[1]);
    loop_free(l);
}

/* Busy polling: a timer writes to a pipe, the pipe's callback re-arms the timer; every event
 * is still delivered, and timers still fire, while the loop polls between them. */
struct chain {
    struct loop_timer t;
    struct loop_io io;
    struct loop *l;
    int wfd, timers, reads;
};

static void chain_timer(struct loop_timer *t)
{
    struct chain *c = container_of(t, struct chain, t);
    c->timers++;
    assert_int_equal(write(c->wfd, "x", 1), 1);
}

static void chain_read(struct loop_io *io, uint32_t ev)
{
    (void)ev;
    struct chain *c = container_of(io, struct chain, io);
    char b[8];
    c->reads += (int)read(io->fd, b, sizeof(b));
    if (c->reads == 5) {
        loop_stop(c->l);
    } else {
        loop_timer_start(c->l, &c->t, 2);
    }
}

static void test_busy_poll_delivers_events_and_timers(void **state)
{
    (void)state;
    struct loop *l = loop_new();
    int p[2];
    assert_int_equal(pipe(p), 0);
    loop_set_busy_poll(l, 5000); /* clamped to LOOP_BUSY_POLL_MAX_US */
    struct chain c = {.l = l, .wfd = p[1]};
    loop_timer_init(&c.t, chain_timer);
    assert_int_equal(loop_io_add(l, &c.io, p[0], LOOP_IN, chain_read), 0);
    assert_int_equal(loop_timer_start(l, &c.t, 2), 0);
    assert_int_equal(loop_run(l), 0);
    assert_int_equal(c.timers, 5);
    assert_int_equal(c.reads, 5);
    loop_io_del(l, &c.io);
    close(p[0]);
    close(p[1]);
    loop_free(l);
}

/* A descriptor epoll refuses (a regular file: EPERM) is not registered, and io says so: its fd
 * stays -1, so an owner that closes the descriptor itself and then closes io (loop_io_close, as
 * the relays' close paths do) closes it once, not twice. */
static void test_failed_add_leaves_io_unregistered(void **state)
{
    (void)state;
    struct loop *l = loop_new();
    char path[] = "/tmp/portgate-test-loop-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    struct loop_io io = {.fd = -1};
    assert_int_equal(loop_io_add(l, &io, fd, LOOP_IN, on_io), -EPERM);
    assert_int_equal(io.fd, -1);
    loop_io_close(l, &io); /* a no-op: fd is still the caller's */
    assert_int_equal(fcntl(fd, F_GETFD), 0);
    close(fd);
    loop_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timers_fire_in_order),
        cmocka_unit_test(test_io_and_deletion_in_batch),
        cmocka_unit_test(test_busy_poll_delivers_events_and_timers),
        cmocka_unit_test(test_failed_add_leaves_io_unregistered),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
