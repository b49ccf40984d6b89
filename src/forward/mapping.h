/*
 * mapping: a mapping at run time. Its settings (an immutable copy of the map_conf), whom it
 * admits, and its counters.
 *
 * A struct mapping is reference-counted: listeners hold one reference, and so does every TCP
 * connection and UDP session it accepted, so a connection keeps the settings it started with
 * when a reload changes or removes its mapping. What must outlive a reload that changes a mapping
 * (the count of connections against max-conns, the count per client address, the counters, the
 * rate limit of refusal logs) lives in a struct mapping_state that the new generation of a mapping
 * of the same name inherits.
 */
#ifndef PORTGATE_MAPPING_H
#define PORTGATE_MAPPING_H

#include <pthread.h>
#include <stdint.h>

#include "core/log.h"
#include "forward/map_conf.h"
#include "forward/proto.h"

struct mapping_stats {
    uint64_t accepted;      /* TCP connections / UDP sessions admitted */
    uint64_t refused_acl;   /* clients refused by allow/deny (or not trusted-proxies) */
    uint64_t refused_limit; /* refused by max-conns / max-conns-per-ip / max-sessions */
    uint64_t connect_failed;
    uint64_t bytes_in;      /* client -> target */
    uint64_t bytes_out;     /* target -> client */
    uint64_t bytes_spliced; /* of bytes_in + bytes_out, moved by splice() without a copy */
    uint64_t dgrams_in, dgrams_out, dgrams_dropped;
    uint64_t evicted;
    uint64_t proto[PROTO_MAX_STATS]; /* the protocol's own (forward/proto.h: stat_names) */
};

/*
 * Counters are kept per worker: a worker only ever writes its own shard, so the data path shares
 * no cache line and takes no lock, and a reader sums the shards (mapping_stats_sum).
 */
/* Adds n to a counter of the calling worker's own shard. A relaxed store: with one writer, no
 * read-modify-write instruction is needed, and readers on other threads load it atomically. */
static inline void mapping_stat_add(uint64_t *counter, uint64_t n)
{
    __atomic_store_n(counter, *counter + n, __ATOMIC_RELAXED);
}

/* What a line a mapping logs about a client is about. Clients can make these at will, so each
 * kind is limited to one line a second per worker, with its own count of the lines not
 * written: a count never mixes refusals of different kinds. */
enum mapping_log {
    MAPPING_LOG_DENIED,  /* refused by allow/deny */
    MAPPING_LOG_LIMIT,   /* refused by max-conns, max-conns-per-ip, max-sessions */
    MAPPING_LOG_EVICTED, /* a UDP session evicted for a new client */
    MAPPING_LOG_DROPPED, /* a datagram dropped for want of a socket or memory */
    MAPPING_LOG_PROTO,   /* refused by the protocol's filter (RTSP: a SETUP) */
    MAPPING_LOG_COUNT
};

struct mapping_shard {
    struct mapping_stats stats;
    struct log_ratelimit log[MAPPING_LOG_COUNT];
    uint64_t last_ms; /* the worker's loop time of the mapping's last activity; 0: none */
} __attribute__((aligned(64)));

struct ip_count;

struct mapping_state {
    unsigned refs;     /* atomic */
    uint32_t active;   /* atomic: open connections (UDP: sessions), across workers */
    uint32_t sessions; /* atomic: stream protocols: what their filter counts (max-sessions) */
    unsigned nshards;  /* one per worker */
    struct mapping_shard *shards;
    /* Open connections per client address, for max-conns-per-ip: shared by the workers, so
     * under a lock taken only when a connection is admitted or ends, never on the data path,
     * and only while the mapping has such a limit (no table otherwise). Hashed with SipHash
     * under hash_key, random per mapping. */
    pthread_mutex_t ip_lock;
    struct ip_count **buckets;
    size_t nbuckets, nips;
    unsigned char hash_key[16];
};

struct mapping {
    unsigned refs; /* atomic */
    struct map_conf conf;
    struct mapping_state *state;
};

/* Copies conf. state is the mapping_state of the mapping this one replaces (a reference is taken),
 * or NULL for a fresh one with nworkers counter shards. Returns NULL when out of memory. The new
 * mapping has one reference. References may be taken and dropped from any thread. */
struct mapping *mapping_new(const struct map_conf *conf, struct mapping_state *state,
                            unsigned nworkers);
struct mapping *mapping_ref(struct mapping *m);
/* Drops a reference; the last one frees. mapping_unref(NULL) is a no-op. */
void mapping_unref(struct mapping *m);

/*
 * The mappings that share one listening port, in the order of the configuration: one, or for a
 * protocol with a router (forward/proto.h) several, told apart by what the client sends first
 * (HTTP's Host, TLS's server name). Immutable once made; reference-counted like a mapping: a
 * listener holds one reference, and so does each connection it accepted, for as long as the
 * connection lives (its TLS handshake may have used any member's certificate).
 */
