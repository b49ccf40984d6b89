/*
 * proto/rtsp/rtsp_proxy: the filter driven directly, as the relay drives it (data() each way,
 * pending() and held()), for device-auth: the client's Authorization removed, the device's 401
 * answered by sending the request again with the gateway's credentials, later requests with
 * credentials from the start, stale nonces, refused credentials, requests too large to keep,
 * and one request at a time until the first challenge is answered. The device is 192.0.2.10:8554,
 * the client knows it as 127.0.0.1:1554 (the gateway's addresses are loopback: a SETUP over UDP
 * binds its ports there).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/loop.h"
#include "forward/mapping.h"
#include "forward/relay.h"
#include "gateway/config.h"
#include "message/digest.h"
#include "proto/rtsp/rtsp_proto.h"
#include "proto/rtsp/rtsp_proxy.h"

static struct loop *loop;
static struct relay_ctx ctx;
static struct rtsp_proxy_worker *sessions;

static const struct tcp_filter *f = &rtsp_proxy_filter;

struct conn {
    struct mapping *map;
    void *st;
    char out[RELAY_BUF_SIZE + 1];
    size_t out_len;
};

static struct conn *conn_open(const char *extra)
{
    char spec[256];
    snprintf(spec, sizeof(spec), "rtsp:127.0.0.1:1554=192.0.2.10:8554,rtp-ports=31000-31019%s",
             extra);
    struct config *c = config_new();
    assert_int_equal(config_add_spec(c, spec, 1), 0);
    assert_int_equal(c->nerrors, 0);
    struct conn *k = calloc(1, sizeof(*k));
    assert_non_null(k);
    k->map = mapping_new(&c->maps[0], NULL, 1);
    config_free(c);
    assert_non_null(k->map);
    struct tcp_filter_conn fc = {.ctx = &ctx, .state = sessions, .map = k->map};
    addr_parse_ip("198.51.100.2", &fc.client);
    addr_set_port(&fc.client, 40000);
    addr_parse_ip("127.0.0.1", &fc.client_local);
    addr_set_port(&fc.client_local, 1554);
    addr_parse_ip("192.0.2.10", &fc.target);
    addr_set_port(&fc.target, 8554);
    addr_parse_ip("127.0.0.1", &fc.target_local);
    addr_set_port(&fc.target_local, 41000);
    k->st = f->open(&fc);
    assert_non_null(k->st);
    return k;
}

static void conn_close(struct conn *k)
{
    f->close(k->st);
    mapping_unref(k->map);
    free(k);
}

/* Runs data() in direction d on text (NULL: nothing, for pending output); what it writes is
 * k->out, NUL-terminated. Returns the input it took. */
static size_t run(struct conn *k, enum tcp_dir d, const char *text)
{
    size_t len = text != NULL ? strlen(text) : 0;
    const char *reason = NULL;
    k->out_len = 0;
    ssize_t used =
        f->data(k->st, d, text, len, false, k->out, RELAY_BUF_SIZE, &k->out_len, &reason);
    assert_true(used >= 0);
    k->out[k->out_len] = '\0';
    return (size_t)used;
}

/* The same, with all of text taken. */
static const char *pass(struct conn *k, enum tcp_dir d, const char *text)
{
    assert_int_equal(run(k, d, text), strlen(text));
    return k->out;
}

static unsigned long long stat_of(const struct conn *k, enum rtsp_proto_stat s)
{
    return mapping_shard(k->map, 0)->stats.proto[s];
}

/* The value of header name in the message at msg, into buf ("" without one). */
static const char *header(const char *msg, const char *name, char *buf, size_t len)
{
    char key[64];
    snprintf(key, sizeof(key), "\r\n%s: ", name);
    const char *h = strstr(msg, key);
    buf[0] = '\0';
    if (h != NULL) {
        h += strlen(key);
        size_t n = strcspn(h, "\r\n");
        snprintf(buf, len, "%.*s", (int)n, h);
    }
    return buf;
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p != NULL; p = strstr(p + 1, needle)) {
        n++;
    }
    return n;
}

/* The Digest answer the gateway should have sent for method and uri, nc-th use, with the
 * cnonce it chose (read from cred). */
