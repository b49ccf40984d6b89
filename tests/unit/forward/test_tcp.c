/*
 * The TCP relay in-process, on both paths: opaque, and filtered through a line-based test filter
 * that upper-cases what the client sends and only passes whole lines on (so it keeps partial
 * input between reads, as a protocol module does). A thread is the client, another the target.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/loop.h"
#include "core/sock.h"
#include "forward/mapping.h"
#include "forward/proto.h"
#include "forward/relay.h"
#include "forward/tcp.h"
#include "gateway/config.h"

/* ---- the test filter ---- */

static int filter_opened, filter_closed;

static void *upper_open(const struct tcp_filter_conn *fc)
{
    /* Both ends and our addresses on both sides are known when it opens. */
    assert_int_equal(fc->client_local.ss_family, AF_INET);
    assert_int_equal(fc->target_local.ss_family, AF_INET);
    assert_true(addr_port(&fc->client_local) != 0 && addr_port(&fc->target_local) != 0);
    assert_non_null(fc->ctx);
    filter_opened++;
    return &filter_opened;
}

static ssize_t upper_data(void *st, enum tcp_dir dir, const char *in, size_t len, bool eof,
                          char *out, size_t room, size_t *out_len, const char **reason)
{
    (void)st;
    if (memmem(in, len, "BAD", 3) != NULL) {
        *reason = "bad input";
        return -1;
    }
    size_t n = len;
    if (dir == TCP_UP && !eof) {
        const char *nl = memrchr(in, '\n', len);
        n = nl ? (size_t)(nl - in) + 1 : 0; /* whole lines only */
    }
    if (n > room) {
        n = room;
    }
    for (size_t i = 0; i < n; i++) {
        char ch = in[i];
        out[i] = dir == TCP_UP && ch >= 'a' && ch <= 'z' ? (char)(ch - 32) : ch;
    }
    *out_len = n;
    return (ssize_t)n;
}

static void upper_close(void *st)
{
    (void)st;
    filter_closed++;
}

static const struct tcp_filter upper = {
    .name = "upper", .open = upper_open, .data = upper_data, .close = upper_close};

/* ---- the test layer ----
 * Its handshake is one byte, 'H', from the client. It reads the socket into a buffer of its own
 * and gives it out 7 bytes at a time, upper-cased (so the relay must read on while pending()
 * says it holds bytes, the socket empty); it writes at most 5 bytes a call. It keeps the relay's
 * readiness flags as a layer must (forward/tcp.h). */

struct test_layer {
    int fd;
    struct tcp_ready *ready;
    char buf[4096];
    size_t off, len;
};
static int layer_opened, layer_closed, layer_shut;

static void *tl_open(const struct tcp_layer_conn *lc, uint32_t *timeout_ms)
{
    struct test_layer *t = calloc(1, sizeof(*t));
    t->fd = lc->fd;
    t->ready = lc->ready;
    *timeout_ms = 5000;
    layer_opened++;
    return t;
}

/* Fills the buffer from the socket: 1, 0 at the end of the stream, -1 (errno EAGAIN: wait). */
static int tl_fill(struct test_layer *t)
{
    if (!t->ready->readable) {
        errno = EAGAIN;
        return -1;
    }
    ssize_t n = recv(t->fd, t->buf, sizeof(t->buf), 0);
    if (n > 0) {
        t->off = 0;
        t->len = (size_t)n;
        if ((size_t)n < sizeof(t->buf) && !t->ready->rdhup) {
            t->ready->readable = false;
        }
        return 1;
    }
    if (n == -1 && errno == EAGAIN) {
        t->ready->readable = false;
    }
    return n == 0 ? 0 : -1;
}

static int tl_handshake(void *st, enum tcp_want *want, const char **reason)
{
    struct test_layer *t = st;
    if (t->len == 0) {
        int r = tl_fill(t);
        if (r < 0 && errno == EAGAIN) {
            *want = TCP_WANT_READ;
            return 0;
        }
        if (r <= 0) {
            *reason = "the client left";
            return -1;
        }
    }
    if (t->buf[t->off] != 'H') {
        *reason = "no H";
        return -1;
    }
    t->off++;
    t->len--;
    return 1;
}

