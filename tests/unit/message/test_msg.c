/* message/msg: HTTP heads as a request from a client and as a response from a device (what each
 * accepts and what it refuses, with the status), and chunked bodies cut at every byte. RTSP's
 * use of the parser is tested in tests/unit/proto/rtsp/. Every input sits right before a
 * PROT_NONE page, so a read past its end faults. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "guard.h"
#include "message/msg.h"

static ssize_t parse(const char *s, enum msg_kind kind, struct msg *m, const char **why,
                     int *status)
{
    struct guarded g = guard_str(s);
    ssize_t n = msg_parse(g.p, strlen(s), kind, m, why, status);
    /* The slices point into the guarded copy: re-point them at s for the caller. */
    ptrdiff_t d = s - g.p;
    if (n > 0) {
        m->method.p += m->method.p ? d : 0;
        m->target.p += m->target.p ? d : 0;
        m->reason.p += m->reason.p ? d : 0;
        m->host.p += m->host.p ? d : 0;
        for (size_t i = 0; i < m->nhdr; i++) {
            m->hdr[i].name.p += d;
            m->hdr[i].value.p += d;
        }
    }
    guard_free(g);
    return n;
}

static bool is(struct msg_str s, const char *lit)
{
    return s.n == strlen(lit) && memcmp(s.p, lit, s.n) == 0;
}

static void test_request(void **state)
{
    (void)state;
    const char *req = "GET /cam/index.html?a=1 HTTP/1.1\r\nHost: cam1.example.org:8443\r\n"
                      "Accept: */*\r\nConnection:  keep-alive \r\n\r\nBODY";
    struct msg m;
    const char *why;
    int status;
    assert_int_equal(parse(req, MSG_HTTP_REQUEST, &m, &why, &status), strlen(req) - 4);
    assert_false(m.response);
    assert_true(is(m.method, "GET"));
    assert_true(is(m.target, "/cam/index.html?a=1"));
    assert_int_equal(m.major, 1);
    assert_int_equal(m.minor, 1);
    assert_true(is(m.host, "cam1.example.org:8443"));
    assert_true(is(*msg_header(&m, "connection"), "keep-alive"));
    assert_false(m.has_length);
    assert_false(m.chunked);
    assert_true(msg_list_has(*msg_header(&m, "Connection"), "Keep-Alive"));
    assert_false(msg_list_has(*msg_header(&m, "Connection"), "close"));

    /* Every prefix is partial. */
    for (size_t n = 0; n < strlen(req) - 4; n++) {
        char cut[256];
        memcpy(cut, req, n);
        cut[n] = '\0';
        assert_int_equal(parse(cut, MSG_HTTP_REQUEST, &m, &why, &status), MSG_PARTIAL);
    }

    /* HTTP/1.0 needs no Host; a body by Content-Length; chunked. */
    assert_true(parse("GET / HTTP/1.0\r\n\r\n", MSG_HTTP_REQUEST, &m, &why, &status) > 0);
    assert_true(parse("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 12345678901\r\n\r\n",
                      MSG_HTTP_REQUEST, &m, &why, &status) > 0);
    assert_true(m.has_length);
    assert_int_equal(m.length, 12345678901ull);
    assert_true(parse("POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n",
                      MSG_HTTP_REQUEST, &m, &why, &status) > 0);
    assert_true(m.chunked);
    assert_true(parse("GET / HTTP/1.1\r\nHost: [2001:db8::1]:80\r\n\r\n", MSG_HTTP_REQUEST, &m,
                      &why, &status) > 0);
}

