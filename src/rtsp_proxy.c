#include "rtsp_proxy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "addr.h"
#include "log.h"
#include "rtsp.h"
#include "rtsp_session.h"

#define MAX_PENDING 16 /* requests awaiting an answer; the client is not read beyond */
#define MAX_STREAMS 8  /* SETUPs over UDP per control connection */
#define STR_(x) #x
#define STR(x) STR_(x)
#define REPLY_MAX 256
#define TRANSPORT_MAX 512
/* RFC 2326 12.37: a session without a timeout= in its Session header times out after 60 s. */
#define SESSION_TIMEOUT_DEFAULT_MS 60000u
#define SESSION_TIMEOUT_MAX_MS 86400000u

enum req_kind { REQ_OTHER, REQ_SETUP, REQ_TEARDOWN };

/* A request the client sent, in order: forwarded (awaiting the device's answer) or answered by
 * the gateway itself (local, with the answer ready). */
struct pending {
    enum req_kind kind;
    bool local;
    char cseq[24];
    struct rtsp_stream *stream; /* a SETUP over UDP */
    uint16_t client_port[2];    /* what the client announced */
    uint16_t out_port;          /* the outside pair the client is told */
    char reply[REPLY_MAX];
    size_t reply_len;
};

struct proxy {
    struct relay_ctx *ctx;
    const struct mapping *map; /* the connection holds the reference */
    struct sockaddr_storage client, client_local, target, target_local;
    char client_str[ADDR_STRLEN];
    struct rtsp_rewrite up;   /* requests: the client's view of the device -> the device */
    struct rtsp_rewrite down; /* answers: the device -> the client's view */
    struct pending q[MAX_PENDING];
    size_t qlen;
    struct rtsp_stream *streams[MAX_STREAMS];
    size_t nstreams;
    bool session;            /* holds a place in max-sessions */
    uint32_t timeout_ms;     /* the session's timeout, as the device announced it */
    uint64_t last_rtsp_ms;   /* the last RTSP message or interleaved frame, either way */
    struct loop_timer timer; /* session timeout, armed while streams exist */
    bool closing;            /* a 400 was queued: the client's input is dropped */
    bool close_now;          /* the 400 went out: end the connection */
    char close_reason[160];
};

static void endpoint_of(const struct sockaddr_storage *ss, struct rtsp_endpoint *ep)
{
    struct sockaddr_storage u = *ss;
    addr_unmap(&u);
    addr_format_ip(&u, ep->host, sizeof(ep->host));
    ep->port = addr_port(ss);
}

static struct map_stats *stats(struct proxy *p)
{
    return &mapping_shard(p->map, p->ctx->worker)->stats;
}

/* ---- streams ---- */

static void stream_end(struct proxy *p, struct rtsp_stream *s, const char *why)
{
    const struct rtsp_stream_stats *st = rtsp_stream_stats(s);
    struct map_stats *ms = stats(p);
    uint64_t down = st->pkts[RTSP_RTP_DOWN] + st->pkts[RTSP_RTCP_DOWN];
    uint64_t up = st->pkts[RTSP_RTP_UP] + st->pkts[RTSP_RTCP_UP];
    STAT_ADD(ms->dgrams_out, down);
    STAT_ADD(ms->dgrams_in, up);
    STAT_ADD(ms->rtp_bytes_out, st->bytes[RTSP_RTP_DOWN] + st->bytes[RTSP_RTCP_DOWN]);
    STAT_ADD(ms->rtp_bytes_in, st->bytes[RTSP_RTP_UP] + st->bytes[RTSP_RTCP_UP]);
    STAT_ADD(ms->rtp_dropped_source, st->dropped_source);
    STAT_ADD(ms->rtp_dropped_send, st->dropped_send);
    log_info("map %s: rtsp %s: stream ended (%s): %llu RTP/RTCP packets to the client, %llu to "
             "the device, %llu dropped from strangers, %llu not sent",
             p->map->conf.name, p->client_str, why, (unsigned long long)down,
             (unsigned long long)up, (unsigned long long)st->dropped_source,
             (unsigned long long)st->dropped_send);
    rtsp_stream_free(s);
    for (size_t i = 0; i < p->nstreams; i++) {
        if (p->streams[i] == s) {
            p->streams[i] = p->streams[--p->nstreams];
            break;
        }
    }
    if (p->nstreams == 0 && p->session) {
        mapping_session_end(p->map);
        p->session = false;
    }
}