static ssize_t tl_read(void *st, char *buf, size_t len, enum tcp_want *want, const char **reason)
{
    (void)reason;
    struct test_layer *t = st;
    if (t->len == 0) {
        int r = tl_fill(t);
        if (r <= 0) {
            *want = TCP_WANT_READ;
            return r;
        }
    }
    size_t n = t->len < 7 ? t->len : 7;
    n = n < len ? n : len;
    for (size_t i = 0; i < n; i++) {
        char ch = t->buf[t->off + i];
        buf[i] = ch >= 'a' && ch <= 'z' ? (char)(ch - 32) : ch;
    }
    t->off += n;
    t->len -= n;
    return (ssize_t)n;
}

static ssize_t tl_write(void *st, const char *buf, size_t len, enum tcp_want *want,
                        const char **reason)
{
    (void)reason;
    struct test_layer *t = st;
    if (!t->ready->writable) {
        *want = TCP_WANT_WRITE;
        errno = EAGAIN;
        return -1;
    }
    ssize_t n = send(t->fd, buf, len < 5 ? len : 5, MSG_NOSIGNAL);
    if (n == -1 && errno == EAGAIN) {
        t->ready->writable = false;
        *want = TCP_WANT_WRITE;
    }
    return n;
}

static bool tl_pending(void *st)
{
    return ((struct test_layer *)st)->len > 0;
}

static int tl_shutdown(void *st, enum tcp_want *want)
{
    (void)st;
    (void)want;
    layer_shut++;
    return 1;
}

static void tl_describe(void *st, char *buf, size_t len)
{
    (void)st;
    snprintf(buf, len, "test");
}

static void tl_close(void *st)
{
    layer_closed++;
    free(st);
}

static const struct tcp_layer test_layer = {.name = "test",
                                            .open = tl_open,
                                            .handshake = tl_handshake,
                                            .read = tl_read,
                                            .write = tl_write,
                                            .pending = tl_pending,
                                            .shutdown = tl_shutdown,
                                            .describe = tl_describe,
                                            .close = tl_close};

/* ---- peers ---- */

static void *echo_target(void *arg)
{
    int lfd = *(int *)arg;
    fcntl(lfd, F_SETFL, 0); /* sock_listen_tcp made it non-blocking */
    int c = accept(lfd, NULL, NULL);
    char buf[65536];
    ssize_t n;
    while ((n = recv(c, buf, sizeof(buf), 0)) > 0) {
        for (ssize_t off = 0; off < n;) {
            ssize_t w = send(c, buf + off, (size_t)(n - off), MSG_NOSIGNAL);
            if (w <= 0) {
                close(c);
                return NULL;
            }
            off += w;
        }
    }
    close(c);
    return NULL;
}

struct client_job {
    const char *prefix; /* sent first, not counted in what comes back */
    uint16_t port;
    const char *payload;
    size_t len, repeat;
    char *got;
    size_t got_len;
    int stop_fd;
};

static void *client(void *arg)
{
    struct client_job *j = arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_storage ss;
    addr_parse_ip("127.0.0.1", &ss);
    addr_set_port(&ss, j->port);
    if (connect(fd, (struct sockaddr *)&ss, addr_len(&ss)) == 0) {
        if (j->prefix != NULL) {
            assert_int_equal(send(fd, j->prefix, strlen(j->prefix), 0), strlen(j->prefix));
        }
        /* Send and receive at once, or a large payload would deadlock on full buffers. */
        size_t total = j->len * j->repeat;
        j->got = malloc(total + 1);
        size_t sent = 0;
        while (sent < total || j->got_len < total) {
            if (sent < total) {
                ssize_t w = send(fd, j->payload + sent % j->len, j->len - sent % j->len,
                                 MSG_DONTWAIT | MSG_NOSIGNAL);
                if (w > 0) {
                    sent += (size_t)w;
                    if (sent == total) {
                        shutdown(fd, SHUT_WR);
                    }
                } else if (w == -1 && errno != EAGAIN) {
                    break;
                }
            }
            ssize_t r = recv(fd, j->got + j->got_len, total - j->got_len + 1, MSG_DONTWAIT);
            if (r == 0) {
                break;
            }
            if (r > 0) {
                j->got_len += (size_t)r;
            } else if (errno != EAGAIN) {
                break;
            } else {
                usleep(100);
            }
        }
        char c;
        while (recv(fd, &c, 1, 0) > 0) {
            j->got_len++; /* more than expected: the assertion on the length fails */
        }
    }
    close(fd);
    assert_int_equal(write(j->stop_fd, "x", 1), 1);
    return NULL;
}

