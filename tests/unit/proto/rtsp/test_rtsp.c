#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "guard.h"
#include "proto/rtsp/rtsp.h"

/* Parses s placed against a guard page; returns the result. The copy stays mapped until the
 * next call, since m points into it. */
static ssize_t parse(const char *s, struct msg *m, const char **why)
{
    static struct guarded last;
    if (last.map != NULL) {
        guard_free(last);
    }
    last = guard_bytes(s, strlen(s));
    return rtsp_parse(last.p, strlen(s), m, why);
}

static bool str_is(struct msg_str s, const char *want)
{
    return s.n == strlen(want) && memcmp(s.p, want, s.n) == 0;
}

static void test_parse_request(void **state)
{
    (void)state;
    const char *req = "DESCRIBE rtsp://203.0.113.1/live RTSP/1.0\r\n"
                      "CSeq: 2\r\n"
                      "User-Agent: Lavf59.27.100\r\n"
                      "Accept:application/sdp  \r\n"
                      "\r\n";
    struct msg m;
    const char *why;
    struct guarded g = guard_bytes(req, strlen(req));
    assert_int_equal(rtsp_parse(g.p, strlen(req), &m, &why), strlen(req));
    assert_false(m.response);
    assert_true(str_is(m.method, "DESCRIBE"));
    assert_true(str_is(m.target, "rtsp://203.0.113.1/live"));
    assert_int_equal(m.major, 1);
    assert_int_equal(m.minor, 0);
    assert_int_equal(m.nhdr, 3);
    assert_true(str_is(*msg_header(&m, "accept"), "application/sdp"));
    assert_true(str_is(*msg_header(&m, "CSEQ"), "2"));
    assert_null(msg_header(&m, "Session"));
    assert_int_equal(m.length, 0);
    guard_free(g);

    /* Every shorter prefix is partial, never an error and never a read past the end. */
    for (size_t n = 0; n < strlen(req); n++) {
        g = guard_bytes(req, n);
        assert_int_equal(rtsp_parse(g.p, n, &m, &why), MSG_PARTIAL);
        guard_free(g);
    }

    /* Bare LF line ends (RFC 2326 4), RTSP 2.0. */
    const char *lf = "OPTIONS * RTSP/2.0\nCSeq: 1\n\nnext";
    assert_int_equal(parse(lf, &m, &why), strlen(lf) - 4);
    assert_int_equal(m.major, 2);
    assert_true(str_is(m.target, "*"));
}

static void test_parse_response(void **state)
{
    (void)state;
    const char *sdp = "v=0\r\n";
    char resp[512];
    snprintf(resp, sizeof(resp),
             "RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Type: application/sdp\r\n"
             "Content-Length: %zu\r\n\r\n%s",
             strlen(sdp), sdp);
    struct msg m;
    const char *why;
    assert_int_equal(parse(resp, &m, &why), strlen(resp) - strlen(sdp));
    assert_true(m.response);
    assert_int_equal(m.status, 200);
    assert_true(str_is(m.reason, "OK"));
    assert_int_equal(m.length, strlen(sdp));

    assert_int_equal(parse("RTSP/1.0 461\r\n\r\n", &m, &why), 16); /* no reason phrase */
    assert_int_equal(m.status, 461);
}

static void expect_error(const char *s, const char *reason)
{
    struct msg m;
    const char *why = NULL;
    assert_int_equal(parse(s, &m, &why), RTSP_ERROR);
    if (strcmp(why, reason) != 0) {
        fail_msg("%s: got \"%s\", want \"%s\"", s, why, reason);
    }
}

