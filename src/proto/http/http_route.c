#include "proto/http/http_route.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "auth/users.h"
#include "core/log.h"
#include "forward/mapping.h"
#include "message/msg.h"
#include "proto/http/http_login.h"
#include "proto/http/http_proto.h"
#include "proto/http/http_proxy.h"

/* ---- names ---- */

/* True if s (n bytes, lower case) is a DNS name: labels of letters, digits and '-', not
 * starting or ending with '-', at most 63 bytes each and 253 in all. */
static bool dns_name(const char *s, size_t n)
{
    if (n == 0 || n > 253) {
        return false;
    }
    size_t label = 0;
    for (size_t i = 0; i <= n; i++) {
        char ch = i < n ? s[i] : '.';
        if (ch == '.') {
            if (label == 0 || s[i - 1] == '-') {
                return false;
            }
            label = 0;
            continue;
        }
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || (ch == '-' && label > 0)) ||
            ++label > 63) {
            return false;
        }
    }
    return true;
}

/* True if s (n bytes) is an IPv6 literal in brackets, as a Host gives one. */
static bool v6_literal(const char *s, size_t n)
{
    if (n < 4 || n > 47 || s[0] != '[' || s[n - 1] != ']') {
        return false;
    }
    for (size_t i = 1; i + 1 < n; i++) {
        if (!isxdigit((unsigned char)s[i]) && s[i] != ':' && s[i] != '.') {
            return false;
        }
    }
    return true;
}

int http_hosts_parse(const char *val, char *out, size_t outlen, char *why, size_t whylen)
{
    size_t off = 0, count = 0;
    out[0] = '\0';
    for (const char *p = val; *p != '\0';) {
        p += strspn(p, " \t");
        size_t n = strcspn(p, ",");
        size_t end = n;
        while (end > 0 && (p[end - 1] == ' ' || p[end - 1] == '\t')) {
            end--;
        }
        char name[256];
        if (end == 0 || end >= sizeof(name)) {
            snprintf(why, whylen, "\"%.80s\": %s", val,
                     end == 0 ? "an empty name" : "a name longer than 253 characters");
            return -1;
        }
        for (size_t i = 0; i < end; i++) {
            name[i] = (char)tolower((unsigned char)p[i]);
        }
        name[end] = '\0';
        if (end > 1 && name[end - 1] == '.') {
            name[--end] = '\0'; /* the root's dot: "cam1.example.org." is cam1.example.org */
        }
        bool wild = name[0] == '*' && name[1] == '.';
        if (!(wild ? dns_name(name + 2, end - 2) : dns_name(name, end) || v6_literal(name, end))) {
            snprintf(why, whylen,
                     "\"%s\": a host name (cam1.example.org), *. and a domain (*.example.org), "
                     "or an address",
                     name);
            return -1;
        }
        if (++count > HTTP_MAX_HOSTS) {
            snprintf(why, whylen, "\"%.80s\": at most %d names", val, HTTP_MAX_HOSTS);
            return -1;
        }
        if (http_hosts_match(out, name, end) == 2) {
            snprintf(why, whylen, "\"%s\": given twice", name);
            return -1;
        }
        if (off + end + 2 > outlen) {
            snprintf(why, whylen, "\"%.80s\": the names are too long in all", val);
            return -1;
        }
        off += (size_t)snprintf(out + off, outlen - off, "%s%s", off ? "," : "", name);
        p += n + (p[n] == ',');
    }
    return 0;
}

/* True if the pattern (n bytes) covers host (hn bytes): equal, or "*.rest" and one label more. */
static int name_match(const char *pat, size_t n, const char *host, size_t hn)
{
    if (n == hn && strncasecmp(pat, host, n) == 0) {
        return 2;
    }
    if (n > 2 && pat[0] == '*' && pat[1] == '.') {
        const char *dot = memchr(host, '.', hn);
        if (dot != NULL && dot != host && (size_t)(host + hn - dot - 1) == n - 2 &&
            strncasecmp(dot + 1, pat + 2, n - 2) == 0) {
            return 1;
        }
    }
    return 0;
}

int http_hosts_match(const char *hosts, const char *host, size_t n)
{
    int best = 0;
    if (n > 1 && host[n - 1] == '.') {
        n--;
    }
    for (const char *p = hosts; *p != '\0' && best < 2;) {
        size_t k = strcspn(p, ",");
        int m = name_match(p, k, host, n);
        best = m > best ? m : best;
        p += k + (p[k] == ',');
    }
    return best;
}