static void test_response(void **state)
{
    (void)state;
    struct msg m;
    const char *why;
    int status;
    const char *r = "HTTP/1.1 302 Found\r\nLocation: http://192.0.2.10/login\r\n"
                    "Content-Length: 0\r\nContent-Length: 0\r\n\r\n";
    assert_int_equal(parse(r, MSG_HTTP_RESPONSE, &m, &why, &status), strlen(r));
    assert_true(m.response);
    assert_int_equal(m.status, 302);
    assert_true(is(m.reason, "Found"));
    assert_true(m.has_length && m.length == 0);
    /* A device's bare LF; no reason phrase; a body until the connection closes. */
    assert_true(parse("HTTP/1.0 200\nServer: cam\n\n", MSG_HTTP_RESPONSE, &m, &why, &status) > 0);
    assert_false(m.has_length);
    assert_true(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", MSG_HTTP_RESPONSE, &m,
                      &why, &status) > 0);
    assert_false(m.chunked);
    assert_true(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", MSG_HTTP_RESPONSE,
                      &m, &why, &status) > 0);
    assert_true(m.chunked);
}

static void refuse(const char *s, enum msg_kind kind, const char *reason, int want)
{
    struct msg m;
    const char *why = NULL;
    int status = 0;
    assert_int_equal(parse(s, kind, &m, &why, &status), MSG_ERROR);
    if (strcmp(why, reason) != 0 || status != want) {
        fail_msg("%s: got \"%s\" %d, want \"%s\" %d", s, why, status, reason, want);
    }
}

/* What two parsers could read differently, and what is not HTTP/1.x: refused, with the status
 * the client is answered. */
static void test_request_refusals(void **state)
{
    (void)state;
    const enum msg_kind Q = MSG_HTTP_REQUEST;
    refuse("GET / HTTP/1.1\nHost: a\n\n", Q, "bare LF in the start line", 400);
    refuse("GET / HTTP/1.1\r\nHost: a\n\r\n", Q, "bare LF in a header", 400);
    refuse("GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", Q, "bare CR in a header", 400);
    refuse("GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n", Q, "folded header line", 400);
    refuse("GET / HTTP/1.1\r\nHost : a\r\n\r\n", Q, "space before a header's colon", 400);
    refuse("GET / HTTP/1.1\r\nHo(st: a\r\n\r\n", Q, "bad header name", 400);
    refuse("GET / HTTP/1.1\r\nHost: a\r\nX: a\x01z\r\n\r\n", Q,
           "control character in a header value", 400);
    refuse("GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fz\r\n\r\n", Q,
           "control character in a header value", 400);
    refuse("GET / HTTP/1.1\r\n\r\n", Q, "an HTTP/1.1 request without Host", 400);
    refuse("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", Q, "more than one Host header", 400);
    refuse("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", Q, "bad Host", 400);
    refuse("GET / HTTP/1.1\r\nHost: user@a\r\n\r\n", Q, "bad Host", 400);
    refuse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", Q,
           "Content-Length given twice", 400);
    refuse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", Q, "bad Content-Length",
           400);
    refuse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", Q, "bad Content-Length",
           400);
    refuse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1234567890123456789\r\n\r\n", Q,
           "bad Content-Length", 400);
    refuse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
           Q, "both Content-Length and Transfer-Encoding", 400);
    refuse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", Q,
           "a Transfer-Encoding the gateway does not know", 501);
    refuse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", Q,
           "a Transfer-Encoding the gateway does not know", 501);
    refuse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\nContent-Length: 40\r\n\r\n", Q,
           "an empty Transfer-Encoding", 400);
    refuse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ,\r\nContent-Length: 40\r\n\r\n", Q,
           "an empty Transfer-Encoding", 400);
    refuse("POST / HTTP/1.1\r\nHost: a\r\nContent_Length: 40\r\n\r\n", Q,
           "a header name with _ that stands for Content-Length, Transfer-Encoding or Host", 400);
    refuse("POST / HTTP/1.1\r\nHost: a\r\nTRANSFER_ENCODING: chunked\r\n\r\n", Q,
           "a header name with _ that stands for Content-Length, Transfer-Encoding or Host", 400);
    refuse("GET / HTTP/1.2\r\nHost: a\r\n\r\n", Q,
           "HTTP version not supported (HTTP/1.0 and 1.1 are)", 505);
    refuse("GET / HTTP/1.1\r\nHost: a,b\r\n\r\n", Q, "bad Host", 400);
    refuse("GET / HTTP/1.1\r\nHost: a:80:80\r\n\r\n", Q, "bad Host", 400);
    refuse("GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", Q, "bad Host", 400);
    refuse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
           "Transfer-Encoding: chunked\r\n\r\n",
           Q, "chunked applied twice, or not last, in Transfer-Encoding", 400);
    refuse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", Q,
           "a Transfer-Encoding the gateway does not know", 501);
    refuse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked \x0b\r\n\r\n", Q,
           "control character in a header value", 400);
    refuse("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", Q,
           "Transfer-Encoding in an HTTP/1.0 request", 400);
    refuse("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", Q, "bad request line", 400);
    refuse("GET / HTTP/1.1 \r\nHost: a\r\n\r\n", Q, "bad HTTP version", 400);
    refuse("GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n", Q, "bad request target", 400);
    refuse("G@T / HTTP/1.1\r\nHost: a\r\n\r\n", Q, "bad method", 400);
    refuse("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", Q,
           "HTTP version not supported (HTTP/1.0 and 1.1 are)", 505);
    refuse("GET / RTSP/1.0\r\n\r\n", Q, "bad HTTP version", 400);
    refuse("HTTP/1.1 200 OK\r\n\r\n", Q, "bad method", 400);
    refuse("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 ", Q, "bad method", 400);
    char many[8192] = "GET / HTTP/1.1\r\nHost: a\r\n";
    for (int i = 0; i < MSG_MAX_HEADERS; i++) {
        strcat(many, "X: y\r\n");
    }
    strcat(many, "\r\n");
    refuse(many, Q, "too many headers", 431);
}