static void test_parse_errors(void **state)
{
    (void)state;
    expect_error("GARBAGE\r\n\r\n", "start line without a space");
    expect_error("DESCRIBE rtsp://x/ HTTP/1.1\r\n\r\n", "bad RTSP version");
    expect_error("DESCRIBE rtsp://x/\r\n\r\n", "bad request line");
    expect_error("DESC(RIBE rtsp://x/ RTSP/1.0\r\n\r\n", "bad method");
    expect_error("RTSP/1.0 2000 OK\r\n\r\n", "bad status code");
    expect_error("RTSP/1.0 20 OK\r\n\r\n", "bad status code");
    expect_error("OPTIONS * RTSP/1.0\r\nCSeq 1\r\n\r\n", "header without a name");
    expect_error("OPTIONS * RTSP/1.0\r\nC Seq: 1\r\n\r\n", "bad header name");
    expect_error("OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n continued\r\n\r\n", "folded header line");
    expect_error("OPTIONS * RTSP/1.0\r\nContent-Length: -1\r\n\r\n", "bad Content-Length");
    expect_error("OPTIONS * RTSP/1.0\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                 "Content-Length given twice");
    expect_error("OPTIONS * RTSP/1.0\r\nContent-Length: 9999999999\r\n\r\n", "bad Content-Length");
    expect_error("OPTIONS * RTSP/1.0\rCSeq: 1\r\n\r\n", "bare CR in the start line");
    expect_error("OPTIONS * RTSP/1.0\r\nCSeq: 1\rX: 2\r\n\r\n", "bare CR in a header");
    char many[4096] = "OPTIONS * RTSP/1.0\r\n";
    for (int i = 0; i <= MSG_MAX_HEADERS; i++) {
        strcat(many, "X: y\r\n");
    }
    strcat(many, "\r\n");
    expect_error(many, "too many headers");
}

static void test_frames(void **state)
{
    (void)state;
    const char f[] = {'$', 0, 0, 3, 'a', 'b', 'c', 'R'};
    assert_int_equal(rtsp_frame_len(f, 3), MSG_PARTIAL);
    assert_int_equal(rtsp_frame_len(f, 4), 7); /* the header is enough */
    assert_int_equal(rtsp_frame_len(f, 6), 7);
    assert_int_equal(rtsp_frame_len(f, 8), 7);
    const char big[] = {'$', 1, (char)0xff, (char)0xff};
    assert_int_equal(rtsp_frame_len(big, 4), 65539);
}

static const struct rtsp_rewrite out_rw = {{"192.0.2.10", 8554}, {"203.0.113.1", 554}, "", NULL};
static const struct rtsp_rewrite in_rw = {{"203.0.113.1", 554}, {"192.0.2.10", 8554}, "", NULL};

static void expect_url(const struct rtsp_rewrite *rw, const char *url, const char *want)
{
    char out[256];
    ssize_t n = rtsp_rewrite_url((struct msg_str){url, strlen(url)}, rw, out, sizeof(out));
    if (want == NULL) {
        assert_int_equal(n, 0);
        return;
    }
    assert_true(n > 0);
    out[n] = '\0';
    assert_string_equal(out, want);
}

static void test_urls(void **state)
{
    (void)state;
    expect_url(&out_rw, "rtsp://192.0.2.10:8554/live", "rtsp://203.0.113.1/live");
    expect_url(&out_rw, "RTSP://192.0.2.10:8554/live/trackID=3",
               "RTSP://203.0.113.1/live/trackID=3");
    expect_url(&out_rw, "rtsp://admin:pw@192.0.2.10:8554/a?b=c",
               "rtsp://admin:pw@203.0.113.1/a?b=c");
    expect_url(&out_rw, "rtsp://192.0.2.10:8554", "rtsp://203.0.113.1");
    expect_url(&out_rw, "rtsp://192.0.2.10/live", NULL);       /* port 554: another service */
    expect_url(&out_rw, "rtsp://192.0.2.11:8554/live", NULL);  /* another host */
    expect_url(&out_rw, "rtsp://192.0.2.10:85540/live", NULL); /* not a port */
    expect_url(&out_rw, "trackID=3", NULL);                    /* relative */
    expect_url(&out_rw, "http://192.0.2.10:8554/", NULL);
    expect_url(&in_rw, "rtsp://203.0.113.1/live", "rtsp://192.0.2.10:8554/live");
    expect_url(&in_rw, "rtsp://203.0.113.1:554/live", "rtsp://192.0.2.10:8554/live");

    /* rtsps: the client's rtsps:// URLs reach the device as rtsp://, and back. */
    const struct rtsp_rewrite tls_in = {{"203.0.113.1", 8322}, {"192.0.2.10", 8554}, "", "rtsp://"};
    const struct rtsp_rewrite tls_out = {
        {"192.0.2.10", 8554}, {"203.0.113.1", 8322}, "", "rtsps://"};
    expect_url(&tls_in, "rtsps://user@203.0.113.1:8322/live", "rtsp://user@192.0.2.10:8554/live");
    expect_url(&tls_out, "rtsp://192.0.2.10:8554/live/", "rtsps://203.0.113.1:8322/live/");
    expect_url(&tls_out, "rtsp://192.0.2.11:8554/live/", NULL);

    /* IPv6 on either side. */
    const struct rtsp_rewrite v6 = {{"192.0.2.10", 554}, {"2001:db8::1", 8554}, "", NULL};
    expect_url(&v6, "rtsp://192.0.2.10/x", "rtsp://[2001:db8::1]:8554/x");
    const struct rtsp_rewrite v6in = {{"2001:db8::1", 8554}, {"192.0.2.10", 554}, "", NULL};
    expect_url(&v6in, "rtsp://[2001:DB8::1]:8554/x", "rtsp://192.0.2.10/x");
    expect_url(&v6in, "rtsp://[2001:db8::1/x", NULL);

    struct rtsp_endpoint ep;
    const char *e1 = "rtsp://user:pw@[2001:db8::1]:8554/live";
    assert_int_equal(rtsp_url_endpoint((struct msg_str){e1, strlen(e1)}, &ep), 0);
    assert_string_equal(ep.host, "2001:db8::1");
    assert_int_equal(ep.port, 8554);
    const char *e2 = "rtsp://gw.example.com/live";
    assert_int_equal(rtsp_url_endpoint((struct msg_str){e2, strlen(e2)}, &ep), 0);
    assert_string_equal(ep.host, "gw.example.com");
    assert_int_equal(ep.port, 554);
    const char *bad[] = {
        "*", "live/trackID=0", "rtsp://:554/", "rtsp://h:99999/", "rtsp://[::1/", "rtsp://h:/"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(rtsp_url_endpoint((struct msg_str){bad[i], strlen(bad[i])}, &ep), -1);
    }

    char small[8];
    const char *u = "rtsp://192.0.2.10:8554/live";
    assert_int_equal(
        rtsp_rewrite_url((struct msg_str){u, strlen(u)}, &out_rw, small, sizeof(small)),
        RTSP_ERROR);
}

/* Parses msg, rewrites it with rw and transport, and compares with want. */
static void expect_rewrite(const char *msg, const struct rtsp_rewrite *rw, const char *transport,
                           const char *want)
{
    struct msg m;
    const char *why = NULL;
    struct guarded g = guard_bytes(msg, strlen(msg));
    ssize_t head = rtsp_parse(g.p, strlen(msg), &m, &why);
    assert_true(head > 0);
    assert_int_equal((size_t)head + m.length, strlen(msg));
    char out[4096];
    ssize_t n = rtsp_rewrite(g.p, &m, rw, transport, out, sizeof(out), &why);
    assert_true(n > 0);
    out[n] = '\0';
    assert_string_equal(out, want);
    /* What comes out parses, with a Content-Length that matches its body. */
    struct msg m2;
    assert_int_equal(rtsp_parse(out, (size_t)n, &m2, &why) + (ssize_t)m2.length, n);
    /* Too little room is an error, not a truncated message. */
    assert_int_equal(rtsp_rewrite(g.p, &m, rw, transport, out, (size_t)n - 1, &why), RTSP_ERROR);
    guard_free(g);
}

/* What VLC 3.0's RTSP server answers to DESCRIBE (captured shape, documentation addresses). */
static void test_rewrite_vlc_describe(void **state)
{
    (void)state;
    const char *sdp = "v=0\r\n"
                      "o=- 16409863082207520000 16409863082207520000 IN IP4 192.0.2.10\r\n"
                      "s=Unnamed\r\n"
                      "i=N/A\r\n"
                      "c=IN IP4 0.0.0.0\r\n"
                      "t=0 0\r\n"
                      "a=tool:vlc 3.0.18\r\n"
                      "a=recvonly\r\n"
                      "a=type:broadcast\r\n"
                      "a=charset:UTF-8\r\n"
                      "a=control:rtsp://192.0.2.10:8554/live\r\n"
                      "m=video 0 RTP/AVP 96\r\n"
                      "b=RR:0\r\n"
                      "a=rtpmap:96 H264/90000\r\n"
                      "a=control:rtsp://192.0.2.10:8554/live/trackID=0\r\n";
    char msg[2048], want[2048];
    snprintf(msg, sizeof(msg),
             "RTSP/1.0 200 OK\r\nServer: VLC/3.0.18\r\nDate: Tue, 24 Nov 2026 10:00:00 GMT\r\n"
             "Content-Type: application/sdp\r\nContent-Base: rtsp://192.0.2.10:8554/live\r\n"
             "Content-Length: %zu\r\nCache-Control: no-cache\r\nCseq: 2\r\n\r\n%s",
             strlen(sdp), sdp);
    const char *want_sdp = "v=0\r\n"
                           "o=- 16409863082207520000 16409863082207520000 IN IP4 203.0.113.1\r\n"
                           "s=Unnamed\r\n"
                           "i=N/A\r\n"
                           "c=IN IP4 0.0.0.0\r\n"
                           "t=0 0\r\n"
                           "a=tool:vlc 3.0.18\r\n"
                           "a=recvonly\r\n"
                           "a=type:broadcast\r\n"
                           "a=charset:UTF-8\r\n"
                           "a=control:rtsp://203.0.113.1/live\r\n"
                           "m=video 0 RTP/AVP 96\r\n"
                           "b=RR:0\r\n"
                           "a=rtpmap:96 H264/90000\r\n"
                           "a=control:rtsp://203.0.113.1/live/trackID=0\r\n";
    snprintf(want, sizeof(want),
             "RTSP/1.0 200 OK\r\nServer: VLC/3.0.18\r\nDate: Tue, 24 Nov 2026 10:00:00 GMT\r\n"
             "Content-Type: application/sdp\r\nContent-Base: rtsp://203.0.113.1/live\r\n"
             "Content-Length: %zu\r\nCache-Control: no-cache\r\nCseq: 2\r\n\r\n%s",
             strlen(want_sdp), want_sdp);
    expect_rewrite(msg, &out_rw, NULL, want);
}

/* GStreamer's rtsp-server: relative controls, LF-only SDP, an IPv6 client side, c= with the
 * device's address, RTP-Info on PLAY. */
static void test_rewrite_gstreamer(void **state)
{
    (void)state;
    const struct rtsp_rewrite rw = {{"192.0.2.10", 8554}, {"2001:db8::1", 554}, "", NULL};
    const char *sdp = "v=0\n"
                      "o=- 1188340656180883 1 IN IP4 192.0.2.10\n"
                      "s=Session streamed with GStreamer\n"
                      "c=IN IP4 192.0.2.10/127\n"
                      "a=control:*\n"
                      "m=video 0 RTP/AVP 96\n"
                      "a=control:stream=0\n";
    const char *want_sdp = "v=0\n"
                           "o=- 1188340656180883 1 IN IP6 2001:db8::1\n"
                           "s=Session streamed with GStreamer\n"
                           "c=IN IP6 2001:db8::1/127\n"
                           "a=control:*\n"
                           "m=video 0 RTP/AVP 96\n"
                           "a=control:stream=0\n";
    char msg[1024], want[1024];
    snprintf(msg, sizeof(msg),
             "RTSP/1.0 200 OK\r\nCSeq: 3\r\ncontent-type: application/sdp\r\n"
             "Content-Base: rtsp://192.0.2.10:8554/test/\r\ncontent-length: %zu\r\n\r\n%s",
             strlen(sdp), sdp);
    snprintf(want, sizeof(want),
             "RTSP/1.0 200 OK\r\nCSeq: 3\r\ncontent-type: application/sdp\r\n"
             "Content-Base: rtsp://[2001:db8::1]/test/\r\ncontent-length: %zu\r\n\r\n%s",
             strlen(want_sdp), want_sdp);
    expect_rewrite(msg, &rw, NULL, want);

    expect_rewrite("RTSP/1.0 200 OK\r\nCSeq: 5\r\nRTP-Info: url=rtsp://192.0.2.10:8554/test/"
                   "stream=0;seq=17345;rtptime=3414712, url=\"rtsp://192.0.2.10:8554/test/"
                   "stream=1\";seq=1\r\nRange: npt=0-\r\nSession: 8lzJqZUE2b9Tlr4x\r\n\r\n",
                   &rw, NULL,
                   "RTSP/1.0 200 OK\r\nCSeq: 5\r\nRTP-Info: url=rtsp://[2001:db8::1]/test/"
                   "stream=0;seq=17345;rtptime=3414712, url=\"rtsp://[2001:db8::1]/test/"
                   "stream=1\";seq=1\r\nRange: npt=0-\r\nSession: 8lzJqZUE2b9Tlr4x\r\n\r\n");
}

/* An answer to a DESCRIBE carrying sdp, into buf. */
static void sdp_answer(char *buf, size_t len, const char *sdp)
{
    snprintf(buf, len,
             "RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Type: application/sdp\r\n"
             "Content-Length: %zu\r\n\r\n%s",
             strlen(sdp), sdp);
}

/* Every address line of an SDP takes the family of the address the client used: a player opens
 * its RTP sockets for the family of c=, so an IPv6 player told "c=IN IP4 0.0.0.0" hears nothing.
 * Session and media c= lines, wildcards, o=, a=rtcp:, an IPv4 player of an IPv6 device too;
 * multicast stays as the device said. */
static void test_rewrite_sdp_families(void **state)
{
    (void)state;
    const struct rtsp_rewrite to6 = {
        {"192.0.2.10", 8554}, {"2001:db8::1", 554}, "2001:db8::1", NULL};
    const char *sdp = "v=0\r\n"
                      "o=- 1 1 IN IP4 192.0.2.10\r\n"
                      "c=IN IP4 0.0.0.0\r\n"
                      "t=0 0\r\n"
                      "m=video 0 RTP/AVP 96\r\n"
                      "c=IN IP4 0.0.0.0\r\n"
                      "a=rtcp:5001 IN IP4 192.0.2.10\r\n"
                      "m=audio 0 RTP/AVP 0\r\n"
                      "c=IN IP4 198.51.100.200\r\n"
                      "a=rtcp:5003\r\n"
                      "m=audio 5004 RTP/AVP 0\r\n"
                      "c=IN IP4 233.252.0.1/127\r\n";
    const char *want_sdp = "v=0\r\n"
                           "o=- 1 1 IN IP6 2001:db8::1\r\n"
                           "c=IN IP6 ::\r\n"
                           "t=0 0\r\n"
                           "m=video 0 RTP/AVP 96\r\n"
                           "c=IN IP6 ::\r\n"
                           "a=rtcp:5001 IN IP6 2001:db8::1\r\n"
                           "m=audio 0 RTP/AVP 0\r\n"
                           "c=IN IP6 2001:db8::1\r\n"
                           "a=rtcp:5003\r\n"
                           "m=audio 5004 RTP/AVP 0\r\n"
                           "c=IN IP4 233.252.0.1/127\r\n";
    char msg[1024], want[1024];
    sdp_answer(msg, sizeof(msg), sdp);
    sdp_answer(want, sizeof(want), want_sdp);
    expect_rewrite(msg, &to6, NULL, want);

    /* The device's address written another way is still the device's. */
    const struct rtsp_rewrite same6 = {
        {"2001:db8:2::10", 8554}, {"2001:db8:1::1", 554}, "2001:db8:1::1", NULL};
    sdp = "v=0\r\no=- 1 1 IN IP6 2001:DB8:2:0::10\r\nc=IN IP6 2001:db8:2::10\r\n";
    want_sdp = "v=0\r\no=- 1 1 IN IP6 2001:db8:1::1\r\nc=IN IP6 2001:db8:1::1\r\n";
    sdp_answer(msg, sizeof(msg), sdp);
    sdp_answer(want, sizeof(want), want_sdp);
    expect_rewrite(msg, &same6, NULL, want);

    /* An IPv4 player of an IPv6 device. */
    const struct rtsp_rewrite to4 = {
        {"2001:db8:2::10", 8554}, {"203.0.113.1", 554}, "203.0.113.1", NULL};
    sdp = "v=0\n"
          "o=- 7 1 IN IP6 2001:db8:2::10\n"
          "c=IN IP6 ::\n"
          "m=video 0 RTP/AVP 96\n"
          "c=IN IP6 ff0e::db8:1/3\n";
    want_sdp = "v=0\n"
               "o=- 7 1 IN IP4 203.0.113.1\n"
               "c=IN IP4 0.0.0.0\n"
               "m=video 0 RTP/AVP 96\n"
               "c=IN IP6 ff0e::db8:1/3\n";
    sdp_answer(msg, sizeof(msg), sdp);
    sdp_answer(want, sizeof(want), want_sdp);
    expect_rewrite(msg, &to4, NULL, want);
}

/* Requests go the other way; the Transport value is the caller's; Authorization is untouched
 * (a Digest response was computed over the uri= the client used, which the device checks). */
static void test_rewrite_request(void **state)
{
    (void)state;
    expect_rewrite("SETUP rtsp://203.0.113.1/live/trackID=0 RTSP/1.0\r\nCSeq: 4\r\n"
                   "Authorization: Digest username=\"admin\", realm=\"enc\", nonce=\"ab\", "
                   "uri=\"rtsp://203.0.113.1/live/\", response=\"0123\"\r\n"
                   "Transport: RTP/AVP;unicast;client_port=5000-5001\r\n\r\n",
                   &in_rw, "RTP/AVP;unicast;client_port=40000-40001",
                   "SETUP rtsp://192.0.2.10:8554/live/trackID=0 RTSP/1.0\r\nCSeq: 4\r\n"
                   "Authorization: Digest username=\"admin\", realm=\"enc\", nonce=\"ab\", "
                   "uri=\"rtsp://203.0.113.1/live/\", response=\"0123\"\r\n"
                   "Transport: RTP/AVP;unicast;client_port=40000-40001\r\n\r\n");
    /* A repeated Content-Length on a body that changes length: one, right, comes out (found by
     * the fuzzer). */
    expect_rewrite("RTSP/1.0 200 OK\r\nContent-Type: application/sdp\r\nContent-Length: 025\r\n"
                   "Content-Length: 25\r\n\r\nc=IN IP4 192.0.2.10\r\nv=0\n",
                   &out_rw, NULL,
                   "RTSP/1.0 200 OK\r\nContent-Type: application/sdp\r\nContent-Length: 26\r\n"
                   "\r\nc=IN IP4 203.0.113.1\r\nv=0\n");
    /* A redirect names another device address: kept. A body that is not SDP: copied. */
    expect_rewrite("RTSP/1.0 301 Moved\r\nLocation: rtsp://192.0.2.10:8554/other\r\n"
                   "Content-Type: text/parameters\r\nContent-Length: 5\r\n\r\na: 1\n",
                   &out_rw, NULL,
                   "RTSP/1.0 301 Moved\r\nLocation: rtsp://203.0.113.1/other\r\n"
                   "Content-Type: text/parameters\r\nContent-Length: 5\r\n\r\na: 1\n");
}

static void test_transport(void **state)
{
    (void)state;
    const char *v = "RTP/AVP;unicast;client_port=5000-5001;ssrc=1234ABCD;mode=\"PLAY\", "
                    "RTP/AVP/TCP;unicast;interleaved=0-1,RTP/AVP;multicast;destination=233.252.0.1;"
                    "port=5000-5001, RTP/AVP/UDP;server_port=6970;source=192.0.2.10;mode=record";
    struct msg_str s = {v, strlen(v)};
    size_t pos = 0;
    struct rtsp_transport t;
    const char *why;
    assert_int_equal(rtsp_transport_next(s, &pos, &t, &why), 1);
    assert_int_equal(t.lower, RTSP_UDP);
    assert_false(t.multicast);
    assert_false(t.record);
    assert_true(t.has_client_port);
    assert_int_equal(t.client_port[0], 5000);
    assert_int_equal(t.client_port[1], 5001);
    assert_true(
        str_is(t.spec, "RTP/AVP;unicast;client_port=5000-5001;ssrc=1234ABCD;mode=\"PLAY\""));
    assert_int_equal(rtsp_transport_next(s, &pos, &t, &why), 1);
    assert_int_equal(t.lower, RTSP_TCP);
    assert_true(t.has_interleaved);
    assert_int_equal(rtsp_transport_next(s, &pos, &t, &why), 1);
    assert_true(t.multicast);
    assert_true(str_is(t.destination, "233.252.0.1"));
    assert_int_equal(rtsp_transport_next(s, &pos, &t, &why), 1);
    assert_true(t.has_server_port);
    assert_int_equal(t.server_port[0], 6970); /* a single port: RTCP is the next one */
    assert_int_equal(t.server_port[1], 6971);
    assert_true(str_is(t.source, "192.0.2.10"));
    assert_true(t.record);
    assert_int_equal(rtsp_transport_next(s, &pos, &t, &why), 0);

    const char *bad[] = {"MP2T/H2221/UDP;unicast", "RTP/AVP;client_port=0-1",
                         "RTP/AVP;client_port=5000-", "RTP/AVP;client_port=70000",
                         "RTP/AVP;server_port=x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        pos = 0;
        s = (struct msg_str){bad[i], strlen(bad[i])};
        assert_int_equal(rtsp_transport_next(s, &pos, &t, &why), RTSP_ERROR);
    }
}

/* Every prefix of every Transport value, each placed against a guard page, is parsed spec by
 * spec to its end: no parameter, quoted or cut short (mode="recor), is read past its slice. */
static void test_transport_guarded(void **state)
{
    (void)state;
    const char *values[] = {
        "RTP/AVP;unicast;client_port=5000-5001;ssrc=1234ABCD;mode=\"PLAY\"",
        "RTP/AVP/TCP;unicast;interleaved=0-1,RTP/AVP;multicast;destination=233.252.0.1;ttl=16",
        "RTP/AVP/UDP;server_port=6970;source=192.0.2.10;mode=record",
        "RTP/AVP;unicast;client_port=5000-5001;mode=\"RECORD\"",
        "RTP/AVP;unicast;mode=\"record\",RTP/AVP/TCP;interleaved=0-1;mode=\"recor",
        "RTP/AVP;client_port=65535,RTP/AVP;server_port=1-;x=\"a,b\";multicast",
    };
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        for (size_t n = 1; n <= strlen(values[i]); n++) {
            struct guarded g = guard_bytes(values[i], n);
            struct msg_str s = {g.p, n};
            size_t pos = 0;
            struct rtsp_transport t;
            const char *why;
            int r;
            for (int specs = 0; (r = rtsp_transport_next(s, &pos, &t, &why)) != 0; specs++) {
                assert_true(r == 1 || r == RTSP_ERROR);
                assert_true(pos <= n && specs < 8);
            }
            guard_free(g);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_request),
        cmocka_unit_test(test_parse_response),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_frames),
        cmocka_unit_test(test_urls),
        cmocka_unit_test(test_rewrite_vlc_describe),
        cmocka_unit_test(test_rewrite_gstreamer),
        cmocka_unit_test(test_rewrite_sdp_families),
        cmocka_unit_test(test_rewrite_request),
        cmocka_unit_test(test_transport),
        cmocka_unit_test(test_transport_guarded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
