/*
 * relay: what the TCP and UDP relays of one event loop (one worker) share: the loop, a pool of
 * buffers and one of pipes, and the list of open connections (for draining at shutdown). Nothing
 * here is shared between workers.
 *
 * Buffers are taken from the pool only while bytes are in flight and given back as soon as they
 * are drained, so an idle connection holds none. The pool keeps at most RELAY_POOL_KEEP spare
 * buffers; the rest go back to malloc.
 */
#ifndef PORTGATE_RELAY_H
#define PORTGATE_RELAY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/loop.h"

#define RELAY_BUF_SIZE (64u * 1024u - 64u)
#define RELAY_POOL_KEEP 256
#define RELAY_UDP_BATCH 32
#define RELAY_DGRAM_MAX 65536

struct relay_buf {
    struct relay_buf *next; /* in the pool */
    uint32_t off, len;
    char data[RELAY_BUF_SIZE];
};

/* A pipe that carries spliced bytes from one socket to another, holding len bytes. Embedded in
 * the connection; rfd is -1 while the connection holds no pipe. */
struct relay_pipe {
    int rfd, wfd;
    uint32_t len;
};

#define RELAY_PIPE_SIZE (256u * 1024u)
/* A direction splices while its reads bring at least this much; below, it copies (see pump()). */
#define RELAY_SPLICE_MIN (16u * 1024u)
#define RELAY_PIPE_KEEP 64

struct tcp_conn;
struct relay_ctx;
struct proto;

/* The most protocols whose state one loop keeps (forward/proto.h: worker_new). */
#define RELAY_MAX_PROTOS 16

/* Called when the last TCP connection of a draining relay has closed. */
typedef void (*relay_idle_cb)(struct relay_ctx *ctx);

struct relay_ctx {
    struct loop *loop;
    unsigned worker; /* which worker's loop: the index of its counter shard in every mapping */
    struct relay_buf *pool;
    size_t pool_len;
    struct tcp_conn *conns; /* all open TCP connections, for drain */
    size_t nconns;
    uint64_t conn_ids;     /* the id of the last connection opened here */
    relay_idle_cb on_idle; /* set while draining */
    /* splice(): pipes are taken only while bytes are in flight. */
    bool splice;                  /* new connections may splice (gateway key splice) */
    size_t max_pipes;             /* at most this many in use; then connections copy */
    size_t pipes_used;            /* handed out now */
    struct relay_pipe *pipe_pool; /* spare pipes, a stack */
    size_t pipe_pool_len;
    uint64_t pipe_failures;     /* pipe2 failed or max_pipes reached: a read was copied instead */
    unsigned char hash_key[16]; /* random: relay_addr_hash() */
    /* UDP: RELAY_UDP_BATCH slots of RELAY_DGRAM_MAX bytes, allocated with the first UDP
     * listener; one batch is in flight at a time in a loop. Only the pages datagrams touch
     * become resident. */
    uint8_t *dgrams;
    /* The state each protocol keeps on this loop, for its filter (relay_set_proto_state). */
    struct {
        const struct proto *proto;
        void *state;
    } protos[RELAY_MAX_PROTOS];
    size_t nprotos;
};

/* Sets up an empty context for the loop of worker number worker. Returns 0, or -EIO when no
 * random key can be had for its tables (libsodium could not start). */
int relay_ctx_init(struct relay_ctx *ctx, struct loop *loop, unsigned worker);
/* Frees the pools and each protocol's state (with its worker_free). Connections and listeners
 * must be closed first. */
void relay_ctx_fini(struct relay_ctx *ctx);

/* Hands ctx the state protocol p keeps on this loop (made by p->worker_new), which the filters
 * of p's connections here are given and relay_ctx_fini() frees. Returns 0, or -ENOSPC when
 * RELAY_MAX_PROTOS protocols have state already (state is then not taken). */
int relay_set_proto_state(struct relay_ctx *ctx, const struct proto *p, void *state);
/* The state protocol p keeps on this loop, or NULL. */
void *relay_proto_state(const struct relay_ctx *ctx, const struct proto *p);

/*
 * Fills p with an empty pipe, one of the spare ones or a new one (of RELAY_PIPE_SIZE where the
 * kernel allows). Returns 0, or -1 when max_pipes are in use or pipe2 fails: the caller copies
 * instead.
 */
int relay_pipe_get(struct relay_ctx *ctx, struct relay_pipe *p);
/* Gives back p's pipe and sets p->rfd to -1; a no-op if p holds none. A pipe that still holds
 * bytes (its connection ended mid-flight) is closed, since they cannot be discarded; an empty one
 * is kept for reuse, up to RELAY_PIPE_KEEP. */
void relay_pipe_put(struct relay_ctx *ctx, struct relay_pipe *p);

/* A hash of a client's address and port for this loop's tables (the UDP sessions): SipHash
 * under a key of the loop's own, so that no client can choose its way into one bucket. */
uint64_t relay_addr_hash(const struct relay_ctx *ctx, const struct sockaddr_storage *ss);

/* Returns an empty buffer, or NULL when out of memory. */
struct relay_buf *relay_buf_get(struct relay_ctx *ctx);
/* Returns a buffer to the pool; relay_buf_put(ctx, NULL) is a no-op. */
void relay_buf_put(struct relay_ctx *ctx, struct relay_buf *b);

#endif