static void expect_digest(const char *cred, const char *challenge, const char *method,
                          const char *uri, uint32_t nc)
{
    struct digest_challenge c;
    const char *why;
    assert_int_equal(digest_parse(challenge, strlen(challenge), &c, &why), 0);
    char cnonce[64] = "";
    const char *cn = strstr(cred, "cnonce=\"");
    if (cn != NULL) {
        snprintf(cnonce, sizeof(cnonce), "%.*s", (int)strcspn(cn + 8, "\""), cn + 8);
    }
    char want[DIGEST_CRED_MAX];
    assert_true(digest_credentials_cnonce(&c, "admin", "s3cret", method, strlen(method), uri,
                                          strlen(uri), nc, cnonce, want, sizeof(want)) > 0);
    assert_string_equal(cred, want);
}

#define DIGEST_CHALLENGE "Digest realm=\"cam\", nonce=\"n1\", qop=\"auth\""
#define URL "rtsp://127.0.0.1:1554/test"
#define DEV_URL "rtsp://192.0.2.10:8554/test"

static void test_digest_answered_and_reused(void **state)
{
    (void)state;
    struct conn *k = conn_open(",device-auth=admin:s3cret");
    char v[DIGEST_CRED_MAX + 64];
    /* The client's own Authorization never reaches the device. */
    const char *out = pass(k, TCP_UP,
                           "DESCRIBE " URL " RTSP/1.0\r\nCSeq: 2\r\nAuthorization: Basic "
                           "Z3Vlc3M6Z3Vlc3M=\r\nAccept: application/sdp\r\n\r\n");
    assert_string_equal(out, "DESCRIBE " DEV_URL " RTSP/1.0\r\nCSeq: 2\r\n"
                             "Accept: application/sdp\r\n\r\n");
    assert_false(f->pending(k->st, TCP_UP));
    /* The device's 401, with a worse challenge beside the better one: the client hears nothing
     * yet, and the request goes again, the same CSeq, with credentials for the Digest one. */
    out = pass(k, TCP_DOWN,
               "RTSP/1.0 401 Unauthorized\r\nCSeq: 2\r\nWWW-Authenticate: Basic realm=\"cam\"\r\n"
               "WWW-Authenticate: " DIGEST_CHALLENGE "\r\nContent-Length: 5\r\n\r\nnope!");
    assert_string_equal(out, "");
    assert_false(f->pending(k->st, TCP_DOWN));
    assert_true(f->pending(k->st, TCP_UP));
    out = pass(k, TCP_UP, "");
    assert_non_null(strstr(out, "DESCRIBE " DEV_URL " RTSP/1.0\r\nCSeq: 2\r\n"
                                "Accept: application/sdp\r\nAuthorization: Digest "));
    assert_true(strstr(out, "\r\n\r\n") == out + strlen(out) - 4);
    expect_digest(header(out, "Authorization", v, sizeof(v)), DIGEST_CHALLENGE, "DESCRIBE", DEV_URL,
                  1);
    assert_non_null(strstr(v, "nc=00000001"));
    assert_false(f->pending(k->st, TCP_UP));
    /* Its answer reaches the client, rewritten as usual. */
    out = pass(k, TCP_DOWN, "RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Base: " DEV_URL "/\r\n\r\n");
    assert_string_equal(out, "RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Base: " URL "/\r\n\r\n");
    /* From now on, credentials from the start, the nonce's next use; the client's still go. */
    out = pass(k, TCP_UP,
               "SETUP " URL "/trackID=0 RTSP/1.0\r\nCSeq: 3\r\nAuthorization: Digest username=\"x\""
               "\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n");
    assert_int_equal(count(out, "Authorization:"), 1);
    expect_digest(header(out, "Authorization", v, sizeof(v)), DIGEST_CHALLENGE, "SETUP",
                  DEV_URL "/trackID=0", 2);
    assert_string_equal(pass(k, TCP_DOWN,
                             "RTSP/1.0 200 OK\r\nCSeq: 3\r\nSession: 1234\r\n"
                             "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n"),
                        "RTSP/1.0 200 OK\r\nCSeq: 3\r\nSession: 1234\r\n"
                        "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n");
    out = pass(k, TCP_UP, "PLAY " URL " RTSP/1.0\r\nCSeq: 4\r\nSession: 1234\r\n\r\n");
    expect_digest(header(out, "Authorization", v, sizeof(v)), DIGEST_CHALLENGE, "PLAY", DEV_URL, 3);
    assert_int_equal(stat_of(k, RTSP_STAT_AUTH_ANSWERED), 1);
    assert_int_equal(stat_of(k, RTSP_STAT_AUTH_FAILED), 0);
    conn_close(k);
}