static void streams_end(struct proxy *p, const char *why)
{
    while (p->nstreams > 0) {
        stream_end(p, p->streams[p->nstreams - 1], why);
    }
    loop_timer_stop(p->ctx->loop, &p->timer);
}

/* The session timed out when neither RTSP (keep-alives) nor RTP went either way for its
 * timeout: the device has let it go, and its ports go too. The control connection stays. */
static void session_timer(struct loop_timer *t)
{
    struct proxy *p = container_of(t, struct proxy, timer);
    uint64_t last = p->last_rtsp_ms;
    for (size_t i = 0; i < p->nstreams; i++) {
        uint64_t l = rtsp_stream_stats(p->streams[i])->last_ms;
        last = l > last ? l : last;
    }
    if (loop_now(p->ctx->loop) - last >= p->timeout_ms) {
        char why[96];
        snprintf(why, sizeof(why), "no RTSP nor RTP for %ums: session timeout", p->timeout_ms);
        streams_end(p, why);
        return;
    }
    loop_timer_start_at(p->ctx->loop, &p->timer, last + p->timeout_ms);
}

/* The timeout= of a Session header (seconds), if any. */
static void session_timeout(struct proxy *p, const struct rtsp_msg *m)
{
    const struct rtsp_str *v = rtsp_header(m, "Session");
    if (v == NULL) {
        return;
    }
    for (size_t i = 0; i + 8 <= v->n; i++) {
        if (strncasecmp(v->p + i, "timeout=", 8) == 0) {
            uint64_t n = 0;
            size_t j = i + 8;
            for (; j < v->n && v->p[j] >= '0' && v->p[j] <= '9' && n <= SESSION_TIMEOUT_MAX_MS;
                 j++) {
                n = n * 10 + (uint64_t)(v->p[j] - '0');
            }
            n *= 1000;
            if (j > i + 8 && n > 0) {
                p->timeout_ms = (uint32_t)(n < SESSION_TIMEOUT_MAX_MS ? n : SESSION_TIMEOUT_MAX_MS);
            }
            return;
        }
    }
}

/* ---- the queue of requests ---- */

static struct pending *q_push(struct proxy *p, const struct rtsp_msg *m)
{
    if (p->qlen == MAX_PENDING) {
        return NULL;
    }
    struct pending *e = &p->q[p->qlen++];
    memset(e, 0, sizeof(*e));
    const struct rtsp_str *cseq = m != NULL ? rtsp_header(m, "CSeq") : NULL;
    if (cseq != NULL && cseq->n < sizeof(e->cseq)) {
        memcpy(e->cseq, cseq->p, cseq->n);
    }
    return e;
}

static void q_remove(struct proxy *p, size_t i)
{
    memmove(&p->q[i], &p->q[i + 1], (p->qlen - i - 1) * sizeof(p->q[0]));
    p->qlen--;
}

/* The forwarded request an answer is for: by CSeq, else the oldest. */
static ssize_t q_match(struct proxy *p, const struct rtsp_msg *m)
{
    const struct rtsp_str *cseq = rtsp_header(m, "CSeq");
    ssize_t first = -1;
    for (size_t i = 0; i < p->qlen; i++) {
        if (p->q[i].local) {
            continue;
        }
        if (first < 0) {
            first = (ssize_t)i;
        }
        if (cseq != NULL && cseq->n == strlen(p->q[i].cseq) &&
            memcmp(cseq->p, p->q[i].cseq, cseq->n) == 0) {
            return (ssize_t)i;
        }
    }
    return cseq == NULL ? first : -1;
}