bool http_hosts_overlap(const char *a, const char *b, char *buf, size_t len)
{
    for (const char *p = a; *p != '\0';) {
        size_t k = strcspn(p, ",");
        for (const char *q = b; *q != '\0';) {
            size_t j = strcspn(q, ",");
            /* Equal, or either one's wildcard covers the other's name (two wildcards are equal
             * or disjoint). */
            if (name_match(p, k, q, j)) {
                snprintf(buf, len, "%.*s", (int)j, q);
                return true;
            }
            if (name_match(q, j, p, k)) {
                snprintf(buf, len, "%.*s", (int)k, p);
                return true;
            }
            q += j + (q[j] == ',');
        }
        p += k + (p[k] == ',');
    }
    return false;
}

/* ---- routing ---- */

/* True if name (a TLS server name, any case) is a DNS name. */
static bool sni_ok(const char *name)
{
    char low[256];
    size_t n = strlen(name);
    if (n == 0 || n >= sizeof(low)) {
        return false;
    }
    for (size_t i = 0; i <= n; i++) {
        low[i] = (char)tolower((unsigned char)name[i]);
    }
    return dns_name(low, n);
}

/* The name in a Host value, without its port: "cam1:8080" -> "cam1", "[::1]:80" -> "[::1]". */
static size_t host_name_len(const char *h, size_t n)
{
    if (n > 0 && h[0] == '[') {
        const char *close = memchr(h, ']', n);
        return close != NULL ? (size_t)(close - h) + 1 : n;
    }
    const char *colon = memchr(h, ':', n);
    return colon != NULL ? (size_t)(colon - h) : n;
}

/* The mapping of g for host (n bytes): an equal name first, then a wildcard's, then the mapping
 * without names; each time the first in the configuration's order. -1: none. */
static ssize_t pick(const struct mapping_group *g, const char *host, size_t n)
{
    ssize_t wild = -1, any = -1;
    for (size_t i = 0; i < g->n; i++) {
        const struct http_conf *c = g->maps[i]->conf.pconf;
        if (c->hosts[0] == '\0') {
            any = any < 0 ? (ssize_t)i : any;
            continue;
        }
        int m = http_hosts_match(c->hosts, host, n);
        if (m == 2) {
            return (ssize_t)i;
        }
        if (m == 1 && wild < 0) {
            wild = (ssize_t)i;
        }
    }
    return wild >= 0 ? wild : any;
}

/* The gateway's answer, counted and logged (one line a second at most) under the port's first
 * mapping: no mapping is chosen yet. */
static ssize_t refuse_with(const struct tcp_route_conn *rc, int status, const char *why,
                           const char *extra, const char *log_reason, char *out, size_t room,
                           size_t *out_len, const char **reason)
{
    const struct mapping *first = rc->group->maps[0];
    mapping_stat_add(&mapping_shard(first, rc->worker)->stats.proto[HTTP_STAT_REFUSED], 1);
    uint64_t suppressed;
    if (mapping_log_ok(first, rc->worker, MAPPING_LOG_PROTO, rc->now_ms, &suppressed)) {
        char cs[ADDR_STRLEN];
        log_warn("map %s: http %s: answered %d: %s (%llu more refusals not logged)",
                 first->conf.name, addr_format(rc->client, cs, sizeof(cs)), status, why,
                 (unsigned long long)suppressed);
    }
    *out_len = http_answer_text(out, room, status, why, extra);
    *reason = log_reason;
    return TCP_ROUTE_REFUSE;
}

static ssize_t refuse(const struct tcp_route_conn *rc, int status, const char *why,
                      const char *log_reason, char *out, size_t room, size_t *out_len,
                      const char **reason)
{
    return refuse_with(rc, status, why, "", log_reason, out, room, out_len, reason);
}

/* The chosen mapping has the gateway's login before its device (auth = login): a first request
 * without a live session, or for one of the gateway's pages, is answered now, the connection
 * closed after, and no device connected to; but a login or logout form, which needs the login
 * thread, goes to the filter. Else the mapping chosen. */
