#include "proto/rtsp/rtsp.h"

#include <string.h>
#include <strings.h>

#include "core/addr.h"

ssize_t rtsp_parse(const char *buf, size_t len, struct msg *m, const char **why)
{
    int status;
    return msg_parse(buf, len, MSG_RTSP, m, why, &status);
}

ssize_t rtsp_frame_len(const char *buf, size_t len)
{
    if (len < 4) {
        return MSG_PARTIAL;
    }
    return (ssize_t)(4 + ((size_t)(unsigned char)buf[2] << 8 | (unsigned char)buf[3]));
}

/* ---- writing ---- */

struct out {
    char *p;
    size_t len, room;
    bool overflow;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (o->overflow || n > o->room - o->len) {
        o->overflow = true;
        return;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

static void put_str(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

static void put_uint(struct out *o, unsigned long v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[sizeof(tmp) - ++n] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    put(o, tmp + sizeof(tmp) - n, n);
}

/* host as it goes in a URL authority: an IPv6 literal in brackets. */
static void put_host(struct out *o, const char *host, bool url)
{
    bool v6 = strchr(host, ':') != NULL;
    if (v6 && url) {
        put(o, "[", 1);
    }
    put_str(o, host);
    if (v6 && url) {
        put(o, "]", 1);
    }
}

/* ---- URLs ---- */

/* Splits url into scheme end (just after "://") and the authority [start, end). Returns -1 if
 * it is not an rtsp URL. */
static int url_authority(struct msg_str url, size_t *a, size_t *b)
{
    static const char *const schemes[] = {"rtsp://", "rtsps://", "rtspu://"};
    for (size_t i = 0; i < 3; i++) {
        size_t n = strlen(schemes[i]);
        if (url.n >= n && strncasecmp(url.p, schemes[i], n) == 0) {
            size_t e = n;
            while (e < url.n && url.p[e] != '/' && url.p[e] != '?' && url.p[e] != '#' &&
                   url.p[e] != ';' && url.p[e] != ' ') {
                e++;
            }
            *a = n;
            *b = e;
            return 0;
        }
    }
    return -1;
}

static bool host_eq(const char *h, size_t n, const char *want)
{
    return strlen(want) == n && strncasecmp(h, want, n) == 0;
}

/* A URL authority, [userinfo@]host[:port], split in place. */
struct authority {
    size_t host_at;     /* where the host starts: after the userinfo, which a rewrite keeps */
    const char *host;   /* without the brackets of an IPv6 literal */
    size_t host_len;    /* > 0 */
    unsigned long port; /* 554 when none is given (RFC 2326 3.2) */
};

/* Parses the authority p[0..n). Returns 0, or -1 when it is not one (an empty host, a bad
 * port, an unclosed bracket). */
static int parse_authority(const char *p, size_t n, struct authority *a)
{
    const char *at = memchr(p, '@', n);
    a->host_at = at != NULL ? (size_t)(at - p) + 1 : 0;
    const char *host = p + a->host_at, *end = p + n, *port = NULL;
    if (host < end && *host == '[') {
        const char *close = memchr(host, ']', (size_t)(end - host));
        if (close == NULL || (close + 1 < end && close[1] != ':')) {
            return -1;
        }
        a->host = host + 1;
        a->host_len = (size_t)(close - host - 1);
        port = close + 1 < end ? close + 2 : NULL;
    } else {
        const char *colon = memchr(host, ':', (size_t)(end - host));
        a->host = host;
        a->host_len = (size_t)((colon != NULL ? colon : end) - host);
        port = colon != NULL ? colon + 1 : NULL;
    }
    if (a->host_len == 0) {
        return -1;
    }
    a->port = 554;
    if (port != NULL) {
        size_t pn = (size_t)(end - port);
        if (pn == 0 || pn > 5) {
            return -1;
        }
        a->port = 0;
        for (size_t i = 0; i < pn; i++) {
            if (port[i] < '0' || port[i] > '9') {
                return -1;
            }
            a->port = a->port * 10 + (unsigned long)(port[i] - '0');
        }
        if (a->port == 0 || a->port > 65535) {
            return -1;
        }
    }
    return 0;
}

/* Does the authority p[0..n) name ep? Sets *host_at to where its host starts, to keep the
 * userinfo when rewriting. */
static bool authority_matches(const char *p, size_t n, const struct rtsp_endpoint *ep,
                              size_t *host_at)
{
    struct authority a;
    if (parse_authority(p, n, &a) != 0) {
        return false;
    }
    *host_at = a.host_at;
    return host_eq(a.host, a.host_len, ep->host) && a.port == ep->port;
}

static void put_authority(struct out *o, const struct rtsp_endpoint *ep)
{
    put_host(o, ep->host, true);
    if (ep->port != 554) {
        put(o, ":", 1);
        put_uint(o, ep->port);
    }
}

/* Writes url, rewritten if it names rw->from. Returns true if it was rewritten. */
static bool put_url(struct out *o, struct msg_str url, const struct rtsp_rewrite *rw)
{
    size_t a, b, host_at;
    if (url_authority(url, &a, &b) != 0 ||
        !authority_matches(url.p + a, b - a, &rw->from, &host_at)) {
        put(o, url.p, url.n);
        return false;
    }
    if (rw->scheme != NULL) {
        put(o, rw->scheme, strlen(rw->scheme));
        put(o, url.p + a, host_at);
    } else {
        put(o, url.p, a + host_at);
    }
    put_authority(o, &rw->to);
    put(o, url.p + b, url.n - b);
    return true;
}

int rtsp_url_endpoint(struct msg_str url, struct rtsp_endpoint *ep)
{
    size_t start, end;
    struct authority a;
    if (url_authority(url, &start, &end) != 0 ||
        parse_authority(url.p + start, end - start, &a) != 0 || a.host_len >= sizeof(ep->host)) {
        return -1;
    }
    memcpy(ep->host, a.host, a.host_len);
    ep->host[a.host_len] = '\0';
    ep->port = (uint16_t)a.port;
    return 0;
}

ssize_t rtsp_rewrite_url(struct msg_str url, const struct rtsp_rewrite *rw, char *out,
                         size_t out_room)
{
    struct out o = {out, 0, out_room, false};
    bool changed = put_url(&o, url, rw);
    if (o.overflow) {
        return RTSP_ERROR;
    }
    return changed ? (ssize_t)o.len : 0;
}

/* RTP-Info (RFC 2326 12.33): url=URL;seq=..;rtptime=.., url=... Rewrites each url=. A URL may
 * contain ';' only in its parameters, which RTP-Info separates with ';' too: the URL ends at the
 * first ';' or ','. */
static void put_rtp_info(struct out *o, struct msg_str v, const struct rtsp_rewrite *rw)
{
    size_t i = 0;
    while (i < v.n) {
        if (v.n - i >= 4 && strncasecmp(v.p + i, "url=", 4) == 0 &&
            (i == 0 || v.p[i - 1] == ',' || v.p[i - 1] == ' ' || v.p[i - 1] == ';')) {
            put(o, v.p + i, 4);
            i += 4;
            bool quoted = i < v.n && v.p[i] == '"';
            size_t s = i + quoted, e = s;
            while (e < v.n && (quoted ? v.p[e] != '"' : v.p[e] != ';' && v.p[e] != ',')) {
                e++;
            }
            if (quoted) {
                put(o, "\"", 1);
            }
            put_url(o, (struct msg_str){v.p + s, e - s}, rw);
            i = e;
            if (quoted && i < v.n) {
                put(o, "\"", 1);
                i++;
            }
            continue;
        }
        put(o, v.p + i, 1);
        i++;
    }
}

/* ---- SDP (RFC 8866) ---- */

enum sdp_addr { SDP_NAME, SDP_UNICAST, SDP_ANY, SDP_MULTICAST };

/* What the address text addr[0..n) of an SDP line is; *ss holds it when it is an address. */
static enum sdp_addr sdp_addr_kind(const char *addr, size_t n, struct sockaddr_storage *ss)
{
    char text[64];
    if (n >= sizeof(text)) {
        return SDP_NAME;
    }
    memcpy(text, addr, n);
    text[n] = '\0';
    if (addr_parse_ip(text, ss) != 0) {
        return SDP_NAME;
    }
    if (addr_is_any(ss)) {
        return SDP_ANY;
    }
    const uint8_t *b = ss->ss_family == AF_INET6
                           ? ((const struct sockaddr_in6 *)ss)->sin6_addr.s6_addr
                           : (const uint8_t *)&((const struct sockaddr_in *)ss)->sin_addr;
    bool multicast = ss->ss_family == AF_INET6 ? b[0] == 0xff : (b[0] & 0xf0) == 0xe0;
    return multicast ? SDP_MULTICAST : SDP_UNICAST;
}

/* Does the SDP address text addr[0..n) (parsed into ss when kind says so) name host? As text,
 * or as the same address written another way (2001:DB8::A, 2001:db8:0::a). */
static bool sdp_names(const char *addr, size_t n, enum sdp_addr kind,
                      const struct sockaddr_storage *ss, const char *host)
{
    struct sockaddr_storage h;
    return host_eq(addr, n, host) ||
           (kind == SDP_UNICAST && addr_parse_ip(host, &h) == 0 && addr_ip_equal(ss, &h));
}

/*
 * "IN IP4 addr" / "IN IP6 addr" at line.p[at..] (o=, c= and a=rtcp: lines). The client must see
 * addresses of the family it used, and RTP goes through the gateway, so: the device's address
 * becomes the one the client used (rw->to_ip); a wildcard becomes the wildcard of that family
 * (a player opens its RTP sockets for the family of c=: "c=IN IP4 0.0.0.0" given to an IPv6
 * player would leave it deaf); another unicast address or name of the other family becomes the
 * client's address too. Multicast addresses, which the gateway does not relay, stay as they are,
 * and so does what follows a '/' (a multicast TTL or count).
 */
static void put_sdp_addr(struct out *o, struct msg_str line, size_t at,
                         const struct rtsp_rewrite *rw)
{
    const char *p = line.p + at;
    size_t n = line.n - at;
    if (n < 7 || strncmp(p, "IN IP", 5) != 0 || (p[5] != '4' && p[5] != '6') || p[6] != ' ') {
        put(o, line.p, line.n);
        return;
    }
    const char *addr = p + 7;
    size_t an = n - 7;
    const char *slash = memchr(addr, '/', an);
    size_t hn = slash != NULL ? (size_t)(slash - addr) : an;
    const char *to = rw->to_ip[0] != '\0' ? rw->to_ip : rw->to.host;
    bool to6 = strchr(to, ':') != NULL;
    bool other_family = (p[5] == '6') != to6;
    struct sockaddr_storage ss;
    enum sdp_addr kind = sdp_addr_kind(addr, hn, &ss);
    if (kind == SDP_MULTICAST || (kind == SDP_ANY && !other_family) ||
        (!sdp_names(addr, hn, kind, &ss, rw->from.host) && !other_family)) {
        put(o, line.p, line.n);
        return;
    }
    put(o, line.p, at);
    put_str(o, to6 ? "IN IP6 " : "IN IP4 ");
    put_str(o, kind == SDP_ANY ? (to6 ? "::" : "0.0.0.0") : to);
    put(o, addr + hn, an - hn);
}

static void put_sdp(struct out *o, const char *body, size_t n, const struct rtsp_rewrite *rw)
{
    const char *p = body, *end = body + n;
    while (p < end) {
        const char *lf = memchr(p, '\n', (size_t)(end - p));
        const char *le = lf != NULL ? lf : end; /* line without its LF */
        const char *ce = le > p && le[-1] == '\r' ? le - 1 : le;
        struct msg_str line = {p, (size_t)(ce - p)};
        if (line.n > 10 && strncmp(p, "a=control:", 10) == 0) {
            put(o, p, 10);
            put_url(o, (struct msg_str){p + 10, line.n - 10}, rw);
        } else if (line.n > 2 && strncmp(p, "c=", 2) == 0) {
            put_sdp_addr(o, line, 2, rw);
        } else if (line.n > 7 && strncmp(p, "a=rtcp:", 7) == 0) {
            /* RFC 3605: a=rtcp:<port> [IN IP4 <addr>] */
            const char *sp = memchr(p + 7, ' ', line.n - 7);
            if (sp != NULL) {
                put_sdp_addr(o, line, (size_t)(sp + 1 - p), rw);
            } else {
                put(o, line.p, line.n);
            }
        } else if (line.n > 2 && strncmp(p, "o=", 2) == 0) {
            /* o=<username> <sess-id> <sess-version> IN IP4 <addr>: after the third space. */
            size_t at = 2;
            for (int spaces = 0; at < line.n && spaces < 3; at++) {
                spaces += p[at] == ' ';
            }
            put_sdp_addr(o, line, at, rw);
        } else {
            put(o, line.p, line.n);
        }
        put(o, ce, (size_t)(le - ce) + (lf != NULL)); /* the line end as it was */
        p = lf != NULL ? lf + 1 : end;
    }
}

/* ---- whole messages ---- */

static bool is_sdp(const struct msg *m)
{
    const struct msg_str *ct = msg_header(m, "Content-Type");
    return ct != NULL && ct->n >= 15 && strncasecmp(ct->p, "application/sdp", 15) == 0;
}

ssize_t rtsp_rewrite(const char *in, const struct msg *m, const struct rtsp_rewrite *rw,
                     const char *transport, char *out, size_t out_room, const char **why)
{
    struct out o = {out, 0, out_room, false};
    /* An SDP body changes length when rewritten, and its Content-Length comes before it: that
     * header is written as a 9-digit placeholder, fixed once the body is out. */
    const char *body = in + m->head_len;
    bool sdp = m->length > 0 && is_sdp(m);

    /* Start line. */
    const char *eol = memchr(in, '\n', m->head_len);
    const char *sl_end = eol > in && eol[-1] == '\r' ? eol - 1 : eol;
    if (!m->response) {
        put(&o, m->method.p, m->method.n);
        put(&o, " ", 1);
        put_url(&o, m->target, rw);
        put(&o, m->target.p + m->target.n, (size_t)(sl_end - (m->target.p + m->target.n)));
    } else {
        put(&o, in, (size_t)(sl_end - in));
    }
    put(&o, "\r\n", 2);

    size_t length_at = (size_t)-1;
    for (size_t i = 0; i < m->nhdr; i++) {
        const struct msg_header *h = &m->hdr[i];
        if (sdp && length_at != (size_t)-1 && msg_str_ieq(h->name, "Content-Length")) {
            continue; /* a repeated Content-Length (the parser made sure it agreed): one is enough
                       */
        }
        put(&o, h->name.p, h->name.n);
        put(&o, ": ", 2);
        if (msg_str_ieq(h->name, "Content-Base") || msg_str_ieq(h->name, "Content-Location") ||
            msg_str_ieq(h->name, "Location")) {
            put_url(&o, h->value, rw);
        } else if (msg_str_ieq(h->name, "RTP-Info")) {
            put_rtp_info(&o, h->value, rw);
        } else if (transport != NULL && msg_str_ieq(h->name, "Transport")) {
            put_str(&o, transport);
        } else if (sdp && msg_str_ieq(h->name, "Content-Length")) {
            length_at = o.len;
            put(&o, "000000000", 9); /* fixed below, once the body is written */
        } else {
            put(&o, h->value.p, h->value.n);
        }
        put(&o, "\r\n", 2);
    }
    put(&o, "\r\n", 2);
    if (!sdp) {
        put(&o, body, m->length);
    } else {
        size_t body_at = o.len;
        put_sdp(&o, body, m->length, rw);
        if (!o.overflow) {
            /* Write the real length over the placeholder and close the gap. */
            size_t blen = o.len - body_at;
            char num[16];
            struct out t = {num, 0, sizeof(num), false};
            put_uint(&t, blen);
            size_t gap = 9 - t.len;
            memcpy(out + length_at, num, t.len);
            memmove(out + length_at + t.len, out + length_at + 9, o.len - length_at - 9);
            o.len -= gap;
        }
    }
    if (o.overflow) {
        *why = "rewritten message too large";
        return RTSP_ERROR;
    }
    return (ssize_t)o.len;
}

/* ---- Transport ---- */

static bool param_is(struct msg_str p, const char *name, struct msg_str *value)
{
    size_t n = strlen(name);
    if (p.n < n || strncasecmp(p.p, name, n) != 0) {
        return false;
    }
    if (p.n == n) {
        *value = (struct msg_str){p.p + n, 0};
        return true;
    }
    if (p.p[n] != '=') {
        return false;
    }
    *value = (struct msg_str){p.p + n + 1, p.n - n - 1};
    return true;
}

/* "a" or "a-b" port numbers; a single port is RTP and the next one RTCP (RFC 2326 12.39). */
static int parse_ports(struct msg_str v, uint16_t out[2])
{
    unsigned long a = 0, b = 0;
    size_t i = 0, digits = 0;
    for (; i < v.n && v.p[i] >= '0' && v.p[i] <= '9' && digits < 6; i++, digits++) {
        a = a * 10 + (unsigned long)(v.p[i] - '0');
    }
    if (digits == 0 || a == 0 || a > 65535) {
        return -1;
    }
    if (i == v.n) {
        if (a == 65535) {
            return -1;
        }
        out[0] = (uint16_t)a;
        out[1] = (uint16_t)(a + 1);
        return 0;
    }
    if (v.p[i] != '-') {
        return -1;
    }
    digits = 0;
    for (i++; i < v.n && v.p[i] >= '0' && v.p[i] <= '9' && digits < 6; i++, digits++) {
        b = b * 10 + (unsigned long)(v.p[i] - '0');
    }
    if (digits == 0 || i != v.n || b == 0 || b > 65535) {
        return -1;
    }
    out[0] = (uint16_t)a;
    out[1] = (uint16_t)b;
    return 0;
}

int rtsp_transport_next(struct msg_str value, size_t *pos, struct rtsp_transport *t,
                        const char **why)
{
    size_t i = *pos;
    while (i < value.n && (value.p[i] == ' ' || value.p[i] == '\t' || value.p[i] == ',')) {
        i++;
    }
    if (i >= value.n) {
        *pos = i;
        return 0;
    }
    /* The spec ends at a comma outside quotes. */
    size_t s = i;
    bool quoted = false;
    for (; i < value.n && (quoted || value.p[i] != ','); i++) {
        quoted ^= value.p[i] == '"';
    }
    *pos = i;
    memset(t, 0, sizeof(*t));
    t->spec = (struct msg_str){value.p + s, i - s};
    while (t->spec.n > 0 && (t->spec.p[t->spec.n - 1] == ' ' || t->spec.p[t->spec.n - 1] == '\t')) {
        t->spec.n--;
    }
    const char *p = t->spec.p, *end = t->spec.p + t->spec.n;
    const char *semi = memchr(p, ';', t->spec.n);
    struct msg_str proto = {p, (size_t)((semi != NULL ? semi : end) - p)};
    if (msg_str_ieq(proto, "RTP/AVP") || msg_str_ieq(proto, "RTP/AVP/UDP") ||
        msg_str_ieq(proto, "RTP/SAVP") || msg_str_ieq(proto, "RTP/SAVP/UDP") ||
        msg_str_ieq(proto, "RTP/AVPF") || msg_str_ieq(proto, "RTP/AVPF/UDP") ||
        msg_str_ieq(proto, "RTP/SAVPF") || msg_str_ieq(proto, "RTP/SAVPF/UDP")) {
        t->lower = RTSP_UDP;
    } else if (msg_str_ieq(proto, "RTP/AVP/TCP") || msg_str_ieq(proto, "RTP/SAVP/TCP") ||
               msg_str_ieq(proto, "RTP/AVPF/TCP") || msg_str_ieq(proto, "RTP/SAVPF/TCP")) {
        t->lower = RTSP_TCP;
    } else {
        *why = "Transport is not RTP";
        return RTSP_ERROR;
    }
    for (p = semi; p != NULL && p < end;) {
        p++; /* past ';' */
        const char *e = memchr(p, ';', (size_t)(end - p));
        struct msg_str par = {p, (size_t)((e != NULL ? e : end) - p)}, v;
        if (param_is(par, "multicast", &v)) {
            t->multicast = true;
        } else if (param_is(par, "unicast", &v)) {
            t->multicast = false;
        } else if (param_is(par, "client_port", &v)) {
            if (parse_ports(v, t->client_port) != 0) {
                *why = "bad client_port in Transport";
                return RTSP_ERROR;
            }
            t->has_client_port = true;
        } else if (param_is(par, "server_port", &v)) {
            if (parse_ports(v, t->server_port) != 0) {
                *why = "bad server_port in Transport";
                return RTSP_ERROR;
            }
            t->has_server_port = true;
        } else if (param_is(par, "interleaved", &v)) {
            t->has_interleaved = true;
        } else if (param_is(par, "source", &v)) {
            t->source = v;
        } else if (param_is(par, "destination", &v)) {
            t->destination = v;
        } else if (param_is(par, "mode", &v)) {
            /* mode=record or mode="RECORD" (RFC 2326 12.39: the value may be quoted) */
            size_t q = v.n > 0 && v.p[0] == '"';
            t->record = v.n - q >= 6 && strncasecmp(v.p + q, "record", 6) == 0;
        }
        p = e;
    }
    return 1;
}