static void on_stop(struct loop_io *io, uint32_t ev)
{
    (void)ev;
    struct loop **l = (struct loop **)(io + 1);
    loop_stop(*l);
}

static void stop_when_idle(struct relay_ctx *ctx)
{
    loop_stop(ctx->loop);
}

/* A target's listening socket and a gateway's, on loopback, and a mapping from one to the
 * other of protocol p (plain tcp when NULL). */
struct sockets {
    int target_fd, listen_fd;
    struct sockaddr_storage tss, lss;
    struct mapping *m;
};

static struct sockets make_sockets(const struct proto *p)
{
    struct sockets k;
    struct sockaddr_storage any;
    addr_parse_ip("127.0.0.1", &any);
    addr_set_port(&any, 0);
    k.target_fd = sock_listen_tcp(&any, 8, 0);
    k.listen_fd = sock_listen_tcp(&any, 8, 0);
    assert_true(k.target_fd >= 0 && k.listen_fd >= 0);
    socklen_t len = sizeof(k.tss);
    getsockname(k.target_fd, (struct sockaddr *)&k.tss, &len);
    len = sizeof(k.lss);
    getsockname(k.listen_fd, (struct sockaddr *)&k.lss, &len);
    char spec[128];
    snprintf(spec, sizeof(spec), "tcp:127.0.0.1:%u=127.0.0.1:%u", addr_port(&k.lss),
             addr_port(&k.tss));
    struct config *c = config_new();
    assert_int_equal(config_add_spec(c, spec, 1), 0);
    if (p != NULL) {
        c->maps[0].proto = p;
    }
    k.m = mapping_new(&c->maps[0], NULL, 1);
    config_free(c);
    return k;
}

/* Runs one connection through a listener; returns what the client got back. */
static struct client_job run_layered(const struct tcp_filter *f, const struct tcp_layer *layer,
                                     const char *prefix, const char *payload, size_t repeat,
                                     bool splice, uint64_t *spliced)
{
    /* A protocol of the test's own: TCP through the filter f (opaque when f is NULL), on the
     * layer if any. */
    struct proto test_proto = {
        .name = "test", .transport = SOCK_STREAM, .filter = f, .layer = layer};
    struct sockets k = make_sockets(&test_proto);
    int target_fd = k.target_fd, listen_fd = k.listen_fd;
    struct sockaddr_storage lss = k.lss;
    struct mapping *m = k.m;

    struct loop *loop = loop_new();
    struct relay_ctx ctx;
    assert_int_equal(relay_ctx_init(&ctx, loop, 0), 0);
    ctx.splice = splice;
    ctx.max_pipes = 4;
    struct mapping_group *g = mapping_group_new(&m, 1);
    struct tcp_listener *l = tcp_listener_new(&ctx, listen_fd, g, addr_port(&lss));
    mapping_group_unref(g); /* the listener holds its own */
    int stop[2];
    assert_int_equal(pipe(stop), 0);
    struct {
        struct loop_io io;
        struct loop *loop;
    } stopper = {.loop = loop};
    loop_io_add(loop, &stopper.io, stop[0], LOOP_IN, on_stop);

    pthread_t tt, ct;
    struct client_job job = {.prefix = prefix,
                             .port = addr_port(&lss),
                             .payload = payload,
                             .len = strlen(payload),
                             .repeat = repeat,
                             .stop_fd = stop[1]};
    pthread_create(&tt, NULL, echo_target, &target_fd);
    pthread_create(&ct, NULL, client, &job);
    assert_int_equal(loop_run(loop), 0);
    pthread_join(ct, NULL);
    /* Let the relay see both ends close: every connection must end by itself. */
    if (ctx.nconns > 0) {
        ctx.on_idle = stop_when_idle;
        assert_int_equal(loop_run(loop), 0);
    }
    assert_int_equal(ctx.nconns, 0);
    assert_int_equal(ctx.pipes_used, 0); /* every pipe came back */
    *spliced = mapping_shard(m, 0)->stats.bytes_spliced;
    /* A target that was never connected to (a failed handshake) waits in accept(): one
     * connection of our own ends it; where it has served, this one waits in the queue. */
    int poke = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(poke, (struct sockaddr *)&k.tss, addr_len(&k.tss)), 0);
    close(poke);
    pthread_join(tt, NULL);
    tcp_close_all(&ctx, "test over");
    tcp_listener_free(l);
    loop_io_del(loop, &stopper.io);
    close(stop[0]);
    close(stop[1]);
    close(target_fd);
    relay_ctx_fini(&ctx);
    loop_free(loop);
    mapping_unref(m);
    return job;
}

