/*
 * tcp: TCP listeners and the connections they accept.
 *
 * A listener owns one listening socket (one port of a mapping, or of several that share it: a
 * struct mapping_group) and a reference to its group, which a reload may swap
 * (tcp_listener_set_group); connections keep the mapping they started with. A connection pairs
 * the accepted client socket with a non-blocking connect to the target and relays both ways:
 *   - opaque path: bytes read from one side are written to the other unchanged;
 *   - filtered path: a struct tcp_filter sees the bytes of each direction and writes what goes
 *     on (a protocol module: RTSP, HTTP);
 *   - layered: a struct tcp_layer (TLS) does the client socket's I/O, under the filter if any;
 *     the target is connected to once its handshake is done;
 *   - routed: a struct tcp_router picks the connection's mapping among the group's from what
 *     the client sends first (HTTP's Host), and the target is connected to only then.
 * Memory is bounded: each direction holds at most one buffer (two on the filtered path), and a
 * side is not read while the buffer towards the other side is full, so a slow reader stops the
 * reads from the fast writer. Buffers come from the relay pool only while bytes are in flight.
 * A FIN from one side is passed on as shutdown(SHUT_WR) once the bytes before it are written;
 * the connection ends when both directions have ended, or on a reset (passed on as a reset), an
 * error, the idle timeout, or shutdown. Every end goes through one close path that logs one line.
 */
#ifndef PORTGATE_TCP_H
#define PORTGATE_TCP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "forward/mapping.h"
#include "forward/relay.h"

enum tcp_dir { TCP_UP = 0 /* client -> target */, TCP_DOWN = 1 /* target -> client */ };

struct tcp_conn;

/* What a filter learns of its connection when it opens. */
struct tcp_filter_conn {
    struct tcp_conn *conn; /* for tcp_conn_kick() */
    struct relay_ctx *ctx; /* the worker's: for sockets and timers the filter opens */
    void *state;           /* what the protocol keeps on this worker (forward/proto.h), or NULL */
    const struct mapping *map;
    struct sockaddr_storage client, client_local; /* the client, and our address it used */
    struct sockaddr_storage target, target_local; /* the target, and our address towards it */
};

/*
 * A stream filter. open() is called once the target has accepted (so both ends are known) and
 * returns the filter's state, or NULL when out of memory. data() is given the unconsumed bytes
 * read in direction dir, and appends what should be sent on to out (at most out_room bytes). It
 * returns how many input bytes it consumed (it may keep a partial message until more arrives)
 * and sets *out_len; or -1 to end the connection, with *reason set. eof says no more input
 * will come. A filter that makes output of its own (an answer to the client that the target
 * never sees, or a request the target asked to have again) says so with pending(): data() is
 * then called for that direction even with no input (in == NULL, len 0), also when the output
 * comes of what the other direction read. A filter that takes no more input in a direction until
 * the other direction has moved (rtsp reads no more requests while 16 await their answers) says so
 * with held(): the relay then stops reading that side once its buffer is full, without taking the
 * full buffer for a message too large to parse, and offers the held input again as soon as the
 * filter has moved bytes the other way. pending and held may be NULL.
 * data() for TCP_DOWN may also return TCP_FILTER_END, with *out_len and *reason set: what it
 * wrote is the last the client gets (the gateway's own answer to a refused request); the
 * target is closed at once, and the client gets those bytes, then the end of the stream, while
 * what it still sends is dropped for a moment (so the close sends no reset that would destroy
 * the answer before the client reads it).
 */
#define TCP_FILTER_END (-2)
struct tcp_filter {
    const char *name;
    void *(*open)(const struct tcp_filter_conn *fc);
    ssize_t (*data)(void *st, enum tcp_dir dir, const char *in, size_t len, bool eof, char *out,
                    size_t out_room, size_t *out_len, const char **reason);
    bool (*pending)(void *st, enum tcp_dir dir);
    bool (*held)(void *st, enum tcp_dir dir);
    void (*close)(void *st);
};

