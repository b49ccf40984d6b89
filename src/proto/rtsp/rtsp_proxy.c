#include "proto/rtsp/rtsp_proxy.h"

#include <assert.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/login.h"
#include "core/addr.h"
#include "core/log.h"
#include "message/digest.h"
#include "proto/rtsp/rtsp.h"
#include "proto/rtsp/rtsp_proto.h"
#include "proto/rtsp/rtsp_stream.h"

#define MAX_PENDING 16 /* requests awaiting an answer; the client is not read beyond */
#define MAX_STREAMS 8  /* SETUPs over UDP in one session */
#define MAX_HELD 8     /* sessions one control connection holds */
#define MAX_HOLDERS 4  /* control connections holding one session */
#define SESSION_ID_MAX 64
#define CSEQ_MAX 32 /* RFC 7826 18.20: 1*9DIGIT; longer requests are refused (400) */
#define STR_(x) #x
#define STR(x) STR_(x)
/* The gateway's own answer: with a line of text for a 502, or a 401's challenges. */
#define REPLY_MAX 512
#define TRANSPORT_MAX 512
/* RFC 2326 12.37: a session without a timeout= in its Session header times out after 60 s. */
#define SESSION_TIMEOUT_DEFAULT_MS 60000u
#define SESSION_TIMEOUT_MAX_MS 86400000u
/* device-auth: the requests kept to be sent again if the device challenges them, in all, per
 * connection. A request larger than that is sent, not kept: a challenge to it gets 502. */
#define AUTH_COPY_MAX 16384
#define AUTH_LINE_MAX (sizeof("Authorization: \r\n") + DIGEST_CRED_MAX)
#define METHOD_MAX 16         /* of a request's method, for the log */
#define GATE_POLL_MS 5        /* how often a connection looks whether its login is checked */
#define GATE_RECHECK_MS 2000u /* and whether its session still lives, once logged in */

enum req_kind { REQ_OTHER, REQ_SETUP, REQ_TEARDOWN };

/* A request the client sent, in order: forwarded (awaiting the device's answer) or answered by
 * the gateway itself (local, with the answer ready). */
struct pending {
    enum req_kind kind;
    bool local;
    bool reserved;           /* a SETUP for a new session: it holds a place in max-sessions */
    char cseq[CSEQ_MAX + 1]; /* to match the answer */
    char session[SESSION_ID_MAX + 1]; /* the request's Session id, "" without one */
    struct rtsp_stream *stream;       /* a SETUP over UDP: owned here until the answer */
    uint16_t client_port[2];          /* what the client announced */
    uint16_t out_port;                /* the outside pair the client is told */
    char method[METHOD_MAX];          /* for the log, cut short */
    char reply[REPLY_MAX];
    size_t reply_len;
    /* device-auth: the request as the device got it, without credentials, kept until its answer
     * (NULL: too large to keep); the same with the credentials that answer the device's
     * challenge, waiting to be sent again (NULL: none); how often it carried credentials, and
     * whether a stale nonce was answered already. */
    char *sent, *again;
    size_t sent_len, again_len;
    unsigned tries;
    bool stale_answered;
};

struct proxy;

/*
 * A session of the device (RFC 2326 3.4), as far as the gateway relays it over UDP: the streams
 * its SETUPs made, held by the control connections that use it. RFC 2326 lets a session span
 * connections (some players send keep-alives or TEARDOWN on a new one), so a later connection
 * from the same client address naming the session's id holds it too, and when the connection
 * that set it up closes, the session goes on while another holds it. It ends with a TEARDOWN's
 * answer on any connection, when its last holder closes, or when neither RTSP on a holder nor
 * RTP has gone either way for its timeout. The worker lists its sessions (struct
 * rtsp_proxy_worker), and the connections of an rtsp mapping all run on one worker (rtsp_proto.c).
 */
struct rtsp_proxy_session {
    struct rtsp_proxy_session *next; /* the worker's list */
    struct rtsp_proxy_worker *w;
    struct relay_ctx *ctx;
    const struct mapping_state *state; /* its mapping, across reloads */
    struct sockaddr_storage client;    /* the client's address, unmapped (the port is not part) */
    char client_str[ADDR_STRLEN];
    char id[SESSION_ID_MAX + 1]; /* the device's Session id; "" if its answer named none */
    struct proxy *holders[MAX_HOLDERS];
    size_t nholders;
    struct rtsp_stream *streams[MAX_STREAMS];
    size_t nstreams;
    uint32_t timeout_ms; /* as the device announced it */
    uint64_t start_ms;
    struct loop_timer timer;
};

/* The sessions of one worker's rtsp connections. */
struct rtsp_proxy_worker {
    struct rtsp_proxy_session *sessions;
};

struct proxy {
    struct relay_ctx *ctx;
    struct rtsp_proxy_worker *w;
    const struct mapping *map; /* the connection holds the reference */
    struct sockaddr_storage client, client_local, target, target_local;
    struct sockaddr_storage client_ip; /* the client's address unmapped, as sessions keep it */
    char client_str[ADDR_STRLEN];
    struct rtsp_rewrite up;   /* requests: the client's view of the device -> the device */
    struct rtsp_rewrite down; /* answers: the device -> the client's view */
    struct pending q[MAX_PENDING];
    size_t qlen;
    struct rtsp_proxy_session *held[MAX_HELD];
    size_t nheld;
    uint64_t last_rtsp_ms; /* the last RTSP message or interleaved frame, either way */
    size_t frame_left[2];  /* by direction: bytes of an interleaved frame still to pass on */
    bool interleaved;      /* a SETUP for RTP over this connection went to the device */
    bool closing;          /* a 400 was queued: the client's input is dropped */
    bool close_now;        /* the 400 went out: end the connection */
    char close_reason[160];
    /* device-auth (NULL: none): the device's challenge once one came, answered from then on in
     * every request (nc: the uses of its nonce); the bytes of the requests kept (struct
     * pending: sent); whether the client's next request waits for an answer; how many
     * requests wait to be sent again, and the timer that runs the relay to send them. */
    const struct digest_login *login;
    struct tcp_conn *conn;
    bool auth_known;
    struct digest_challenge challenge;
    uint32_t nc;
    size_t copy_bytes;
    bool auth_held;
    size_t nagain;
    struct loop_timer kick;
    /* auth = login (NULL: none): the player's login to the gateway (struct gate). */
    struct gate *gate;
    bool gate_held; /* the client's next request waits for its login to be checked */
};

/* auth = login: the connection's login, being checked (job) or made (session, until the
 * connection closes). */
struct gate {
    struct login_job *job;
    struct loop_timer poll; /* the job's result, then the session's life */
    struct proxy *owner;
    char session[SESSION_IDLEN + 1]; /* "" until a login */
    char user[USERS_NAMELEN];
    char client[ADDR_STRLEN]; /* the client's address, without its port: regulation's key */
    unsigned char key[LOGIN_CONN_KEY]; /* the connection's, in its Digest nonces */
};

static void endpoint_of(const struct sockaddr_storage *ss, struct rtsp_endpoint *ep)
{
    struct sockaddr_storage u = *ss;
    addr_unmap(&u);
    addr_format_ip(&u, ep->host, sizeof(ep->host));
    ep->port = addr_port(ss);
}

static struct mapping_stats *stats_of(const struct mapping *map, const struct relay_ctx *ctx)
{
    return &mapping_shard(map, ctx->worker)->stats;
}

static struct mapping_stats *stats(struct proxy *p)
{
    return stats_of(p->map, p->ctx);
}

/* ---- streams ---- */

