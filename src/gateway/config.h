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

#include "core/addr.h"
#include "core/log.h"
#include "forward/map_conf.h"

/* Defaults, documented in docs/configuration.md. */
#define CONFIG_DRAIN_TIMEOUT_MS 30000u

struct config_gateway {
    enum log_level log_level;
    uint32_t drain_timeout_ms;
    bool splice;           /* relay opaque TCP with splice() */
    uint32_t max_pipes;    /* pipes in use at most; 0: a quarter of the descriptor limit */
    uint32_t workers;      /* event loop threads; 0 ("auto"): one per CPU the process may run on */
    uint32_t busy_poll_us; /* see loop_set_busy_poll; 0: off */
};

#define CONFIG_MAX_WORKERS 256

struct config {
    struct config_gateway gw;
    struct map_conf *maps;
    size_t nmaps;
    /* Errors collected so far, one line each (private: errors_cap). */
    char **errors;
    size_t nerrors, errors_cap;
};

/* Returns an empty config with defaults, or NULL when out of memory. */
struct config *config_new(void);
/* config_free(NULL) is a no-op. */
void config_free(struct config *c);

/* Parses an INI file. Returns 0 if it added no error, -1 otherwise (see c->errors). */
int config_load_file(struct config *c, const char *path);
/* Parses the INI text in buf (for tests and fuzzing); source names it in messages. */
int config_load_buffer(struct config *c, const char *source, const char *buf, size_t len);
/* Parses one SPEC "PROTO:LISTEN=TARGET[,KEY=VALUE...]" given as the index'th --map (1-based). */
int config_add_spec(struct config *c, const char *spec, int index);
/*
 * Checks the whole set and, if resolve is true, resolves target names. Returns 0 if the config
 * has no error at all (including earlier steps), -1 otherwise.
 */
int config_finish(struct config *c, bool resolve);

/*
 * The whole build: the file at path (if not NULL), then each SPEC, then config_finish(). Returns
 * NULL only when out of memory; otherwise check c->nerrors before using the result.
 */
struct config *config_build(const char *path, char *const *specs, int nspecs, bool resolve);

/* Parses a duration: "0", or a number with a unit ms, s, m, h or d ("30s", "5m", "1500ms"). */
int config_parse_duration(const char *s, uint32_t *out_ms, char *err, size_t errlen);
/* Formats a duration the way config_parse_duration reads it. */
char *config_format_duration(uint32_t ms, char *buf, size_t len);

/* Prints the mapping table as `portgate check` shows it. */
void config_print(const struct config *c, FILE *out);

#endif
