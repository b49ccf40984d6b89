/*
 * mapping: a mapping at run time. Its settings (an immutable copy of the map_conf), whom it
 * admits, and its counters.
 *
 * A struct mapping is reference-counted: listeners hold one reference, and so does every TCP
 * connection and UDP session it accepted, so a connection keeps the settings it started with
 * when a reload changes or removes its mapping. What must outlive a reload that changes a mapping
 * (the count of connections against max-conns, the count per client address, the counters, the
 * rate limit of refusal logs) lives in a struct map_state that the new generation of a mapping of
 * the same name inherits.
 */
#ifndef PORTGATE_MAPPING_H
#define PORTGATE_MAPPING_H

#include <stdint.h>

#include "config.h"
#include "log.h"

struct map_stats {
    uint64_t accepted;      /* TCP connections / UDP sessions admitted */
    uint64_t refused_acl;   /* clients refused by allow/deny */
    uint64_t refused_limit; /* refused by max-conns / max-conns-per-ip / max-sessions */
    uint64_t connect_failed;
    uint64_t bytes_in;      /* client -> target */
    uint64_t bytes_out;     /* target -> client */
    uint64_t bytes_spliced; /* of bytes_in + bytes_out, moved by splice() without a copy */
    uint64_t dgrams_in, dgrams_out, dgrams_dropped;
    uint64_t evicted;
};

struct ip_count;

struct map_state {
    unsigned refs;
    uint32_t active; /* open connections or sessions */
    struct ip_count **buckets;
    size_t nbuckets, nips;
    struct map_stats stats;
    struct log_ratelimit refuse_log;
};

struct mapping {
    unsigned refs;
    struct map_conf conf;
    struct map_state *state;
};

/* Copies conf. state is the map_state of the mapping this one replaces (a reference is taken),
 * or NULL for a fresh one. Returns NULL when out of memory. The new mapping has one reference. */
struct mapping *mapping_new(const struct map_conf *conf, struct map_state *state);
struct mapping *mapping_ref(struct mapping *m);
/* Drops a reference; the last one frees. mapping_unref(NULL) is a no-op. */
void mapping_unref(struct mapping *m);

enum map_verdict { MAP_ADMIT, MAP_DENIED, MAP_FULL, MAP_FULL_PER_IP };

/* Access control: allow/deny. Deny wins; a non-empty allow list refuses everything else. */
enum map_verdict mapping_check_acl(const struct mapping *m, const struct sockaddr_storage *client);
/*
 * The whole admission of a new TCP connection: access control, then max-conns and
 * max-conns-per-ip. On MAP_ADMIT the connection is counted: call mapping_release() when it ends.
 */
enum map_verdict mapping_admit(struct mapping *m, const struct sockaddr_storage *client);
void mapping_release(struct mapping *m, const struct sockaddr_storage *client);
const char *map_verdict_reason(enum map_verdict v);

/* The target address for a connection that arrived on listen port `port`. */
void mapping_target(const struct mapping *m, uint16_t port, struct sockaddr_storage *out);

#endif
