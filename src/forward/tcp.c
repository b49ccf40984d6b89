#include "forward/tcp.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "core/sock.h"
#include "forward/proto.h"
#include "forward/proxyhdr.h"

#define ACCEPT_BATCH 64
#define ACCEPT_BACKOFF_MS 100

struct tcp_side {
    struct loop_io io;
    struct tcp_conn *conn;
    struct tcp_ready r; /* no EAGAIN since the last readiness event; RDHUP seen (tcp.h) */
    bool fin;           /* a FIN alone was reported (RDHUP without HUP or ERR): no reset */
    bool eof;           /* recv returned 0 */
    bool shut;          /* we have shut down writing to this side */
    /* The client's side under a layer (TLS): a read that waits for the socket to be writable,
     * a write that waits for it to be readable. The event that each waits for clears it. */
    bool rd_wants_out, wr_wants_in;
};

struct tcp_conn {
    struct tcp_side cli, tgt;
    struct relay_buf *in[2];   /* filtered path: bytes read, not yet seen by the filter */
    struct relay_buf *out[2];  /* bytes to write to the other side */
    struct relay_pipe pipe[2]; /* splice path: bytes read, not yet written */
    uint64_t bytes[2];         /* written to the other side */
    uint64_t spliced;          /* of which moved by splice() */
    struct relay_ctx *ctx;
    /* The mapping: the router's choice once made; until then the port's first, a place of
     * whose limits it holds (a port of several mappings admits by the chosen one's rules). */
    struct mapping *map;
    struct mapping_group *group; /* the port's mappings (the layer may have used any of them) */
    const struct tcp_router *router;
    bool routing;  /* the router has not chosen yet: no target */
    bool counted;  /* map counts this connection (admitted, or held): released at close */
    bool chosen;   /* map is the connection's own, chosen and admitted (not the port's first) */
    uint16_t port; /* the listening port it came to, for mapping_target() */
    const struct tcp_filter *filter;
    void *fstate; /* the protocol's state on this loop, for the filter's open() */
    void *fst;
    const struct tcp_layer *layer; /* the client side's (TLS), or NULL */
    void *lst;
    uint32_t handshake_ms; /* how long the layer's handshake may take */
    bool handshaking;      /* the layer's handshake is not done: no target yet */
    bool notified;         /* the layer has ended what we write (close_notify) */
    const char *ending;    /* the filter ended the connection (TCP_FILTER_END): why */
    uint64_t filter_moves; /* calls of the filter that consumed or produced bytes */
    struct sockaddr_storage client, target;
    uint64_t id; /* tcp_conn_info */
    uint64_t start_ms, last_ms;
    struct loop_timer timer; /* connect timeout, then idle timeout */
    bool connected;
    bool proxy_wait; /* accept-proxy: the header of the client's proxy is not read yet */
    bool refused;    /* refused once the header or the router named whom (logged already) */
    struct sockaddr_storage orig_dst; /* accept-proxy: what the client connected to; 0: ours */
    bool splice;  /* opaque path through pipes; off with a filter, or when splice() fails */
    bool bulk[2]; /* splice path: this direction carries a bulk flow, so its reads splice */
    const char *first_eof; /* "client" or "target": who closed first */
    struct tcp_conn *prev, *next;
};

struct tcp_listener {
    struct loop_io io;
    struct relay_ctx *ctx;
    struct mapping_group *group;
    struct mapping *map;             /* the group's first: for messages */
    const struct tcp_filter *filter; /* of their protocol, and its state on this loop */
    void *fstate;
    const struct tcp_layer *layer; /* of their protocol */
    const struct tcp_router *router;
    uint16_t port;
    struct loop_timer backoff;
    struct log_ratelimit emfile_log;
};

/* ---- closing: the one way out of a connection ---- */