/* Queues the gateway's own answer to request m. */
static void reply(struct proxy *p, const struct rtsp_msg *m, int status, const char *text)
{
    struct pending *e = q_push(p, m);
    if (e == NULL) {
        return; /* cannot happen: requests are only read while the queue has room */
    }
    e->local = true;
    int n = snprintf(e->reply, sizeof(e->reply), "RTSP/%d.%d %d %s\r\n", m ? m->major : 1,
                     m ? m->minor : 0, status, text);
    if (e->cseq[0] != '\0') {
        n += snprintf(e->reply + n, sizeof(e->reply) - (size_t)n, "CSeq: %s\r\n", e->cseq);
    }
    n += snprintf(e->reply + n, sizeof(e->reply) - (size_t)n, "Server: portgate\r\n\r\n");
    e->reply_len = (size_t)n < sizeof(e->reply) ? (size_t)n : sizeof(e->reply) - 1;
    STAT_ADD(stats(p)->rtsp_refused, 1);
}

/* Refuses a SETUP: the log line (at most one a second per mapping and worker, like other
 * refusals, since a client can repeat a SETUP at will) and the answer. */
static void refuse_setup(struct proxy *p, const struct rtsp_msg *m, int status, const char *text,
                         const char *why)
{
    uint64_t suppressed;
    if (log_ratelimit_ok(&mapping_shard(p->map, p->ctx->worker)->refuse_log, loop_now(p->ctx->loop),
                         1000, &suppressed)) {
        log_warn("map %s: rtsp %s: SETUP refused: %s (%llu more refusals not logged)",
                 p->map->conf.name, p->client_str, why, (unsigned long long)suppressed);
    }
    reply(p, m, status, text);
}

/* Writes the gateway's answers now at the head of the queue (their turn has come). */
static void flush_local(struct proxy *p, char *out, size_t room, size_t *produced)
{
    while (p->qlen > 0 && p->q[0].local && p->q[0].reply_len <= room - *produced) {
        memcpy(out + *produced, p->q[0].reply, p->q[0].reply_len);
        *produced += p->q[0].reply_len;
        q_remove(p, 0);
    }
    if (p->closing && p->qlen == 0) {
        p->close_now = true;
    }
}

/* ---- Transport ---- */

/* Appends ";param" for each parameter of spec not named in skip (NULL-terminated). */
static void copy_params(struct rtsp_str spec, const char *const *skip, char *buf, size_t room,
                        size_t *len)
{
    const char *p = memchr(spec.p, ';', spec.n), *end = spec.p + spec.n;
    while (p != NULL && p < end) {
        p++;
        const char *e = memchr(p, ';', (size_t)(end - p));
        size_t n = (size_t)((e != NULL ? e : end) - p);
        bool keep = n > 0;
        for (size_t i = 0; keep && skip[i] != NULL; i++) {
            size_t k = strlen(skip[i]);
            if (n >= k && strncasecmp(p, skip[i], k) == 0 && (n == k || p[k] == '=')) {
                keep = false;
            }
        }
        if (keep && *len + n + 1 < room) {
            buf[(*len)++] = ';';
            memcpy(buf + *len, p, n);
            *len += n;
        }
        p = e;
    }
    buf[*len] = '\0';
}

static const char *const udp_skip[] = {"unicast",     "multicast", "client_port", "server_port",
                                       "destination", "source",    NULL};

/* The spec's protocol (up to the first ';'). */
static struct rtsp_str spec_proto(struct rtsp_str spec)
{
    const char *semi = memchr(spec.p, ';', spec.n);
    return (struct rtsp_str){spec.p, semi != NULL ? (size_t)(semi - spec.p) : spec.n};
}

/* ---- requests: client -> device ---- */

/* A SETUP: picks the first transport the gateway can carry and fills *tbuf with what the device
 * is told. Returns 1 (forward), 0 (answered locally), with e's stream set for UDP. */