/*
 * A socket's readiness as the relay knows it (edge-triggered): readable and writable are set by
 * each event and stay set until a call on the socket would block. rdhup says the peer's FIN or
 * a reset was reported: then the socket is read until recv says which. A layer that does its
 * socket's I/O itself keeps these up to date as the relay does: it makes no call that the flags
 * say would block, and clears a flag when a call blocks or a short read has emptied the socket.
 */
struct tcp_ready {
    bool readable, writable, rdhup;
};

/* What a layer waits for when a call of it cannot go on: its socket to be readable or writable
 * (a TLS read that must first send, a handshake waiting for the client's next flight). */
enum tcp_want { TCP_WANT_NONE, TCP_WANT_READ, TCP_WANT_WRITE };

/* What a layer learns of its connection when it opens: at accept, before the target exists. */
struct tcp_layer_conn {
    void *run; /* the mapping's run object (forward/proto.h: run_open) */
    const struct mapping *map;
    /* The mappings that share the port, map first (forward/mapping.h): a layer that chooses a
     * certificate by server name chooses among all of theirs. Lives as long as the connection. */
    const struct mapping_group *group;
    unsigned worker; /* for the mapping's counters: mapping_shard(map, worker) */
    int fd;          /* the client's socket; the relay registers and closes it */
    struct tcp_ready *ready;
    const struct sockaddr_storage *client;
};

/*
 * A layer between the client's socket and the relay: TLS. The relay hands it the client's
 * socket at accept and from then on reads and writes the client's bytes only through it; the
 * filter, if any, sees what it reads (plaintext). The target is connected to only once the
 * layer's handshake is done, so a client that never completes one costs the target nothing.
 *   open(): the layer's state, or NULL when out of memory; *timeout_ms is how long the client
 *       has to complete the handshake.
 *   handshake(): 1 when done, 0 when waiting (*want), -1 when it failed (*reason: one line).
 *   read() and write(): as recv and send, with one difference: a call that cannot go on now
 *       returns -1 with errno EAGAIN and *want saying what it waits for. Other errors: errno
 *       from the socket (ECONNRESET and EPIPE pass a reset on), or EPROTO with *reason.
 *       read() returns 0 at the end of the stream (TLS: close_notify, or the FIN).
 *   pending(): true if it holds input it has read from the socket but not returned yet (a TLS
 *       record after the one returned): the relay reads on although the socket is empty.
 *   shutdown(): ends what the relay writes (TLS: close_notify), before the relay's FIN: 1
 *       when done, 0 when waiting (*want), -1 on failure (errno).
 *   describe(): a few words for a log line ("TLSv1.3 TLS_AES_128_GCM_SHA256 sni=cam1"), or "".
 *   close(): frees the state; does not close the socket.
 */
struct tcp_layer {
    const char *name;
    void *(*open)(const struct tcp_layer_conn *lc, uint32_t *timeout_ms);
    int (*handshake)(void *st, enum tcp_want *want, const char **reason);
    ssize_t (*read)(void *st, char *buf, size_t len, enum tcp_want *want, const char **reason);
    ssize_t (*write)(void *st, const char *buf, size_t len, enum tcp_want *want,
                     const char **reason);
    bool (*pending)(void *st);
    int (*shutdown)(void *st, enum tcp_want *want);
    void (*describe)(void *st, char *buf, size_t len);
    /* The server name the client asked for in its handshake (TLS's SNI), or NULL. */
    const char *(*servername)(void *st);
    /* On a port several mappings share, once the router has chosen m: true if what the
     * handshake proved lets the connection go to m (TLS: a client certificate m accepts), else
     * it is refused. NULL: it always does. */
    bool (*admits)(void *st, const struct mapping *m);
    void (*close)(void *st);
};

/* What a router learns of a connection it routes. */
struct tcp_route_conn {
    const struct mapping_group *group; /* the mappings of the port; the choice is among them */
    const char *servername;            /* the layer's (TLS SNI), or NULL */
    const struct sockaddr_storage *client;
    unsigned worker; /* for the mappings' counters and log limits */
    uint64_t now_ms; /* the worker's loop time */
};