static ssize_t gate(const struct tcp_route_conn *rc, ssize_t chosen, const struct msg *m, char *out,
                    size_t room, size_t *out_len, const char **reason)
{
    const struct mapping *map = rc->group->maps[chosen];
    const struct http_conf *c = map->conf.pconf;
    if (!c->login || room < HTTP_LOGIN_ANSWER_MAX) {
        return chosen;
    }
    bool head = msg_str_ieq(m->method, "HEAD"), get = head || msg_str_ieq(m->method, "GET");
    size_t pn = sizeof(HTTP_LOGIN_PREFIX) - 1;
    bool ours = m->target.n >= pn && memcmp(m->target.p, HTTP_LOGIN_PREFIX, pn) == 0;
    char user[USERS_NAMELEN];
    size_t path = m->target.n;
    const char *qm = memchr(m->target.p, '?', m->target.n);
    if (qm != NULL) {
        path = (size_t)(qm - m->target.p);
    }
    if (ours && get && path == sizeof(HTTP_LOGIN_PAGE) - 1 &&
        memcmp(m->target.p, HTTP_LOGIN_PAGE, path) == 0) {
        char next[HTTP_LOGIN_NEXT_MAX + 1];
        http_login_query_next(m->target.p, m->target.n, next);
        *out_len = http_login_page(out, room, 200, map->conf.name, next, NULL, head, true);
        *reason = "the gateway showed its login page";
        return TCP_ROUTE_REFUSE;
    }
    if (ours && get) {
        /* The logout page (who is logged in), or none of the gateway's: 404. */
        bool logout = path == sizeof(HTTP_LOGOUT_PAGE) - 1 &&
                      memcmp(m->target.p, HTTP_LOGOUT_PAGE, path) == 0;
        if (!logout || !http_login_user(c, map->conf.name, m, user)) {
            user[0] = '\0';
        }
        *out_len =
            logout ? http_logout_page(out, room, map->conf.name, false, user, c->tls, head, true)
                   : http_login_unknown(out, room, head, true);
        *reason = "the gateway showed one of its pages";
        return TCP_ROUTE_REFUSE;
    }
    if (ours || http_login_user(c, map->conf.name, m, user)) {
        return chosen; /* a form: the filter reads it; a session: the device */
    }
    *out_len = http_login_needed(out, room, get, head, m->target.p, m->target.n, true);
    *reason = "the gateway asked for its login";
    return TCP_ROUTE_REFUSE;
}

/* The chosen mapping redirects every request to https (redirect-https): the gateway answers,
 * as its filter would, without a device; else the mapping chosen. A 308 is no refusal: it is
 * neither counted nor logged as one. */
static ssize_t redirect(const struct tcp_route_conn *rc, ssize_t chosen, const struct msg *m,
                        char *out, size_t room, size_t *out_len, const char **reason)
{
    const struct mapping *map = rc->group->maps[chosen];
    const struct http_conf *c = map->conf.pconf;
    if (c->redirect_https[0] == '\0') {
        return gate(rc, chosen, m, out, room, out_len, reason);
    }
    char host[256], loc[HTTP_REDIRECT_LOC_MAX];
    snprintf(host, sizeof(host), "%.*s", (int)m->host.n, m->host.n ? m->host.p : "");
    const char *why;
    int status = http_redirect(c, host, m->target, loc, sizeof(loc), &why);
    if (status != 308) {
        return refuse(rc, status, why, "the gateway refused to redirect", out, room, out_len,
                      reason);
    }
    *out_len = http_answer_text(out, room, status, why, loc);
    *reason = "redirected to https";
    return TCP_ROUTE_REFUSE;
}

/* The chosen mapping answers ACME challenges from its webroot, and the first request is one: the
 * gateway answers it now and closes, so that a certificate is issued or renewed even while the
 * device is off. Any other request: the mapping chosen. */
static ssize_t challenge(const struct tcp_route_conn *rc, ssize_t chosen, const struct msg *m,
                         char *out, size_t room, size_t *out_len, const char **reason)
{
    const struct mapping *map = rc->group->maps[chosen];
    const struct http_conf *c = map->conf.pconf;
    bool head = msg_str_ieq(m->method, "HEAD");
    if (c->acme_webroot[0] == '\0' || !http_acme_target(m->target.p, m->target.n) ||
        (!head && !msg_str_ieq(m->method, "GET")) || room < HTTP_CHALLENGE_ANSWER_MAX) {
        return redirect(rc, chosen, m, out, room, out_len, reason);
    }
    char token[HTTP_ACME_TOKEN_MAX + 1], why[HTTP_WEBROOT_LEN + 128];
    int status;
    http_acme_token(m->target.p, m->target.n, token);
    *out_len =
        http_challenge_answer(c, token, head, true, false, out, room, &status, why, sizeof(why));
    http_challenge_count(map, rc->worker, rc->now_ms, rc->client, status, why);
    *reason = status == 200 ? "the gateway answered an ACME challenge"
                            : "the gateway answered an ACME challenge it had no file for";
    return TCP_ROUTE_REFUSE;
}

