/*
 * gateway: the control thread of the running gateway and its workers. It opens listening sockets
 * for every port of every enabled mapping (one per worker that runs the mapping's protocol),
 * hands them to the TCP and UDP relays of the workers, and owns the current configuration
 * snapshot, which reload (SIGHUP) replaces as a whole:
 *   - the new config is built and checked first; if it has errors they are logged and the
 *     running one is kept;
 *   - every listening socket the new config needs that is already open (same transport, address
 *     and port, whatever the protocol) is kept, so established connections and UDP sessions on
 *     it are untouched; the others are bound before anything changes, and a failed bind cancels
 *     the whole reload;
 *   - then listeners no longer needed close (their TCP connections go on; their UDP sessions
 *     end), and kept ones move to the new generation of their mapping (new connections only),
 *     which may be of another protocol.
 * SIGUSR1 logs each mapping's counters.
 * SIGTERM and SIGINT stop accepting and wait for the TCP connections up to drain-timeout; a second
 * signal ends them at once.
 */
#ifndef PORTGATE_GATEWAY_H
#define PORTGATE_GATEWAY_H

#include "core/loop.h"
#include "forward/mapping.h"
#include "gateway/config.h"

struct gateway;

/* What the layer above (the admin interface) adds to the gateway's configuration changes; the
 * gateway calls up only through these. */
struct gateway_hooks {
    /* Adds the mappings kept outside the config file to a config being built (start, reload). */
    config_extra_fn load;
    /* Makes a configuration durable once everything it needs is bound and before it replaces
     * the running one (cfg->revision is set). Returns 0, or -1 with a reason in err, which
     * cancels the change. NULL: nothing to keep. */
    int (*persist)(void *arg, const struct config *cfg, char *err, size_t errlen);
    /* After a configuration took effect. NULL: nothing to do. */
    void (*applied)(void *arg);
    void *arg;
};

/* path and specs are where reloads read the configuration again; they and hooks (may be NULL)
 * must outlive the gateway. Returns NULL with a logged reason. */
struct gateway *gateway_new(const char *path, char *const *specs, int nspecs,
                            const struct gateway_hooks *hooks);
/* Opens the listeners of cfg (which the gateway takes over, errors-free). Returns 0, or -1 with
 * every failure logged (nothing is left open). */
int gateway_start(struct gateway *g, struct config *cfg);
/* Runs until stopped by a signal. Returns the process exit status. */
int gateway_run(struct gateway *g);
/* Re-reads the configuration and applies it (what SIGHUP does): the file, the --map SPECs, the
 * state file, and every file a mapping names (certificates). Returns 0 or -1 (logged); when
 * the configuration had errors and errors is not NULL, *errors is that configuration, for the
 * caller to report and free. */
int gateway_reload(struct gateway *g, struct config **errors);
/*
 * Makes cfg (checked, errors-free) the running configuration, as a reload does: everything it
 * needs is bound first, then the persist hook runs, then it takes effect on every worker; any
 * failure leaves the gateway exactly as it was. Returns 0 (the gateway owns cfg), or a negative
 * errno with the reason in err (-EADDRINUSE: a listening address is taken; the caller keeps
 * cfg). Control thread only, as every function below.
 */
int gateway_apply(struct gateway *g, struct config *cfg, char *err, size_t errlen);
/* The running configuration snapshot; valid until the next apply or reload. */
const struct config *gateway_config(const struct gateway *g);
/* The control thread's loop, for the admin interface to run on. */
struct loop *gateway_loop(struct gateway *g);

/* What a running mapping has done: its counters summed over the workers, its open connections
 * (UDP: sessions), and for a protocol that counts sessions over TCP (forward/proto.h), those. */
struct gateway_map_stats {
    struct mapping_stats st;
    uint32_t open, sessions;
    uint64_t last_ms; /* the last activity, CLOCK_MONOTONIC milliseconds; 0: none yet */
};
/* Fills out for the running mapping called name. Returns false (out zeroed) if none runs: it is
 * disabled, or there is no such mapping. */
bool gateway_mapping_stats(const struct gateway *g, const char *name,
                           struct gateway_map_stats *out);

/* Fills out[i] for each mapping i of the running config (zeroed for a disabled one), in one pass.
 */
void gateway_all_stats(const struct gateway *g, struct gateway_map_stats *out);

/* An open TCP connection, as GET /api/v1/connections lists it. */
struct gateway_conn {
    unsigned worker;
    uint64_t id; /* on that worker; the pair names the connection */
    char mapping[MAP_CONF_NAMELEN];
    const char *proto;
    struct sockaddr_storage client, target;
    uint64_t bytes[2];          /* to the target, to the client */
    uint64_t start_ms, last_ms; /* CLOCK_MONOTONIC milliseconds */
    bool connected;
};
/* A session (UDP client, RTSP session). */
struct gateway_session {
    unsigned worker;
    char mapping[MAP_CONF_NAMELEN]; /* "" if no mapping holds it any more */
    struct proto_session_info si;   /* si.map is NULL: it is only valid on the worker */
};
/* The open connections (of the mapping called name, or all with NULL), in *out (malloc'd, the
 * caller frees it). Returns how many, or -ENOMEM. Asks every worker: a snapshot. */
ssize_t gateway_connections(struct gateway *g, const char *name, struct gateway_conn **out);
/* Ends connection id of worker w. Returns 0, or -ENOENT if it is not open. */
int gateway_close_connection(struct gateway *g, unsigned w, uint64_t id, const char *reason);
/* The sessions (of mapping name, or all), as gateway_connections(). */
ssize_t gateway_sessions(struct gateway *g, const char *name, struct gateway_session **out);

/* The process and its relays, for status and metrics. */
struct gateway_status {
    unsigned workers;
    uint64_t started_ms; /* CLOCK_MONOTONIC, when the gateway started */
    size_t listeners;    /* listening ports */
    size_t conns;        /* open TCP connections */
    size_t pipes_used, max_pipes, spare_pipes;
    uint64_t pipe_failures; /* reads copied for want of a pipe */
    uint64_t reload_failures;
    uint64_t reloads;
};
void gateway_get_status(struct gateway *g, struct gateway_status *st);
void gateway_free(struct gateway *g);

#endif