/* Adds a stream's figures to the mapping's counters, logs its end and frees it. */
static void stream_end(const struct mapping *map, struct relay_ctx *ctx, const char *client,
                       struct rtsp_stream *s, const char *why)
{
    const struct rtsp_stream_stats *st = rtsp_stream_stats(s);
    struct mapping_stats *ms = stats_of(map, ctx);
    uint64_t down = st->pkts[RTSP_STREAM_RTP_DOWN] + st->pkts[RTSP_STREAM_RTCP_DOWN];
    uint64_t up = st->pkts[RTSP_STREAM_RTP_UP] + st->pkts[RTSP_STREAM_RTCP_UP];
    mapping_stat_add(&ms->dgrams_out, down);
    mapping_stat_add(&ms->dgrams_in, up);
    mapping_stat_add(&ms->proto[RTSP_STAT_RTP_BYTES_OUT],
                     st->bytes[RTSP_STREAM_RTP_DOWN] + st->bytes[RTSP_STREAM_RTCP_DOWN]);
    mapping_stat_add(&ms->proto[RTSP_STAT_RTP_BYTES_IN],
                     st->bytes[RTSP_STREAM_RTP_UP] + st->bytes[RTSP_STREAM_RTCP_UP]);
    mapping_stat_add(&ms->proto[RTSP_STAT_RTP_DROPPED_SOURCE], st->dropped_source);
    mapping_stat_add(&ms->proto[RTSP_STAT_RTP_DROPPED_SEND], st->dropped_send);
    log_info("map %s: rtsp %s: stream ended (%s): %llu RTP/RTCP packets to the client, %llu to "
             "the device, %llu dropped from strangers, %llu not sent",
             map->conf.name, client, why, (unsigned long long)down, (unsigned long long)up,
             (unsigned long long)st->dropped_source, (unsigned long long)st->dropped_send);
    rtsp_stream_free(s);
}

/* A pending SETUP's stream and place, given back when it will not join a session. */
static void pending_release(struct proxy *p, struct pending *e, const char *why)
{
    if (e->stream != NULL) {
        stream_end(p->map, p->ctx, p->client_str, e->stream, why);
        e->stream = NULL;
    }
    if (e->reserved) {
        mapping_session_end(p->map);
        e->reserved = false;
    }
}

/* ---- sessions ---- */

/* The Session id of a message (up to its parameters), into id. Returns false without one, or
 * when it is longer than the gateway tracks (the message still goes on). */
static bool session_id(const struct msg *m, char id[SESSION_ID_MAX + 1])
{
    const struct msg_str *v = msg_header(m, "Session");
    id[0] = '\0';
    if (v == NULL) {
        return false;
    }
    size_t n = 0;
    while (n < v->n && v->p[n] != ';' && v->p[n] != ' ' && v->p[n] != '\t') {
        n++;
    }
    if (n == 0 || n > SESSION_ID_MAX) {
        return false;
    }
    memcpy(id, v->p, n);
    id[n] = '\0';
    return true;
}

/* The timeout= of a Session header in milliseconds, or 0 without one. */
static uint32_t session_timeout(const struct msg *m)
{
    const struct msg_str *v = msg_header(m, "Session");
    for (size_t i = 0; v != NULL && i + 8 <= v->n; i++) {
        if (strncasecmp(v->p + i, "timeout=", 8) == 0) {
            uint64_t n = 0;
            size_t j = i + 8;
            for (; j < v->n && v->p[j] >= '0' && v->p[j] <= '9' && n <= SESSION_TIMEOUT_MAX_MS;
                 j++) {
                n = n * 10 + (uint64_t)(v->p[j] - '0');
            }
            n *= 1000;
            return j > i + 8 ? (uint32_t)(n < SESSION_TIMEOUT_MAX_MS ? n : SESSION_TIMEOUT_MAX_MS)
                             : 0;
        }
    }
    return 0;
}

/* The session of this mapping and client address with that id, or NULL. */
static struct rtsp_proxy_session *session_find(const struct proxy *p, const char *id)
{
    if (id[0] == '\0') {
        return NULL;
    }
    for (struct rtsp_proxy_session *s = p->w->sessions; s != NULL; s = s->next) {
        if (s->state == p->map->state && strcmp(s->id, id) == 0 &&
            addr_ip_equal(&s->client, &p->client_ip)) {
            return s;
        }
    }
    return NULL;
}

static bool session_held_by(const struct rtsp_proxy_session *s, const struct proxy *p)
{
    for (size_t i = 0; i < s->nholders; i++) {
        if (s->holders[i] == p) {
            return true;
        }
    }
    return false;
}

/* Makes p a holder of s. Returns false when either has no room left. */
static bool session_hold(struct rtsp_proxy_session *s, struct proxy *p)
{
    if (session_held_by(s, p)) {
        return true;
    }
    if (s->nholders == MAX_HOLDERS || p->nheld == MAX_HELD) {
        return false;
    }
    s->holders[s->nholders++] = p;
    p->held[p->nheld++] = s;
    return true;
}

/* Undoes one link between a session and a holder; both sides keep no order. */
static void unlink_held(struct proxy *p, const struct rtsp_proxy_session *s)
{
    for (size_t i = 0; i < p->nheld; i++) {
        if (p->held[i] == s) {
            p->held[i] = p->held[--p->nheld];
            return;
        }
    }
}

static void unlink_holder(struct rtsp_proxy_session *s, const struct proxy *p)
{
    for (size_t i = 0; i < s->nholders; i++) {
        if (s->holders[i] == p) {
            s->holders[i] = s->holders[--s->nholders];
            return;
        }
    }
}

/* Ends s: its streams, its place in max-sessions, its holders' references. map is the mapping
 * of a holder (for the counters and the log). */
static void session_end(struct rtsp_proxy_session *s, const struct mapping *map, const char *why)
{
    for (size_t i = 0; i < s->nstreams; i++) {
        stream_end(map, s->ctx, s->client_str, s->streams[i], why);
    }
    for (size_t i = 0; i < s->nholders; i++) {
        unlink_held(s->holders[i], s);
    }
    struct rtsp_proxy_session **pp = &s->w->sessions;
    while (*pp != s) {
        pp = &(*pp)->next;
    }
    *pp = s->next;
    loop_timer_stop(s->ctx->loop, &s->timer);
    mapping_session_end(map);
    free(s);
}

/* p lets go of s; the last holder to go ends it. */
static void session_release(struct rtsp_proxy_session *s, struct proxy *p)
{
    if (s->nholders == 1) {
        session_end(s, p->map, "the control connection closed");
        return;
    }
    unlink_holder(s, p);
    unlink_held(p, s);
    log_info("map %s: rtsp %s: session %s goes on, held by another connection of the client",
             p->map->conf.name, p->client_str, s->id);
}

/* The session timed out when neither RTSP (keep-alives, on any holder) nor RTP went either way
 * for its timeout: the device has let it go, and its ports go too. The connections stay. */
static void session_timer(struct loop_timer *t)
{
    struct rtsp_proxy_session *s = container_of(t, struct rtsp_proxy_session, timer);
    uint64_t last = 0;
    for (size_t i = 0; i < s->nholders; i++) {
        last = s->holders[i]->last_rtsp_ms > last ? s->holders[i]->last_rtsp_ms : last;
    }
    for (size_t i = 0; i < s->nstreams; i++) {
        uint64_t l = rtsp_stream_stats(s->streams[i])->last_ms;
        last = l > last ? l : last;
    }
    if (loop_now(s->ctx->loop) - last >= s->timeout_ms) {
        char why[96];
        snprintf(why, sizeof(why), "no RTSP nor RTP for %ums: session timeout", s->timeout_ms);
        session_end(s, s->holders[0]->map, why);
        return;
    }
    loop_timer_start_at(s->ctx->loop, &s->timer, last + s->timeout_ms);
}

/* Sets up s (zeroed) as a new session of p's client, held by p, and lists it. Its place in
 * max-sessions was taken by the caller. */
static struct rtsp_proxy_session *session_new(struct proxy *p, struct rtsp_proxy_session *s,
                                              const char *id)
{
    s->w = p->w;
    s->ctx = p->ctx;
    s->state = p->map->state;
    s->client = p->client_ip;
    memcpy(s->client_str, p->client_str, sizeof(s->client_str));
    snprintf(s->id, sizeof(s->id), "%s", id);
    s->timeout_ms = SESSION_TIMEOUT_DEFAULT_MS;
    s->start_ms = loop_now(s->ctx->loop);
    loop_timer_init(&s->timer, session_timer);
    s->holders[s->nholders++] = p;
    p->held[p->nheld++] = s;
    s->next = p->w->sessions;
    p->w->sessions = s;
    mapping_stat_add(&stats(p)->proto[RTSP_STAT_SESSIONS], 1);
    return s;
}

/* ---- the queue of requests ---- */