static int setup_transport(struct proxy *p, const struct rtsp_msg *m, struct pending *slot,
                           char *tbuf, bool *have_transport)
{
    const struct rtsp_str *tv = rtsp_header(m, "Transport");
    *have_transport = false;
    if (tv == NULL) {
        return 1; /* the device will answer what it answers to a SETUP without one */
    }
    size_t pos = 0;
    struct rtsp_transport t;
    const char *why;
    int r;
    bool multicast = false;
    while ((r = rtsp_transport_next(*tv, &pos, &t, &why)) != 0) {
        if (r < 0) {
            continue; /* not RTP: maybe a later alternative is */
        }
        if (t.multicast) {
            multicast = true;
            continue;
        }
        if (t.lower == RTSP_TCP) {
            /* Interleaved: RTP rides on this connection. Only this spec goes on, so the device
             * cannot pick a UDP one whose ports nobody rewrote. */
            snprintf(tbuf, TRANSPORT_MAX, "%.*s", (int)t.spec.n, t.spec.p);
            *have_transport = true;
            return 1;
        }
        if (!t.has_client_port) {
            continue;
        }
        if (p->nstreams == MAX_STREAMS) {
            refuse_setup(p, m, 453, "Not Enough Bandwidth",
                         "this connection already has " STR(MAX_STREAMS) " streams");
            return 0;
        }
        if (!p->session && !mapping_session_begin(p->map)) {
            char limit[64];
            snprintf(limit, sizeof(limit), "max-sessions (%u) reached", p->map->conf.max_sessions);
            refuse_setup(p, m, 453, "Not Enough Bandwidth", limit);
            return 0;
        }
        bool took_session = !p->session;
        p->session = true;
        struct rtsp_stream_conf sc = {.out_local = p->client_local,
                                      .in_local = p->target_local,
                                      .client = p->client,
                                      .client_port = {t.client_port[0], t.client_port[1]},
                                      .device = p->target,
                                      .port_lo = p->map->conf.rtp_lo,
                                      .port_hi = p->map->conf.rtp_hi};
        uint16_t in_port = 0, out_port = 0;
        int err = 0;
        struct rtsp_stream *s = rtsp_stream_new(p->ctx, &sc, &in_port, &out_port, &err);
        if (s == NULL) {
            if (took_session) {
                mapping_session_end(p->map);
                p->session = false;
            }
            refuse_setup(p, m, 453, "Not Enough Bandwidth",
                         err == -EADDRINUSE ? "every pair of rtp-ports is in use" : strerror(-err));
            return 0;
        }
        if (took_session) {
            STAT_ADD(stats(p)->rtsp_sessions, 1);
        }
        p->streams[p->nstreams++] = s;
        if (!loop_timer_armed(&p->timer)) {
            loop_timer_start(p->ctx->loop, &p->timer, p->timeout_ms);
        }
        slot->stream = s;
        slot->client_port[0] = t.client_port[0];
        slot->client_port[1] = t.client_port[1];
        slot->out_port = out_port;
        struct rtsp_str proto = spec_proto(t.spec);
        size_t len = (size_t)snprintf(tbuf, TRANSPORT_MAX, "%.*s;unicast;client_port=%u-%u",
                                      (int)proto.n, proto.p, in_port, in_port + 1);
        copy_params(t.spec, udp_skip, tbuf, TRANSPORT_MAX, &len);
        *have_transport = true;
        return 1;
    }
    refuse_setup(p, m, 461, "Unsupported Transport",
                 multicast ? "multicast transports are not relayed"
                           : "no RTP transport it can carry");
    return 0;
}

/* One request. Returns the bytes written to out, 0 when the gateway answers it itself, or -2
 * when out has no room (nothing changed). */
static ssize_t request(struct proxy *p, const char *msg, const struct rtsp_msg *m, char *out,
                       size_t room)
{
    struct rtsp_endpoint view;
    if (rtsp_url_endpoint(m->uri, &view) == 0) {
        /* The address the client uses for the device: answers name it. */
        p->up.from = view;
        p->down.to = view;
    }
    struct pending slot = {0};
    slot.kind = rtsp_str_ieq(m->method, "SETUP")      ? REQ_SETUP
                : rtsp_str_ieq(m->method, "TEARDOWN") ? REQ_TEARDOWN
                                                      : REQ_OTHER;
    char tbuf[TRANSPORT_MAX];
    bool have_transport = false;
    if (slot.kind == REQ_SETUP && setup_transport(p, m, &slot, tbuf, &have_transport) == 0) {
        return 0;
    }
    const char *why;
    ssize_t n = rtsp_rewrite(msg, m, &p->up, have_transport ? tbuf : NULL, out, room, &why);
    if (n < 0) {
        if (slot.stream != NULL) {
            stream_end(p, slot.stream, "no room to forward the SETUP");
        }
        return -2;
    }
    struct pending *e = q_push(p, m);
    slot.local = false;
    memcpy(slot.cseq, e->cseq, sizeof(slot.cseq));
    *e = slot;
    return n;
}