static struct client_job run_one(const struct tcp_filter *f, const char *payload, size_t repeat,
                                 bool splice, uint64_t *spliced)
{
    return run_layered(f, NULL, NULL, payload, repeat, splice, spliced);
}

static void opaque(bool splice)
{
    const char *p = "the opaque path carries bytes unchanged\n";
    size_t plen = strlen(p), n = 20000;
    /* Sent as 40-byte messages: too small to be worth a splice, so copied on either path. */
    uint64_t spliced;
    struct client_job j = run_one(NULL, p, n, splice, &spliced); /* 800 KB */
    assert_int_equal(j.got_len, plen * n);
    for (size_t off = 0; off < j.got_len; off += plen) {
        assert_memory_equal(j.got + off, p, plen);
    }
    free(j.got);
    assert_int_equal(spliced, 0);

    /* Sent in large writes: a bulk flow, which moves to the pipes once a read fills a buffer,
     * or never with splice off. How much is spliced depends on how the reads fall (a thin
     * stretch goes back to copying); the integration tests assert >= 95% of 50 MB and 1 GB. */
    char *big = malloc(plen * n + 1);
    for (size_t i = 0; i < n; i++) {
        memcpy(big + i * plen, p, plen);
    }
    big[plen * n] = '\0';
    j = run_one(NULL, big, 1, splice, &spliced);
    assert_int_equal(j.got_len, plen * n);
    assert_memory_equal(j.got, big, plen * n);
    free(j.got);
    free(big);
    if (splice) {
        assert_true(spliced > 0);
    } else {
        assert_int_equal(spliced, 0);
    }
}

static void test_opaque_copy(void **state)
{
    (void)state;
    opaque(false);
}

static void test_opaque_splice(void **state)
{
    (void)state;
    opaque(true);
}

static void test_filtered_path(void **state)
{
    (void)state;
    filter_opened = filter_closed = 0;
    /* Lines that straddle reads: the filter keeps partial lines until the rest arrives. */
    const char *p = "a line that the filter rewrites, split across reads\n";
    uint64_t spliced;
    /* A filter always takes the copy path, even where splice is on. */
    struct client_job j = run_one(&upper, p, 20000, true, &spliced);
    assert_int_equal(spliced, 0);
    size_t want = strlen(p) * 20000;
    assert_int_equal(j.got_len, want);
    const char *up = "A LINE THAT THE FILTER REWRITES, SPLIT ACROSS READS\n";
    for (size_t off = 0; off < want; off += strlen(up)) {
        assert_memory_equal(j.got + off, up, strlen(up));
    }
    free(j.got);
    assert_int_equal(filter_opened, 1);
    assert_int_equal(filter_closed, 1);
}