static uint32_t route_timeout(const struct mapping *first)
{
    return ((const struct http_conf *)first->conf.pconf)->header_timeout_ms;
}

static ssize_t route(const struct tcp_route_conn *rc, const char *in, size_t len, bool eof,
                     bool timeout, char *out, size_t room, size_t *out_len, const char **reason)
{
    const struct http_conf *first = rc->group->maps[0]->conf.pconf;
    char why[400];
    *out_len = 0;
    if (timeout) {
        snprintf(why, sizeof(why), "the request's head did not come within %ums",
                 first->header_timeout_ms);
        return refuse(rc, 408, why, "the gateway answered 408: no request in time", out, room,
                      out_len, reason);
    }
    /* The filter skips a few empty lines before a request, and refuses more: so does this. */
    size_t off = 0;
    for (int i = 0; i < 4 && len - off >= 2 && in[off] == '\r' && in[off + 1] == '\n'; i++) {
        off += 2;
    }
    struct msg m;
    const char *perr;
    int status;
    ssize_t n = msg_parse(in + off, len - off, MSG_HTTP_REQUEST, &m, &perr, &status);
    if ((n == MSG_PARTIAL && len - off >= first->max_header) ||
        (n > 0 && (size_t)n > first->max_header)) {
        snprintf(why, sizeof(why), "the request's head is longer than %u bytes", first->max_header);
        return refuse(rc, 431, why, "the gateway answered 431: head too long", out, room, out_len,
                      reason);
    }
    if (n == MSG_PARTIAL) {
        if (eof) {
            *reason = len == 0 ? "client closed without a request"
                               : "client closed in the middle of its first request";
            return TCP_ROUTE_REFUSE;
        }
        return TCP_ROUTE_MORE;
    }
    /* What the filter would refuse of the first request, refused before a device is connected
     * to: what the parser refuses, then what the gateway lets through of a parsed request. */
    const char *extra = "";
    if (n == MSG_ERROR || (status = http_request_refused(&m, &perr, &extra)) != 0) {
        return refuse_with(rc, status, perr, extra, "the gateway refused the first request", out,
                           room, out_len, reason);
    }
    /* A server name is a DNS name; anything else (control characters) is as good as none. */
    const char *sni = rc->servername != NULL && sni_ok(rc->servername) ? rc->servername : NULL;
    ssize_t by_sni = sni != NULL ? pick(rc->group, sni, strlen(sni)) : -1;
    ssize_t chosen;
    if (m.host.n > 0) {
        size_t hn = host_name_len(m.host.p, m.host.n);
        chosen = pick(rc->group, m.host.p, hn);
        if (chosen < 0) {
            snprintf(why, sizeof(why), "no device here answers for host %.*s", (int)hn, m.host.p);
            return refuse(rc, 404, why, "the gateway answered 404: unknown host", out, room,
                          out_len, reason);
        }
        if (by_sni >= 0 && chosen != by_sni) {
            snprintf(why, sizeof(why),
                     "this connection was opened for %s, not for %.*s: open another for it", sni,
                     (int)hn, m.host.p);
            return refuse(rc, 421, why, "the gateway answered 421: Host and SNI differ", out, room,
                          out_len, reason);
        }
        return challenge(rc, chosen, &m, out, room, out_len, reason);
    }
    /* HTTP/1.0 without a Host: the server name the handshake gave, or the mapping for any. */
    chosen = by_sni >= 0 ? by_sni : pick(rc->group, "", 0);
    if (chosen < 0) {
        return refuse(rc, 400, "a Host header is needed: this port serves several hosts",
                      "the gateway answered 400: no Host", out, room, out_len, reason);
    }
    return challenge(rc, chosen, &m, out, room, out_len, reason);
}

const struct tcp_router http_router = {.timeout_ms = route_timeout, .route = route};
