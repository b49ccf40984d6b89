/*
 * config: the config file and --map SPECs -> a validated list of mappings. No sockets here.
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

#define MAP_NAMELEN 64
#define CONFIG_SOURCELEN 256

/* rtsp is TCP with the RTSP filter (rtsp_proxy) and RTP ports of its own. */
enum map_proto { MAP_TCP, MAP_UDP, MAP_RTSP };

/* Defaults, documented in docs/configuration.md. */
#define DEFAULT_CONNECT_TIMEOUT_MS 10000u
#define DEFAULT_TCP_IDLE_TIMEOUT_MS 3600000u
#define DEFAULT_UDP_IDLE_TIMEOUT_MS 60000u
#define DEFAULT_UDP_MAX_SESSIONS 4096u
#define DEFAULT_RTSP_MAX_SESSIONS 64u
#define DEFAULT_RTP_PORT_LO 16384u
#define DEFAULT_RTP_PORT_HI 17407u
#define DEFAULT_DRAIN_TIMEOUT_MS 30000u

struct map_conf {
    char name[MAP_NAMELEN];
    enum map_proto proto;
    struct sockaddr_storage listen; /* port is listen_lo */
    uint16_t listen_lo, listen_hi;
    char target_host[ADDR_HOSTLEN]; /* as written: an IP literal or a host name */
    struct sockaddr_storage target; /* resolved by config_finish(); port is target_lo */
    uint16_t target_lo, target_hi;  /* target_lo == target_hi: every listen port goes there */
    struct cidr_set allow, deny;
    uint32_t max_conns;        /* TCP, 0 = no limit */
    uint32_t max_conns_per_ip; /* TCP, 0 = no limit */
    uint32_t max_sessions;     /* UDP sessions; RTSP sessions with RTP over UDP */
    uint16_t rtp_lo, rtp_hi;   /* RTSP: UDP ports for RTP/RTCP pairs, lo even, hi odd */
    uint32_t connect_timeout_ms;
    uint32_t idle_timeout_ms; /* 0 = never */
    bool enabled;
    /* Where it was defined, for messages. */
    char source[CONFIG_SOURCELEN];
    int line;
};

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

/* True if two mappings have the same settings (name and source position ignored). */
bool map_conf_equal(const struct map_conf *a, const struct map_conf *b);
/* True if the listening sockets of a and b would be the same (proto, address, ports). */
bool map_conf_same_listen(const struct map_conf *a, const struct map_conf *b);
/* Copies src into dst, deep (the CIDR sets). Returns 0 or -ENOMEM. */
int map_conf_copy(struct map_conf *dst, const struct map_conf *src);
void map_conf_clear(struct map_conf *m);
const char *map_proto_name(enum map_proto p);
/* tcp and rtsp listen on TCP sockets. */
static inline bool map_proto_is_tcp(enum map_proto p)
{
    return p != MAP_UDP;
}

/* Prints the mapping table as `portgate check` shows it. */
void config_print(const struct config *c, FILE *out);

#endif