static void conn_close(struct tcp_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void conn_close(struct tcp_conn *c, const char *fmt, ...)
{
    struct relay_ctx *ctx = c->ctx;
    char reason[256], cs[ADDR_STRLEN], ts[ADDR_STRLEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    char layer[128] = "";
    if (c->layer != NULL && c->lst != NULL) {
        layer[0] = ' ';
        layer[1] = '[';
        c->layer->describe(c->lst, layer + 2, sizeof(layer) - 3);
        size_t n = strlen(layer);
        if (n == 2) {
            layer[0] = '\0';
        } else {
            layer[n] = ']';
            layer[n + 1] = '\0';
        }
    }
    uint64_t ms = loop_now(ctx->loop) - c->start_ms;
    /* A client refused once its proxy's header named it: its refusal was logged, rate-limited. */
    enum log_level lvl = c->refused ? LOG_LVL_DEBUG : LOG_LVL_INFO;
    log_msg(lvl,
            "map %s: tcp %s -> %s ended after %llu.%03llus, %llu bytes to target, %llu bytes to "
            "client: %s%s",
            c->map->conf.name, addr_format(&c->client, cs, sizeof(cs)),
            addr_format(&c->target, ts, sizeof(ts)), (unsigned long long)(ms / 1000),
            (unsigned long long)(ms % 1000), (unsigned long long)c->bytes[TCP_UP],
            (unsigned long long)c->bytes[TCP_DOWN], reason, layer);
    struct mapping_stats *st = &mapping_shard(c->map, ctx->worker)->stats;
    mapping_stat_add(&st->bytes_in, c->bytes[TCP_UP]);
    mapping_stat_add(&st->bytes_out, c->bytes[TCP_DOWN]);
    mapping_stat_add(&st->bytes_spliced, c->spliced);

    loop_timer_stop(ctx->loop, &c->timer);
    struct tcp_side *sides[2] = {&c->cli, &c->tgt};
    for (int i = 0; i < 2; i++) {
        loop_io_close(ctx->loop, &sides[i]->io);
        relay_buf_put(ctx, c->in[i]);
        relay_buf_put(ctx, c->out[i]);
        relay_pipe_put(ctx, &c->pipe[i]);
    }
    if (c->filter != NULL && c->fst != NULL) {
        c->filter->close(c->fst);
    }
    if (c->layer != NULL && c->lst != NULL) {
        c->layer->close(c->lst);
    }
    if (c->counted) {
        mapping_release(c->map, &c->client);
    }
    mapping_unref(c->map);
    mapping_group_unref(c->group);
    if (c->prev) {
        c->prev->next = c->next;
    } else {
        ctx->conns = c->next;
    }
    if (c->next) {
        c->next->prev = c->prev;
    }
    ctx->nconns--;
    free(c);
    if (ctx->nconns == 0 && ctx->on_idle != NULL) {
        ctx->on_idle(ctx);
    }
}

static const char *side_name(const struct tcp_conn *c, const struct tcp_side *s)
{
    return s == &c->cli ? "client" : "target";
}

/* Side s sent its FIN: it sends nothing more. Remembers who closed first, for the log line. */
static void saw_eof(struct tcp_conn *c, struct tcp_side *s)
{
    s->eof = true;
    if (c->first_eof == NULL) {
        c->first_eof = side_name(c, s);
    }
}

/*
 * A syscall on side s failed with err. A reset (or a write to a side that reset) is passed on to
 * the other side as a reset, so both ends see what a direct connection would have shown them.
 */
static void conn_fail(struct tcp_conn *c, struct tcp_side *s, int err, const char *op)
{
    struct tcp_side *other = s == &c->cli ? &c->tgt : &c->cli;
    if (err == ECONNRESET || err == EPIPE) {
        if (other->io.fd >= 0) {
            sock_set_linger0(other->io.fd);
        }
        conn_close(c, "%s reset the connection", side_name(c, s));
        return;
    }
    if (other->io.fd >= 0) {
        sock_set_linger0(other->io.fd);
    }
    conn_close(c, "%s %s: %s", op, side_name(c, s), strerror(err));
}

/* ---- moving bytes ---- */

/* True if direction d has input the filter holds until the other direction moves. */
static bool filter_holds(const struct tcp_conn *c, enum tcp_dir d)
{
    return c->in[d] != NULL && c->filter->held != NULL && c->filter->held(c->fst, d);
}

static void conn_linger(struct tcp_conn *c);

#define LINGER_MS 2000 /* how long an ended connection reads what the client still sends */

/*
 * The filter ended the connection (TCP_FILTER_END) with its last words in out[TCP_DOWN]: the
 * target is closed now; the client gets those words, then the end of the stream (the layer's,
 * then a FIN), and what it still sends is read and dropped until its own FIN or LINGER_MS, so
 * that the close sends no reset that would destroy the answer before the client reads it.
 */
static void conn_end(struct tcp_conn *c, const char *reason)
{
    c->ending = reason;
    loop_io_close(c->ctx->loop, &c->tgt.io);
    c->tgt.eof = c->tgt.shut = true;
    relay_buf_put(c->ctx, c->in[TCP_UP]);
    relay_buf_put(c->ctx, c->out[TCP_UP]);
    c->in[TCP_UP] = c->out[TCP_UP] = NULL;
    relay_buf_put(c->ctx, c->in[TCP_DOWN]);
    c->in[TCP_DOWN] = NULL;
    loop_timer_start(c->ctx->loop, &c->timer, LINGER_MS);
    conn_linger(c);
}

/* Runs the filter on what direction d has read. Returns 1 if it produced or consumed, 0 if it
 * needs more input, -1 if the connection was closed. c->out[d] is empty on entry. */
static int run_filter(struct tcp_conn *c, enum tcp_dir d, bool eof)
{
    struct relay_buf *in = c->in[d]; /* NULL: the filter has output of its own (pending()) */
    struct relay_buf *out = c->out[d] ? c->out[d] : relay_buf_get(c->ctx);
    if (out == NULL) {
        conn_close(c, "out of memory");
        return -1;
    }
    c->out[d] = out;
    size_t produced = 0;
    const char *reason = "protocol error";
    ssize_t used = c->filter->data(c->fst, d, in ? in->data + in->off : NULL, in ? in->len : 0, eof,
                                   out->data, RELAY_BUF_SIZE, &produced, &reason);
    if (used == TCP_FILTER_END && d == TCP_DOWN) {
        out->off = 0;
        out->len = (uint32_t)produced;
        conn_end(c, reason);
        return -1;
    }
    if (used < 0) {
        conn_close(c, "%s filter: %s", c->filter->name, reason);
        return -1;
    }
    out->off = 0;
    out->len = (uint32_t)produced;
    c->filter_moves += used > 0 || produced > 0;
    if (in == NULL) {
        return produced > 0;
    }
    in->off += (uint32_t)used;
    in->len -= (uint32_t)used;
    if (in->len == 0) {
        relay_buf_put(c->ctx, in);
        c->in[d] = NULL;
    } else if (used == 0 && produced == 0 && in->off + in->len == RELAY_BUF_SIZE) {
        if (in->off == 0 && filter_holds(c, d)) {
            return 0; /* the buffer waits for the other direction; reads wait for room */
        }
        if (in->off == 0) {
            conn_close(c, "%s filter: message larger than %u bytes", c->filter->name,
                       RELAY_BUF_SIZE);
            return -1;
        }
        memmove(in->data, in->data + in->off, in->len);
        in->off = 0;
    }
    return used > 0 || produced > 0;
}

/*
 * Accounts for a write (send or splice) to dst in direction d that returned *n. Returns 1 if *n
 * bytes went (the caller advances its buffer or pipe by *n; EINTR sets *n to 0, so the caller
 * tries again), 0 if dst would block, or -1 if the write failed and the connection was closed.
 */
static int wrote(struct tcp_conn *c, enum tcp_dir d, struct tcp_side *dst, ssize_t *n,
                 const char *op)
{
    if (*n == -1) {
        if (errno == EINTR) {
            *n = 0;
            return 1;
        }
        if (errno == EAGAIN) {
            /* A layer's write that waits for input leaves writable to the layer. */
            if (!dst->wr_wants_in) {
                dst->r.writable = false;
            }
            return 0;
        }
        conn_fail(c, dst, errno, op);
        return -1;
    }
    c->bytes[d] += (uint64_t)*n;
    c->last_ms = loop_now(c->ctx->loop);
    mapping_touch(c->map, c->ctx->worker, c->last_ms);
    return 1;
}

/* True if side s is the client's under a layer, which does its I/O. */
static bool layered(const struct tcp_conn *c, const struct tcp_side *s)
{
    return s == &c->cli && c->layer != NULL;
}

/* Writes len bytes to the layered client side s, as send() would (tcp.h: struct tcp_layer);
 * closes the connection (-1, errno 0) on a protocol error. */
static ssize_t layer_write(struct tcp_conn *c, struct tcp_side *s, const char *buf, size_t len)
{
    enum tcp_want want = TCP_WANT_NONE;
    const char *why = "protocol error";
    ssize_t n = c->layer->write(c->lst, buf, len, &want, &why);
    if (n >= 0 || errno != EPROTO) {
        if (n < 0 && errno == EAGAIN && want == TCP_WANT_READ) {
            s->wr_wants_in = true;
        }
        return n;
    }
    conn_close(c, "%s to client: %s", c->layer->name, why);
    errno = 0;
    return -1;
}

/*
 * Writes what direction d holds (spliced bytes in its pipe, then copied ones in its buffer) to
 * dst. Returns 1 when all of it is written (the pipe and the buffer are given back), 0 when dst
 * would block first, or -1 if the connection was closed.
 */
static int flush(struct tcp_conn *c, enum tcp_dir d, const struct tcp_side *src,
                 struct tcp_side *dst)
{
    struct relay_pipe *pp = &c->pipe[d];
    while (pp->len > 0) {
        if (!dst->r.writable) {
            return 0;
        }
        ssize_t n =
            splice(pp->rfd, NULL, dst->io.fd, NULL, pp->len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        int r = wrote(c, d, dst, &n, "splice to");
        if (r <= 0) {
            return r;
        }
        pp->len -= (uint32_t)n;
        c->spliced += (uint64_t)n;
    }
    relay_pipe_put(c->ctx, pp); /* drained: a pipe is held only while bytes are in flight */
    struct relay_buf *o = c->out[d];
    bool lay = layered(c, dst);
    while (o != NULL && o->len > 0) {
        if (!dst->r.writable || dst->wr_wants_in) {
            return 0;
        }
        /* The last bytes before a FIN: MSG_MORE holds a short tail for the shutdown() or
         * close() that follows in this same pump, so the bytes and the FIN leave as one
         * segment (an answer then a close, as HTTP/1.0 does, saves two segments). */
        ssize_t n = lay ? layer_write(c, dst, o->data + o->off, o->len)
                        : send(dst->io.fd, o->data + o->off, o->len,
                               MSG_NOSIGNAL | (src->eof ? MSG_MORE : 0));
        if (n == -1 && errno == 0) {
            return -1; /* closed by layer_write */
        }
        int r = wrote(c, d, dst, &n, "send to");
        if (r <= 0) {
            return r;
        }
        o->off += (uint32_t)n;
        o->len -= (uint32_t)n;
    }
    relay_buf_put(c->ctx, o);
    c->out[d] = NULL;
    return 1;
}

/* src has ended and everything before its FIN is written: the FIN goes on to dst. Returns 0, or
 * -1 if the connection was closed. */
static int pass_fin(struct tcp_conn *c, const struct tcp_side *src, struct tcp_side *dst)
{
    if (dst->shut) {
        return 0;
    }
    if (layered(c, dst) && !c->notified) {
        /* The layer ends its stream first (TLS: close_notify), then the FIN follows. */
        if (!dst->r.writable || dst->wr_wants_in) {
            return 0;
        }
        enum tcp_want want = TCP_WANT_NONE;
        int r = c->layer->shutdown(c->lst, &want);
        if (r < 0) {
            conn_fail(c, dst, errno, "close to");
            return -1;
        }
        if (r == 0) {
            dst->wr_wants_in = want == TCP_WANT_READ;
            return 0;
        }
        c->notified = true;
    }
    if (dst->eof && src->shut) {
        /* The other direction has ended both ways: the connection closes now, and close() sends
         * this FIN (dst has nothing unread left, so it is not a reset). */
        dst->shut = true;
        return 0;
    }
    /* Half-close. */
    if (shutdown(dst->io.fd, SHUT_WR) == -1 && errno != ENOTCONN) {
        conn_fail(c, dst, errno, "shutdown");
        return -1;
    }
    dst->shut = true;
    return 0;
}

/*
 * Splices what src has into direction d's pipe (bulk flows). Returns 1 if it moved bytes, saw
 * the end of the stream, or left the splice path (the caller reads again), 0 when src is empty,
 * -2 when no pipe is free (the caller copies this read instead), or -1 if the connection was
 * closed.
 */
static int read_splice(struct tcp_conn *c, enum tcp_dir d, struct tcp_side *src)
{
    struct relay_pipe *pp = &c->pipe[d];
    if (relay_pipe_get(c->ctx, pp) != 0) {
        return -2;
    }
    ssize_t n =
        splice(src->io.fd, NULL, pp->wfd, NULL, RELAY_PIPE_SIZE, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n > 0) {
        /* No short-read shortcut here: a non-blocking splice from TCP may return less than is
         * queued, so only EAGAIN says the socket is empty. */
        pp->len = (uint32_t)n;
        if ((size_t)n < RELAY_SPLICE_MIN) {
            c->bulk[d] = false; /* no longer a bulk flow: copy from the next read on */
        }
        c->last_ms = loop_now(c->ctx->loop);
        mapping_touch(c->map, c->ctx->worker, c->last_ms);
        return 1;
    }
    int e = n == 0 ? 0 : errno;
    relay_pipe_put(c->ctx, pp);
    switch (e) {
    case 0:
        saw_eof(c, src);
        return 1;
    case EAGAIN:
        src->r.readable = false; /* the pipe was empty, so the socket is */
        return 0;
    case EINTR:
        return 1;
    case EINVAL:
    case ENOSYS:
    case EOPNOTSUPP:
        /* This kernel or socket cannot splice: copy, and say so once per connection. */
        log_warn("map %s: splice from %s: %s; copying instead", c->map->conf.name,
                 side_name(c, src), strerror(e));
        c->splice = false;
        c->bulk[TCP_UP] = c->bulk[TCP_DOWN] = false;
        return 1;
    default:
        conn_fail(c, src, e, "splice from");
        return -1;
    }
}

/*
 * Reads what src has into direction d's buffer: the filter's input on the filtered path, the
 * bytes to write on the opaque one. Returns 1 if it read bytes or the end of the stream, 0 when
 * src is empty or the buffer full, or -1 if the connection was closed.
 */
static int read_copy(struct tcp_conn *c, enum tcp_dir d, struct tcp_side *src)
{
    struct relay_buf **slot = c->filter != NULL ? &c->in[d] : &c->out[d];
    if (*slot == NULL && (*slot = relay_buf_get(c->ctx)) == NULL) {
        conn_close(c, "out of memory");
        return -1;
    }
    struct relay_buf *b = *slot;
    size_t room = RELAY_BUF_SIZE - b->off - b->len;
    if (room == 0) {
        return 0; /* filtered path waiting for the filter: cannot happen on the opaque path */
    }
    /* A layer reads the socket itself, and keeps src's readiness (tcp.h). */
    bool lay = layered(c, src);
    enum tcp_want want = TCP_WANT_NONE;
    const char *why = "protocol error";
    ssize_t n = lay ? c->layer->read(c->lst, b->data + b->off + b->len, room, &want, &why)
                    : recv(src->io.fd, b->data + b->off + b->len, room, 0);
    if (n > 0) {
        b->len += (uint32_t)n;
        c->last_ms = loop_now(c->ctx->loop);
        mapping_touch(c->map, c->ctx->worker, c->last_ms);
        if ((size_t)n == room && c->splice) {
            c->bulk[d] = true; /* a full buffer: from now on, splice */
        }
        /* Edge-triggered: a short read emptied the socket, and new bytes bring a new event, so
         * skip the recv that would only say EAGAIN. After a FIN was reported, nothing can follow
         * the bytes before it: a short read has read them all, and the recv that would return 0
         * is skipped too. After a reset or an error, read on until recv reports it, so that it
         * is passed on as a reset and not as a FIN. (A layer's short read says nothing of the
         * socket: it may hold more records.) */
        if ((size_t)n < room && !lay) {
            if (src->fin) {
                saw_eof(c, src);
            } else if (!src->r.rdhup) {
                src->r.readable = false;
            }
        }
        return 1;
    }
    if (n == 0) {
        saw_eof(c, src);
        return 1;
    }
    if (errno == EINTR) {
        return 1;
    }
    if (lay && errno == EPROTO) {
        conn_close(c, "%s from client: %s", c->layer->name, why);
        return -1;
    }
    if (errno != EAGAIN) {
        conn_fail(c, src, errno, "recv from");
        return -1;
    }
    if (want == TCP_WANT_WRITE) {
        src->rd_wants_out = true; /* the write it needs first waits for the socket */
    } else {
        src->r.readable = false;
    }
    if (b->len == 0) {
        relay_buf_put(c->ctx, b);
        *slot = NULL;
    }
    return 0;
}

/*
 * Moves what can be moved in direction d without blocking: write what is held, let the filter
 * see what it has not, pass a FIN on, read more; until the writer or the reader would block.
 * Returns 0, or -1 if the connection was closed.
 *
 * Small messages (requests, a ping-pong) are cheaper to copy: one recv that comes back short
 * says the socket is empty, where splice needs a further call to learn it, and a few hundred
 * bytes cost nothing to copy. So a direction starts on recv, and moves to splice once a read
 * fills a whole buffer; it goes back when a splice brings less than RELAY_SPLICE_MIN (the flow
 * is no longer bulk).
 */
static int pump(struct tcp_conn *c, enum tcp_dir d)
{
    struct tcp_side *src = d == TCP_UP ? &c->cli : &c->tgt;
    struct tcp_side *dst = d == TCP_UP ? &c->tgt : &c->cli;
    for (;;) {
        int r = flush(c, d, src, dst);
        if (r <= 0) {
            return r;
        }
        if (c->filter != NULL &&
            (c->in[d] != NULL || (c->filter->pending && c->filter->pending(c->fst, d)))) {
            r = run_filter(c, d, src->eof);
            if (r < 0) {
                return -1;
            }
            if (r > 0) {
                continue;
            }
        }
        if (src->eof) {
            /* Input the filter holds (a request waiting for a login's check, or for answers)
             * goes on before the end of the stream: the FIN waits for it. */
            if (c->filter != NULL && filter_holds(c, d)) {
                return 0;
            }
            return pass_fin(c, src, dst);
        }
        if (layered(c, src) ? src->rd_wants_out || !(src->r.readable || c->layer->pending(c->lst))
                            : !src->r.readable) {
            return 0;
        }
        r = c->bulk[d] ? read_splice(c, d, src) : -2;
        if (r == -2) {
            r = read_copy(c, d, src);
        }
        if (r <= 0) {
            return r;
        }
    }
}

/* An ended connection (conn_end()): its last words out, then the FIN, then what the client
 * sends dropped until it closes. */
static void conn_linger(struct tcp_conn *c)
{
    if (flush(c, TCP_DOWN, &c->tgt, &c->cli) <= 0 || pass_fin(c, &c->tgt, &c->cli) < 0) {
        return; /* waits for room, or closed */
    }
    if (!c->cli.shut) {
        return; /* the layer waits to send its end */
    }
    char drop[4096];
    enum tcp_want want;
    const char *why;
    for (;;) {
        if (layered(c, &c->cli) ? !(c->cli.r.readable || c->layer->pending(c->lst))
                                : !c->cli.r.readable) {
            return;
        }
        ssize_t n = layered(c, &c->cli) ? c->layer->read(c->lst, drop, sizeof(drop), &want, &why)
                                        : recv(c->cli.io.fd, drop, sizeof(drop), 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            conn_close(c, "%s", c->ending);
            return;
        }
        if (n < 0 && errno == EAGAIN) {
            c->cli.r.readable = false;
            return;
        }
    }
}

static void conn_run(struct tcp_conn *c)
{
    if (c->ending != NULL) {
        conn_linger(c);
        return;
    }
    for (;;) {
        uint64_t moved = c->filter_moves;
        if (pump(c, TCP_UP) < 0) {
            return;
        }
        bool held = c->filter != NULL && filter_holds(c, TCP_UP);
        if (pump(c, TCP_DOWN) < 0) {
            return;
        }
        /* A filter may hold a direction's input until the other has moved (forward/tcp.h:
         * held), or have output of its own for the target from what the target said (http's
         * device-auth sends a request again). What moved the other way brings no event on
         * that side, so while the filter moved since, the two run again. */
        held =
            held || (c->filter != NULL && filter_holds(c, TCP_DOWN)) ||
            (c->filter != NULL && c->filter->pending != NULL && c->filter->pending(c->fst, TCP_UP));
        if (!held || c->filter_moves == moved) {
            break;
        }
    }
    if (c->cli.shut && c->tgt.shut) {
        conn_close(c, "closed by %s, then by %s", c->first_eof,
                   strcmp(c->first_eof, "client") == 0 ? "target" : "client");
    }
}

void tcp_conn_kick(struct tcp_conn *c)
{
    if (c->connected) {
        conn_run(c);
    }
}

/* ---- events ---- */

static void conn_handshake(struct tcp_conn *c);
static void conn_route(struct tcp_conn *c, bool timeout);
static void conn_connect(struct tcp_conn *c);
static void conn_proxy(struct tcp_conn *c);
static void conn_begin(struct tcp_conn *c);

/*
 * send-proxy: the PROXY header that names the client and the address it connected to (with
 * accept-proxy, what its proxy said; for a layered mapping, still the TCP connection's) goes to
 * the target first: it waits in the buffer towards the target, which pump() writes before any
 * byte of the client's. Returns 0, or -1 if the connection was closed.
 */
static int conn_send_proxy(struct tcp_conn *c)
{
    struct sockaddr_storage dst = c->orig_dst;
    socklen_t len = sizeof(dst);
    if (dst.ss_family == 0 && getsockname(c->cli.io.fd, (struct sockaddr *)&dst, &len) == -1) {
        conn_close(c, "send-proxy: getsockname: %s", strerror(errno));
        return -1;
    }
    struct relay_buf *b = relay_buf_get(c->ctx);
    if (b == NULL) {
        conn_close(c, "out of memory");
        return -1;
    }
    int n = proxyhdr_build(c->map->conf.send_proxy, &c->client, &dst, b->data, RELAY_BUF_SIZE);
    if (n < 0) {
        relay_buf_put(c->ctx, b);
        conn_close(c, "send-proxy: the client is not an IP address");
        return -1;
    }
    b->off = 0;
    b->len = (uint32_t)n;
    c->out[TCP_UP] = b; /* empty until the target has accepted */
    return 0;
}

/* The target's socket became writable (ev: its epoll events; 0 when connect() finished at
 * once). A failed connect always comes with EPOLLERR, so only then is SO_ERROR read. */
static void on_connected(struct tcp_conn *c, uint32_t ev)
{
    int err = ev & (LOOP_ERR | LOOP_HUP) ? sock_error(c->tgt.io.fd) : 0;
    if (err != 0) {
        char ts[ADDR_STRLEN];
        mapping_stat_add(&mapping_shard(c->map, c->ctx->worker)->stats.connect_failed, 1);
        conn_close(c, "connect to %s: %s", addr_format(&c->target, ts, sizeof(ts)), strerror(err));
        return;
    }
    if (c->filter != NULL) {
        struct tcp_filter_conn fc = {.conn = c,
                                     .ctx = c->ctx,
                                     .state = c->fstate,
                                     .map = c->map,
                                     .client = c->client,
                                     .target = c->target};
        socklen_t len = sizeof(fc.client_local);
        getsockname(c->cli.io.fd, (struct sockaddr *)&fc.client_local, &len);
        len = sizeof(fc.target_local);
        getsockname(c->tgt.io.fd, (struct sockaddr *)&fc.target_local, &len);
        c->fst = c->filter->open(&fc);
        if (c->fst == NULL) {
            conn_close(c, "%s filter: out of memory", c->filter->name);
            return;
        }
    }
    if (c->map->conf.send_proxy != PROXYHDR_OFF && conn_send_proxy(c) < 0) {
        return;
    }
    c->connected = true;
    c->last_ms = loop_now(c->ctx->loop);
    mapping_touch(c->map, c->ctx->worker, c->last_ms);
    if (c->map->conf.idle_timeout_ms != 0) {
        loop_timer_start(c->ctx->loop, &c->timer, c->map->conf.idle_timeout_ms);
    } else {
        loop_timer_stop(c->ctx->loop, &c->timer);
    }
    conn_run(c);
}

static void side_event(struct loop_io *io, uint32_t ev)
{
    struct tcp_side *s = container_of(io, struct tcp_side, io);
    struct tcp_conn *c = s->conn;
    if (ev & (LOOP_IN | LOOP_RDHUP | LOOP_HUP | LOOP_ERR)) {
        s->r.readable = true;
        if (s->wr_wants_in) {
            s->wr_wants_in = false;
            s->r.writable = true;
        }
    }
    if (ev & (LOOP_RDHUP | LOOP_HUP | LOOP_ERR)) {
        s->r.rdhup = true;
        s->fin = (ev & (LOOP_HUP | LOOP_ERR)) == 0;
    }
    if (ev & (LOOP_OUT | LOOP_HUP | LOOP_ERR)) {
        s->r.writable = true;
        if (s->rd_wants_out) {
            s->rd_wants_out = false;
            s->r.readable = true;
        }
    }
    if (c->proxy_wait) {
        conn_proxy(c); /* only the client's side exists yet */
        return;
    }
    if (c->handshaking) {
        conn_handshake(c); /* only the client's side exists yet */
        return;
    }
    if (c->ending != NULL) {
        conn_linger(c);
        return;
    }
    if (c->routing) {
        conn_route(c, false);
        return;
    }
    if (!c->connected) {
        if (s == &c->tgt && s->r.writable) {
            on_connected(c, ev);
        } else if (s == &c->cli && (ev & (LOOP_HUP | LOOP_ERR))) {
            conn_close(c, "client left before the target answered");
        }
        return;
    }
    conn_run(c);
}

static void conn_timer(struct loop_timer *t)
{
    struct tcp_conn *c = container_of(t, struct tcp_conn, timer);
    struct loop *loop = c->ctx->loop;
    if (c->proxy_wait) {
        conn_close(c, "PROXY header: not whole within %ums (connect-timeout)",
                   c->map->conf.connect_timeout_ms);
        return;
    }
    if (c->handshaking) {
        conn_close(c, "%s handshake: not done within %ums", c->layer->name, c->handshake_ms);
        return;
    }
    if (c->ending != NULL) {
        conn_close(c, "%s", c->ending);
        return;
    }
    if (c->routing) {
        conn_route(c, true);
        return;
    }
    if (!c->connected) {
        char ts[ADDR_STRLEN];
        mapping_stat_add(&mapping_shard(c->map, c->ctx->worker)->stats.connect_failed, 1);
        conn_close(c, "connect to %s: no answer within %ums",
                   addr_format(&c->target, ts, sizeof(ts)), c->map->conf.connect_timeout_ms);
        return;
    }
    uint64_t deadline = c->last_ms + c->map->conf.idle_timeout_ms;
    if (loop_now(loop) >= deadline) {
        conn_close(c, "idle for %ums (idle-timeout)", c->map->conf.idle_timeout_ms);
        return;
    }
    loop_timer_start_at(loop, &c->timer, deadline);
}

/* Logs a refused client: one line a second per kind of refusal (mapping_log_ok). */
static void log_refused(const struct mapping *m, struct relay_ctx *ctx,
                        const struct sockaddr_storage *client, enum mapping_verdict v)
{
    uint64_t suppressed;
    enum mapping_log what =
        v == MAPPING_DENIED || v == MAPPING_UNTRUSTED ? MAPPING_LOG_DENIED : MAPPING_LOG_LIMIT;
    if (mapping_log_ok(m, ctx->worker, what, loop_now(ctx->loop), &suppressed)) {
        char cs[ADDR_STRLEN];
        log_warn("map %s: tcp refused %s: %s (%llu more refusals not logged)", m->conf.name,
                 addr_format(client, cs, sizeof(cs)), mapping_verdict_reason(v),
                 (unsigned long long)suppressed);
    }
}

static void refuse(struct tcp_listener *l, int fd, const struct sockaddr_storage *client,
                   enum mapping_verdict v)
{
    log_refused(l->map, l->ctx, client, v);
    sock_set_linger0(fd);
    close(fd);
}

/*
 * Whether the client has bytes waiting: a client that speaks first (HTTP, TLS, RTSP) has usually
 * sent its request by the time its connection is accepted. Then the target's handshake can end
 * with that request (SOCK_SEND_FIRST), since pump() relays it the moment the target accepts (a
 * filter, once it has a whole message: until then the target has nothing to do either).
 * One ioctl: the bytes stay where they are, so no buffer is held while connecting.
 */
static bool client_spoke_first(int fd)
{
    int queued = 0;
    return ioctl(fd, FIONREAD, &queued) == 0 && queued > 0;
}

/* The client may send: a protocol with a router waits for what it needs to choose the mapping,
 * under the router's timeout; the others connect to the target now. */
static void conn_ready(struct tcp_conn *c)
{
    if (c->router == NULL) {
        conn_connect(c);
        return;
    }
    c->routing = true;
    loop_timer_start(c->ctx->loop, &c->timer, c->router->timeout_ms(c->map));
    conn_route(c, false);
}

/* True if the client's side may have bytes to read now. */
static bool cli_readable(const struct tcp_conn *c)
{
    if (c->layer != NULL) {
        return !c->cli.rd_wants_out && (c->cli.r.readable || c->layer->pending(c->lst));
    }
    return c->cli.r.readable;
}

/*
 * Reads what the client sends until the router chooses its mapping (forward/tcp.h: struct
 * tcp_router), then admits the connection by that mapping's rules and connects to its target;
 * what was read waits in the filter's input. Or the router refuses: its answer goes to the
 * client, and the connection ends without a target (conn_end()).
 */
static void conn_route(struct tcp_conn *c, bool timeout)
{
    struct tcp_side *s = &c->cli;
    while (!timeout && !s->eof && cli_readable(c)) {
        int r = read_copy(c, TCP_UP, s);
        if (r < 0) {
            return;
        }
        if (r == 0) {
            break; /* empty, or the buffer is full */
        }
    }
    struct relay_buf *in = c->in[TCP_UP];
    bool full = in != NULL && in->off + in->len == RELAY_BUF_SIZE;
    if (in == NULL && !s->eof && !timeout) {
        return;
    }
    struct tcp_route_conn rc = {.group = c->group,
                                .servername = c->layer != NULL && c->layer->servername != NULL
                                                  ? c->layer->servername(c->lst)
                                                  : NULL,
                                .client = &c->client,
                                .worker = c->ctx->worker,
                                .now_ms = loop_now(c->ctx->loop)};
    char answer[TCP_ROUTE_ANSWER_MAX];
    size_t alen = 0;
    const char *why = "refused";
    ssize_t r =
        c->router->route(&rc, in != NULL ? in->data + in->off : "", in != NULL ? in->len : 0,
                         s->eof, timeout, answer, sizeof(answer), &alen, &why);
    if (r == TCP_ROUTE_MORE) {
        if (s->eof) {
            conn_close(c, "client closed before it said what it wants");
        } else if (timeout || full) {
            conn_close(c, "client sent %s without saying what it wants",
                       full ? "a full buffer" : "too little in time");
        }
        return;
    }
    c->routing = false;
    if (r < 0 || (size_t)r >= c->group->n) {
        if (alen > 0) {
            struct relay_buf *out = relay_buf_get(c->ctx);
            if (out == NULL) {
                conn_close(c, "out of memory");
                return;
            }
            memcpy(out->data, answer, alen < sizeof(answer) ? alen : sizeof(answer));
            out->off = 0;
            out->len = (uint32_t)(alen < sizeof(answer) ? alen : sizeof(answer));
            relay_buf_put(c->ctx, c->out[TCP_DOWN]);
            c->out[TCP_DOWN] = out;
        }
        conn_end(c, why);
        return;
    }
    struct mapping *m = c->group->maps[r];
    if (c->layer != NULL && c->layer->admits != NULL && !c->layer->admits(c->lst, m)) {
        uint64_t suppressed;
        if (mapping_log_ok(m, c->ctx->worker, MAPPING_LOG_DENIED, loop_now(c->ctx->loop),
                           &suppressed)) {
            char cs[ADDR_STRLEN];
            log_warn("map %s: tcp refused %s: what its %s handshake proved (a client "
                     "certificate) is not for this mapping (%llu more refusals not logged)",
                     m->conf.name, addr_format(&c->client, cs, sizeof(cs)), c->layer->name,
                     (unsigned long long)suppressed);
        }
        mapping_stat_add(&mapping_shard(m, c->ctx->worker)->stats.refused_acl, 1);
        sock_set_linger0(s->io.fd);
        c->refused = true;
        conn_close(c, "refused by map %s: its %s handshake does not admit this client",
                   m->conf.name, c->layer->name);
        return;
    }
    if (!c->chosen) {
        /* The place held of the port's first mapping goes back; the chosen one admits. */
        if (c->counted) {
            mapping_release(c->map, &c->client);
            c->counted = false;
        }
        enum mapping_verdict v = mapping_admit(m, c->ctx->worker, &c->client);
        if (v != MAPPING_ADMIT) {
            log_refused(m, c->ctx, &c->client, v);
            sock_set_linger0(s->io.fd);
            c->refused = true;
            conn_close(c, "refused by map %s: %s", m->conf.name, mapping_verdict_reason(v));
            return;
        }
        mapping_unref(c->map);
        c->map = mapping_ref(m);
        c->counted = c->chosen = true;
        mapping_touch(m, c->ctx->worker, loop_now(c->ctx->loop));
    }
    mapping_target(c->map, c->port, &c->target);
    loop_timer_stop(c->ctx->loop, &c->timer);
    conn_connect(c);
}

/* Moves the layer's handshake on; once it is done, the client may send (conn_ready()). */
static void conn_handshake(struct tcp_conn *c)
{
    enum tcp_want want = TCP_WANT_NONE;
    const char *why = "failed";
    int r = c->layer->handshake(c->lst, &want, &why);
    if (r < 0) {
        conn_close(c, "%s handshake: %s", c->layer->name, why);
        return;
    }
    if (r == 0) {
        return; /* the layer cleared the flag it waits for: the next event moves it on */
    }
    c->handshaking = false;
    conn_ready(c);
}

/*
 * Admits a new client to a port: by its one mapping's rules; or, on a port several mappings
 * share, while none is chosen, if one of them at least would let it in (allow, deny), and
 * within the limits (max-conns, max-conns-per-ip) of the port's first mapping, which it holds a
 * place of until the router has chosen (conn_route). Either way the connection counts on the
 * group's first mapping: mapping_release() it.
 */
static enum mapping_verdict port_admit(const struct mapping_group *g, unsigned w,
                                       const struct sockaddr_storage *client)
{
    struct mapping *first = g->maps[0];
    if (g->n == 1) {
        return mapping_admit(first, w, client);
    }
    for (size_t i = 0; i < g->n; i++) {
        if (mapping_check_acl(g->maps[i], client) == MAPPING_ADMIT) {
            return mapping_hold(first, w, client);
        }
    }
    mapping_stat_add(&mapping_shard(first, w)->stats.refused_acl, 1);
    return MAPPING_DENIED;
}

/*
 * accept-proxy: reads the header that the client's proxy sends first (forward/proxyhdr.h) and
 * nothing after it, so that what follows (a TLS ClientHello) stays in the socket: the bytes are
 * peeked into a small buffer and parsed, and only the header's length is read. Until it is
 * whole, each new segment brings an event (edge-triggered) and the bytes are peeked again,
 * within connect-timeout. Then the client is the one it names (LOCAL, UNKNOWN: the proxy
 * itself), admitted as any other (allow/deny, max-conns, max-conns-per-ip), and the connection
 * goes on as if it had just been accepted from that client.
 */
static void conn_proxy(struct tcp_conn *c)
{
    char buf[PROXYHDR_MAX];
    int fd = c->cli.io.fd;
    ssize_t n;
    do {
        n = recv(fd, buf, sizeof(buf), MSG_PEEK);
    } while (n == -1 && errno == EINTR);
    if (n == -1) {
        if (errno == EAGAIN) {
            c->cli.r.readable = false;
        } else {
            conn_fail(c, &c->cli, errno, "recv from");
        }
        return;
    }
    struct proxyhdr h;
    const char *why = "invalid";
    int len = n > 0 ? proxyhdr_parse(buf, (size_t)n, c->map->conf.accept_proxy, &h, &why) : 0;
    if (len < 0) {
        conn_close(c, "PROXY header: %s", why);
        return;
    }
    if (len == 0) {
        if (n == 0 || c->cli.r.rdhup) {
            conn_close(c, "PROXY header: the client's proxy ended before a whole one");
        } else {
            c->cli.r.readable = false;
        }
        return;
    }
    ssize_t got = recv(fd, buf, (size_t)len, 0);
    if (got != len) { /* cannot happen: the bytes were peeked */
        conn_close(c, "PROXY header: recv: %s", got < 0 ? strerror(errno) : "short read");
        return;
    }
    if (h.has_addrs) {
        c->client = h.src;
        c->orig_dst = h.dst;
    }
    c->proxy_wait = false;
    loop_timer_stop(c->ctx->loop, &c->timer);
    enum mapping_verdict v = port_admit(c->group, c->ctx->worker, &c->client);
    if (v != MAPPING_ADMIT) {
        log_refused(c->map, c->ctx, &c->client, v);
        sock_set_linger0(fd);
        c->refused = true;
        conn_close(c, "refused");
        return;
    }
    c->counted = true;
    c->chosen = c->group->n == 1;
    c->cli.r.readable = true; /* what follows the header may be in the socket already */
    conn_begin(c);
}

static void conn_start(struct tcp_listener *l, int fd, const struct sockaddr_storage *client)
{
    struct relay_ctx *ctx = l->ctx;
    struct mapping *m = l->map;
    /* accept-proxy: the peer must be a trusted proxy, and the client its header names is
     * admitted once it is read (conn_proxy). */
    bool proxied = m->conf.accept_proxy != PROXYHDR_OFF;
    enum mapping_verdict v = proxied ? mapping_check_proxy(m, ctx->worker, client)
                                     : port_admit(l->group, ctx->worker, client);
    if (v != MAPPING_ADMIT) {
        refuse(l, fd, client, v);
        return;
    }
    struct tcp_conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        log_error("map %s: out of memory; closing a new connection", m->conf.name);
        if (!proxied) {
            mapping_release(m, client);
        }
        close(fd);
        return;
    }
    c->ctx = ctx;
    c->map = mapping_ref(m);
    c->counted = !proxied;
    c->chosen = !proxied && l->group->n == 1;
    c->group = mapping_group_ref(l->group);
    c->router = l->router;
    c->port = l->port;
    c->client = *client;
    c->cli.conn = c->tgt.conn = c;
    c->cli.io.fd = c->tgt.io.fd = -1; /* set when registered: conn_close() closes them */
    c->pipe[0].rfd = c->pipe[0].wfd = c->pipe[1].rfd = c->pipe[1].wfd = -1;
    c->splice = ctx->splice && l->filter == NULL && l->layer == NULL;
    c->start_ms = c->last_ms = loop_now(ctx->loop);
    c->id = ++ctx->conn_ids;
    mapping_touch(m, ctx->worker, c->start_ms);
    loop_timer_init(&c->timer, conn_timer);
    mapping_target(m, l->port, &c->target);
    c->next = ctx->conns;
    if (ctx->conns) {
        ctx->conns->prev = c;
    }
    ctx->conns = c;
    ctx->nconns++;

    c->filter = l->filter; /* opened once the target has accepted */
    c->fstate = l->fstate;
    c->layer = l->layer;
    /* TCP_NODELAY: inherited from the listening socket. The relay writes what it has read as
     * soon as it has read it; Nagle on our side would only delay small writes the client (or the
     * target) already chose to send, so both sides relay without it. */
    int rc = loop_io_add(ctx->loop, &c->cli.io, fd, LOOP_IN | LOOP_OUT | LOOP_RDHUP | LOOP_ET,
                         side_event);
    if (rc < 0) {
        close(fd);
        conn_close(c, "epoll: %s", strerror(-rc));
        return;
    }
    if (proxied) {
        c->proxy_wait = true;
        loop_timer_start(ctx->loop, &c->timer, m->conf.connect_timeout_ms);
        conn_proxy(c);
        return;
    }
    conn_begin(c);
}

/* The client is known (and admitted, but on a port several mappings share): the layer's
 * handshake if any, then the router's choice if any, then the connect to the target. */
static void conn_begin(struct tcp_conn *c)
{
    struct relay_ctx *ctx = c->ctx;
    struct mapping *m = c->map;
    int fd = c->cli.io.fd;
    if (c->layer == NULL) {
        conn_ready(c);
        return;
    }
    /* The client's bytes wait in the socket until the layer reads them. */
    c->cli.r.readable = c->cli.r.writable = true;
    struct tcp_layer_conn lc = {.run = map_conf_run(&m->conf),
                                .map = m,
                                .group = c->group,
                                .worker = ctx->worker,
                                .fd = fd,
                                .ready = &c->cli.r,
                                .client = &c->client};
    c->lst = c->layer->open(&lc, &c->handshake_ms);
    if (c->lst == NULL) {
        conn_close(c, "%s: out of memory", c->layer->name);
        return;
    }
    c->handshaking = true;
    loop_timer_start(ctx->loop, &c->timer, c->handshake_ms);
    conn_handshake(c);
}

/* The layer's handshake is done: the target is connected to. */
static void conn_connect(struct tcp_conn *c)
{
    struct relay_ctx *ctx = c->ctx;
    struct mapping *m = c->map;
    int fd = c->cli.io.fd;
    bool spoke = c->in[TCP_UP] != NULL || (c->layer != NULL && c->layer->pending(c->lst)) ||
                 client_spoke_first(fd);
    int in_progress;
    int tfd = sock_connect(&c->target, SOCK_STREAM, spoke ? SOCK_SEND_FIRST : 0, &in_progress);
    if (tfd < 0) {
        char ts[ADDR_STRLEN];
        mapping_stat_add(&mapping_shard(m, ctx->worker)->stats.connect_failed, 1);
        conn_close(c, "connect to %s: %s", addr_format(&c->target, ts, sizeof(ts)), strerror(-tfd));
        return;
    }
    int rc = loop_io_add(ctx->loop, &c->tgt.io, tfd, LOOP_IN | LOOP_OUT | LOOP_RDHUP | LOOP_ET,
                         side_event);
    if (rc < 0) {
        close(tfd);
        conn_close(c, "epoll: %s", strerror(-rc));
        return;
    }
    if (log_enabled(LOG_LVL_DEBUG)) {
        char cs[ADDR_STRLEN], ts[ADDR_STRLEN];
        log_debug("map %s: tcp %s -> %s: connecting", m->conf.name,
                  addr_format(&c->client, cs, sizeof(cs)), addr_format(&c->target, ts, sizeof(ts)));
    }
    if (in_progress) {
        loop_timer_start(ctx->loop, &c->timer, m->conf.connect_timeout_ms);
    } else {
        c->tgt.r.writable = true;
        on_connected(c, 0);
    }
}

static void listener_backoff_done(struct loop_timer *t)
{
    struct tcp_listener *l = container_of(t, struct tcp_listener, backoff);
    loop_io_mod(l->ctx->loop, &l->io, LOOP_IN);
}

/* Accepts up to max queued connections and starts them. Returns how many it took: fewer than max
 * when the queue is empty or accepting must wait (out of descriptors: paused for a moment). */
static int accept_some(struct tcp_listener *l, int max)
{
    int taken = 0;
    while (taken < max) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        int fd = accept4(l->io.fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd == -1) {
            switch (errno) {
            case EAGAIN:
                return taken;
            case EINTR:
            case ECONNABORTED:
            case EPROTO:
            case EPERM:
                continue;
            case EMFILE:
            case ENFILE:
            case ENOBUFS:
            case ENOMEM: {
                /* Out of descriptors or memory: stop polling this listener for a moment instead
                 * of spinning on a connection we cannot take. It stays in the backlog. */
                int e = errno;
                uint64_t suppressed;
                if (log_ratelimit_ok(&l->emfile_log, loop_now(l->ctx->loop), 1000, &suppressed)) {
                    log_error("map %s: accept on port %u: %s; pausing accepts for %dms (%llu "
                              "more pauses not logged)",
                              l->map->conf.name, l->port, strerror(e), ACCEPT_BACKOFF_MS,
                              (unsigned long long)suppressed);
                }
                loop_io_mod(l->ctx->loop, &l->io, 0);
                loop_timer_start(l->ctx->loop, &l->backoff, ACCEPT_BACKOFF_MS);
                return taken;
            }
            default:
                log_error("map %s: accept on port %u: %s", l->map->conf.name, l->port,
                          strerror(errno));
                return taken;
            }
        }
        conn_start(l, fd, &ss);
        taken++;
    }
    return taken;
}

static void listener_event(struct loop_io *io, uint32_t ev)
{
    (void)ev;
    accept_some(container_of(io, struct tcp_listener, io), ACCEPT_BATCH);
}

size_t tcp_listener_take_queued(struct tcp_listener *l)
{
    size_t total = 0;
    int n;
    do {
        n = accept_some(l, ACCEPT_BATCH);
        total += (size_t)n;
    } while (n == ACCEPT_BATCH);
    return total;
}

struct tcp_listener *tcp_listener_new(struct relay_ctx *ctx, int fd, struct mapping_group *g,
                                      uint16_t port)
{
    struct tcp_listener *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        close(fd);
        errno = ENOMEM;
        return NULL;
    }
    l->ctx = ctx;
    l->port = port;
    tcp_listener_set_group(l, g);
    loop_timer_init(&l->backoff, listener_backoff_done);
    int rc = loop_io_add(ctx->loop, &l->io, fd, LOOP_IN, listener_event);
    if (rc < 0) {
        close(fd);
        mapping_group_unref(l->group);
        free(l);
        errno = -rc;
        return NULL;
    }
    return l;
}