static struct pending *q_push(struct proxy *p, const struct msg *m)
{
    if (p->qlen == MAX_PENDING) {
        return NULL;
    }
    struct pending *e = &p->q[p->qlen++];
    memset(e, 0, sizeof(*e));
    const struct msg_str *cseq = m != NULL ? msg_header(m, "CSeq") : NULL;
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
static ssize_t q_match(struct proxy *p, const struct msg *m)
{
    const struct msg_str *cseq = msg_header(m, "CSeq");
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

/* Formats the gateway's own answer into buf (room > 0), with the header lines extra (each
 * ending in CRLF; NULL: none) and body as a line of text when it is not NULL and fits. Returns
 * its length, truncated to fit: one snprintf, so a truncation cannot turn into a write past the
 * end. */
static size_t format_reply(char *buf, size_t room, int major, int minor, int status,
                           const char *text, const char *cseq, const char *extra, const char *body)
{
    bool has_cseq = cseq[0] != '\0';
    extra = extra != NULL ? extra : "";
    int n = -1;
    if (body != NULL) {
        n = snprintf(buf, room,
                     "RTSP/%d.%d %d %s\r\n%s%s%s%sServer: portgate\r\nContent-Type: "
                     "text/plain\r\nContent-Length: %zu\r\n\r\n%s\n",
                     major, minor, status, text, has_cseq ? "CSeq: " : "", cseq,
                     has_cseq ? "\r\n" : "", extra, strlen(body) + 1, body);
    }
    if (n < 0 || (size_t)n >= room) {
        n = snprintf(buf, room, "RTSP/%d.%d %d %s\r\n%s%s%s%sServer: portgate\r\n\r\n", major,
                     minor, status, text, has_cseq ? "CSeq: " : "", cseq, has_cseq ? "\r\n" : "",
                     extra);
    }
    if (n < 0) {
        buf[0] = '\0';
        return 0;
    }
    return (size_t)n < room ? (size_t)n : room - 1;
}

/* Makes e the gateway's own answer, which goes out in its turn. */
static void make_local(struct pending *e, int major, int minor, int status, const char *text,
                       const char *extra, const char *body)
{
    e->local = true;
    /* A copy: GCC's -Wrestrict cannot tell the two fields of *e apart once this is inlined. */
    char cseq[sizeof(e->cseq)];
    memcpy(cseq, e->cseq, sizeof(cseq));
    e->reply_len =
        format_reply(e->reply, sizeof(e->reply), major, minor, status, text, cseq, extra, body);
}

/* Queues the gateway's own answer to request m, with the header lines extra (NULL: none), and
 * counts it under stat (RTSP_STAT_COUNT: under none). */
static void reply_with(struct proxy *p, const struct msg *m, int status, const char *text,
                       const char *extra, const char *body, enum rtsp_proto_stat stat)
{
    struct pending *e = q_push(p, m);
    if (e == NULL) {
        return; /* cannot happen: requests are only read while the queue has room */
    }
    make_local(e, m ? m->major : 1, m ? m->minor : 0, status, text, extra, body);
    if (stat != RTSP_STAT_COUNT) {
        mapping_stat_add(&stats(p)->proto[stat], 1);
    }
}

static void reply(struct proxy *p, const struct msg *m, int status, const char *text,
                  const char *body, enum rtsp_proto_stat stat)
{
    reply_with(p, m, status, text, NULL, body, stat);
}

/* Logs a refusal ("SETUP refused: why"): at most one line a second per mapping and worker, like
 * other refusals, since a client can repeat a request at will. */
static void log_refusal(struct proxy *p, const char *what, const char *why)
{
    uint64_t suppressed;
    if (mapping_log_ok(p->map, p->ctx->worker, MAPPING_LOG_PROTO, loop_now(p->ctx->loop),
                       &suppressed)) {
        log_warn("map %s: rtsp %s: %s: %s (%llu more refusals not logged)", p->map->conf.name,
                 p->client_str, what, why, (unsigned long long)suppressed);
    }
}

/* Refuses a SETUP: the log line and the answer. */
static void refuse_setup(struct proxy *p, const struct msg *m, int status, const char *text,
                         const char *why)
{
    log_refusal(p, "SETUP refused", why);
    reply(p, m, status, text, NULL, RTSP_STAT_REFUSED);
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

/* ---- device-auth: the device's login, answered by the gateway ---- */

/*
 * With device-auth, the device's challenges are the gateway's to answer: a client's own
 * Authorization never reaches the device, and a 401 never reaches the client (who would then
 * try passwords on the device). Each request goes to the device without credentials until the
 * device first challenges one; that request is sent again, the same CSeq (RFC 2326 12.17: a
 * request sent again keeps its sequence number, and the client's answer matches it), with the
 * Authorization that answers the challenge, and every later request carries one for the same
 * challenge (Digest: the nonce's next nc). So that a request can be sent again, a copy of it as
 * the device got it is kept until its answer (AUTH_COPY_MAX in all); until the device's first
 * challenge is known, one request goes at a time, so that the one sent again goes before the
 * next. A stale nonce is answered once more (RFC 7616 3.3); any other 401 to a request that
 * carried credentials means the device does not take them: the client gets 502 with the
 * reason. A 401 never changes the device's state, so a request sent again is not done twice.
 */

/* Forgets e's copies. */
static void copy_drop(struct proxy *p, struct pending *e)
{
    if (e->sent != NULL) {
        p->copy_bytes -= e->sent_len;
        free(e->sent);
        e->sent = NULL;
    }
    if (e->again != NULL) {
        p->nagain--;
        free(e->again);
        e->again = NULL;
    }
}

/* Whether the client's next request (about size bytes) waits for the device's answers: until
 * the device's first challenge is known, while any request is at the device; then while the
 * copies kept would exceed AUTH_COPY_MAX. */
static bool auth_waits(const struct proxy *p, size_t size)
{
    if (p->login == NULL) {
        return false;
    }
    if (!p->auth_known) {
        for (size_t i = 0; i < p->qlen; i++) {
            if (!p->q[i].local) {
                return true;
            }
        }
        return false;
    }
    return p->copy_bytes > 0 && p->copy_bytes + size > AUTH_COPY_MAX;
}

/* Removes every Authorization header from the request at buf (n bytes, as the gateway wrote
 * it). Returns the new length, or 0 if it does not parse (cannot happen). */
static size_t strip_authorization(char *buf, size_t n)
{
    struct msg m;
    const char *why;
    ssize_t head = rtsp_parse(buf, n, &m, &why);
    if (head <= 0) {
        return 0;
    }
    /* From the last, so that the slices of the earlier ones stay where they are. */
    for (size_t k = m.nhdr; k-- > 0;) {
        if (!msg_str_ieq(m.hdr[k].name, "Authorization")) {
            continue;
        }
        char *start = buf + (m.hdr[k].name.p - buf);
        const char *nl = memchr(start, '\n', (size_t)(buf + head - start));
        assert(nl != NULL); /* a header line ends before the head does */
        size_t cut = (size_t)(nl + 1 - start);
        memmove(start, start + cut, n - (size_t)(start + cut - buf));
        n -= cut;
        head -= (ssize_t)cut;
    }
    return n;
}

/*
 * The line "Authorization: ...\r\n" that answers challenge ch as login for the request at msg
 * (n bytes, without one), as the nc-th use of its nonce, into line; *pos is where it goes: before
 * the empty line that ends the head. Returns its length, or 0 when the credentials do not fit
 * DIGEST_CRED_MAX (a challenge and a URL too long together).
 */
static size_t auth_line(const struct digest_challenge *ch, const struct digest_login *login,
                        const char *msg, size_t n, uint32_t nc, char line[AUTH_LINE_MAX],
                        size_t *pos)
{
    struct msg m;
    const char *why;
    ssize_t head = rtsp_parse(msg, n, &m, &why);
    if (head <= 0) {
        return 0;
    }
    *pos = (size_t)head - (head >= 2 && msg[head - 2] == '\r' ? 2 : 1);
    static const char name[] = "Authorization: ";
    memcpy(line, name, sizeof(name) - 1);
    size_t c =
        digest_credentials(ch, login->user, login->password, m.method.p, m.method.n, m.target.p,
                           m.target.n, nc, line + sizeof(name) - 1, DIGEST_CRED_MAX);
    if (c == 0) {
        return 0;
    }
    memcpy(line + sizeof(name) - 1 + c, "\r\n", 2);
    return sizeof(name) - 1 + c + 2;
}

static const char auth_too_long[] =
    "the device's challenge and the request's URL are too long for device-auth's credentials";

/*
 * device-auth on a request the filter has written to buf (n bytes, room in all): the client's
 * Authorization removed, a copy of what is left into *copy (*copy_len bytes; NULL when it does
 * not fit AUTH_COPY_MAX, or memory is short), and the gateway's credentials added once it knows
 * the device's challenge. Returns the new length, -2 when room is short (nothing kept), or -1
 * when no credentials can be made for it.
 */
static ssize_t auth_request(struct proxy *p, char *buf, size_t n, size_t room, char **copy,
                            size_t *copy_len)
{
    *copy = NULL;
    n = strip_authorization(buf, n);
    if (n == 0) {
        return -1;
    }
    char line[AUTH_LINE_MAX];
    size_t pos = 0, ln = 0;
    if (p->auth_known) {
        ln = auth_line(&p->challenge, p->login, buf, n, p->nc + 1, line, &pos);
        if (ln == 0) {
            return -1;
        }
        if (n + ln > room) {
            return -2;
        }
    }
    if (n <= AUTH_COPY_MAX - p->copy_bytes && (*copy = malloc(n)) != NULL) {
        memcpy(*copy, buf, n);
        *copy_len = n;
        p->copy_bytes += n;
    }
    if (ln > 0) {
        memmove(buf + pos + ln, buf + pos, n - pos);
        memcpy(buf + pos, line, ln);
        n += ln;
        p->nc++;
    }
    return (ssize_t)n;
}

/* The gateway answers e 502 in its turn, with why, instead of the device's 401 (m). The log line
 * names the user when the device refused the credentials, never the password. */
static void auth_refuse(struct proxy *p, struct pending *e, const struct msg *m, const char *why,
                        bool refused)
{
    char what[METHOD_MAX + 24], line[320];
    snprintf(what, sizeof(what), "%s answered 502", e->method[0] ? e->method : "a request");
    snprintf(line, sizeof(line), "%s%s%s%s", why, refused ? " (user \"" : "",
             refused ? p->login->user : "", refused ? "\")" : "");
    log_refusal(p, what, line);
    mapping_stat_add(&stats(p)->proto[RTSP_STAT_AUTH_FAILED], 1);
    pending_release(p, e, why);
    copy_drop(p, e);
    make_local(e, m->major, m->minor, 502, "Bad Gateway", NULL, why);
}

/* Runs the relay, which sends the requests waiting to be sent again: a 401 read from the device
 * brings no event on the client's side. */
static void auth_kick(struct loop_timer *t)
{
    struct proxy *p = container_of(t, struct proxy, kick);
    tcp_conn_kick(p->conn); /* may close the connection, and free p */
}

/*
 * The device answered e 401 (m). The best of its challenges (WWW-Authenticate headers) becomes
 * the gateway's, and e is sent again with credentials for it; or e gets 502 (the device refused
 * the credentials e carried, or e was too large to keep, or the challenge cannot be answered).
 * Nothing is written for the client now.
 */
static void auth_challenged(struct proxy *p, struct pending *e, const struct msg *m)
{
    struct digest_challenge best, c;
    bool found = false;
    const char *cannot = "no WWW-Authenticate";
    for (size_t k = 0; k < m->nhdr; k++) {
        const char *w;
        if (!msg_str_ieq(m->hdr[k].name, "WWW-Authenticate")) {
            continue;
        }
        if (digest_parse(m->hdr[k].value.p, m->hdr[k].value.n, &c, &w) != 0) {
            cannot = found ? cannot : w;
            continue;
        }
        if (!found || digest_better(&c, &best)) {
            best = c;
        }
        found = true;
    }
    char why[160];
    if (!found) {
        snprintf(why, sizeof(why), "the device asks for a login device-auth cannot give (%s)",
                 cannot);
        auth_refuse(p, e, m, why, false);
        return;
    }
    bool stale = e->tries > 0 && best.stale && !e->stale_answered;
    if (e->tries > 0 && !stale) {
        auth_refuse(p, e, m, "the device refused device-auth's credentials", true);
        return;
    }
    if (e->sent == NULL) {
        auth_refuse(p, e, m,
                    "the request is too large to send again with device-auth's credentials "
                    "(over " STR(AUTH_COPY_MAX) " bytes)",
                    false);
        return;
    }
    char line[AUTH_LINE_MAX];
    size_t pos = 0, ln = auth_line(&best, p->login, e->sent, e->sent_len, 1, line, &pos);
    char *again = ln > 0 ? malloc(e->sent_len + ln) : NULL;
    if (again == NULL) {
        auth_refuse(p, e, m, ln > 0 ? "out of memory" : auth_too_long, false);
        return;
    }
    memcpy(again, e->sent, pos);
    memcpy(again + pos, line, ln);
    memcpy(again + pos + ln, e->sent + pos, e->sent_len - pos);
    /* The new nonce's first use; later requests take the next ones. */
    p->challenge = best;
    p->auth_known = true;
    p->nc = 1;
    e->again = again;
    e->again_len = e->sent_len + ln;
    e->tries++;
    e->stale_answered = e->stale_answered || stale;
    p->nagain++;
    mapping_stat_add(&stats(p)->proto[RTSP_STAT_AUTH_ANSWERED], 1);
    if (p->conn != NULL) {
        loop_timer_start(p->ctx->loop, &p->kick, 0);
    }
}

/* Writes the requests waiting to be sent again, in order, to out. Returns false when one is left
 * for want of room (the client's next requests wait behind it). */
static bool auth_send_again(struct proxy *p, char *out, size_t room, size_t *produced)
{
    for (size_t i = 0; i < p->qlen && p->nagain > 0; i++) {
        struct pending *e = &p->q[i];
        if (e->again == NULL) {
            continue;
        }
        if (e->again_len > room - *produced) {
            return false;
        }
        memcpy(out + *produced, e->again, e->again_len);
        *produced += e->again_len;
        free(e->again);
        e->again = NULL;
        p->nagain--;
    }
    return true;
}

/* ---- auth = login: the player's login to the gateway ---- */

/*
 * With auth = login, no request reaches the device before the player has logged in on its
 * connection: a request without credentials, or with wrong ones, is answered 401 with the
 * gateway's challenges (Digest SHA-256 and MD5 with a nonce of the gateway's, and Basic: the
 * connection is TLS), and the player answers on the same connection, as RTSP players do. Its
 * Authorization is checked on the login thread (auth/login.h), while the request waits; a good
 * one makes a session that lasts as long as the connection, and every later request goes on
 * while the session lives; when it ends (a password changed, the user gone, 12 hours), so does
 * the connection, at its next request or within GATE_RECHECK_MS. The player's Authorization
 * never reaches the device, and an answer or an interleaved frame from a player that has not
 * logged in is not RTSP the device gets.
 */

/* Queues a 401 with the gateway's challenges (stale: the nonce was stale, answer again; failed:
 * the request's credentials were refused, which counts). */
static void gate_challenge(struct proxy *p, const struct msg *m, bool stale, bool failed)
{
    char nonce[LOGIN_NONCE_LEN + 1], lines[DIGEST_CHALLENGES_MAX];
    login_nonce(p->map->conf.name, p->gate->key, nonce);
    if (digest_challenges_write(lines, sizeof(lines), USERS_DIGEST_REALM, nonce, stale) == 0) {
        lines[0] = '\0'; /* cannot happen: a realm and a nonce of known sizes */
    }
    reply_with(p, m, 401, "Unauthorized", lines, NULL,
               failed ? RTSP_STAT_LOGIN_FAILED : RTSP_STAT_COUNT);
}

/* Ends the connection: its player's session ended (a password changed, the user is gone, or
 * the session is past its 12 hours): whatever the player sends or gets from now on would be
 * without a login. The player connects and logs in again. */
static void gate_ended(struct proxy *p)
{
    struct gate *g = p->gate;
    login_session_end(g->session, p->map->conf.name);
    g->session[0] = '\0';
    snprintf(p->close_reason, sizeof(p->close_reason),
             "the login of %s ended (a password changed, the user is gone, or 12 hours passed)",
             g->user);
    p->closing = true;
    p->close_now = true; /* the relay asks for output (proxy_pending) and gets the end */
}

/*
 * The gate's timer: while a login is checked, whether the login thread is done (then the
 * connection runs again, and its held request with it); once logged in, every GATE_RECHECK_MS,
 * whether the session still lives, which keeps it from going idle while the connection is open
 * (a playing stream sends no request for long) and ends the connection when it does not.
 */
static void gate_poll(struct loop_timer *t)
{
    struct gate *g = container_of(t, struct gate, poll);
    struct proxy *p = g->owner;
    char id[SESSION_IDLEN + 1];
    uint64_t wait_s;
    if (g->job == NULL) {
        if (g->session[0] == '\0') {
            return; /* the job's result was taken by a request the client's bytes brought */
        }
        if (login_session(g->session, p->map->conf.name, g->user)) {
            loop_timer_start(p->ctx->loop, &g->poll, GATE_RECHECK_MS);
            return;
        }
        gate_ended(p);
        tcp_conn_kick(p->conn); /* closes the connection, and frees g */
        return;
    }
    if (login_poll(g->job, id, &wait_s) == LOGIN_PENDING) {
        loop_timer_start(p->ctx->loop, &g->poll, GATE_POLL_MS);
        return;
    }
    OPENSSL_cleanse(id, sizeof(id));
    tcp_conn_kick(p->conn); /* may close the connection, and free g */
}

/* The verdict on the request at m, whose login was being checked. Returns 1 (it goes on), 0 (it
 * still waits) or -1 (answered). */
static int gate_verdict(struct proxy *p, const struct msg *m)
{
    struct gate *g = p->gate;
    char id[SESSION_IDLEN + 1];
    uint64_t wait_s = 0;
    enum login_result r = login_poll(g->job, id, &wait_s);
    if (r == LOGIN_PENDING) {
        return 0;
    }
    login_job_free(g->job);
    g->job = NULL;
    loop_timer_stop(p->ctx->loop, &g->poll);
    char text[96];
    switch (r) {
    case LOGIN_OK:
        memcpy(g->session, id, sizeof(g->session));
        OPENSSL_cleanse(id, sizeof(id));
        if (!login_session(g->session, p->map->conf.name, g->user)) {
            gate_ended(p); /* its password changed since it was checked */
            return -1;
        }
        mapping_stat_add(&stats(p)->proto[RTSP_STAT_LOGINS], 1);
        loop_timer_start(p->ctx->loop, &g->poll, GATE_RECHECK_MS);
        return 1;
    case LOGIN_BANNED:
        /* RTSP has no 429: a 403 says stop, with the wait in its text. */
        snprintf(text, sizeof(text), "too many failed logins: try again in %llu minutes",
                 (unsigned long long)((wait_s + 59) / 60));
        reply(p, m, 403, "Forbidden", text, RTSP_STAT_LOGIN_FAILED);
        return -1;
    case LOGIN_BUSY:
        reply(p, m, 503, "Service Unavailable", "the gateway's login is busy: try again",
              RTSP_STAT_LOGIN_FAILED);
        return -1;
    default:
        gate_challenge(p, m, false, true); /* the login thread logged why */
        return -1;
    }
}

/* Whether a Digest answer's uri is for the request's target: the same, or a URL the target
 * lies under (live555's players, VLC's, answer every request with their base URL). */
static bool uri_ok(struct msg_str target, const char *uri)
{
    size_t n = strlen(uri);
    return n > 0 && n <= target.n && memcmp(target.p, uri, n) == 0 &&
           (n == target.n || uri[n - 1] == '/' || target.p[n] == '/');
}

/*
 * auth = login on request m: returns 1 when it goes on (the connection's player has logged in),
 * 0 when it waits for its login to be checked (the connection runs again then), or -1 when the
 * gateway answered it (401, 403 or 503, queued in its turn).
 */
static int gate(struct proxy *p, const struct msg *m)
{
    struct gate *g = p->gate;
    const char *scope = p->map->conf.name;
    if (g->job != NULL) {
        return gate_verdict(p, m);
    }
    if (g->session[0] != '\0') {
        if (login_session(g->session, scope, g->user)) {
            return 1;
        }
        gate_ended(p);
        return -1;
    }
    const struct msg_str *auth = msg_header(m, "Authorization");
    if (auth == NULL) {
        gate_challenge(p, m, false, false);
        return -1;
    }
    struct digest_answer a;
    const char *why = NULL;
    char what[METHOD_MAX + 32];
    snprintf(what, sizeof(what), "%.*s answered 401",
             (int)(m->method.n < METHOD_MAX ? m->method.n : METHOD_MAX), m->method.p);
    if (digest_answer_parse(auth->p, auth->n, &a, &why) != 0) {
        log_refusal(p, what, why);
        gate_challenge(p, m, false, true);
        return -1;
    }
    if (strlen(a.user) >= USERS_NAMELEN) {
        OPENSSL_cleanse(&a, sizeof(a));
        log_refusal(p, what, "a user name longer than any user's");
        gate_challenge(p, m, false, true);
        return -1;
    }
    if (a.scheme != DIGEST_BASIC) {
        if (login_nonce_check(a.nonce, scope, g->key) != 1) {
            /* Stale, or not this connection's (a player that answers a new connection with an
             * old nonce): a new one, which players answer again without asking anyone
             * (RFC 7616 3.3: stale for an invalid nonce). No password was tried. */
            gate_challenge(p, m, true, false);
            return -1;
        }
        why = strcmp(a.realm, USERS_DIGEST_REALM) != 0 ? "a Digest answer for another realm"
              : !uri_ok(m->target, a.uri) ? "a Digest answer for another URL than the request's"
                                          : NULL;
        if (why != NULL) {
            log_refusal(p, what, why);
            gate_challenge(p, m, false, true);
            return -1;
        }
    }
    const struct rtsp_proto_conf *conf = p->map->conf.pconf;
    char method[32];
    snprintf(method, sizeof(method), "%.*s", (int)(m->method.n < 31 ? m->method.n : 31),
             m->method.p);
    g->job = login_start_player(&a, method, g->client, scope, conf->users);
    OPENSSL_cleanse(&a, sizeof(a));
    if (g->job == NULL) {
        reply(p, m, 503, "Service Unavailable", "out of memory", RTSP_STAT_LOGIN_FAILED);
        return -1;
    }
    loop_timer_start(p->ctx->loop, &g->poll, GATE_POLL_MS);
    return 0;
}

/* ---- Transport ---- */

/* Appends ";param" for each parameter of spec not named in skip (NULL-terminated). */
static void copy_params(struct msg_str spec, const char *const *skip, char *buf, size_t room,
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
static struct msg_str spec_proto(struct msg_str spec)
{
    const char *semi = memchr(spec.p, ';', spec.n);
    return (struct msg_str){spec.p, semi != NULL ? (size_t)(semi - spec.p) : spec.n};
}

/* ---- requests: client -> device ---- */

/*
 * A SETUP for RTP over UDP (t): a stream, and what the device is told of it into tbuf. A SETUP
 * naming a session the client has here adds a stream to it; any other makes a new session,
 * whose place in max-sessions is taken now so that the client hears 453 before the device sets
 * anything up. Returns 1 (forward), or 0 when the gateway refused it (the answer is queued).
 */
static int setup_udp(struct proxy *p, const struct msg *m, struct pending *slot,
                     const struct rtsp_transport *t, char *tbuf)
{
    const struct rtsp_proxy_session *sess = session_find(p, slot->session);
    const char *refusal = NULL;
    char limit[64];
    if (sess != NULL && sess->nstreams == MAX_STREAMS) {
        refusal = "the session already has " STR(MAX_STREAMS) " streams";
    } else if (sess == NULL && p->nheld == MAX_HELD) {
        refusal = "this connection already holds " STR(MAX_HELD) " sessions";
    } else if (sess == NULL && !mapping_session_begin(p->map)) {
        snprintf(limit, sizeof(limit), "max-sessions (%u) reached", p->map->conf.max_sessions);
        refusal = limit;
    }
    if (refusal != NULL) {
        refuse_setup(p, m, 453, "Not Enough Bandwidth", refusal);
        return 0;
    }
    slot->reserved = sess == NULL;
    const struct rtsp_proto_conf *rtp = p->map->conf.pconf;
    struct rtsp_stream_conf sc = {.out_local = p->client_local,
                                  .in_local = p->target_local,
                                  .client = p->client,
                                  .client_port = {t->client_port[0], t->client_port[1]},
                                  .device = p->target,
                                  .port_lo = rtp->rtp_lo,
                                  .port_hi = rtp->rtp_hi,
                                  /* The session's holders all share p's mapping state, and the
                                   * session (with its streams) ends with its last holder. */
                                  .activity = &mapping_shard(p->map, p->ctx->worker)->last_ms};
    uint16_t in_port = 0, out_port = 0;
    int err = 0;
    struct rtsp_stream *s = rtsp_stream_new(p->ctx, &sc, &in_port, &out_port, &err);
    if (s == NULL) {
        pending_release(p, slot, NULL);
        refuse_setup(p, m, 453, "Not Enough Bandwidth",
                     err == -EADDRINUSE ? "every pair of rtp-ports is in use" : strerror(-err));
        return 0;
    }
    slot->stream = s;
    slot->client_port[0] = t->client_port[0];
    slot->client_port[1] = t->client_port[1];
    slot->out_port = out_port;
    struct msg_str proto = spec_proto(t->spec);
    size_t len = (size_t)snprintf(tbuf, TRANSPORT_MAX, "%.*s;unicast;client_port=%u-%u",
                                  (int)proto.n, proto.p, in_port, in_port + 1);
    copy_params(t->spec, udp_skip, tbuf, TRANSPORT_MAX, &len);
    return 1;
}

/* A SETUP: picks the first transport the gateway can carry and fills *tbuf with what the device
 * is told. Returns 1 (forward), 0 (answered locally), with e's stream set for UDP. */
static int setup_transport(struct proxy *p, const struct msg *m, struct pending *slot, char *tbuf,
                           bool *have_transport)
{
    const struct msg_str *tv = msg_header(m, "Transport");
    *have_transport = false;
    if (tv == NULL) {
        return 1; /* the device will answer what it answers to a SETUP without one */
    }
    size_t pos = 0;
    struct rtsp_transport t;
    const char *why;
    int r;
    bool multicast = false, udp_refused = false;
    bool udp_ok = ((const struct rtsp_proto_conf *)p->map->conf.pconf)->rtp_lo != 0;
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
            p->interleaved = true;
            return 1;
        }
        if (t.has_client_port && !udp_ok) {
            udp_refused = true; /* rtsps: RTP over UDP would leave the TLS */
            continue;
        }
        if (t.has_client_port) {
            *have_transport = setup_udp(p, m, slot, &t, tbuf) == 1;
            return *have_transport;
        }
    }
    refuse_setup(p, m, 461, "Unsupported Transport",
                 udp_refused ? "RTP over UDP would leave the TLS connection: ask for RTP "
                               "interleaved in it (RTP/AVP/TCP; ffmpeg -rtsp_transport tcp)"
                 : multicast ? "multicast transports are not relayed"
                             : "no RTP transport it can carry");
    return 0;
}

/* One request. Returns the bytes written to out, 0 when the gateway answers it itself, or -2
 * when out has no room (nothing changed). */
static ssize_t request(struct proxy *p, const char *msg, const struct msg *m, char *out,
                       size_t room)
{
    struct rtsp_endpoint view;
    if (rtsp_url_endpoint(m->target, &view) == 0) {
        /* The address the client uses for the device: answers name it. */
        p->up.from = view;
        p->down.to = view;
    }
    struct pending slot = {0};
    slot.kind = msg_str_ieq(m->method, "SETUP")      ? REQ_SETUP
                : msg_str_ieq(m->method, "TEARDOWN") ? REQ_TEARDOWN
                                                     : REQ_OTHER;
    session_id(m, slot.session);
    snprintf(slot.method, sizeof(slot.method), "%.*s", (int)m->method.n, m->method.p);
    char tbuf[TRANSPORT_MAX];
    bool have_transport = false;
    if (slot.kind == REQ_SETUP && setup_transport(p, m, &slot, tbuf, &have_transport) == 0) {
        return 0;
    }
    const char *why;
    ssize_t n = rtsp_rewrite(msg, m, &p->up, have_transport ? tbuf : NULL, out, room, &why);
    if (n < 0) {
        pending_release(p, &slot, "no room to forward the SETUP");
        return -2;
    }
    if (p->login != NULL) {
        slot.tries = p->auth_known ? 1 : 0;
        n = auth_request(p, out, (size_t)n, room, &slot.sent, &slot.sent_len);
        if (n == -2) {
            pending_release(p, &slot, "no room to forward the SETUP");
            return -2;
        }
        if (n < 0) {
            char what[METHOD_MAX + 24];
            snprintf(what, sizeof(what), "%s answered 502", slot.method);
            log_refusal(p, what, auth_too_long);
            pending_release(p, &slot, auth_too_long);
            reply(p, m, 502, "Bad Gateway", auth_too_long, RTSP_STAT_AUTH_FAILED);
            return 0;
        }
    } else if (p->gate != NULL) {
        n = (ssize_t)strip_authorization(out,
                                         (size_t)n); /* the gateway's login, not the device's */
    }
    /* A request naming a session of this client's that another connection set up (a
     * keep-alive or a TEARDOWN sent on a new connection): this one holds it too, so the
     * session outlives the connection that made it while this one is open. */
    struct rtsp_proxy_session *s = session_find(p, slot.session);
    if (s != NULL) {
        session_hold(s, p);
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
        mapping_stat_add(&stats(p)->proto[RTSP_STAT_REFUSED], 1);
    }
}

/* ---- answers: device -> client ---- */

/* The Transport of a SETUP answer, if the device set up RTP over UDP (not interleaved, not
 * nonsense). */
static bool udp_transport(const struct msg *m, struct rtsp_transport *t)
{
    const struct msg_str *tv = msg_header(m, "Transport");
    size_t pos = 0;
    const char *why;
    return tv != NULL && rtsp_transport_next(*tv, &pos, t, &why) == 1 && t->lower == RTSP_UDP &&
           t->has_server_port;
}

/* What the client is told of the stream the device set up (t), into tbuf. */
static void client_transport(struct proxy *p, const struct pending *e,
                             const struct rtsp_transport *t, char *tbuf)
{
    struct msg_str proto = spec_proto(t->spec);
    size_t len = (size_t)snprintf(
        tbuf, TRANSPORT_MAX, "%.*s;unicast;client_port=%u-%u;server_port=%u-%u", (int)proto.n,
        proto.p, e->client_port[0], e->client_port[1], e->out_port, e->out_port + 1);
    copy_params(t->spec, udp_skip, tbuf, TRANSPORT_MAX, &len);
    if (t->source.n > 0 && len < TRANSPORT_MAX) {
        char ip[ADDR_STRLEN];
        struct sockaddr_storage u = p->client_local;
        addr_unmap(&u);
        snprintf(tbuf + len, TRANSPORT_MAX - len, ";source=%s", addr_format_ip(&u, ip, sizeof(ip)));
    }
}

/*
 * A SETUP the device answered with RTP over UDP (t): the pending stream joins the session the
 * answer names (or else the request), if this client has it here, or a new one. When it can
 * join none (the session is full, or it ended while the SETUP was on its way and max-sessions
 * is reached), the stream is not relayed and the client is answered 453 instead. Returns the
 * bytes written, or -2 when out has no room (nothing changed).
 */
static ssize_t answer_setup(struct proxy *p, const char *msg, const struct msg *m,
                            struct pending *e, const struct rtsp_transport *t, char *out,
                            size_t room)
{
    char id[SESSION_ID_MAX + 1];
    if (!session_id(m, id)) {
        memcpy(id, e->session, sizeof(id));
    }
    struct rtsp_proxy_session *s = session_find(p, id);
    const char *refusal = NULL;
    bool holds_more = s == NULL || !session_held_by(s, p); /* the connection takes one more */
    if (s != NULL && s->nstreams == MAX_STREAMS) {
        refusal = "the session already has " STR(MAX_STREAMS) " streams";
    } else if (s != NULL && holds_more && s->nholders == MAX_HOLDERS) {
        refusal = "the session is held by " STR(MAX_HOLDERS) " connections already";
    } else if (holds_more && p->nheld == MAX_HELD) {
        refusal = "this connection already holds " STR(MAX_HELD) " sessions";
    }
    /* A new session needs a place (the one its SETUP reserved, unless that SETUP named a
     * session that has ended since) and memory. */
    bool took = false;
    struct rtsp_proxy_session *fresh = NULL;
    if (refusal == NULL && s == NULL) {
        if (!e->reserved && !(took = mapping_session_begin(p->map))) {
            refusal = "max-sessions reached";
        } else if ((fresh = calloc(1, sizeof(*fresh))) == NULL) {
            refusal = "out of memory";
        }
    }
    if (refusal != NULL) {
        if (took) {
            mapping_session_end(p->map);
        }
        if (room < REPLY_MAX) {
            return -2;
        }
        log_refusal(p, "SETUP refused", refusal);
        mapping_stat_add(&stats(p)->proto[RTSP_STAT_REFUSED], 1);
        pending_release(p, e, refusal);
        return (ssize_t)format_reply(out, room, m->major, m->minor, 453, "Not Enough Bandwidth",
                                     e->cseq, NULL, NULL);
    }
    char tbuf[TRANSPORT_MAX];
    client_transport(p, e, t, tbuf);
    const char *why;
    ssize_t n = rtsp_rewrite(msg, m, &p->down, tbuf, out, room, &why);
    if (n < 0) {
        if (took) {
            mapping_session_end(p->map);
        }
        free(fresh);
        return -2;
    }
    if (fresh != NULL) {
        s = session_new(p, fresh, id); /* with the place e reserved or took */
        e->reserved = false;
    } else if (e->reserved) {
        mapping_session_end(p->map); /* it joined a session after all */
        e->reserved = false;
    }
    session_hold(s, p);
    rtsp_stream_set_server(e->stream, t->server_port);
    s->streams[s->nstreams++] = e->stream;
    e->stream = NULL;
    uint32_t timeout = session_timeout(m);
    if (timeout > 0) {
        s->timeout_ms = timeout;
    }
    loop_timer_start(s->ctx->loop, &s->timer, s->timeout_ms);
    return n;
}

/* A TEARDOWN the device accepted ends the session it named, whichever connection holds it; one
 * naming none, every session this connection holds. */
static void teardown(struct proxy *p, const char *id)
{
    if (id[0] != '\0') {
        struct rtsp_proxy_session *s = session_find(p, id);
        if (s != NULL) {
            session_end(s, p->map, "TEARDOWN");
        }
        return;
    }
    while (p->nheld > 0) {
        session_end(p->held[p->nheld - 1], p->map, "TEARDOWN");
    }
}

/* One answer. Returns the bytes written, -2 when out has no room (nothing changed), or -1 to end
 * the connection (p->close_reason set). */
static ssize_t answer(struct proxy *p, const char *msg, const struct msg *m, char *out, size_t room)
{
    ssize_t i = q_match(p, m);
    if (i < 0) {
        /* An answer to no request the client is waiting for: it cannot be rewritten as its
         * request needs (a SETUP's Transport would name the device's own ports), and a device
         * that sends one has lost track of the conversation. */
        const struct msg_str *cseq = msg_header(m, "CSeq");
        snprintf(p->close_reason, sizeof(p->close_reason),
                 "the device answered no request the client sent (CSeq %.*s)",
                 cseq != NULL ? (int)(cseq->n < 40 ? cseq->n : 40) : 4,
                 cseq != NULL ? cseq->p : "none");
        return -1;
    }
    struct pending *e = &p->q[i];
    if (p->login != NULL && m->status == 401) {
        auth_challenged(p, e, m); /* sent again, or answered 502 in its turn */
        return 0;
    }
    bool ok = m->status >= 200 && m->status < 300;
    struct rtsp_transport t;
    ssize_t n;
    const char *why;
    if (e->stream != NULL && ok && udp_transport(m, &t)) {
        n = answer_setup(p, msg, m, e, &t, out, room);
    } else {
        n = rtsp_rewrite(msg, m, &p->down, NULL, out, room, &why);
    }
    if (n < 0) {
        return -2;
    }
    if (e->stream != NULL) {
        char what[64];
        snprintf(what, sizeof(what), "the device answered the SETUP with %d%s", m->status,
                 ok ? " but not with RTP over UDP" : "");
        pending_release(p, e, what);
    }
    if (e->kind == REQ_TEARDOWN && ok) {
        teardown(p, e->session);
    }
    copy_drop(p, e);
    q_remove(p, (size_t)i);
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
    p->w = fc->state;
    p->map = fc->map;
    p->client = fc->client;
    p->client_ip = fc->client;
    addr_unmap(&p->client_ip);
    p->conn = fc->conn;
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
    if (((const struct rtsp_proto_conf *)p->map->conf.pconf)->tls) {
        p->up.scheme = "rtsp://";
        p->down.scheme = "rtsps://";
    }
    snprintf(p->down.to_ip, sizeof(p->down.to_ip), "%s", view.host);
    p->last_rtsp_ms = loop_now(p->ctx->loop);
    const struct rtsp_proto_conf *conf = p->map->conf.pconf;
    p->login = conf->auth.user[0] != '\0' ? &conf->auth : NULL;
    loop_timer_init(&p->kick, auth_kick);
    if (conf->login) {
        if ((p->gate = calloc(1, sizeof(*p->gate))) == NULL) {
            free(p);
            return NULL;
        }
        p->gate->owner = p;
        loop_timer_init(&p->gate->poll, gate_poll);
        if (RAND_bytes(p->gate->key, sizeof(p->gate->key)) != 1) {
            free(p->gate);
            free(p);
            return NULL;
        }
        addr_format_ip(&p->client_ip, p->gate->client, sizeof(p->gate->client));
    }
    return p;
}

/* Why the CSeq of request m cannot be matched to its answer, or NULL: answers are matched by
 * it, and the device answers the one it sees. */
static const char *cseq_problem(const struct msg *m)
{
    const struct msg_str *cseq = msg_header(m, "CSeq");
    if (cseq != NULL && cseq->n > CSEQ_MAX) {
        return "CSeq longer than " STR(CSEQ_MAX) " bytes";
    }
    size_t n = 0;
    for (size_t i = 0; i < m->nhdr; i++) {
        n += msg_str_ieq(m->hdr[i].name, "CSeq");
    }
    return n > 1 ? "more than one CSeq" : NULL;
}

/*
 * Passes on what is at hand of the interleaved frame (RFC 2326 10.12) at in, or that direction
 * dir is in the middle of, as much as out has room for: frames go on as they come, so one may be
 * longer than a buffer. Returns the bytes passed on, 0 to wait (for the frame's header, or for
 * room).
 */
static size_t pass_frame(struct proxy *p, enum tcp_dir dir, const char *in, size_t len, char *out,
                         size_t room)
{
    if (p->frame_left[dir] == 0) {
        ssize_t n = rtsp_frame_len(in, len);
        if (n == MSG_PARTIAL) {
            return 0;
        }
        p->frame_left[dir] = (size_t)n;
    }
    size_t n = p->frame_left[dir];
    n = n < len ? n : len;
    n = n < room ? n : room;
    memcpy(out, in, n);
    p->frame_left[dir] -= n;
    p->last_rtsp_ms = loop_now(p->ctx->loop);
    return n;
}

/*
 * Passes on the RTSP message at in, rewritten, or answers it (the gateway's refusals). Returns the
 * bytes of input it took (*produced advanced), 0 to wait (the message is not all here, the
 * queue of requests is full, or out has no room), or -1 to end the connection (*reason set).
 */
static ssize_t pass_message(struct proxy *p, enum tcp_dir dir, const char *in, size_t len,
                            char *out, size_t room, size_t *produced, const char **reason)
{
    struct msg m;
    const char *why;
    ssize_t head = rtsp_parse(in, len, &m, &why);
    if (head == MSG_PARTIAL || (head > 0 && (size_t)head + m.length > len)) {
        return 0;
    }
    const char *cseq_why;
    if (head > 0 && dir == TCP_UP && !m.response && (cseq_why = cseq_problem(&m)) != NULL) {
        head = RTSP_ERROR; /* its answer could not be matched */
        why = cseq_why;
    }
    if (head == RTSP_ERROR) {
        if (dir == TCP_DOWN) {
            snprintf(p->close_reason, sizeof(p->close_reason),
                     "the device sent malformed RTSP (%s)", why);
            *reason = p->close_reason;
            return -1;
        }
        bad_request(p, why);
        return (ssize_t)len; /* the rest is not RTSP either */
    }
    ssize_t n;
    if (dir == TCP_UP && !m.response) {
        if (p->qlen == MAX_PENDING) {
            return 0; /* wait for answers before reading more requests */
        }
        int g = p->gate != NULL ? gate(p, &m) : 1;
        if (g == 0) {
            p->gate_held = true;
            return 0;
        }
        if (g < 0) {
            p->last_rtsp_ms = loop_now(p->ctx->loop);
            return head + (ssize_t)m.length; /* answered by the gateway */
        }
        if (auth_waits(p, (size_t)head + m.length)) {
            p->auth_held = true;
            return 0;
        }
        n = request(p, in, &m, out + *produced, room - *produced);
    } else if (dir == TCP_DOWN && m.response) {
        n = answer(p, in, &m, out + *produced, room - *produced);
    } else if (dir == TCP_UP && p->gate != NULL && p->gate->session[0] == '\0') {
        bad_request(p, "an answer from a player that has not logged in");
        return (ssize_t)len;
    } else {
        /* A request of the device to the client (RTSP allows them), or the client's answer to
         * one: rewritten, not matched. */
        n = rtsp_rewrite(in, &m, dir == TCP_UP ? &p->up : &p->down, NULL, out + *produced,
                         room - *produced, &why);
        n = n < 0 ? -2 : n;
    }
    if (n == -1) {
        *reason = p->close_reason;
        return -1;
    }
    if (n == -2) {
        if (*produced == 0) {
            *reason = "a rewritten message does not fit in a buffer";
            return -1;
        }
        return 0;
    }
    *produced += (size_t)n;
    p->last_rtsp_ms = loop_now(p->ctx->loop);
    return head + (ssize_t)m.length;
}

static ssize_t proxy_data(void *st, enum tcp_dir dir, const char *in, size_t len, bool eof,
                          char *out, size_t room, size_t *out_len, const char **reason)
{
    (void)eof;
    struct proxy *p = st;
    size_t used = 0, produced = 0;
    if (dir == TCP_UP) {
        p->auth_held = false;
        p->gate_held = false;
        if (p->nagain > 0 && !auth_send_again(p, out, room, &produced)) {
            *out_len = produced; /* the rest once this is written */
            return 0;
        }
    }
    if (dir == TCP_UP && p->closing) {
        *out_len = produced;
        return (ssize_t)len; /* after a malformed request, the rest is not RTSP either */
    }
    if (dir == TCP_DOWN && p->close_now) {
        *reason = p->close_reason;
        return -1;
    }
    for (;;) {
        /* The gateway's own answers whose turn has come go out between messages, never inside
         * a frame the device is sending. */
        if (dir == TCP_DOWN && p->frame_left[dir] == 0) {
            flush_local(p, out, room, &produced);
        }
        if (used == len) {
            break;
        }
        ssize_t n;
        if (dir == TCP_UP && p->frame_left[dir] == 0 && in[used] == '$' && !p->interleaved) {
            /* A client frames RTP only on a connection that set it up: before that, '$' bytes
             * are no RTSP, and the device could read them as a request the gateway never saw. */
            bad_request(p, "an interleaved frame before any interleaved SETUP");
            used = len;
            break;
        }
        if (p->frame_left[dir] > 0 || in[used] == '$') {
            n = (ssize_t)pass_frame(p, dir, in + used, len - used, out + produced, room - produced);
            produced += (size_t)n;
        } else {
            n = pass_message(p, dir, in + used, len - used, out, room, &produced, reason);
        }
        if (n < 0) {
            return -1;
        }
        if (n == 0) {
            break;
        }
        used += (size_t)n;
    }
    *out_len = produced;
    return (ssize_t)used;
}

/* The client's requests wait while MAX_PENDING await their answers, device-auth waits for one
 * (auth_waits), or a login is being checked (gate). */
static bool proxy_held(void *st, enum tcp_dir dir)
{
    const struct proxy *p = st;
    return dir == TCP_UP && (p->qlen == MAX_PENDING || p->auth_held || p->gate_held);
}

/* Output of the filter's own: its answers to the client whose turn has come, and the requests
 * device-auth sends to the device again. */
static bool proxy_pending(void *st, enum tcp_dir dir)
{
    struct proxy *p = st;
    if (dir == TCP_UP) {
        return p->nagain > 0;
    }
    return p->close_now || (p->qlen > 0 && p->q[0].local);
}

static void proxy_close(void *st)
{
    struct proxy *p = st;
    loop_timer_stop(p->ctx->loop, &p->kick);
    if (p->gate != NULL) {
        loop_timer_stop(p->ctx->loop, &p->gate->poll);
        login_job_abandon(p->gate->job); /* a check not done goes on alone, then is dropped */
        if (p->gate->session[0] != '\0') {
            login_session_end(p->gate->session, p->map->conf.name);
        }
        OPENSSL_cleanse(p->gate, sizeof(*p->gate));
        free(p->gate);
    }
    for (size_t i = 0; i < p->qlen; i++) {
        pending_release(p, &p->q[i], "the control connection closed");
        copy_drop(p, &p->q[i]);
    }
    while (p->nheld > 0) {
        session_release(p->held[p->nheld - 1], p);
    }
    free(p);
}

const struct tcp_filter rtsp_proxy_filter = {.name = "rtsp",
                                             .open = proxy_open,
                                             .data = proxy_data,
                                             .pending = proxy_pending,
                                             .held = proxy_held,
                                             .close = proxy_close};

void rtsp_proxy_worker_sessions(const struct rtsp_proxy_worker *w, proto_session_fn fn, void *arg)
{
    for (const struct rtsp_proxy_session *s = w->sessions; s != NULL; s = s->next) {
        struct proto_session_info si = {
            .kind = "rtsp", .client = s->client, .start_ms = s->start_ms};
        addr_set_port(&si.client, 0); /* a session belongs to an address, not a connection */
        if (s->nholders > 0) {
            si.map = s->holders[0]->map;
            si.target = s->holders[0]->target;
        }
        for (size_t i = 0; i < s->nholders; i++) {
            uint64_t l = s->holders[i]->last_rtsp_ms;
            si.last_ms = l > si.last_ms ? l : si.last_ms;
        }
        for (size_t i = 0; i < s->nstreams; i++) {
            const struct rtsp_stream_stats *st = rtsp_stream_stats(s->streams[i]);
            si.last_ms = st->last_ms > si.last_ms ? st->last_ms : si.last_ms;
            /* RTP and RTCP, each way: the device's to the client is "out" */
            si.pkts[0] += st->pkts[RTSP_STREAM_RTP_UP] + st->pkts[RTSP_STREAM_RTCP_UP];
            si.pkts[1] += st->pkts[RTSP_STREAM_RTP_DOWN] + st->pkts[RTSP_STREAM_RTCP_DOWN];
            si.bytes[0] += st->bytes[RTSP_STREAM_RTP_UP] + st->bytes[RTSP_STREAM_RTCP_UP];
            si.bytes[1] += st->bytes[RTSP_STREAM_RTP_DOWN] + st->bytes[RTSP_STREAM_RTCP_DOWN];
        }
        snprintf(si.detail, sizeof(si.detail), "session %s, %zu RTP stream%s, %zu connection%s",
                 s->id[0] ? s->id : "(none named)", s->nstreams, s->nstreams == 1 ? "" : "s",
                 s->nholders, s->nholders == 1 ? "" : "s");
        fn(arg, &si);
    }
}

struct rtsp_proxy_worker *rtsp_proxy_worker_new(void)
{
    return calloc(1, sizeof(struct rtsp_proxy_worker));
}

bool rtsp_proxy_worker_idle(const struct rtsp_proxy_worker *w)
{
    return w->sessions == NULL;
}

void rtsp_proxy_worker_free(struct rtsp_proxy_worker *w)
{
    if (w == NULL) {
        return;
    }
    assert(w->sessions == NULL); /* sessions end with the last connection that holds them */
    free(w);
}

void *rtsp_proxy_state_new(struct relay_ctx *ctx)
{
    (void)ctx;
    return rtsp_proxy_worker_new();
}

void rtsp_proxy_state_free(void *state)
{
    rtsp_proxy_worker_free(state);
}

void rtsp_proxy_state_sessions(void *state, proto_session_fn fn, void *arg)
{
    rtsp_proxy_worker_sessions(state, fn, arg);
}
