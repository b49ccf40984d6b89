#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "core/addr.h"
#include "core/loop.h"
#include "core/sock.h"
#include "forward/relay.h"
#include "proto/rtsp/rtsp_stream.h"

/* A UDP socket on ip:port (0: any port); returns it, and its port in *port. */
static int udp(const char *ip, uint16_t *port)
{
    struct sockaddr_storage a;
    assert_int_equal(addr_parse_ip(ip, &a), 0);
    addr_set_port(&a, port != NULL ? *port : 0);
    int fd = sock_bind_udp(&a, 0, 0);
    assert_true(fd >= 0);
    if (port != NULL) {
        struct sockaddr_storage b;
        socklen_t len = sizeof(b);
        getsockname(fd, (struct sockaddr *)&b, &len);
        *port = addr_port(&b);
    }
    return fd;
}

static void send_to(int fd, const char *msg, uint16_t port)
{
    struct sockaddr_storage a;
    addr_parse_ip("127.0.0.1", &a);
    addr_set_port(&a, port);
    assert_int_equal(sendto(fd, msg, strlen(msg), 0, (struct sockaddr *)&a, addr_len(&a)),
                     (ssize_t)strlen(msg));
}

/* What fd received, or "" if nothing (non-blocking); *from_port: the sender's port. */
static const char *got(int fd, uint16_t *from_port)
{
    static char buf[256];
    struct sockaddr_storage a;
    socklen_t len = sizeof(a);
    ssize_t n = recvfrom(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT, (struct sockaddr *)&a, &len);
    if (n < 0) {
        return "";
    }
    buf[n] = '\0';
    if (from_port != NULL) {
        *from_port = addr_port(&a);
    }
    return buf;
}

/* Runs the loop for about ms milliseconds. */
static struct loop *cur_loop;
static void stop_cb(struct loop_timer *t)
{
    (void)t;
    loop_stop(cur_loop);
}

static void spin(struct loop *loop, unsigned ms)
{
    struct loop_timer t;
    loop_timer_init(&t, stop_cb);
    cur_loop = loop;
    loop_timer_start(loop, &t, ms);
    assert_int_equal(loop_run(loop), 0);
}

struct fixture {
    struct loop *loop;
    struct relay_ctx ctx;
    int cli_rtp, cli_rtcp, dev_rtp, dev_rtcp, stranger;
    uint16_t cli_port[2], dev_port[2];
    struct rtsp_stream_conf conf;
};

static void setup(struct fixture *f, uint16_t lo, uint16_t hi)
{
    memset(f, 0, sizeof(*f));
    f->loop = loop_new();
    assert_int_equal(relay_ctx_init(&f->ctx, f->loop, 0), 0);
    f->cli_rtp = udp("127.0.0.1", &f->cli_port[0]);
    f->cli_rtcp = udp("127.0.0.1", &f->cli_port[1]);
    f->dev_rtp = udp("127.0.0.1", &f->dev_port[0]);
    f->dev_rtcp = udp("127.0.0.1", &f->dev_port[1]);
    f->stranger = udp("127.0.0.2", NULL);
    addr_parse_ip("127.0.0.1", &f->conf.out_local);
    addr_parse_ip("127.0.0.1", &f->conf.in_local);
    addr_parse_ip("127.0.0.1", &f->conf.client);
    addr_parse_ip("127.0.0.1", &f->conf.device);
    f->conf.client_port[0] = f->cli_port[0];
    f->conf.client_port[1] = f->cli_port[1];
    f->conf.port_lo = lo;
    f->conf.port_hi = hi;
}

static void teardown(struct fixture *f)
{
    close(f->cli_rtp);
    close(f->cli_rtcp);
    close(f->dev_rtp);
    close(f->dev_rtcp);
    close(f->stranger);
    relay_ctx_fini(&f->ctx);
    loop_free(f->loop);
}

