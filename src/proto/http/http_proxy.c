#include "proto/http/http_proxy.h"

#include <assert.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/authhdr.h"
#include "auth/login.h"
#include "core/log.h"
#include "core/names.h"
#include "message/digest.h"
#include "message/msg.h"
#include "proto/http/http_acme.h"
#include "proto/http/http_login.h"
#include "proto/http/http_proto.h"

#define MAX_PENDING 16
#define MAX_RESPONSE_HEAD 61440 /* a device's answer head, bounded by the relay's buffer */

enum state { S_HEAD, S_LENGTH, S_CHUNKED, S_UNTIL_CLOSE, S_TUNNEL, S_FORM };

struct pending_req {
    bool head;    /* HEAD: the answer has no body */
    bool upgrade; /* it asked for a websocket */
    bool local;   /* an ACME challenge: the gateway answers it (struct hx: acme) */
    bool gate;    /* auth = login: the gateway answers it (struct gate) */
};

/*
 * auth = login (http_login.h, auth/login.h): a request with no live session of the mapping's
 * users is the gateway's to answer (the login page, a redirect to it), as are its own pages
 * under HTTP_LOGIN_PREFIX; the device sees only requests of logged-in users, without the
 * gateway's cookie. A login form is read whole (S_FORM), its password checked on the login
 * thread while the connection waits (a timer looks at the result), and its answer queued like
 * a request's: one at a time, the requests after it held until it is out.
 */
#define GATE_POLL_MS 5

struct gate {
    bool queued;        /* an answer of the gateway's is in the queue (pending_req.gate) */
    bool ready;         /* it is written in answer */
    bool close;         /* the connection ends after it */
    bool logout;        /* the form being read is a logout's */
    uint32_t form_left; /* S_FORM: the body's bytes still to come */
    size_t form_len;
    struct login_job *job; /* a login being checked */
    struct loop_timer poll;
    bool polling;
    char cookie[SESSION_IDLEN + 1]; /* the session a logout ends */
    char next[HTTP_LOGIN_NEXT_MAX + 1];
    char form[HTTP_LOGIN_FORM_MAX];
    size_t answer_len;
    char answer[HTTP_LOGIN_ANSWER_MAX];
    struct hx *owner;
};

/*
 * device-auth: the gateway answers the device's own login (message/digest.h). Each request goes
 * alone (no pipelining: a request sent again must be the one answered) and a copy of it as sent
 * (head, and a body up to DA_SAVE_BODY) is kept; a 401 with a challenge is then not passed on:
 * its body is skipped and the copy sent again with Authorization. From the first challenge on,
 * every request carries credentials for it (Digest: the next nc); a stale nonce is answered
 * once more.
 */
#define DA_SAVE_HEAD 8192
#define DA_SAVE_BODY 16384
#define DA_RESENDS 2 /* answers to one request: the first challenge, then a stale nonce */

struct devauth {
    struct digest_challenge ch;
    bool known;       /* ch answers this device: requests carry credentials */
    uint32_t nc;      /* uses of ch's nonce so far */
    unsigned resends; /* of the request awaiting its answer */
    bool saving;      /* the request's body is being copied to saved */
    bool saved_ok;    /* saved holds the whole request */
    bool resend;      /* saved goes to the device again, with credentials (pending TCP_UP) */
    bool skipping;    /* the device's 401's body is being dropped */
    size_t bare_len;  /* write_request(): the head's length before its credentials */
    size_t head_len;  /* saved's head, with its empty line, without credentials */
    size_t saved_len;
    char saved[DA_SAVE_HEAD + DA_SAVE_BODY];
};

struct hx {
    struct tcp_conn *conn;
    struct relay_ctx *ctx;
    const struct mapping *map;
    const struct http_conf *conf;
    struct sockaddr_storage client, target, local;
    char client_ip[ADDR_STRLEN]; /* the client's address, as X-Forwarded-For gives it */
    bool trusted;                /* the client is one of the trusted-proxies */
    char host[256];              /* the Host of this connection's requests; "" until one gave it */
    bool have_host;
    enum state st[2];
    uint64_t left[2];
    struct msg_chunked chunk[2];
    struct pending_req q[MAX_PENDING];
    size_t qlen;
    bool upgrading; /* a request asked for an upgrade: the client waits for its answer */
    unsigned crlfs; /* empty lines skipped before the request being read */
    /* The gateway's own answer, after which the connection closes. */
    char answer[3072];
    size_t answer_len;
    bool answering, answered;
    const char *close_reason;
    struct loop_timer timer; /* header-timeout, or keep-alive-timeout while idle */
    bool timing, idle;       /* idle: the timer waits for a next request, not for a head */
    /* An ACME challenge the gateway answers itself, keeping the connection (unlike the answer
     * above): queued as a request (pending_req.local), answered when its turn comes. One at a
     * time: the requests after it are held until it is out. */
    bool acme_queued;
    bool acme_close;                          /* the client asked to close after it */
    bool acme_http10;                         /* it was HTTP/1.0: keep-alive is said */
    char acme_token[HTTP_ACME_TOKEN_MAX + 1]; /* "": not a token (404) */
    struct devauth *da;                       /* with device-auth only */
    struct gate *gate;                        /* with auth = login only */
};

/* ---- the gateway's answers ---- */

static const char *status_text(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 421:
        return "Misdirected Request";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Error";
    }
}

static void stop_timer(struct hx *h)
{
    if (h->timing) {
        loop_timer_stop(h->ctx->loop, &h->timer);
        h->timing = false;
    }
}

/* Queues the gateway's answer to the request now being read, after which the connection
 * closes: its turn comes once the device has answered every request before it. extra is more
 * header lines ("Location: ...\r\n"), or "". */
size_t http_answer_text(char *buf, size_t len, int status, const char *why, const char *extra)
{
    char body[320];
    int bn = snprintf(body, sizeof(body), "%d %s: %s\n", status, status_text(status), why);
    bn = bn < 0 ? 0 : bn >= (int)sizeof(body) ? (int)sizeof(body) - 1 : bn;
    int n = snprintf(buf, len,
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                     "Content-Length: %d\r\nConnection: close\r\nCache-Control: no-store\r\n"
                     "%s\r\n%s",
                     status, status_text(status), bn, extra, body);
    return n < 0 ? 0 : n >= (int)len ? len - 1 : (size_t)n;
}

static void answer(struct hx *h, int status, const char *why, const char *extra)
{
    if (h->answering) {
        return;
    }
    h->answer_len = http_answer_text(h->answer, sizeof(h->answer), status, why, extra);
    h->answering = true;
    h->close_reason = status == 308 ? "redirected to https" : "the gateway answered the request";
    if (status != 308) {
        mapping_stat_add(&mapping_shard(h->map, h->ctx->worker)->stats.proto[HTTP_STAT_REFUSED], 1);
        uint64_t suppressed;
        char cs[ADDR_STRLEN];
        if (mapping_log_ok(h->map, h->ctx->worker, MAPPING_LOG_PROTO, loop_now(h->ctx->loop),
                           &suppressed)) {
            log_warn("map %s: http %s: answered %d: %s (%llu more refusals not logged)",
                     h->map->conf.name, addr_format(&h->client, cs, sizeof(cs)), status, why,
                     (unsigned long long)suppressed);
        }
    }
    stop_timer(h);
}

static void on_timeout(struct loop_timer *t)
{
    struct hx *h = container_of(t, struct hx, timer);
    h->timing = false;
    if (h->st[TCP_UP] == S_FORM && !h->answering) {
        /* A login form whose body does not come: its queued answer gives way to a 408. */
        h->qlen--;
        h->gate->queued = false;
        h->st[TCP_UP] = S_HEAD;
        answer(h, 408, "the login form did not come in time", "");
        tcp_conn_kick(h->conn); /* may close the connection, and free h */
        return;
    }
    if (h->st[TCP_UP] != S_HEAD || h->answering) {
        return;
    }
    if (h->idle) {
        /* Nothing asked since the last answer: the connection ends, no answer needed. */
        h->answering = true;
        h->answer_len = 0;
        h->close_reason = "idle between requests (keep-alive-timeout)";
    } else {
        char why[64];
        snprintf(why, sizeof(why), "the request's head did not come within %ums",
                 h->conf->header_timeout_ms);
        answer(h, 408, why, "");
    }
    tcp_conn_kick(h->conn); /* may close the connection, and free h */
}