static void test_response_refusals(void **state)
{
    (void)state;
    const enum msg_kind R = MSG_HTTP_RESPONSE;
    refuse("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", R,
           "Content-Length given twice", 502);
    refuse("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", R,
           "both Content-Length and Transfer-Encoding", 502);
    refuse("HTTP/1.1 2000 OK\r\n\r\n", R, "bad status code", 502);
    refuse("GET / HTTP/1.1\r\n\r\n", R, "not an HTTP response", 502);
    refuse("HTTP/1.1 200 OK\r\nX\x01: y\r\n\r\n", R, "bad header name", 502);
    refuse("HTTP/1.1 200 O\x01K\r\n\r\n", R, "control character in the reason phrase", 502);
}

/* Feeds body to a chunked scanner in pieces of step bytes; returns the bytes it took, or -1. */
static ssize_t scan(const char *body, size_t len, size_t step, bool *done, const char **why)
{
    struct msg_chunked c;
    msg_chunked_init(&c);
    size_t off = 0;
    *done = false;
    while (off < len && !*done) {
        size_t n = len - off < step ? len - off : step;
        struct guarded g = guard_bytes(body + off, n);
        ssize_t r = msg_chunked_scan(&c, g.p, n, done, why);
        guard_free(g);
        if (r < 0) {
            return -1;
        }
        off += (size_t)r;
        if ((size_t)r < n && !*done) {
            fail_msg("took %zd of %zu without ending", r, n);
        }
    }
    return (ssize_t)off;
}