static void bad_request(struct proxy *p, const char *why)
{
    log_warn("map %s: rtsp %s: malformed request (%s): answering 400 and closing",
             p->map->conf.name, p->client_str, why);
    snprintf(p->close_reason, sizeof(p->close_reason), "the client sent malformed RTSP (%s)", why);
    p->closing = true;
    struct pending *e = q_push(p, NULL);
    if (e != NULL) {
        e->local = true;
        e->reply_len = (size_t)snprintf(e->reply, sizeof(e->reply),
                                        "RTSP/1.0 400 Bad Request\r\nServer: portgate\r\n\r\n");
        STAT_ADD(stats(p)->rtsp_refused, 1);
    }
}

/* ---- answers: device -> client ---- */

/* What the client is told of the stream the device set up, into tbuf. Returns false if the
 * device did not set up RTP over UDP (it chose interleaved, or answered nonsense). */
static bool answer_transport(struct proxy *p, const struct rtsp_msg *m, const struct pending *e,
                             char *tbuf)
{
    const struct rtsp_str *tv = rtsp_header(m, "Transport");
    size_t pos = 0;
    struct rtsp_transport t;
    const char *why;
    if (tv == NULL || rtsp_transport_next(*tv, &pos, &t, &why) != 1 || t.lower != RTSP_UDP ||
        !t.has_server_port) {
        return false;
    }
    rtsp_stream_set_server(e->stream, t.server_port);
    session_timeout(p, m);
    loop_timer_start(p->ctx->loop, &p->timer, p->timeout_ms); /* from the device's timeout */
    struct rtsp_str proto = spec_proto(t.spec);
    size_t len = (size_t)snprintf(
        tbuf, TRANSPORT_MAX, "%.*s;unicast;client_port=%u-%u;server_port=%u-%u", (int)proto.n,
        proto.p, e->client_port[0], e->client_port[1], e->out_port, e->out_port + 1);
    copy_params(t.spec, udp_skip, tbuf, TRANSPORT_MAX, &len);
    if (t.source.n > 0 && len < TRANSPORT_MAX) {
        char ip[ADDR_STRLEN];
        struct sockaddr_storage u = p->client_local;
        addr_unmap(&u);
        snprintf(tbuf + len, TRANSPORT_MAX - len, ";source=%s", addr_format_ip(&u, ip, sizeof(ip)));
    }
    return true;
}

/* One answer. Returns the bytes written, or -2 when out has no room (nothing changed). */
static ssize_t answer(struct proxy *p, const char *msg, const struct rtsp_msg *m, char *out,
                      size_t room)
{
    ssize_t i = q_match(p, m);
    struct pending *e = i >= 0 ? &p->q[i] : NULL;
    char tbuf[TRANSPORT_MAX];
    bool ok = m->status >= 200 && m->status < 300;
    bool udp = e != NULL && e->stream != NULL && ok && answer_transport(p, m, e, tbuf);
    const char *why;
    ssize_t n = rtsp_rewrite(msg, m, &p->down, udp ? tbuf : NULL, out, room, &why);
    if (n < 0) {
        return -2;
    }
    if (e != NULL) {
        if (e->stream != NULL && !udp) {
            char what[64];
            snprintf(what, sizeof(what), "the device answered the SETUP with %d%s", m->status,
                     ok ? " but not with RTP over UDP" : "");
            stream_end(p, e->stream, what);
        }
        if (e->kind == REQ_TEARDOWN && ok) {
            streams_end(p, "TEARDOWN");
        }
        q_remove(p, (size_t)i);
    }
    return n;
}

/* ---- the filter ---- */