static void test_relay_both_ways(void **state)
{
    (void)state;
    struct fixture f;
    setup(&f, 41000, 41999);
    uint16_t in, out;
    int err = 0;
    struct rtsp_stream *s = rtsp_stream_new(&f.ctx, &f.conf, &in, &out, &err);
    assert_non_null(s);
    assert_true(in % 2 == 0 && out % 2 == 0 && in != out);
    assert_true(in >= 41000 && in < 41999 && out >= 41000 && out < 41999);

    /* The device streams before its SETUP answer was seen: accepted from its address. */
    send_to(f.dev_rtp, "rtp 1", in);
    send_to(f.dev_rtcp, "sr 1", in + 1);
    /* Strangers are dropped. */
    send_to(f.stranger, "evil", in);
    send_to(f.stranger, "evil", out);
    spin(f.loop, 50);
    uint16_t from = 0;
    assert_string_equal(got(f.cli_rtp, &from), "rtp 1");
    assert_int_equal(from, out); /* from the outside pair */
    assert_string_equal(got(f.cli_rtcp, &from), "sr 1");
    assert_int_equal(from, out + 1);
    const struct rtsp_stream_stats *st = rtsp_stream_stats(s);
    assert_int_equal(st->dropped_source, 2);
    assert_int_equal(st->pkts[RTSP_STREAM_RTP_DOWN], 1);
    assert_int_equal(st->bytes[RTSP_STREAM_RTP_DOWN], 5);

    /* The client's receiver reports go to the device's RTCP port once it is known. */
    send_to(f.cli_rtcp, "rr early", out + 1);
    spin(f.loop, 30);
    assert_int_equal(st->dropped_send, 1);
    rtsp_stream_set_server(s, f.dev_port);
    send_to(f.cli_rtcp, "rr 1", out + 1);
    spin(f.loop, 30);
    assert_string_equal(got(f.dev_rtcp, &from), "rr 1");
    assert_int_equal(from, in + 1);
    assert_int_equal(st->pkts[RTSP_STREAM_RTCP_UP], 1);

    /* Now the device's other ports are strangers too. */
    send_to(f.dev_rtcp, "rtp from the wrong port", in);
    spin(f.loop, 30);
    assert_string_equal(got(f.cli_rtp, NULL), "");
    assert_int_equal(st->dropped_source, 3);
    rtsp_stream_free(s);
    teardown(&f);
}

static void test_client_behind_nat(void **state)
{
    (void)state;
    struct fixture f;
    setup(&f, 41000, 41999);
    uint16_t in, out;
    int err = 0;
    struct rtsp_stream *s = rtsp_stream_new(&f.ctx, &f.conf, &in, &out, &err);
    assert_non_null(s);
    rtsp_stream_set_server(s, f.dev_port);
    /* The client announced cli_port but its NAT sends RTCP from another port: the stream
     * locks to that one, sends there, and drops the same address from any other port. */
    uint16_t nat_port = 0;
    int nat = udp("127.0.0.1", &nat_port);
    send_to(nat, "rr via nat", out + 1);
    spin(f.loop, 30);
    assert_string_equal(got(f.dev_rtcp, NULL), "rr via nat");
    send_to(f.dev_rtcp, "sr 2", in + 1);
    send_to(f.cli_rtcp, "rr from the announced port", out + 1);
    spin(f.loop, 30);
    assert_string_equal(got(nat, NULL), "sr 2");
    assert_string_equal(got(f.cli_rtcp, NULL), "");
    assert_string_equal(got(f.dev_rtcp, NULL), "");
    assert_int_equal(rtsp_stream_stats(s)->dropped_source, 1);
    close(nat);
    rtsp_stream_free(s);
    teardown(&f);
}

static void test_range_exhausted(void **state)
{
    (void)state;
    struct fixture f;
    setup(&f, 41100, 41103); /* two pairs: one stream */
    uint16_t in, out;
    int err = 0;
    struct rtsp_stream *s = rtsp_stream_new(&f.ctx, &f.conf, &in, &out, &err);
    assert_non_null(s);
    assert_null(rtsp_stream_new(&f.ctx, &f.conf, &in, &out, &err));
    assert_int_equal(err, -EADDRINUSE);
    rtsp_stream_free(s);
    /* The ports are free again. */
    s = rtsp_stream_new(&f.ctx, &f.conf, &in, &out, &err);
    assert_non_null(s);
    rtsp_stream_free(s);
    rtsp_stream_free(NULL);
    teardown(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_relay_both_ways),
        cmocka_unit_test(test_client_behind_nat),
        cmocka_unit_test(test_range_exhausted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