/* The first bytes of a head: header-timeout runs from now (the idle wait before it ends). */
static void start_timer(struct hx *h)
{
    if (h->timing && h->idle) {
        loop_timer_stop(h->ctx->loop, &h->timer);
        h->timing = false;
    }
    if (!h->timing && !h->answering) {
        h->idle = false;
        loop_timer_start(h->ctx->loop, &h->timer, h->conf->header_timeout_ms);
        h->timing = true;
    }
}

/* Every answer is out and no request is being read: keep-alive-timeout runs. */
static void start_idle(struct hx *h)
{
    if (!h->timing && !h->answering && h->qlen == 0 && h->st[TCP_UP] == S_HEAD) {
        h->idle = true;
        loop_timer_start(h->ctx->loop, &h->timer, h->conf->keepalive_timeout_ms);
        h->timing = true;
    }
}

/* ---- writing heads ---- */

struct out {
    char *p;
    size_t len, room;
    bool full;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (o->full || n > o->room - o->len) {
        o->full = true;
        return;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

static void puts_(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

static void put_str(struct out *o, struct msg_str s)
{
    put(o, s.p, s.n);
}

static void put_header(struct out *o, struct msg_str name, struct msg_str value)
{
    put_str(o, name);
    put(o, ": ", 2);
    put_str(o, value);
    put(o, "\r\n", 2);
}

static bool is_forwarding_header(struct msg_str name)
{
    return msg_str_ieq(name, "X-Forwarded-For") || msg_str_ieq(name, "X-Forwarded-Proto") ||
           msg_str_ieq(name, "X-Forwarded-Host") || msg_str_ieq(name, "Forwarded");
}

/* A Forwarded parameter's value (RFC 7239 4): quoted, with " and \ escaped. */
static void put_quoted(struct out *o, const char *s, size_t n)
{
    put(o, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"' || s[i] == '\\') {
            put(o, "\\", 1);
        }
        put(o, s + i, 1);
    }
    put(o, "\"", 1);
}

/* Writes every value of the headers called name, in order, commas between; returns whether
 * there was one. */
static bool put_all(struct out *o, const struct msg *m, const char *name)
{
    bool any = false;
    for (size_t i = 0; i < m->nhdr; i++) {
        if (msg_str_ieq(m->hdr[i].name, name)) {
            if (any) {
                put(o, ", ", 2);
            }
            put_str(o, m->hdr[i].value);
            any = true;
        }
    }
    return any;
}

/* True if any of the headers called name lists tok. */
static bool any_lists(const struct msg *m, const char *name, const char *tok)
{
    for (size_t i = 0; i < m->nhdr; i++) {
        if (msg_str_ieq(m->hdr[i].name, name) && msg_list_has(m->hdr[i].value, tok)) {
            return true;
        }
    }
    return false;
}

/* True if the request asks for a websocket: Upgrade: websocket, and upgrade in Connection. The
 * only upgrade passed on: any other (h2c) would turn the connection into one the filter no
 * longer reads. */
static bool wants_websocket(const struct msg *m)
{
    const struct msg_str *up = msg_header(m, "Upgrade");
    return up != NULL && msg_str_ieq(*up, "websocket") && any_lists(m, "Connection", "upgrade");
}

/*
 * The request head as the device gets it: the framing written anew from what the gateway read
 * (one Content-Length in plain decimal, or Transfer-Encoding: chunked, the body then reframed),
 * so the device cannot read it otherwise; the forwarding headers the gateway's own (a trusted
 * proxy's kept, every line of them, ours appended); Host as target-host asks; an upgrade other
 * than a websocket's dropped with its Connection tokens.
 */
/* Writes the Authorization line that answers the device's challenge for method and target. */
static void put_credentials(struct hx *h, struct msg_str method, struct msg_str target,
                            struct out *o)
{
    char cred[DIGEST_CRED_MAX];
    const struct digest_login *l = &h->conf->device_auth;
    size_t n = digest_credentials(&h->da->ch, l->user, l->password, method.p, method.n, target.p,
                                  target.n, ++h->da->nc, cred, sizeof(cred));
    if (n > 0) {
        puts_(o, "Authorization: ");
        put(o, cred, n);
        puts_(o, "\r\n");
    }
    OPENSSL_cleanse(cred, sizeof(cred));
}

static void put_cookies_but_ours(struct out *o, struct msg_str value);

static void write_request(struct hx *h, const struct msg *m, struct out *o)
{
    put_str(o, m->method);
    put(o, " ", 1);
    put_str(o, m->target);
    puts_(o, m->minor == 0 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n");
    const char *proto = h->conf->tls ? "https" : "http";
    bool websocket = wants_websocket(m);
    for (size_t i = 0; i < m->nhdr; i++) {
        const struct msg_header *hd = &m->hdr[i];
        if (is_forwarding_header(hd->name) || msg_str_ieq(hd->name, "Proxy-Connection") ||
            msg_str_ieq(hd->name, "Content-Length") || msg_str_ieq(hd->name, "Transfer-Encoding")) {
            continue; /* written below */
        }
        if (!websocket &&
            (msg_str_ieq(hd->name, "Upgrade") || msg_str_ieq(hd->name, "HTTP2-Settings") ||
             msg_str_ieq(hd->name, "Connection"))) {
            continue;
        }
        if (msg_str_ieq(hd->name, "Host") && h->conf->target_host[0] != '\0') {
            continue;
        }
        if (h->da != NULL && msg_str_ieq(hd->name, "Authorization")) {
            continue; /* the device's login is the gateway's: no client tries passwords on it */
        }
        if (msg_str_ieq(hd->name, "Cookie")) {
            put_cookies_but_ours(o, hd->value); /* the gateway's sessions are not the device's */
            continue;
        }
        put_header(o, hd->name, hd->value);
    }
    if (!websocket && any_lists(m, "Connection", "close")) {
        puts_(o, "Connection: close\r\n");
    } else if (!websocket && any_lists(m, "Connection", "keep-alive")) {
        puts_(o, "Connection: keep-alive\r\n");
    }
    if (h->conf->target_host[0] != '\0') {
        puts_(o, "Host: ");
        puts_(o, h->conf->target_host);
        puts_(o, "\r\n");
    }
    if (m->chunked) {
        puts_(o, "Transfer-Encoding: chunked\r\n");
    } else if (m->has_length) {
        char cl[40];
        snprintf(cl, sizeof(cl), "Content-Length: %llu\r\n", (unsigned long long)m->length);
        puts_(o, cl);
    }
    puts_(o, "X-Forwarded-For: ");
    if (h->trusted && put_all(o, m, "X-Forwarded-For")) {
        puts_(o, ", ");
    }
    puts_(o, h->client_ip);
    puts_(o, "\r\nX-Forwarded-Proto: ");
    if (!h->trusted || !put_all(o, m, "X-Forwarded-Proto")) {
        puts_(o, proto);
    }
    puts_(o, "\r\n");
    if (h->trusted && msg_header(m, "X-Forwarded-Host") != NULL) {
        puts_(o, "X-Forwarded-Host: ");
        put_all(o, m, "X-Forwarded-Host");
        puts_(o, "\r\n");
    } else if (m->host.n > 0) {
        puts_(o, "X-Forwarded-Host: ");
        put_str(o, m->host);
        puts_(o, "\r\n");
    }
    puts_(o, "Forwarded: ");
    if (h->trusted && put_all(o, m, "Forwarded")) {
        puts_(o, ", ");
    }
    puts_(o, "for=");
    char ipv6[ADDR_STRLEN + 2];
    if (strchr(h->client_ip, ':') != NULL) {
        snprintf(ipv6, sizeof(ipv6), "[%s]", h->client_ip);
        put_quoted(o, ipv6, strlen(ipv6));
    } else {
        puts_(o, h->client_ip);
    }
    puts_(o, ";proto=");
    puts_(o, proto);
    if (m->host.n > 0) {
        puts_(o, ";host=");
        put_quoted(o, m->host.p, m->host.n);
    }
    puts_(o, "\r\n");
    if (h->da != NULL) {
        h->da->bare_len = o->len; /* the head without credentials, for a resend */
        if (h->da->known) {
            put_credentials(h, m->method, m->target, o);
        }
    }
    puts_(o, "\r\n");
}

/* ---- rewriting what names the device ---- */

/* True if host[0..n) (no brackets) and port name the device: its address, the name the mapping
 * gives as its target, or target-host; at the target's port (a URL without one has its scheme's
 * default). */
static bool names_device(const struct hx *h, const char *host, size_t n, unsigned port)
{
    if (port != addr_port(&h->target)) {
        return false;
    }
    char ip[ADDR_STRLEN];
    addr_format_ip(&h->target, ip, sizeof(ip));
    const char *ip_bare = ip[0] == '[' ? ip + 1 : ip;
    size_t ip_len = strlen(ip_bare) - (ip[0] == '[' ? 1 : 0);
    if (n == ip_len && strncasecmp(host, ip_bare, n) == 0) {
        return true;
    }
    const char *names[2] = {h->map->conf.target_host, h->conf->target_host};
    for (int i = 0; i < 2; i++) {
        const char *t = names[i];
        size_t tn = strcspn(t, ":"); /* target-host may carry a port: the host part */
        if (t[0] == '[') {
            t++;
            tn = strcspn(t, "]");
        }
        if (tn > 0 && tn == n && strncasecmp(host, t, n) == 0) {
            return true;
        }
    }
    return false;
}

/* The external name of the device: the Host the client used, else our address it reached. */
static void put_external(const struct hx *h, struct out *o)
{
    if (h->have_host && h->host[0] != '\0') {
        puts_(o, h->host);
        return;
    }
    char a[ADDR_STRLEN];
    puts_(o, addr_format(&h->local, a, sizeof(a)));
}

/* Writes url, its scheme and authority replaced by ours if they name the device. Returns true
 * if it did (else nothing is written). */
static bool rewrite_url(const struct hx *h, struct msg_str url, struct out *o)
{
    size_t skip;
    unsigned dport;
    if (url.n >= 7 && strncasecmp(url.p, "http://", 7) == 0) {
        skip = 7;
        dport = 80;
    } else if (url.n >= 8 && strncasecmp(url.p, "https://", 8) == 0) {
        skip = 8;
        dport = 443;
    } else {
        return false;
    }
    const char *a = url.p + skip, *end = url.p + url.n;
    const char *ae = a;
    while (ae < end && *ae != '/' && *ae != '?' && *ae != '#') {
        ae++;
    }
    if (memchr(a, '@', (size_t)(ae - a)) != NULL) {
        return false; /* userinfo: not a URL a device gives for itself */
    }
    const char *host = a, *he;
    unsigned port = dport;
    if (a < ae && *a == '[') {
        const char *rb = memchr(a, ']', (size_t)(ae - a));
        if (rb == NULL) {
            return false;
        }
        host = a + 1;
        he = rb;
        a = rb + 1;
    } else {
        he = memchr(a, ':', (size_t)(ae - a));
        he = he != NULL ? he : ae;
        a = he;
    }
    if (a < ae) {
        if (*a != ':' || ae - a < 2 || ae - a > 6) {
            return false;
        }
        port = 0;
        for (const char *q = a + 1; q < ae; q++) {
            if (*q < '0' || *q > '9') {
                return false;
            }
            port = port * 10 + (unsigned)(*q - '0');
        }
    }
    if (!names_device(h, host, (size_t)(he - host), port)) {
        return false;
    }
    puts_(o, h->conf->tls ? "https://" : "http://");
    put_external(h, o);
    put(o, ae, (size_t)(end - ae));
    return true;
}

/* Refresh: "5; url=URL": the URL rewritten. */
static void put_refresh(const struct hx *h, struct msg_str v, struct out *o)
{
    const char *p = v.p, *end = v.p + v.n;
    for (const char *q = p; q + 4 <= end; q++) {
        if (strncasecmp(q, "url=", 4) == 0) {
            struct msg_str url = {q + 4, (size_t)(end - q - 4)};
            put(o, p, (size_t)(q + 4 - p));
            if (!rewrite_url(h, url, o)) {
                put_str(o, url);
            }
            return;
        }
    }
    put_str(o, v);
}

/* Set-Cookie: a Domain attribute that names the device is left out, so the cookie belongs to
 * the name the client used. */
static void put_cookie(const struct hx *h, struct msg_str v, struct out *o)
{
    const char *p = v.p, *end = v.p + v.n;
    const char *semi = memchr(p, ';', v.n);
    if (semi == NULL) {
        put_str(o, v);
        return;
    }
    put(o, p, (size_t)(semi - p));
    for (const char *a = semi; a < end;) {
        const char *next = memchr(a + 1, ';', (size_t)(end - a - 1));
        next = next != NULL ? next : end;
        const char *k = a + 1;
        while (k < next && (*k == ' ' || *k == '\t')) {
            k++;
        }
        if (next - k > 7 && strncasecmp(k, "domain=", 7) == 0) {
            const char *d = k + 7, *de = next;
            d += d < de && *d == '.';
            while (de > d && (de[-1] == ' ' || de[-1] == '\t')) {
                de--;
            }
            if (names_device(h, d, (size_t)(de - d), addr_port(&h->target))) {
                a = next;
                continue;
            }
        }
        put(o, a, (size_t)(next - a));
        a = next;
    }
}

/* The answer head as the client gets it. */
static void write_response(struct hx *h, const struct msg *m, struct out *o)
{
    char line[32];
    snprintf(line, sizeof(line), "HTTP/1.%d %03d ", m->minor == 0 ? 0 : 1, m->status);
    puts_(o, line);
    put_str(o, m->reason);
    puts_(o, "\r\n");
    bool hsts = false;
    for (size_t i = 0; i < m->nhdr; i++) {
        const struct msg_header *hd = &m->hdr[i];
        if (msg_str_ieq(hd->name, "Location") || msg_str_ieq(hd->name, "Content-Location")) {
            put_str(o, hd->name);
            puts_(o, ": ");
            if (!rewrite_url(h, hd->value, o)) {
                put_str(o, hd->value);
            }
            puts_(o, "\r\n");
        } else if (msg_str_ieq(hd->name, "Refresh")) {
            put_str(o, hd->name);
            puts_(o, ": ");
            put_refresh(h, hd->value, o);
            puts_(o, "\r\n");
        } else if (msg_str_ieq(hd->name, "Set-Cookie")) {
            put_str(o, hd->name);
            puts_(o, ": ");
            put_cookie(h, hd->value, o);
            puts_(o, "\r\n");
        } else {
            hsts |= msg_str_ieq(hd->name, "Strict-Transport-Security");
            put_header(o, hd->name, hd->value);
        }
    }
    if (h->conf->tls && h->conf->hsts[0] != '\0' && !hsts && m->status >= 200) {
        puts_(o, "Strict-Transport-Security: ");
        puts_(o, h->conf->hsts);
        puts_(o, "\r\n");
    }
    puts_(o, "\r\n");
}

/* ---- bodies ---- */

/*
 * Copies what belongs to the body direction d is in (S_LENGTH, S_CHUNKED, or everything:
 * S_UNTIL_CLOSE, S_TUNNEL) from in to out, as far as out has room. Returns the bytes taken, with
 * *done set when the body ended with them, or -1 with *reason (a chunked body that breaks).
 */
static ssize_t pass_body(struct hx *h, enum tcp_dir d, const char *in, size_t len, char *out,
                         size_t room, size_t *produced, bool *done, const char **reason)
{
    size_t n = len < room - *produced ? len : room - *produced;
    *done = false;
    if (h->st[d] == S_LENGTH) {
        n = n < h->left[d] ? n : (size_t)h->left[d];
        h->left[d] -= n;
        *done = h->left[d] == 0;
    } else if (h->st[d] == S_CHUNKED && d == TCP_UP) {
        /* A request's chunks are framed anew: the device reads them as the gateway did. */
        size_t w = 0;
        ssize_t k = msg_chunked_reframe(&h->chunk[d], in, len, out + *produced, room - *produced,
                                        &w, done, reason);
        if (k < 0) {
            return -1;
        }
        *produced += w;
        return k;
    } else if (h->st[d] == S_CHUNKED && n > 0) {
        ssize_t k = msg_chunked_scan(&h->chunk[d], in, n, done, reason);
        if (k < 0) {
            return -1;
        }
        n = (size_t)k;
    }
    memcpy(out + *produced, in, n);
    *produced += n;
    return (ssize_t)n;
}

/* ---- requests ---- */

/* Checks a parsed request against what the gateway lets through. Returns false with the
 * answer queued. */
int http_request_refused(const struct msg *m, const char **why, const char **extra)
{
    *extra = "";
    if ((msg_str_ieq(m->method, "GET") || msg_str_ieq(m->method, "HEAD")) &&
        (m->chunked || m->length > 0)) {
        /* Browsers send none; a device that ignores it would read the body as a request. */
        *why = "a GET or HEAD with a body";
        return 400;
    }
    if (msg_str_ieq(m->method, "CONNECT") || msg_str_ieq(m->method, "TRACE")) {
        *why = "CONNECT and TRACE are not passed on";
        *extra = "Allow: GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH\r\n";
        return 405;
    }
    if (m->target.p[0] != '/' &&
        !(m->target.n == 1 && m->target.p[0] == '*' && msg_str_ieq(m->method, "OPTIONS"))) {
        *why = "the request target must be a path (no absolute or authority form)";
        return 400;
    }
    if (m->host.n >= 256) {
        *why = "Host too long";
        return 400;
    }
    return 0;
}

static bool request_allowed(struct hx *h, const struct msg *m)
{
    const char *why, *extra;
    int status = http_request_refused(m, &why, &extra);
    if (status != 0) {
        answer(h, status, why, extra);
        return false;
    }
    if (m->host.n >= sizeof(h->host)) {
        answer(h, 400, "Host too long", "");
        return false;
    }
    if (m->host.p != NULL) {
        if (h->have_host &&
            (strlen(h->host) != m->host.n || strncasecmp(h->host, m->host.p, m->host.n) != 0)) {
            answer(h, 421, "a connection serves one Host: open another for this one", "");
            return false;
        }
        memcpy(h->host, m->host.p, m->host.n);
        h->host[m->host.n] = '\0';
        h->have_host = true;
    }
    return true;
}

int http_redirect(const struct http_conf *c, const char *host, struct msg_str target, char *loc,
                  size_t len, const char **why)
{
    char to[256];
    const char *r = c->redirect_https;
    loc[0] = '\0';
    if (strspn(r, "0123456789") == strlen(r)) {
        size_t hn = strlen(host);
        const char *colon = host[0] == '[' ? strstr(host, "]:") : strrchr(host, ':');
        if (colon != NULL) {
            hn = (size_t)(colon - host) + (host[0] == '[');
        }
        if (hn == 0) {
            *why = "no Host to redirect to";
            return 400;
        }
        snprintf(to, sizeof(to), "%.*s%s%s", (int)hn, host, strcmp(r, "443") ? ":" : "",
                 strcmp(r, "443") ? r : "");
    } else {
        snprintf(to, sizeof(to), "%s", r);
    }
    if (target.n > 2048) {
        *why = "the target is too long to redirect";
        return 414;
    }
    snprintf(loc, len, "Location: https://%s%.*s\r\n", to, (int)target.n, target.p);
    *why = "see https";
    return 308;
}

/* redirect-https: answers the request with a redirect to the https twin, after which the
 * connection closes. */
static void redirect(struct hx *h, const struct msg *m)
{
    char loc[HTTP_REDIRECT_LOC_MAX];
    const char *why;
    int status =
        http_redirect(h->conf, h->have_host ? h->host : "", m->target, loc, sizeof(loc), &why);
    answer(h, status, why, loc);
}

/* ---- ACME challenges ---- */

/* True if the client asks to end the connection after this request (RFC 9112 9.3): HTTP/1.0
 * without keep-alive, or Connection: close. */
static bool wants_close(const struct msg *m)
{
    return m->minor == 0 ? !any_lists(m, "Connection", "keep-alive")
                         : any_lists(m, "Connection", "close");
}

/*
 * Takes a request under HTTP_ACME_PREFIX on a mapping with acme-webroot: its answer is the
 * gateway's, from the webroot, queued like a request's so that it comes after the answers to
 * the requests before it, and the connection goes on. Returns false with an answer queued that
 * ends the connection instead: a method other than GET and HEAD (its body is not read).
 */
static bool take_challenge(struct hx *h, const struct msg *m)
{
    bool head = msg_str_ieq(m->method, "HEAD");
    if (!head && !msg_str_ieq(m->method, "GET")) {
        answer(h, 405, "an ACME challenge is answered to GET and HEAD only",
               "Allow: GET, HEAD\r\n");
        return false;
    }
    h->q[h->qlen++] = (struct pending_req){.head = head, .local = true};
    h->acme_queued = true;
    h->acme_close = wants_close(m);
    h->acme_http10 = m->minor == 0;
    http_acme_token(m->target.p, m->target.n, h->acme_token); /* "" when it is none */
    return true;
}

size_t http_challenge_answer(const struct http_conf *conf, const char *token, bool head, bool close,
                             bool http10, char *out, size_t room, int *status, char *why,
                             size_t whylen)
{
    char err[64];
    char *body = NULL;
    size_t blen = 0;
    *status = 404;
    if (token[0] == '\0') {
        snprintf(why, whylen, "not a token (1 to %d characters of A-Z a-z 0-9 _ -)",
                 HTTP_ACME_TOKEN_MAX);
    } else {
        *status = http_acme_read(conf->acme_webroot, token, &body, &blen, why, whylen);
    }
    const char *b = body;
    if (*status != 200) {
        int n = snprintf(err, sizeof(err), "%d %s\n", *status, status_text(*status));
        blen = n > 0 ? (size_t)n : 0;
        b = err;
    }
    struct out o = {out, 0, room, false};
    char line[192];
    snprintf(line, sizeof(line),
             "HTTP/1.1 %d %s\r\nContent-Type: text/plain%s\r\nContent-Length: %zu\r\n"
             "Cache-Control: no-store\r\n",
             *status, status_text(*status), *status == 200 ? "" : "; charset=utf-8", blen);
    puts_(&o, line);
    if (close) {
        puts_(&o, "Connection: close\r\n");
    } else if (http10) {
        puts_(&o, "Connection: keep-alive\r\n");
    }
    if (conf->tls && conf->hsts[0] != '\0') {
        puts_(&o, "Strict-Transport-Security: ");
        puts_(&o, conf->hsts);
        puts_(&o, "\r\n");
    }
    puts_(&o, "\r\n");
    if (!head) {
        put(&o, b, blen);
    }
    free(body);
    assert(!o.full); /* room is at least HTTP_CHALLENGE_ANSWER_MAX */
    return o.len;
}

void http_challenge_count(const struct mapping *m, unsigned worker, uint64_t now_ms,
                          const struct sockaddr_storage *client, int status, const char *why)
{
    struct mapping_shard *sh = mapping_shard(m, worker);
    if (status == 200) {
        mapping_stat_add(&sh->stats.proto[HTTP_STAT_ACME], 1);
        return;
    }
    mapping_stat_add(&sh->stats.proto[HTTP_STAT_REFUSED], 1);
    uint64_t suppressed;
    char cs[ADDR_STRLEN];
    if (mapping_log_ok(m, worker, MAPPING_LOG_PROTO, now_ms, &suppressed)) {
        log_warn("map %s: http %s: answered %d to an ACME challenge: %s (%llu more refusals not "
                 "logged)",
                 m->conf.name, addr_format(client, cs, sizeof(cs)), status, why,
                 (unsigned long long)suppressed);
    }
}

/* Writes the answer to the challenge at the head of the queue to out: the webroot's file (200,
 * text/plain, as RFC 8555 8.3 has it), or 404 or 500, counted and logged. Returns false, with
 * nothing written, while out has no room for the largest. */
static bool answer_challenge(struct hx *h, char *out, size_t room, size_t *produced)
{
    if (room - *produced < HTTP_CHALLENGE_ANSWER_MAX) {
        return false;
    }
    char why[HTTP_WEBROOT_LEN + 128];
    int status;
    *produced +=
        http_challenge_answer(h->conf, h->acme_token, h->q[0].head, h->acme_close, h->acme_http10,
                              out + *produced, room - *produced, &status, why, sizeof(why));
    http_challenge_count(h->map, h->ctx->worker, loop_now(h->ctx->loop), &h->client, status, why);
    return true;
}

/* ---- device-auth ---- */

/* Keeps a copy of the request's head that write_request() wrote, as the device got it but for
 * its credentials, for a resend (which has new ones); body: one follows. */
static void da_save_head(struct devauth *da, const char *head, bool body)
{
    size_t n = da->bare_len;
    da->resends = 0;
    da->saved_ok = n + 2 <= DA_SAVE_HEAD;
    da->saving = da->saved_ok && body;
    da->head_len = da->saved_len = da->saved_ok ? n + 2 : 0;
    if (da->saved_ok) {
        memcpy(da->saved, head, n);
        memcpy(da->saved + n, "\r\n", 2);
    }
}

/* Adds what the device got of the request's body (framed as it got it) to the copy. */
static void da_save_body(struct devauth *da, const char *p, size_t n, bool done)
{
    if (n > sizeof(da->saved) - da->saved_len || da->saved_len - da->head_len + n > DA_SAVE_BODY) {
        da->saved_ok = da->saving = false;
        return;
    }
    memcpy(da->saved + da->saved_len, p, n);
    da->saved_len += n;
    da->saving = !done;
}

/* Sends the saved request again, with the credentials that answer the device's challenge. */
static void resend(struct hx *h, char *out, size_t room, size_t *produced)
{
    struct devauth *da = h->da;
    const char *sp1 = memchr(da->saved, ' ', da->head_len);
    const char *sp2 =
        sp1 != NULL ? memchr(sp1 + 1, ' ', da->head_len - (size_t)(sp1 + 1 - da->saved)) : NULL;
    struct out o = {out + *produced, 0, room - *produced, false};
    if (sp2 == NULL || room - *produced < da->saved_len + DIGEST_CRED_MAX + 32) {
        return; /* cannot happen: a head the filter wrote, an empty out */
    }
    struct msg_str method = {da->saved, (size_t)(sp1 - da->saved)};
    struct msg_str target = {sp1 + 1, (size_t)(sp2 - sp1 - 1)};
    put(&o, da->saved, da->head_len - 2); /* without the empty line */
    put_credentials(h, method, target, &o);
    puts_(&o, "\r\n");
    put(&o, da->saved + da->head_len, da->saved_len - da->head_len);
    *produced += o.len;
    da->resend = false;
    mapping_stat_add(&mapping_shard(h->map, h->ctx->worker)->stats.proto[HTTP_STAT_DEVICE_AUTH], 1);
}

/* The device answered 401 to the request at the head of the queue. Returns true when the
 * gateway answers the challenge (the 401 is dropped, its body skipped, the request sent again),
 * false with the client's 502 queued when it cannot. */
static bool da_challenged(struct hx *h, const struct msg *m)
{
    struct devauth *da = h->da;
    struct digest_challenge best = {0}, c;
    const char *why = "no WWW-Authenticate";
    bool any = false;
    for (size_t i = 0; i < m->nhdr; i++) {
        if (msg_str_ieq(m->hdr[i].name, "WWW-Authenticate") &&
            digest_parse(m->hdr[i].value.p, m->hdr[i].value.n, &c, &why) == 0 &&
            (!any || digest_better(&c, &best))) {
            best = c;
            any = true;
        }
    }
    char w[200];
    const char *fail = NULL;
    bool sent_credentials = da->known || da->resends > 0;
    if (!any) {
        snprintf(w, sizeof(w), "the device asks for a login the gateway cannot give (%s)", why);
        fail = w;
    } else if (sent_credentials && (!best.stale || da->resends >= DA_RESENDS)) {
        fail = "the device refused device-auth's login";
    } else if (!da->saved_ok || da->saving) {
        fail = "the device asked for its login on a request too large to send again";
    } else if (!h->q[0].head && !m->chunked && !m->has_length) {
        fail = "the device's 401 has no length to skip it by";
    } else if (m->minor == 0 ? !any_lists(m, "Connection", "keep-alive")
                             : any_lists(m, "Connection", "close")) {
        fail = "the device closes its connection after its 401 (device-auth needs keep-alive)";
    }
    if (fail != NULL) {
        h->answering = false;
        answer(h, 502, fail, "");
        h->qlen = 0;
        h->acme_queued = false;
        return false;
    }
    da->ch = best;
    da->known = true;
    da->nc = 0;
    da->resends++;
    da->resend = true;
    if (!h->q[0].head && m->chunked) {
        da->skipping = true;
        h->st[TCP_DOWN] = S_CHUNKED;
        msg_chunked_init(&h->chunk[TCP_DOWN]);
    } else if (!h->q[0].head && m->length > 0) {
        da->skipping = true;
        h->st[TCP_DOWN] = S_LENGTH;
        h->left[TCP_DOWN] = m->length;
    }
    return true;
}

/* ---- auth = login ---- */

/* The session cookie of mapping mapname in the request's Cookie headers, in id; false if it has
 * none. */
static bool session_cookie(const struct msg *m, const char *mapname, char id[SESSION_IDLEN + 1])
{
    char name[sizeof(LOGIN_COOKIE) + MAP_CONF_NAMELEN];
    snprintf(name, sizeof(name), "%s%s", LOGIN_COOKIE, mapname);
    for (size_t i = 0; i < m->nhdr; i++) {
        const struct msg_header *hd = &m->hdr[i];
        char v[4096];
        if (!msg_str_ieq(hd->name, "Cookie") || hd->value.n >= sizeof(v)) {
            continue;
        }
        memcpy(v, hd->value.p, hd->value.n);
        v[hd->value.n] = '\0';
        if (authhdr_cookie(v, name, id, SESSION_IDLEN + 1) == SESSION_IDLEN) {
            return true;
        }
    }
    return false;
}

bool http_login_user(const struct http_conf *c, const char *mapname, const struct msg *m,
                     char *user)
{
    char id[SESSION_IDLEN + 1];
    if (!session_cookie(m, mapname, id) || !login_session(id, mapname, user)) {
        return false;
    }
    return c->users[0] == '\0' || names_has(c->users, user);
}

static bool session_user(struct hx *h, const struct msg *m, char user[USERS_NAMELEN])
{
    return http_login_user(h->conf, h->map->conf.name, m, user);
}

/* Queues the gateway's answer that gate->answer holds (ready) or will (a login being checked):
 * it goes out in its turn, and the requests after it wait for it. */
static void gate_queue(struct hx *h, const struct msg *m, bool ready)
{
    struct gate *g = h->gate;
    h->q[h->qlen++] = (struct pending_req){.head = msg_str_ieq(m->method, "HEAD"), .gate = true};
    g->queued = true;
    g->ready = ready;
    g->close = wants_close(m);
}

/*
 * auth = login: what becomes of a parsed request. Returns 1 when it goes on to the device (a
 * live session of a user the mapping lets in); 0 when the gateway took it: its answer queued,
 * or its form to be read (S_FORM, then gate_form()); -1 with an answer() that ends the
 * connection (a form the gateway will not read).
 */
static int gate_request(struct hx *h, const struct msg *m)
{
    struct gate *g = h->gate;
    size_t plen = m->target.n;
    const char *qm = memchr(m->target.p, '?', m->target.n);
    if (qm != NULL) {
        plen = (size_t)(qm - m->target.p);
    }
    bool head = msg_str_ieq(m->method, "HEAD");
    bool get = head || msg_str_ieq(m->method, "GET");
    bool post = msg_str_ieq(m->method, "POST");
    bool close = wants_close(m);
    char user[USERS_NAMELEN] = "";
#define PATH_IS(lit) (plen == sizeof(lit) - 1 && memcmp(m->target.p, lit, plen) == 0)
    if (plen >= sizeof(HTTP_LOGIN_PREFIX) - 1 &&
        memcmp(m->target.p, HTTP_LOGIN_PREFIX, sizeof(HTTP_LOGIN_PREFIX) - 1) == 0) {
        if ((PATH_IS(HTTP_LOGIN_PAGE) || PATH_IS(HTTP_LOGOUT_PAGE)) && post) {
            if (m->chunked || m->length > HTTP_LOGIN_FORM_MAX) {
                answer(h, 413, "a login form is at most 4 KiB, with a Content-Length", "");
                return -1;
            }
            g->logout = PATH_IS(HTTP_LOGOUT_PAGE);
            if (g->logout && !session_cookie(m, h->map->conf.name, g->cookie)) {
                g->cookie[0] = '\0';
            }
            g->form_len = 0;
            g->form_left = (uint32_t)m->length;
            gate_queue(h, m, false);
            h->st[TCP_UP] = S_FORM;
            return 0;
        }
        if (PATH_IS(HTTP_LOGIN_PAGE) && get) {
            http_login_query_next(m->target.p, m->target.n, g->next);
            g->answer_len = http_login_page(g->answer, sizeof(g->answer), 200, h->map->conf.name,
                                            g->next, NULL, head, close);
        } else if (PATH_IS(HTTP_LOGOUT_PAGE) && get) {
            session_user(h, m, user);
            g->answer_len = http_logout_page(g->answer, sizeof(g->answer), h->map->conf.name, false,
                                             user, h->conf->tls, head, close);
        } else {
            g->answer_len = http_login_unknown(g->answer, sizeof(g->answer), head, close);
        }
        gate_queue(h, m, true);
        return 0;
    }
#undef PATH_IS
    if (session_user(h, m, user)) {
        return 1;
    }
    g->answer_len =
        http_login_needed(g->answer, sizeof(g->answer), get, head, m->target.p, m->target.n, close);
    gate_queue(h, m, true);
    return 0;
}

static void gate_poll(struct loop_timer *t);

/* The form is read: a logout ends its session now; a login's password goes to the login
 * thread, and gate_poll() writes the answer once it is checked. */
static void gate_form(struct hx *h)
{
    struct gate *g = h->gate;
    if (g->logout) {
        if (g->cookie[0] != '\0') {
            login_logout(g->cookie, h->client_ip);
        }
        g->answer_len = http_logout_page(g->answer, sizeof(g->answer), h->map->conf.name, true, "",
                                         h->conf->tls, false, g->close);
        g->ready = true;
        return;
    }
    char user[USERS_NAMELEN + 1], password[USERS_MAX_PASSWORD + 1], next[HTTP_LOGIN_NEXT_MAX + 1];
    char code[USERS_MAX_CODE + 1];
    int nn = http_form_get(g->form, g->form_len, "next", next, sizeof(next));
    http_login_next(next, nn > 0 ? (size_t)nn : 0, g->next);
    if (http_form_get(g->form, g->form_len, "user", user, sizeof(user)) <= 0 ||
        http_form_get(g->form, g->form_len, "password", password, sizeof(password)) <= 0) {
        g->answer_len = http_login_page(g->answer, sizeof(g->answer), 200, h->map->conf.name,
                                        g->next, "Give a user and a password.", false, g->close);
        g->ready = true;
    } else {
        if (http_form_get(g->form, g->form_len, "code", code, sizeof(code)) < 0) {
            code[0] = '\0';
        }
        g->job = login_start(user, password, code, h->client_ip, h->map->conf.name, h->conf->users);
        OPENSSL_cleanse(code, sizeof(code));
        if (g->job == NULL) {
            g->answer_len =
                http_login_page(g->answer, sizeof(g->answer), 200, h->map->conf.name, g->next,
                                "The gateway is busy: try again.", false, g->close);
            g->ready = true;
        } else {
            loop_timer_start(h->ctx->loop, &g->poll, GATE_POLL_MS);
            g->polling = true;
        }
    }
    OPENSSL_cleanse(password, sizeof(password));
    OPENSSL_cleanse(g->form, sizeof(g->form));
}

/* The login thread's verdict, once there is one: the answer is written and sent. */
static void gate_poll(struct loop_timer *t)
{
    struct gate *g = container_of(t, struct gate, poll);
    struct hx *h = g->owner;
    char id[SESSION_IDLEN + 1];
    uint64_t wait_s = 0;
    enum login_result r = login_poll(g->job, id, &wait_s);
    if (r == LOGIN_PENDING) {
        loop_timer_start(h->ctx->loop, &g->poll, GATE_POLL_MS);
        return;
    }
    g->polling = false;
    login_job_free(g->job);
    g->job = NULL;
    const char *name = h->map->conf.name;
    char err[160];
    struct mapping_shard *sh = mapping_shard(h->map, h->ctx->worker);
    if (r == LOGIN_OK) {
        /* users: the login thread let in only the mapping's (login_start()). */
        g->answer_len = http_login_done(g->answer, sizeof(g->answer), h->map->conf.name, id,
                                        g->next, h->conf->tls, g->close);
        mapping_stat_add(&sh->stats.proto[HTTP_STAT_LOGINS], 1);
        OPENSSL_cleanse(id, sizeof(id));
    } else if (r == LOGIN_BANNED) {
        snprintf(err, sizeof(err), "Too many failed logins: try again in %llu minutes.",
                 (unsigned long long)((wait_s + 59) / 60));
        g->answer_len =
            http_login_page(g->answer, sizeof(g->answer), 429, name, g->next, err, false, g->close);
        mapping_stat_add(&sh->stats.proto[HTTP_STAT_LOGIN_FAILED], 1);
    } else {
        g->answer_len = http_login_page(g->answer, sizeof(g->answer), 200, name, g->next,
                                        r == LOGIN_BUSY ? "The gateway is busy: try again."
                                                        : "Wrong user, password or code.",
                                        false, g->close);
        mapping_stat_add(&sh->stats.proto[HTTP_STAT_LOGIN_FAILED], 1);
    }
    g->ready = true;
    tcp_conn_kick(h->conn); /* may close the connection, and free h */
}

/* Writes a Cookie header without the gateway's own cookie (none at all if it was the only). */
static void put_cookies_but_ours(struct out *o, struct msg_str value)
{
    bool any = false;
    size_t i = 0;
    while (i < value.n) {
        while (i < value.n && (value.p[i] == ' ' || value.p[i] == ';')) {
            i++;
        }
        size_t s = i;
        while (i < value.n && value.p[i] != ';') {
            i++;
        }
        size_t e = i;
        while (e > s && value.p[e - 1] == ' ') {
            e--;
        }
        /* Every mapping's login cookie: a browser sends them to each port of the host. */
        size_t cn = sizeof(LOGIN_COOKIE) - 1;
        if (e == s || (e - s > cn && memcmp(value.p + s, LOGIN_COOKIE, cn) == 0)) {
            continue;
        }
        puts_(o, any ? "; " : "Cookie: ");
        put(o, value.p + s, e - s);
        any = true;
    }
    if (any) {
        puts_(o, "\r\n");
    }
}

/* Reads what the client sent: returns the input used, with *produced bytes written to out, or
 * -1 with *reason. */
static ssize_t up_data(struct hx *h, const char *in, size_t len, char *out, size_t room,
                       size_t *produced, const char **reason)
{
    size_t used = 0;
    if (h->da != NULL && h->da->resend && h->st[TCP_UP] == S_HEAD && !h->answering) {
        resend(h, out, room, produced);
    }
    while (used < len && !h->answering) {
        switch (h->st[TCP_UP]) {
        case S_HEAD: {
            if (h->upgrading || h->qlen == MAX_PENDING || h->acme_queued ||
                (h->da != NULL && h->qlen > 0) || (h->gate != NULL && h->gate->queued)) {
                return (ssize_t)used; /* held until the answers come */
            }
            /* Empty lines before a request (some clients end a body with one more CRLF) are
             * skipped, as RFC 9112 2.2 asks, and not passed on; a few at most. */
            if (in[used] == '\r') {
                if (h->crlfs == 4 || (len - used >= 2 && in[used + 1] != '\n')) {
                    answer(h, 400, "empty lines before the request", "");
                    break;
                }
                if (len - used < 2) {
                    return (ssize_t)used;
                }
                h->crlfs++;
                used += 2;
                break;
            }
            struct msg m;
            const char *why;
            int status;
            ssize_t n = msg_parse(in + used, len - used, MSG_HTTP_REQUEST, &m, &why, &status);
            if ((n == MSG_PARTIAL && len - used >= h->conf->max_header) ||
                (n > 0 && (size_t)n > h->conf->max_header)) {
                char w[80];
                snprintf(w, sizeof(w), "the request's head is longer than %u bytes",
                         h->conf->max_header);
                answer(h, 431, w, "");
                break;
            }
            if (n == MSG_PARTIAL) {
                start_timer(h);
                return (ssize_t)used;
            }
            if (n == MSG_ERROR) {
                answer(h, status, why, "");
                break;
            }
            if (!request_allowed(h, &m)) {
                break;
            }
            /* Before redirect-https: an ACME server validates over plain http, and although
             * Let's Encrypt follows a redirect, an answer from here needs no https mapping
             * yet. Before any login in front of the device, for the same reason. */
            if (h->conf->acme_webroot[0] != '\0' && http_acme_target(m.target.p, m.target.n)) {
                if (take_challenge(h, &m)) {
                    used += (size_t)n;
                    h->crlfs = 0;
                    stop_timer(h);
                }
                break;
            }
            if (h->conf->redirect_https[0] != '\0') {
                redirect(h, &m);
                break;
            }
            if (h->gate != NULL) {
                int gr = gate_request(h, &m);
                if (gr < 0) {
                    break;
                }
                if (gr == 0) {
                    used += (size_t)n;
                    h->crlfs = 0;
                    if (h->st[TCP_UP] != S_FORM) {
                        stop_timer(h); /* a form's body has header-timeout from the head on */
                    }
                    if (h->st[TCP_UP] == S_FORM && h->gate->form_left == 0) {
                        stop_timer(h);
                        h->st[TCP_UP] = S_HEAD;
                        gate_form(h);
                    }
                    break;
                }
            }
            struct out o = {out + *produced, 0, room - *produced, false};
            write_request(h, &m, &o);
            if (o.full) {
                if (*produced == 0) {
                    *reason = "a request head too large to pass on";
                    return -1;
                }
                return (ssize_t)used; /* the next call, with an empty buffer */
            }
            if (h->da != NULL) {
                da_save_head(h->da, o.p, m.chunked || m.length > 0);
            }
            *produced += o.len;
            used += (size_t)n;
            h->crlfs = 0;
            stop_timer(h);
            mapping_stat_add(
                &mapping_shard(h->map, h->ctx->worker)->stats.proto[HTTP_STAT_REQUESTS], 1);
            h->q[h->qlen++] = (struct pending_req){.head = msg_str_ieq(m.method, "HEAD"),
                                                   .upgrade = wants_websocket(&m)};
            h->upgrading = h->q[h->qlen - 1].upgrade;
            if (m.chunked) {
                h->st[TCP_UP] = S_CHUNKED;
                msg_chunked_init(&h->chunk[TCP_UP]);
            } else if (m.length > 0) {
                h->st[TCP_UP] = S_LENGTH;
                h->left[TCP_UP] = m.length;
            }
            break;
        }
        case S_FORM: {
            /* A login or logout form, read whole by the gateway (gate_form()). */
            struct gate *g = h->gate;
            size_t k = len - used < g->form_left ? len - used : g->form_left;
            memcpy(g->form + g->form_len, in + used, k);
            g->form_len += k;
            g->form_left -= (uint32_t)k;
            used += k;
            if (g->form_left == 0) {
                stop_timer(h);
                h->st[TCP_UP] = S_HEAD;
                gate_form(h);
            }
            break;
        }
        default: {
            bool done;
            size_t before = *produced;
            ssize_t n =
                pass_body(h, TCP_UP, in + used, len - used, out, room, produced, &done, reason);
            if (n < 0) {
                return -1; /* part of the request is with the device: no answer now */
            }
            if (h->da != NULL && h->da->saving) {
                da_save_body(h->da, out + before, *produced - before, done);
            }
            if (n == 0 && !done) {
                return (ssize_t)used;
            }
            used += (size_t)n;
            if (done) {
                h->st[TCP_UP] = S_HEAD;
            }
            break;
        }
        }
    }
    if (h->answering) {
        return (ssize_t)len; /* what follows a refused request is not read */
    }
    return (ssize_t)used;
}

/* ---- answers ---- */

static void pop(struct hx *h)
{
    memmove(&h->q[0], &h->q[1], (h->qlen - 1) * sizeof(h->q[0]));
    h->qlen--;
    h->st[TCP_DOWN] = S_HEAD;
    start_idle(h);
}

static ssize_t down_data(struct hx *h, const char *in, size_t len, char *out, size_t room,
                         size_t *produced, const char **reason)
{
    size_t used = 0;
    for (;;) {
        if (h->answering && !h->answered && h->qlen == 0 && h->st[TCP_DOWN] == S_HEAD) {
            if (h->answer_len > room - *produced) {
                return (ssize_t)used;
            }
            memcpy(out + *produced, h->answer, h->answer_len);
            *produced += h->answer_len;
            h->answered = true;
            *reason = h->close_reason;
            return TCP_FILTER_END; /* the answer, then the end; the device is done with */
        }
        if (h->qlen > 0 && h->q[0].gate && h->st[TCP_DOWN] == S_HEAD) {
            struct gate *g = h->gate;
            if (!g->ready || g->answer_len > room - *produced) {
                return (ssize_t)used; /* the login thread has not answered, or no room yet */
            }
            memcpy(out + *produced, g->answer, g->answer_len);
            *produced += g->answer_len;
            g->queued = g->ready = false;
            bool last = g->close;
            pop(h);
            if (last) {
                h->answered = true;
                h->close_reason = "the gateway answered, the client asked to close";
                *reason = h->close_reason;
                return TCP_FILTER_END;
            }
            continue;
        }
        if (h->qlen > 0 && h->q[0].local && h->st[TCP_DOWN] == S_HEAD) {
            if (!answer_challenge(h, out, room, produced)) {
                return (ssize_t)used;
            }
            bool last = h->acme_close;
            h->acme_queued = false;
            pop(h);
            if (last) {
                h->answered = true;
                h->close_reason = "an ACME challenge answered, the client asked to close";
                *reason = h->close_reason;
                return TCP_FILTER_END;
            }
            continue;
        }
        if (used == len) {
            return (ssize_t)used;
        }
        switch (h->st[TCP_DOWN]) {
        case S_HEAD: {
            if (h->qlen == 0) {
                *reason = "the device sent an answer to no request";
                return -1;
            }
            struct msg m;
            const char *why;
            int status;
            ssize_t n = msg_parse(in + used, len - used, MSG_HTTP_RESPONSE, &m, &why, &status);
            if (n == MSG_PARTIAL) {
                if (len - used >= MAX_RESPONSE_HEAD) {
                    *reason = "the device's answer head is too long";
                    return -1;
                }
                return (ssize_t)used;
            }
            if (n == MSG_ERROR) {
                /* Nothing of this answer went out: the client gets a 502 of ours. */
                char w[160];
                snprintf(w, sizeof(w), "the device's answer is not HTTP (%s)", why);
                h->answering = false;
                answer(h, 502, w, "");
                h->qlen = 0;
                h->acme_queued = false;
                continue;
            }
            if (h->da != NULL && m.status == 401) {
                if (da_challenged(h, &m)) {
                    used += (size_t)n; /* dropped: the request goes again (pending TCP_UP) */
                }
                continue;
            }
            if (h->da != NULL && m.status >= 200) {
                h->da->resends = 0; /* answered: the next request may go */
            }
            struct out o = {out + *produced, 0, room - *produced, false};
            write_response(h, &m, &o);
            if (o.full) {
                if (*produced == 0) {
                    *reason = "the device's answer head is too long";
                    return -1;
                }
                return (ssize_t)used;
            }
            *produced += o.len;
            used += (size_t)n;
            if (m.status == 101) {
                const struct msg_str *up = msg_header(&m, "Upgrade");
                if (!h->q[0].upgrade || up == NULL || !msg_str_ieq(*up, "websocket")) {
                    *reason =
                        "the device switched to a protocol other than the websocket asked for";
                    return -1;
                }
                h->st[TCP_UP] = h->st[TCP_DOWN] = S_TUNNEL;
                h->upgrading = false;
                h->qlen = 0;
                mapping_stat_add(
                    &mapping_shard(h->map, h->ctx->worker)->stats.proto[HTTP_STAT_UPGRADES], 1);
                continue;
            }
            if (m.status < 200) {
                continue; /* 100 Continue and the like: the final answer follows */
            }
            if (h->q[0].upgrade) {
                h->upgrading = false; /* refused: HTTP goes on */
            }
            if (h->q[0].head || m.status == 204 || m.status == 304) {
                pop(h);
            } else if (m.chunked) {
                h->st[TCP_DOWN] = S_CHUNKED;
                msg_chunked_init(&h->chunk[TCP_DOWN]);
            } else if (m.has_length) {
                h->st[TCP_DOWN] = S_LENGTH;
                h->left[TCP_DOWN] = m.length;
                if (m.length == 0) {
                    pop(h);
                }
            } else {
                h->st[TCP_DOWN] = S_UNTIL_CLOSE;
            }
            continue;
        }
        default: {
            bool done;
            size_t before = *produced;
            ssize_t n =
                pass_body(h, TCP_DOWN, in + used, len - used, out, room, produced, &done, reason);
            if (n < 0) {
                return -1;
            }
            bool skip = h->da != NULL && h->da->skipping;
            if (skip) {
                *produced = before; /* a 401 the gateway answered: the client never sees it */
            }
            if (n == 0 && !done) {
                return (ssize_t)used;
            }
            used += (size_t)n;
            if (done && skip) {
                h->da->skipping = false;
                h->st[TCP_DOWN] = S_HEAD; /* the request's real answer comes next */
            } else if (done) {
                pop(h);
            }
            continue;
        }
        }
    }
}

/* ---- the filter ---- */

static void *hx_open(const struct tcp_filter_conn *fc)
{
    struct hx *h = calloc(1, sizeof(*h));
    if (h == NULL) {
        return NULL;
    }
    h->conn = fc->conn;
    h->ctx = fc->ctx;
    h->map = fc->map;
    h->conf = fc->map->conf.pconf;
    h->client = fc->client;
    h->target = fc->target;
    h->local = fc->client_local;
    struct sockaddr_storage c = fc->client;
    addr_unmap(&c);
    char ip[ADDR_STRLEN];
    addr_format_ip(&c, ip, sizeof(ip));
    /* X-Forwarded-For has addresses bare, without brackets. */
    size_t n = strlen(ip);
    if (ip[0] == '[' && n >= 2) {
        snprintf(h->client_ip, sizeof(h->client_ip), "%.*s", (int)(n - 2), ip + 1);
    } else {
        snprintf(h->client_ip, sizeof(h->client_ip), "%s", ip);
    }
    /* trusted-proxies is the mapping's: with accept-proxy, fc->client is the address the proxy's
     * header gave, so these headers are kept from a client that is itself a trusted proxy. */
    h->trusted = cidr_set_contains(&fc->map->conf.trusted, &fc->client);
    if (h->conf->device_auth.user[0] != '\0' && (h->da = calloc(1, sizeof(*h->da))) == NULL) {
        free(h);
        return NULL;
    }
    if (h->conf->login) {
        if ((h->gate = calloc(1, sizeof(*h->gate))) == NULL) {
            free(h->da);
            free(h);
            return NULL;
        }
        h->gate->owner = h;
        loop_timer_init(&h->gate->poll, gate_poll);
    }
    loop_timer_init(&h->timer, on_timeout);
    start_timer(h); /* the first request must come within header-timeout */
    return h;
}

static ssize_t hx_data(void *st, enum tcp_dir dir, const char *in, size_t len, bool eof, char *out,
                       size_t room, size_t *out_len, const char **reason)
{
    (void)eof;
    struct hx *h = st;
    *out_len = 0;
    if (h->answered) {
        *reason = h->close_reason;
        return -1;
    }
    if (dir == TCP_DOWN && h->answering && !h->answered && h->qlen == 0 &&
        h->st[TCP_DOWN] == S_HEAD) {
        return down_data(h, NULL, 0, out, room, out_len, reason); /* the answer's turn */
    }
    return dir == TCP_UP ? up_data(h, in, len, out, room, out_len, reason)
                         : down_data(h, in, len, out, room, out_len, reason);
}

static bool hx_pending(void *st, enum tcp_dir dir)
{
    const struct hx *h = st;
    if (dir == TCP_UP) {
        return h->da != NULL && h->da->resend && h->st[TCP_UP] == S_HEAD && !h->answering;
    }
    if (dir != TCP_DOWN || h->answered || h->st[TCP_DOWN] != S_HEAD) {
        return false;
    }
    return (h->answering && h->qlen == 0) || (h->qlen > 0 && h->q[0].local) ||
           (h->qlen > 0 && h->q[0].gate && h->gate->ready);
}

static bool hx_held(void *st, enum tcp_dir dir)
{
    const struct hx *h = st;
    return dir == TCP_UP && h->st[TCP_UP] == S_HEAD &&
           (h->upgrading || h->qlen == MAX_PENDING || h->acme_queued ||
            (h->da != NULL && h->qlen > 0) || (h->gate != NULL && h->gate->queued));
}

static void hx_close(void *st)
{
    struct hx *h = st;
    if (h->timing) {
        loop_timer_stop(h->ctx->loop, &h->timer);
    }
    if (h->da != NULL) {
        OPENSSL_cleanse(h->da, sizeof(*h->da)); /* the copies held the device's credentials */
        free(h->da);
    }
    if (h->gate != NULL) {
        if (h->gate->polling) {
            loop_timer_stop(h->ctx->loop, &h->gate->poll);
        }
        login_job_abandon(h->gate->job); /* a check not done goes on alone, then is dropped */
        OPENSSL_cleanse(h->gate, sizeof(*h->gate)); /* a form held a password; answers, ids */
        free(h->gate);
    }
    free(h);
}

const struct tcp_filter http_proxy_filter = {.name = "http",
                                             .open = hx_open,
                                             .data = hx_data,
                                             .pending = hx_pending,
                                             .held = hx_held,
                                             .close = hx_close};