static void test_chunked(void **state)
{
    (void)state;
    const char *ok[] = {
        "0\r\n\r\n",
        "5\r\nhello\r\n0\r\n\r\n",
        "5;name=value\r\nhello\r\nA\r\n0123456789\r\n0\r\n\r\n",
        "5 ;ext\r\nhello\r\n0\r\nTrailer: x\r\nOther: y\r\n\r\n",
        "5 \t;a=\"b c\"\r\nhello\r\n0\r\n\r\n",
        "000000000000005\r\nhello\r\n0\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        char buf[256];
        snprintf(buf, sizeof(buf), "%sNEXT REQUEST", ok[i]);
        for (size_t step = 1; step <= strlen(buf); step++) {
            bool done;
            const char *why = "";
            ssize_t n = scan(buf, strlen(buf), step, &done, &why);
            if (n != (ssize_t)strlen(ok[i]) || !done) {
                fail_msg("\"%s\" in steps of %zu: took %zd (%s)", ok[i], step, n, why);
            }
        }
    }
    static const struct {
        const char *in, *why;
    } bad[] = {
        {"x\r\n", "bad chunk size"},
        {"\r\n", "bad chunk size"},
        {"5\nhello\r\n", "bare LF in a chunk size line"},
        {"5\rhello\r\n", "bare CR in a chunk size line"},
        {"5\r\nhelloX\r\n", "chunk data longer than its size"},
        {"5\r\nhello\rX", "chunk data longer than its size"},
        {"1234567890abcdef0\r\n", "chunk size too large"},
        {"-5\r\n", "bad chunk size"},
        {"5;a\x01\r\n", "control character in a chunk extension"},
        {"0\r\n:bad\r\n\r\n", "bad trailer line"},
        {"0\r\nGET /admin HTTP/1.1\r\n\r\n", "bad trailer line"},
        {"5 x\r\n", "bad chunk extension"},
        {"5 ; a\r\nhello\r\n0\r\nA B: c\r\n", "bad trailer line"},
        {"0\r\nX: a\x01\r\n\r\n", "control character in a trailer"},
        {"0\r\n\rX", "bare CR at the end of a chunked body"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        bool done;
        const char *why = "";
        if (scan(bad[i].in, strlen(bad[i].in), 1, &done, &why) != -1 ||
            strcmp(why, bad[i].why) != 0) {
            fail_msg("\"%s\": got \"%s\", want \"%s\"", bad[i].in, why, bad[i].why);
        }
    }
    /* Limits: a size line and trailers of their maximum length. */
    static char longline[MSG_CHUNK_LINE_MAX + 16];
    memset(longline, 'e', sizeof(longline));
    memcpy(longline, "5;", 2);
    bool done;
    const char *why = "";
    assert_int_equal(scan(longline, sizeof(longline), 100, &done, &why), -1);
    assert_string_equal(why, "chunk size line too long");
    static char trailers[MSG_TRAILERS_MAX + 64] = "0\r\n";
    for (size_t off = 3; off + 8 < sizeof(trailers); off += 7) {
        memcpy(trailers + off, "X: 1234", 7);
        trailers[off + 5] = '\r';
        trailers[off + 6] = '\n';
    }
    assert_int_equal(scan(trailers, sizeof(trailers) - 8, 100, &done, &why), -1);
    assert_string_equal(why, "trailers too long");
    /* Just under the limit: fine. */
    char small[64] = "0\r\nX: 1\r\n\r\n";
    assert_int_equal(scan(small, strlen(small), 3, &done, &why), strlen(small));
    assert_true(done);
}

/* Reframed, as a request goes to a device: plain sizes, no extensions, no trailers; the same
 * however the input and the output room are cut. */
static void test_reframe(void **state)
{
    (void)state;
    const char *in = "5;name=\"v\"\r\nhello\r\n00a\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nNEXT";
    const char *want = "5\r\nhello\r\na\r\n0123456789\r\n0\r\n\r\n";
    size_t inlen = strlen(in) - 4;
    for (size_t step = 1; step <= strlen(in); step++) {
        for (size_t room = 24; room <= 64; room += 20) {
            struct msg_chunked c;
            msg_chunked_init(&c);
            char out[256];
            size_t off = 0, o = 0;
            bool done = false;
            while (off < strlen(in) && !done) {
                size_t n = strlen(in) - off < step ? strlen(in) - off : step;
                size_t w = 0;
                const char *why = NULL;
                ssize_t r = msg_chunked_reframe(&c, in + off, n, out + o, room, &w, &done, &why);
                assert_true(r >= 0);
                off += (size_t)r;
                o += w;
            }
            assert_true(done);
            assert_int_equal(off, inlen);
            out[o] = '\0';
            assert_string_equal(out, want);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request),          cmocka_unit_test(test_response),
        cmocka_unit_test(test_request_refusals), cmocka_unit_test(test_response_refusals),
        cmocka_unit_test(test_chunked),          cmocka_unit_test(test_reframe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