static void test_stale_and_refused(void **state)
{
    (void)state;
    struct conn *k = conn_open(",device-auth=admin:s3cret");
    char v[DIGEST_CRED_MAX + 64];
    pass(k, TCP_UP, "OPTIONS " URL " RTSP/1.0\r\nCSeq: 1\r\n\r\n");
    /* RFC 2069 Digest (no qop), as cameras send it: no nc. */
    const char *ch1 = "Digest realm=\"cam\", nonce=\"n1\"";
    pass(k, TCP_DOWN,
         "RTSP/1.0 401 Unauthorized\r\nCSeq: 1\r\nWWW-Authenticate: Digest "
         "realm=\"cam\", nonce=\"n1\"\r\n\r\n");
    const char *out = pass(k, TCP_UP, "");
    expect_digest(header(out, "Authorization", v, sizeof(v)), ch1, "OPTIONS", DEV_URL, 1);
    assert_null(strstr(v, "nc="));
    /* The nonce expired: the same request, answered for the new one, once. */
    const char *ch2 = "Digest realm=\"cam\", nonce=\"n2\", stale=true";
    pass(k, TCP_DOWN,
         "RTSP/1.0 401 Unauthorized\r\nCSeq: 1\r\nWWW-Authenticate: Digest "
         "realm=\"cam\", nonce=\"n2\", stale=true\r\n\r\n");
    out = pass(k, TCP_UP, "");
    assert_non_null(strstr(out, "CSeq: 1\r\n"));
    expect_digest(header(out, "Authorization", v, sizeof(v)), ch2, "OPTIONS", DEV_URL, 1);
    /* Stale again: the device does not take them after all. 502, with the reason. */
    assert_string_equal(pass(k, TCP_DOWN,
                             "RTSP/1.0 401 Unauthorized\r\nCSeq: 1\r\n"
                             "WWW-Authenticate: Digest realm=\"cam\", nonce=\"n3\", "
                             "stale=true\r\n\r\n"),
                        "RTSP/1.0 502 Bad Gateway\r\nCSeq: 1\r\nServer: portgate\r\n"
                        "Content-Type: text/plain\r\nContent-Length: 45\r\n\r\n"
                        "the device refused device-auth's credentials\n");
    assert_false(f->pending(k->st, TCP_UP));
    /* A later request carries credentials from the start; a plain 401 to it is a refusal. */
    out = pass(k, TCP_UP, "DESCRIBE " URL " RTSP/1.0\r\nCSeq: 2\r\n\r\n");
    assert_non_null(strstr(out, "Authorization: Digest "));
    out = pass(k, TCP_DOWN,
               "RTSP/1.0 401 Unauthorized\r\nCSeq: 2\r\nWWW-Authenticate: Digest "
               "realm=\"cam\", nonce=\"n4\"\r\n\r\n");
    assert_non_null(strstr(out, "RTSP/1.0 502 Bad Gateway\r\nCSeq: 2\r\n"));
    assert_null(strstr(out, "WWW-Authenticate"));
    assert_int_equal(stat_of(k, RTSP_STAT_AUTH_ANSWERED), 2);
    assert_int_equal(stat_of(k, RTSP_STAT_AUTH_FAILED), 2);
    conn_close(k);
}

static void test_basic(void **state)
{
    (void)state;
    struct conn *k = conn_open(",device-auth=admin:s3cret");
    pass(k, TCP_UP, "DESCRIBE " URL " RTSP/1.0\r\nCSeq: 1\r\n\r\n");
    pass(k, TCP_DOWN,
         "RTSP/1.0 401 Unauthorized\r\nCSeq: 1\r\nWWW-Authenticate: Basic realm=\"x\"\r\n\r\n");
    char v[DIGEST_CRED_MAX + 64];
    /* RFC 7617: base64 of admin:s3cret. */
    assert_string_equal(header(pass(k, TCP_UP, ""), "Authorization", v, sizeof(v)),
                        "Basic YWRtaW46czNjcmV0");
    pass(k, TCP_DOWN, "RTSP/1.0 200 OK\r\nCSeq: 1\r\n\r\n");
    assert_string_equal(header(pass(k, TCP_UP, "OPTIONS " URL " RTSP/1.0\r\nCSeq: 2\r\n\r\n"),
                               "Authorization", v, sizeof(v)),
                        "Basic YWRtaW46czNjcmV0");
    conn_close(k);
}

