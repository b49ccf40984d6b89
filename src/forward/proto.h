/*
 * proto: a mapping protocol, as everything outside its own folder sees it.
 *
 * Each protocol (tcp, udp, rtsp; next http, tls...) is one const struct proto in the protocol
 * table (src/proto/protocols.c). The config parser, the relays and the gateway know a protocol
 * only through this descriptor, never by name: adding one is a folder under src/proto/ and a line
 * in the table, and if it needs an edit of the relays or the gateway, this struct is missing
 * something. What a descriptor says:
 *   - how its listeners take clients: the transport, and for stream protocols the filter that
 *     sees the bytes (forward/tcp.h; NULL relays them untouched, spliced when it can);
 *   - where it runs (placement, below);
 *   - the state a worker keeps for it beyond single connections (worker_new/worker_free);
 *   - its own settings: the keys it adds to [map NAME] sections and --map SPECs, their defaults,
 *     their checks, how `portgate check` shows them, and the UDP ports they claim;
 *   - what max-sessions counts for it, if anything, and the counters it keeps.
 */
#ifndef PORTGATE_PROTO_H
#define PORTGATE_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <sys/socket.h>

struct relay_ctx;
struct tcp_filter;
struct tcp_layer;
struct tcp_router;
struct mapping;

/* A session as the admin interface lists it (GET /api/v1/sessions): a UDP client, or what a
 * protocol calls one (an RTSP session). Times are the worker's loop time in milliseconds. */
struct proto_session_info {
    const char *kind;          /* "udp", or the protocol's name */
    const struct mapping *map; /* valid during the call; NULL if none is known */
    struct sockaddr_storage client, target;
    uint64_t start_ms, last_ms;
    uint64_t pkts[2], bytes[2]; /* [0] client to target, [1] target to client */
    char detail[160];           /* what else there is to say, one line, or "" */
};
typedef void (*proto_session_fn)(void *arg, const struct proto_session_info *si);

#define PROTO_MAX_STATS 16
#define PROTO_CONF_FORMAT_MAX 8192 /* conf_format()'s buffer */

/*
 * Where a protocol's connections run. Every port of a mapping has a listening socket per worker
 * it runs on, all bound with SO_REUSEPORT, and the kernel hashes each new connection (each UDP
 * client address and port) to one of them: a connection then stays on that worker.
 */
enum proto_placement {
    PROTO_EVERY_WORKER, /* connections are independent: they spread over every worker */
    PROTO_ONE_WORKER,   /* connections share state (worker_new): all run on worker 0 */
};

struct proto {
    const char *name; /* as written after proto = and before the first ':' of a SPEC */
    int transport;    /* SOCK_STREAM or SOCK_DGRAM: the listening sockets and the target's */
    const struct tcp_filter *filter; /* SOCK_STREAM: sees every byte both ways; NULL: opaque */
    /* SOCK_STREAM: what the client's socket speaks under the filter (TLS), or NULL: plain. A
     * layer finishes its handshake before the target is connected to (forward/tcp.h). */
    const struct tcp_layer *layer;
    /* SOCK_STREAM: picks the mapping among those that share a port from the client's first
     * bytes, before the target is connected to (forward/tcp.h), or NULL: the port's one. */
    const struct tcp_router *router;
    /* With a router: true if mappings with settings a and b may share a listening port (the
     * same address and ports): the router can tell their clients apart (different hosts), and
     * what the port does before routing is the same for both (TLS's versions and ciphers).
     * Else false, with why the two cannot share in why ("both answer for host x"). NULL: a
     * port is one mapping's. */
    bool (*can_share)(const void *a, const void *b, char *why, size_t whylen);
    enum proto_placement placement;
    /* True if a mapping with these settings carries what a device asks a person in the clear (a
     * web page's login, RTSP's authentication): `check` warns when such a mapping faces the
     * internet without an allow list (gateway/config.h: config_warnings). NULL: never. */
    bool (*cleartext_logins)(const void *pconf);
    /* True if a mapping with these settings logs every client in to the device as the device's
     * own user (device-auth): `check` warns when it faces the internet without an allow list.
     * NULL: never. */
    bool (*opens_device)(const void *pconf);