/* A layer on the client side: the target is connected to after its handshake, reads come out
 * of it in small pieces (while the socket is empty), writes go in smaller ones, and it is told
 * of the end before the FIN. Under a filter and without one, never spliced. */
static void test_layered_path(void **state)
{
    (void)state;
    const char *p = "bytes through a layer, seven at a time\n";
    const char *up = "BYTES THROUGH A LAYER, SEVEN AT A TIME\n";
    size_t n = 5000, plen = strlen(p);
    for (int filtered = 0; filtered < 2; filtered++) {
        layer_opened = layer_closed = layer_shut = 0;
        uint64_t spliced;
        struct client_job j =
            run_layered(filtered ? &upper : NULL, &test_layer, "H", p, n, true, &spliced);
        assert_int_equal(j.got_len, plen * n);
        for (size_t off = 0; off < j.got_len; off += plen) {
            assert_memory_equal(j.got + off, up, plen);
        }
        free(j.got);
        assert_int_equal(spliced, 0);
        assert_int_equal(layer_opened, 1);
        assert_int_equal(layer_closed, 1);
        assert_int_equal(layer_shut, 1); /* the target's FIN: the layer ended first */
    }
    /* A failed handshake: closed, and the target never connected to (the echo target would
     * still wait in accept: it is given a connection of its own to end). */
    layer_opened = layer_closed = 0;
    uint64_t spliced;
    struct client_job j = run_layered(NULL, &test_layer, "X", "x", 1, false, &spliced);
    assert_int_equal(j.got_len, 0);
    free(j.got);
    assert_int_equal(layer_closed, 1);
}

static void test_filter_error_closes(void **state)
{
    (void)state;
    filter_opened = filter_closed = 0;
    uint64_t spliced;
    struct client_job j = run_one(&upper, "BAD\n", 1, false, &spliced);
    assert_int_equal(j.got_len, 0); /* the connection was closed by the filter */
    free(j.got);
    assert_int_equal(filter_closed, 1);
}

/* A listener that closes at a reload first takes the connections its socket has queued: their
 * clients have connected, and would be reset. */
static void test_queued_connections_are_taken_before_closing(void **state)
{
    (void)state;
    struct sockets k = make_sockets(NULL);
    int target_fd = k.target_fd, listen_fd = k.listen_fd;
    struct sockaddr_storage lss = k.lss;
    struct mapping *m = k.m;
    struct loop *loop = loop_new();
    struct relay_ctx ctx;
    assert_int_equal(relay_ctx_init(&ctx, loop, 0), 0);
    ctx.max_pipes = 4;
    struct mapping_group *g = mapping_group_new(&m, 1);
    struct tcp_listener *l = tcp_listener_new(&ctx, listen_fd, g, addr_port(&lss));
    mapping_group_unref(g); /* the listener holds its own */
    int clients[3];
    for (int i = 0; i < 3; i++) { /* the kernel completes each handshake: they queue */
        clients[i] = socket(AF_INET, SOCK_STREAM, 0);
        assert_int_equal(connect(clients[i], (struct sockaddr *)&lss, sizeof(struct sockaddr_in)),
                         0);
    }
    assert_int_equal(tcp_listener_take_queued(l), 3);
    assert_int_equal(ctx.nconns, 3);
    assert_int_equal(tcp_listener_take_queued(l), 0);
    tcp_listener_free(l);
    tcp_close_all(&ctx, "test over");
    for (int i = 0; i < 3; i++) {
        close(clients[i]);
    }
    close(target_fd);
    relay_ctx_fini(&ctx);
    loop_free(loop);
    mapping_unref(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_opaque_copy),
        cmocka_unit_test(test_opaque_splice),
        cmocka_unit_test(test_filtered_path),
        cmocka_unit_test(test_filter_error_closes),
        cmocka_unit_test(test_layered_path),
        cmocka_unit_test(test_queued_connections_are_taken_before_closing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