/* Until the gateway has answered the first challenge, requests go one at a time: a pipelined
 * one waits (held), so that the one sent again goes before it. */
static void test_one_at_a_time_until_answered(void **state)
{
    (void)state;
    struct conn *k = conn_open(",device-auth=admin:s3cret");
    const char *two = "OPTIONS " URL " RTSP/1.0\r\nCSeq: 1\r\n\r\n"
                      "DESCRIBE " URL " RTSP/1.0\r\nCSeq: 2\r\n\r\n";
    size_t first = strlen("OPTIONS " URL " RTSP/1.0\r\nCSeq: 1\r\n\r\n");
    assert_int_equal(run(k, TCP_UP, two), first);
    assert_null(strstr(k->out, "DESCRIBE"));
    assert_true(f->held(k->st, TCP_UP));
    const char *rest = two + first;
    assert_int_equal(run(k, TCP_UP, rest), 0);
    assert_true(f->held(k->st, TCP_UP));
    pass(k, TCP_DOWN,
         "RTSP/1.0 401 Unauthorized\r\nCSeq: 1\r\nWWW-Authenticate: " DIGEST_CHALLENGE "\r\n\r\n");
    /* The request sent again goes first, then the one that waited, with credentials too. */
    const char *out = pass(k, TCP_UP, rest);
    const char *again = strstr(out, "OPTIONS " DEV_URL " RTSP/1.0\r\nCSeq: 1\r\nAuthorization: ");
    const char *next = strstr(out, "DESCRIBE " DEV_URL " RTSP/1.0\r\nCSeq: 2\r\nAuthorization: ");
    assert_true(again == out && next > again);
    assert_non_null(strstr(next, "nc=00000002"));
    assert_false(f->held(k->st, TCP_UP));
    /* From then on, requests are pipelined again. */
    pass(k, TCP_DOWN, "RTSP/1.0 200 OK\r\nCSeq: 1\r\n\r\n");
    pass(k, TCP_DOWN, "RTSP/1.0 200 OK\r\nCSeq: 2\r\n\r\n");
    out = pass(k, TCP_UP,
               "OPTIONS " URL " RTSP/1.0\r\nCSeq: 3\r\n\r\n"
               "OPTIONS " URL " RTSP/1.0\r\nCSeq: 4\r\n\r\n");
    assert_int_equal(count(out, "Authorization: Digest"), 2);
    conn_close(k);
}

/* A request larger than the copies kept goes on, but a challenge to it cannot be answered by
 * sending it again: 502 with the reason. So does a 401 without a challenge the gateway can
 * answer; and its order among the answers is kept. */
static void test_what_cannot_be_answered(void **state)
{
    (void)state;
    struct conn *k = conn_open(",device-auth=admin:s3cret");
    static char big[20000 + 256];
    size_t n = (size_t)snprintf(big, sizeof(big),
                                "SET_PARAMETER " URL " RTSP/1.0\r\nCSeq: 1\r\n"
                                "Content-Type: text/parameters\r\nContent-Length: 20000\r\n\r\n");
    memset(big + n, 'x', 20000);
    big[n + 20000] = '\0';
    const char *out = pass(k, TCP_UP, big);
    assert_int_equal(strlen(out), strlen(big) - strlen(URL) + strlen(DEV_URL));
    out = pass(k, TCP_DOWN,
               "RTSP/1.0 401 Unauthorized\r\nCSeq: 1\r\nWWW-Authenticate: " DIGEST_CHALLENGE
               "\r\n\r\n");
    assert_non_null(strstr(out, "RTSP/1.0 502 Bad Gateway\r\nCSeq: 1\r\n"));
    assert_non_null(strstr(out, "too large to send again with device-auth's credentials (over "
                                "16384 bytes)"));
    assert_false(f->pending(k->st, TCP_UP));
    /* The device wants what the gateway cannot give: 502 too. */
    pass(k, TCP_UP, "OPTIONS " URL " RTSP/1.0\r\nCSeq: 2\r\n\r\n");
    out = pass(k, TCP_DOWN,
               "RTSP/1.0 401 Unauthorized\r\nCSeq: 2\r\nWWW-Authenticate: Digest "
               "realm=\"a\", nonce=\"b\", qop=\"auth-int\"\r\n\r\n");
    assert_non_null(strstr(out, "RTSP/1.0 502 Bad Gateway\r\nCSeq: 2\r\n"));
    assert_non_null(strstr(out, "the device asks for a login device-auth cannot give"));
    pass(k, TCP_UP, "OPTIONS " URL " RTSP/1.0\r\nCSeq: 3\r\n\r\n");
    out = pass(k, TCP_DOWN, "RTSP/1.0 401 Unauthorized\r\nCSeq: 3\r\n\r\n");
    assert_non_null(strstr(out, "(no WWW-Authenticate)"));
    assert_int_equal(stat_of(k, RTSP_STAT_AUTH_FAILED), 3);
    conn_close(k);
}