static void *proxy_open(const struct tcp_filter_conn *fc)
{
    struct proxy *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        return NULL;
    }
    p->ctx = fc->ctx;
    p->map = fc->map;
    p->client = fc->client;
    p->client_local = fc->client_local;
    p->target = fc->target;
    p->target_local = fc->target_local;
    addr_format(&fc->client, p->client_str, sizeof(p->client_str));
    struct rtsp_endpoint device, view;
    endpoint_of(&fc->target, &device);
    endpoint_of(&fc->client_local, &view);
    p->up.from = view;
    p->up.to = device;
    p->down.from = device;
    p->down.to = view;
    snprintf(p->down.to_ip, sizeof(p->down.to_ip), "%s", view.host);
    p->timeout_ms = SESSION_TIMEOUT_DEFAULT_MS;
    p->last_rtsp_ms = loop_now(p->ctx->loop);
    loop_timer_init(&p->timer, session_timer);
    return p;
}

/* Copies an interleaved frame if whole and if it fits. Returns its length, 0 to wait. */
static size_t frame(const char *in, size_t len, char *out, size_t room)
{
    ssize_t n = rtsp_frame_len(in, len);
    if (n < 0 || (size_t)n > room) {
        return 0;
    }
    memcpy(out, in, (size_t)n);
    return (size_t)n;
}

static ssize_t proxy_data(void *st, enum tcp_dir dir, const char *in, size_t len, bool eof,
                          char *out, size_t room, size_t *out_len, const char **reason)
{
    (void)eof;
    struct proxy *p = st;
    size_t used = 0, produced = 0;
    if (dir == TCP_DOWN) {
        if (p->close_now) {
            *reason = p->close_reason;
            return -1;
        }
        flush_local(p, out, room, &produced);
    } else if (p->closing) {
        *out_len = 0;
        return (ssize_t)len; /* after a malformed request, the rest is not RTSP either */
    }
    while (used < len) {
        const char *msg = in + used;
        size_t left = len - used;
        if (msg[0] == '$') {
            size_t n = frame(msg, left, out + produced, room - produced);
            if (n == 0) {
                break;
            }
            used += n;
            produced += n;
            p->last_rtsp_ms = loop_now(p->ctx->loop);
            continue;
        }
        struct rtsp_msg m;
        const char *why;
        ssize_t head = rtsp_parse(msg, left, &m, &why);
        if (head == RTSP_PARTIAL || (head > 0 && (size_t)head + m.body_len > left)) {
            break;
        }
        if (head == RTSP_ERROR) {
            if (dir == TCP_DOWN) {
                snprintf(p->close_reason, sizeof(p->close_reason),
                         "the device sent malformed RTSP (%s)", why);
                *reason = p->close_reason;
                return -1;
            }
            bad_request(p, why);
            used = len;
            break;
        }
        ssize_t n;
        if (dir == TCP_UP && !m.response) {
            if (p->qlen == MAX_PENDING) {
                break; /* wait for answers before reading more requests */
            }
            n = request(p, msg, &m, out + produced, room - produced);
        } else if (dir == TCP_DOWN && m.response) {
            n = answer(p, msg, &m, out + produced, room - produced);
        } else {
            /* A request of the device to the client (RTSP allows them), or the client's answer
             * to one: rewritten, not matched. */
            n = rtsp_rewrite(msg, &m, dir == TCP_UP ? &p->up : &p->down, NULL, out + produced,
                             room - produced, &why);
            n = n < 0 ? -2 : n;
        }
        if (n == -2) {
            if (produced == 0) {
                *reason = "a rewritten message does not fit in a buffer";
                return -1;
            }
            break;
        }
        produced += (size_t)n;
        used += (size_t)head + m.body_len;
        p->last_rtsp_ms = loop_now(p->ctx->loop);
        if (dir == TCP_DOWN) {
            flush_local(p, out, room, &produced);
        }
    }
    *out_len = produced;
    return (ssize_t)used;
}

static bool proxy_pending(void *st, enum tcp_dir dir)
{
    struct proxy *p = st;
    return dir == TCP_DOWN && (p->close_now || (p->qlen > 0 && p->q[0].local));
}

static void proxy_close(void *st)
{
    struct proxy *p = st;
    streams_end(p, "the control connection closed");
    loop_timer_stop(p->ctx->loop, &p->timer);
    free(p);
}

const struct tcp_filter rtsp_proxy_filter = {"rtsp", proxy_open, proxy_data, proxy_pending,
                                             proxy_close};