struct mapping_group {
    unsigned refs; /* atomic */
    size_t n;
    struct mapping *maps[]; /* a reference to each */
};

/* A group of n >= 1 mappings (a reference is taken to each), with one reference; NULL when out
 * of memory. */
struct mapping_group *mapping_group_new(struct mapping *const *maps, size_t n);
struct mapping_group *mapping_group_ref(struct mapping_group *g);
/* Drops a reference; the last one drops the members'. NULL is a no-op. */
void mapping_group_unref(struct mapping_group *g);

/* Worker w's counters (w < the nworkers the state was made with). */
static inline struct mapping_shard *mapping_shard(const struct mapping *m, unsigned w)
{
    return &m->state->shards[w];
}
/* Whether worker w may write a line of kind what about m now (one a second); *suppressed is then
 * how many it did not write since its last one. */
static inline bool mapping_log_ok(const struct mapping *m, unsigned w, enum mapping_log what,
                                  uint64_t now_ms, uint64_t *suppressed)
{
    return log_ratelimit_ok(&m->state->shards[w].log[what], now_ms, 1000, suppressed);
}
/* Worker w saw activity on m (a connection, bytes, a datagram) at loop time now_ms. A store
 * to w's own shard, and only when the time moved: the loop reads its clock once an iteration. */
static inline void mapping_stamp(uint64_t *last, uint64_t now_ms)
{
    if (__atomic_load_n(last, __ATOMIC_RELAXED) != now_ms) {
        __atomic_store_n(last, now_ms, __ATOMIC_RELAXED);
    }
}
static inline void mapping_touch(const struct mapping *m, unsigned w, uint64_t now_ms)
{
    mapping_stamp(&m->state->shards[w].last_ms, now_ms);
}
/* The latest activity over all workers (CLOCK_MONOTONIC milliseconds), or 0 if none yet. */
uint64_t mapping_last_active(const struct mapping_state *st);
/* The counters of all workers added up; safe while they run. */
void mapping_stats_sum(const struct mapping_state *st, struct mapping_stats *out);
/* The most client addresses that share a bucket of the per-address table (for tests). Call it
 * while no worker admits. */
size_t mapping_per_ip_longest_chain(const struct mapping_state *st);
/* Open connections or sessions of the mapping, across workers. */
uint32_t mapping_active(const struct mapping_state *st);

enum mapping_verdict {
    MAPPING_ADMIT,
    MAPPING_DENIED,
    MAPPING_FULL,
    MAPPING_FULL_PER_IP,
    MAPPING_UNTRUSTED, /* accept-proxy: the peer is not one of trusted-proxies */
};

/* Access control: allow/deny. Deny wins; a non-empty allow list refuses everything else. */
enum mapping_verdict mapping_check_acl(const struct mapping *m,
                                       const struct sockaddr_storage *client);
/* accept-proxy: whether a peer may send the PROXY header that names the client, that is whether
 * it is one of trusted-proxies (MAPPING_ADMIT) or not (MAPPING_UNTRUSTED, counted in w's shard
 * with allow/deny's refusals). The client is admitted once the header names it. */
enum mapping_verdict mapping_check_proxy(const struct mapping *m, unsigned w,
                                         const struct sockaddr_storage *peer);
/*
 * The whole admission of a new TCP connection by worker w: access control, then max-conns and
 * max-conns-per-ip (across all workers). Refusals are counted in w's shard. On MAPPING_ADMIT the
 * connection is counted: call mapping_release() when it ends.
 */
enum mapping_verdict mapping_admit(struct mapping *m, unsigned w,
                                   const struct sockaddr_storage *client);
void mapping_release(struct mapping *m, const struct sockaddr_storage *client);
/* Only the limits of mapping_admit() (max-conns, max-conns-per-ip), with no allow/deny and not
 * counted as accepted: a connection on a port several mappings share holds a place of the
 * port's first mapping while its own is not chosen yet. mapping_release() gives it back. */
enum mapping_verdict mapping_hold(struct mapping *m, unsigned w,
                                  const struct sockaddr_storage *client);
/*
 * A new session, as the protocol counts them (forward/proto.h: a UDP client, or an RTSP session
 * that takes RTP ports): takes a place in the count of open sessions (across workers) if fewer
 * than max-sessions are open and returns true, or returns false. mapping_session_end() gives it
 * back. Over UDP a session is what a connection is over TCP, and is counted as open; over TCP
 * the connections that carry sessions count against max-conns besides.
 */
bool mapping_session_begin(const struct mapping *m);
void mapping_session_end(const struct mapping *m);
const char *mapping_verdict_reason(enum mapping_verdict v);

/* The target address for a connection that arrived on listen port `port`. */
void mapping_target(const struct mapping *m, uint16_t port, struct sockaddr_storage *out);

#endif