    /* State one worker keeps for all the protocol's connections on it, which its filter finds in
     * struct tcp_filter_conn: made before the worker's thread starts (NULL: out of memory, the
     * gateway does not start), freed once the thread has ended and every connection with it.
     * Both NULL when the protocol keeps none. */
    void *(*worker_new)(struct relay_ctx *ctx);
    void (*worker_free)(void *state);

    /* max-sessions: its default, or 0 when the key does not apply. What a session is, is the
     * protocol's: over SOCK_DGRAM a client address and port (forward/udp.c counts them); over
     * SOCK_STREAM whatever the filter counts with mapping_session_begin() (RTSP: a session that
     * holds RTP ports), besides the connections that max-conns counts. */
    uint32_t default_max_sessions;

    /*
     * Settings of its own, from the keys listed in keys (NULL-terminated; NULL: none). They live
     * in a block of conf_size bytes (map_conf.pconf) that only the protocol reads, made when a
     * mapping of the protocol is parsed: conf_init() sets the defaults, then conf_set() sees each
     * of its keys that the mapping gives, in order, and returns 0, or -1 with a one-line reason
     * in why ("\"VALUE\": what is wrong"). The block is plain data: reload copies and compares it
     * byte by byte, so it holds no pointers and conf_init() starts from zeroed memory.
     * conf_format() writes every setting as `portgate check` lists them, defaults included:
     * "KEY=VALUE KEY=VALUE" in fewer than PROTO_CONF_FORMAT_MAX bytes, one space apart, values
     * without spaces, such that conf_set() given them back makes the same settings (the admin API
     * reads them so). own_udp_ports() says which UDP ports a mapping binds for itself besides its
     * listeners (RTP relays), so that no two mappings are set up to use the same ones: it returns
     * the key that sets them, for messages, or NULL when the mapping binds none. Any of them is
     * NULL when the protocol has no settings.
     */
    const char *const *keys;
    size_t conf_size;
    void (*conf_init)(void *pconf);
    int (*conf_set)(void *pconf, const char *key, const char *val, char *why, size_t whylen);
    void (*conf_format)(const void *pconf, char *buf, size_t len);
    /* Checks the settings together, once every key of the mapping is read (a key that needs
     * another): 0, or -1 with "KEY: what is wrong" in why. NULL: none to check. */
    int (*conf_check)(const void *pconf, char *why, size_t whylen);
    const char *(*own_udp_ports)(const void *pconf, uint16_t *lo, uint16_t *hi);

    /*
     * What a mapping needs at run time beyond plain settings, made from them: TLS's contexts,
     * with the certificates, keys and OCSP responses read from their files. run_open() is called
     * on the control thread by config_finish() for each enabled mapping of the protocol that has
     * none yet: at start, at every reload (so a reload reads the files again), by check, and for
     * a mapping the admin interface adds or changes. It returns the object, or NULL with a
     * one-line reason in why (what to fix: the file and what is wrong with it). It fills id with
     * a digest of everything it read: two objects with the same id are interchangeable, so a
     * reload that finds the files unchanged keeps the running mapping (map_conf_equal()). The
     * object is read-only once made, shared by every copy of the map_conf and every worker,
     * and run_close() frees it after the last reference (forward/map_conf.h). Both NULL when
     * the protocol needs none.
     */
    void *(*run_open)(const void *pconf, const char *mapname, unsigned char id[32], char *why,
                      size_t whylen);
    void (*run_close)(void *run);

    /* Counters of its own, at most PROTO_MAX_STATS, by index: the names SIGUSR1 gives them
     * ("rtsp sessions"), NULL-terminated, or NULL for none. Its filter adds to
     * mapping_shard(map, worker)->stats.proto[i] with mapping_stat_add(). */
    const char *const *stat_names;

    /* Calls fn for each of its sessions on a worker (state is what worker_new() made), on that
     * worker's thread, for the admin interface's list. NULL: it keeps no sessions of its own. */
    void (*sessions)(void *state, proto_session_fn fn, void *arg);
};

/* True if the protocol lists key among its own. */
static inline bool proto_has_key(const struct proto *p, const char *key)
{
    for (const char *const *k = p->keys; k != NULL && *k != NULL; k++) {
        if (strcmp(*k, key) == 0) {
            return true;
        }
    }
    return false;
}

#endif
