/*
 * config: the config file and --map SPECs -> a validated list of mappings (forward/map_conf.h).
 * No sockets here. Protocols are those of the protocol table (src/proto/protocols.c), each with
 * the keys it adds.
 *
 * A struct config is built in steps: config_load_file() and config_add_spec() parse, then
 * config_finish() checks what spans mappings (overlapping listeners, a mapping-less config) and
 * resolves target host names (blocking getaddrinfo: call it at start and reload, never from the
 * data path). Every step collects errors instead of stopping at the first, each as one line
 * "SOURCE:LINE: [map NAME] KEY: "value": what is wrong", so `portgate check` can list them all.
 * A config with errors must not be used. The config owns everything it points to.
 */
#ifndef PORTGATE_CONFIG_H
#define PORTGATE_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "core/addr.h"
#include "core/log.h"
#include "forward/map_conf.h"

/* Defaults, documented in docs/configuration.md. */
#define CONFIG_DRAIN_TIMEOUT_MS 30000u
#define CONFIG_ADMIN "127.0.0.1:8088"
#define CONFIG_ADMIN_SOCKET "/run/portgate/admin.sock"
#define CONFIG_STATE "/var/lib/portgate/state.json"
#define CONFIG_USERS_FILE "/var/lib/portgate/users"
#define CONFIG_PATHLEN 512

struct config_gateway {
    enum log_level log_level;
    uint32_t drain_timeout_ms;
    bool splice;           /* relay opaque TCP with splice() */
    uint32_t max_pipes;    /* pipes in use at most; 0: a quarter of the descriptor limit */
    uint32_t workers;      /* event loop threads; 0 ("auto"): one per CPU the process may run on */
    uint32_t busy_poll_us; /* see loop_set_busy_poll; 0: off */
    /* The admin interface (src/admin/). Each is off when empty (admin: port 0). A gateway run
     * without a config file has none of them: its mappings are its command line. */
    struct sockaddr_storage admin;   /* the HTTP listener: a loopback address and port */
    char admin_socket[108];          /* the unix socket (sun_path) */
    char state[CONFIG_PATHLEN];      /* the mappings made through it */
    char users_file[CONFIG_PATHLEN]; /* its users and API tokens */
    /* The https sites the HTTP listener's page may also be used from, through a mapping of the
     * gateway's own ("https://admin.example.org", commas between, lower case), or "". */
    char admin_origins[1024];
};

#define CONFIG_MAX_WORKERS 256

/* True if the gateway has an admin interface: an HTTP listener, a unix socket, or both. */
static inline bool config_admin_on(const struct config_gateway *gw)
{
    return gw->admin.ss_family != 0 || gw->admin_socket[0] != '\0';
}

struct config {
    struct config_gateway gw;
    struct map_conf *maps;
    size_t nmaps;
    /* The revision this configuration was applied as (the admin interface's ETag), counted up by
     * every change; the state file keeps it, so it never goes back across restarts. */
    uint64_t revision;
    /* At start and at a reload (config_build), a mapping of the admin interface whose target
     * does not resolve is kept, failed (map_conf.failed), instead of being an error: it was
     * accepted once, and the others must not stop for it. A change made through the API is
     * checked strictly (this is false in config_copy()). A mapping failed already stays so. */
    bool keep_failed;
    /* Errors collected so far, one line each, and for each the mapping key it is about (such as
     * "listen"), or NULL (private: errors_cap). */
    char **errors;
    char **fields;
    size_t nerrors, errors_cap;
    /* Of them, how many config_finish() found between mappings (a name taken, ports that
     * overlap): conflicts with the rest of the set, not errors of one mapping's values. */
    size_t conflicts;
};

/* Returns an empty config with defaults (the admin interface off), or NULL when out of memory. */
struct config *config_new(void);
/* A copy of c's settings and mappings, without its errors; NULL when out of memory. */
struct config *config_copy(const struct config *c);
/* config_free(NULL) is a no-op. */
void config_free(struct config *c);

/* Parses an INI file. Returns 0 if it added no error, -1 otherwise (see c->errors). */
int config_load_file(struct config *c, const char *path);
/* Parses the INI text in buf (for tests and fuzzing); source names it in messages. */
int config_load_buffer(struct config *c, const char *source, const char *buf, size_t len);
/* Parses one SPEC "PROTO:LISTEN=TARGET[,KEY=VALUE...]" given as the index'th --map (1-based). */
int config_add_spec(struct config *c, const char *spec, int index);

/* One key of a mapping as text, in the config file's grammar. */
struct config_kv {
    const char *key, *val;
};
/*
 * Adds a mapping made through the admin interface from its keys: "name" and the keys of a [map
 * NAME] section, each once (allow and deny may repeat, and add up). source is where such
 * mappings are kept (the state file), which messages start with. Returns 0, or -1 with errors
 * added, each with the key it is about.
 */
int config_add_map(struct config *c, const char *source, const struct config_kv *kv, size_t n);
/* Records an error about the mapping key field (NULL: none), for a caller that reads mappings
 * in another form (the admin interface's JSON). */
void config_add_error(struct config *c, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Removes the mapping at index i. */
void config_remove_map(struct config *c, size_t i);
/* The index of the mapping called name, or -1. */
ssize_t config_find_map(const struct config *c, const char *name);

/* How config_map_keys() hands a value over, for a caller that types them (JSON). */
enum config_kind {
    CONFIG_TEXT,  /* a string in the config grammar: "0.0.0.0:80", "30s" */
    CONFIG_COUNT, /* a whole number */
    CONFIG_BOOL,  /* "yes" or "no" */
    CONFIG_LIST,  /* one entry of a list (allow, deny); once per entry */
};
typedef void (*config_key_fn)(void *arg, const char *key, enum config_kind kind, const char *val);
/* Calls fn with every key that applies to m and its value, defaults included, such that
 * config_add_map() given them back makes the same mapping ("name" first). key and val are valid
 * during the call only. */
void config_map_keys(const struct map_conf *m, config_key_fn fn, void *arg);
/* True if key is a mapping key (a generic one or one of some protocol's). */
bool config_is_map_key(const char *key);
/*
 * Checks the whole set and, if resolve is true, resolves the target names that are not resolved
 * yet (all of them, but in a copy). Returns 0 if the config has no error at all (including earlier
 * steps), -1 otherwise.
 */
int config_finish(struct config *c, bool resolve);

/* Adds mappings kept elsewhere to a config being built (the admin interface's state file), with
 * their errors. */
typedef void (*config_extra_fn)(void *arg, struct config *c);
/*
 * The whole build: the file at path (if not NULL), then each SPEC, then extra (if not NULL), then
 * config_finish(). Returns NULL only when out of memory; otherwise check c->nerrors before using
 * the result.
 */
struct config *config_build(const char *path, char *const *specs, int nspecs, bool resolve,
                            config_extra_fn extra, void *arg);

/*
 * Calls fn with each warning about c, a checked configuration: what runs but exposes a device
 * (a mapping whose protocol carries logins in the clear listening on an address the internet
 * reaches, with no allow list; a TLS mapping whose plain inside leg goes to an address outside
 * the private ranges). `check` prints them, start and reload log them; none is an error.
 * Returns how many.
 */
size_t config_warnings(const struct config *c, void (*fn)(void *arg, const char *msg), void *arg);

/* Prints the mapping table as `portgate check` shows it. */
void config_print(const struct config *c, FILE *out);

#endif