/*
 * A router: a port that several mappings share (forward/proto.h: can_share) gives each new
 * connection to one of them by what the client sends first. The relay reads the client's
 * bytes (after the layer's handshake, if any) and offers them, all of them each time, to
 * route(), which consumes nothing: they go on to the chosen mapping's filter as they came.
 * Until route() has chosen, no target is connected to: a client that never sends a whole
 * request costs no device anything. A protocol with a router routes every connection, even on
 * a port that only one mapping has, so that the one mapping can also refuse what is not for it.
 *   timeout_ms(): how long the client has to send what route() needs, by the port's first
 *       mapping's settings.
 *   route(): the index in rc->group of the mapping chosen; or TCP_ROUTE_MORE when it needs more
 *       bytes (never when eof or timeout: no more will come); or TCP_ROUTE_REFUSE, with the
 *       gateway's answer to the client in out (*out_len bytes, at most out_room; 0: none) and a
 *       few words for the log line in *reason: the client gets the answer, then the end of the
 *       stream, and no target is connected to. timeout says the time is up.
 */
#define TCP_ROUTE_ANSWER_MAX 8192 /* out_room */
#define TCP_ROUTE_MORE (-1)
#define TCP_ROUTE_REFUSE (-2)
struct tcp_router {
    uint32_t (*timeout_ms)(const struct mapping *first);
    ssize_t (*route)(const struct tcp_route_conn *rc, const char *in, size_t len, bool eof,
                     bool timeout, char *out, size_t out_room, size_t *out_len,
                     const char **reason);
};

/* Runs conn's relay now, as an event on its sockets would: for a filter whose state changed
 * outside data() (a timer of its own that fired), so that what it now has pending() goes out.
 * On conn's loop only; the connection may close during the call (and the filter with it). */
void tcp_conn_kick(struct tcp_conn *conn);

struct tcp_listener;

/* Takes ownership of fd (a listening socket) and a new reference to g, the mappings of the port
 * (all of one protocol). New connections take the path their protocol chooses: its router, if
 * any, picks one of g's mappings; then its layer and its filter (forward/proto.h) with the
 * protocol's state on this loop, or the opaque path. Returns NULL with errno set when out of
 * memory or when the fd cannot be registered (fd is then closed). */
struct tcp_listener *tcp_listener_new(struct relay_ctx *ctx, int fd, struct mapping_group *g,
                                      uint16_t port);
/* Points the listener at another generation of its mappings, which may be of another protocol:
 * new connections use it, established ones keep theirs. */
void tcp_listener_set_group(struct tcp_listener *l, struct mapping_group *g);
/* Accepts and starts the connections the kernel has queued on the listener's socket, which
 * would be reset if it closed now: their clients have connected already. Returns how many. For
 * a listener about to close at a reload; accepting stops early when out of descriptors. */
size_t tcp_listener_take_queued(struct tcp_listener *l);
/* Closes the listening socket. Connections it accepted go on. NULL is a no-op. */
void tcp_listener_free(struct tcp_listener *l);

/* Closes every open connection with the given reason (shutdown after drain-timeout). */
void tcp_close_all(struct relay_ctx *ctx, const char *reason);

/* An open connection, as the admin interface lists it. */
struct tcp_conn_info {
    uint64_t id; /* unique on its worker, never reused while the process runs */
    const struct mapping *map;
    struct sockaddr_storage client, target;
    uint64_t bytes[2];          /* written to the other side so far, by enum tcp_dir */
    uint64_t start_ms, last_ms; /* the worker's loop time */
    bool connected;             /* false while the target has not accepted */
};
/* Calls fn with each open connection of ctx, on ctx's thread; map is valid during the call. */
void tcp_conn_each(struct relay_ctx *ctx, void (*fn)(void *arg, const struct tcp_conn_info *ci),
                   void *arg);
/* Closes the connection id (tcp_conn_info) with reason. Returns false if it is not open. */
bool tcp_conn_close_id(struct relay_ctx *ctx, uint64_t id, const char *reason);

#endif