/* A UDP SETUP challenged keeps its stream: it is sent again with the same inside ports, and
 * its answer makes the session. A connection closed while a request waits to go again frees
 * everything (ASan checks). */
static void test_setup_sent_again_and_close(void **state)
{
    (void)state;
    struct conn *k = conn_open(",device-auth=admin:s3cret");
    const char *out = pass(k, TCP_UP,
                           "SETUP " URL "/trackID=0 RTSP/1.0\r\nCSeq: 1\r\n"
                           "Transport: RTP/AVP;unicast;client_port=5000-5001\r\n\r\n");
    char t1[256], t2[256];
    header(out, "Transport", t1, sizeof(t1));
    assert_non_null(strstr(t1, "client_port=310"));
    pass(k, TCP_DOWN,
         "RTSP/1.0 401 Unauthorized\r\nCSeq: 1\r\nWWW-Authenticate: " DIGEST_CHALLENGE "\r\n\r\n");
    out = pass(k, TCP_UP, "");
    assert_string_equal(header(out, "Transport", t2, sizeof(t2)), t1);
    out = pass(k, TCP_DOWN,
               "RTSP/1.0 200 OK\r\nCSeq: 1\r\nSession: 77;timeout=60\r\n"
               "Transport: RTP/AVP;unicast;client_port=31000-31001;"
               "server_port=6970-6971\r\n\r\n");
    assert_non_null(strstr(out, "client_port=5000-5001;server_port=310"));
    assert_int_equal(stat_of(k, RTSP_STAT_SESSIONS), 1);
    pass(k, TCP_UP, "PLAY " URL " RTSP/1.0\r\nCSeq: 2\r\nSession: 77\r\n\r\n");
    pass(k, TCP_DOWN,
         "RTSP/1.0 401 Unauthorized\r\nCSeq: 2\r\nWWW-Authenticate: Digest "
         "realm=\"cam\", nonce=\"n9\", stale=true\r\n\r\n");
    assert_true(f->pending(k->st, TCP_UP));
    conn_close(k);
    assert_true(rtsp_proxy_worker_idle(sessions));
}

/* Without device-auth, authentication is the client's: its Authorization goes on, the device's
 * 401 comes back. */
static void test_without_device_auth(void **state)
{
    (void)state;
    struct conn *k = conn_open("");
    const char *req = "DESCRIBE " URL " RTSP/1.0\r\nCSeq: 1\r\nAuthorization: Basic eDp5\r\n\r\n";
    assert_non_null(strstr(pass(k, TCP_UP, req), "Authorization: Basic eDp5\r\n"));
    const char *deny =
        "RTSP/1.0 401 Unauthorized\r\nCSeq: 1\r\nWWW-Authenticate: Basic realm=\"x\"\r\n\r\n";
    assert_string_equal(pass(k, TCP_DOWN, deny), deny);
    assert_false(f->pending(k->st, TCP_UP));
    conn_close(k);
}

static int setup(void **state)
{
    (void)state;
    log_set_level(LOG_LVL_ERROR);
    loop = loop_new();
    assert_non_null(loop);
    assert_int_equal(relay_ctx_init(&ctx, loop, 0), 0);
    sessions = rtsp_proxy_worker_new();
    assert_non_null(sessions);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    rtsp_proxy_worker_free(sessions);
    relay_ctx_fini(&ctx);
    loop_free(loop);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_digest_answered_and_reused),
        cmocka_unit_test(test_stale_and_refused),
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_one_at_a_time_until_answered),
        cmocka_unit_test(test_what_cannot_be_answered),
        cmocka_unit_test(test_setup_sent_again_and_close),
        cmocka_unit_test(test_without_device_auth),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