void tcp_listener_set_group(struct tcp_listener *l, struct mapping_group *g)
{
    struct mapping_group *old = l->group;
    const struct proto *p = g->maps[0]->conf.proto;
    l->group = mapping_group_ref(g);
    l->map = g->maps[0];
    l->filter = p->filter;
    l->layer = p->layer;
    l->router = p->router;
    l->fstate = p->filter != NULL ? relay_proto_state(l->ctx, p) : NULL;
    mapping_group_unref(old);
}

void tcp_listener_free(struct tcp_listener *l)
{
    if (l == NULL) {
        return;
    }
    loop_timer_stop(l->ctx->loop, &l->backoff);
    loop_io_del(l->ctx->loop, &l->io);
    close(l->io.fd);
    mapping_group_unref(l->group);
    free(l);
}

void tcp_close_all(struct relay_ctx *ctx, const char *reason)
{
    while (ctx->conns != NULL) {
        conn_close(ctx->conns, "%s", reason);
    }
}

void tcp_conn_each(struct relay_ctx *ctx, void (*fn)(void *arg, const struct tcp_conn_info *ci),
                   void *arg)
{
    for (struct tcp_conn *c = ctx->conns; c != NULL; c = c->next) {
        struct tcp_conn_info ci = {.id = c->id,
                                   .map = c->map,
                                   .client = c->client,
                                   .target = c->target,
                                   .bytes = {c->bytes[TCP_UP], c->bytes[TCP_DOWN]},
                                   .start_ms = c->start_ms,
                                   .last_ms = c->last_ms,
                                   .connected = c->connected};
        fn(arg, &ci);
    }
}

bool tcp_conn_close_id(struct relay_ctx *ctx, uint64_t id, const char *reason)
{
    for (struct tcp_conn *c = ctx->conns; c != NULL; c = c->next) {
        if (c->id == id) {
            conn_close(c, "%s", reason);
            return true;
        }
    }
    return false;
}
