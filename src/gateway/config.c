#include "gateway/config.h"

#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <limits.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/loop.h" /* LOOP_BUSY_POLL_MAX_US */

#define CONFIG_MAX_FILE (4u << 20)

enum key {
    K_PROTO,
    K_LISTEN,
    K_TARGET,
    K_ALLOW,
    K_DENY,
    K_MAX_CONNS,
    K_MAX_CONNS_PER_IP,
    K_MAX_SESSIONS,
    K_CONNECT_TIMEOUT,
    K_IDLE_TIMEOUT,
    K_ENABLED,
    K_RTP_PORTS,
    K_NAME, /* SPEC only */
    K_COUNT
};

static const char *const key_names[K_COUNT] = {
    "proto",     "listen",           "target",       "allow",           "deny",
    "max-conns", "max-conns-per-ip", "max-sessions", "connect-timeout", "idle-timeout",
    "enabled",   "rtp-ports",        "name",
};

/* ---- errors ---- */

static void add_error(struct config *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Stands in for a message that could not be stored: an error is never dropped, so a config with
 * errors is never taken for a good one. Never freed. */
static char oom_message[] = "out of memory while recording a configuration error";

static void add_error(struct config *c, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (c->nerrors > 0 && c->errors[c->nerrors - 1] == oom_message) {
        return; /* already out of memory: the marker stands for the rest */
    }
    /* Keep one slot beyond the last error, so the marker always fits. */
    if (c->nerrors + 2 > c->errors_cap) {
        size_t cap = c->errors_cap ? c->errors_cap * 2 : 8;
        char **v = realloc(c->errors, cap * sizeof(*v));
        if (v == NULL) {
            c->errors[c->nerrors++] = oom_message; /* the reserved slot */
            return;
        }
        c->errors = v;
        c->errors_cap = cap;
    }
    char *msg = strdup(buf);
    c->errors[c->nerrors++] = msg != NULL ? msg : oom_message;
}

/* "FILE:LINE: " or "--map 2: " */
static void where(char *buf, size_t len, const char *source, int line)
{
    if (line > 0) {
        snprintf(buf, len, "%s:%d", source, line);
    } else {
        snprintf(buf, len, "%s", source);
    }
}

/* ---- values ---- */

int config_parse_duration(const char *s, uint32_t *out_ms, char *err, size_t errlen)
{
    const char *p = s;
    uint64_t v = 0;
    if (*p < '0' || *p > '9') {
        snprintf(err, errlen, "\"%s\": expected a duration such as 30s, 5m, 1h or 500ms", s);
        return -1;
    }
    while (*p >= '0' && *p <= '9') {
        v = v * 10 + (uint64_t)(*p - '0');
        if (v > UINT32_MAX) {
            snprintf(err, errlen, "\"%s\": duration too long", s);
            return -1;
        }
        p++;
    }
    uint64_t mult;
    if (*p == '\0') {
        if (v != 0) {
            snprintf(err, errlen, "\"%s\": missing unit (ms, s, m, h or d)", s);
            return -1;
        }
        mult = 1;
    } else if (strcmp(p, "ms") == 0) {
        mult = 1;
    } else if (strcmp(p, "s") == 0) {
        mult = 1000;
    } else if (strcmp(p, "m") == 0) {
        mult = 60000;
    } else if (strcmp(p, "h") == 0) {
        mult = 3600000;
    } else if (strcmp(p, "d") == 0) {
        mult = 86400000;
    } else {
        snprintf(err, errlen, "\"%s\": unknown unit \"%s\" (use ms, s, m, h or d)", s, p);
        return -1;
    }
    if (v * mult > UINT32_MAX) {
        snprintf(err, errlen, "\"%s\": duration too long (at most 49d)", s);
        return -1;
    }
    *out_ms = (uint32_t)(v * mult);
    return 0;
}

char *config_format_duration(uint32_t ms, char *buf, size_t len)
{
    if (ms == 0) {
        snprintf(buf, len, "0");
    } else if (ms % 3600000 == 0) {
        snprintf(buf, len, "%uh", ms / 3600000);
    } else if (ms % 60000 == 0) {
        snprintf(buf, len, "%um", ms / 60000);
    } else if (ms % 1000 == 0) {
        snprintf(buf, len, "%us", ms / 1000);
    } else {
        snprintf(buf, len, "%ums", ms);
    }
    return buf;
}

static int parse_uint(const char *s, uint32_t max, uint32_t *out, char *err, size_t errlen)
{
    if (*s == '\0' || strspn(s, "0123456789") != strlen(s) || strlen(s) > 10) {
        snprintf(err, errlen, "\"%s\": expected a whole number", s);
        return -1;
    }
    unsigned long long v = strtoull(s, NULL, 10);
    if (v > max) {
        snprintf(err, errlen, "\"%s\": at most %u", s, max);
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

static int parse_bool(const char *s, bool *out, char *err, size_t errlen)
{
    static const char *const yes[] = {"yes", "true", "on", "1"};
    static const char *const no[] = {"no", "false", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    snprintf(err, errlen, "\"%s\": expected yes or no", s);
    return -1;
}

/* busy-poll: "off", "0", or a time in microseconds ("50us") up to LOOP_BUSY_POLL_MAX_US. */
static int parse_busy_poll(const char *s, uint32_t *out_us, char *err, size_t errlen)
{
    if (strcasecmp(s, "off") == 0 || strcmp(s, "0") == 0) {
        *out_us = 0;
        return 0;
    }
    size_t digits = strspn(s, "0123456789");
    unsigned long v = digits > 0 && digits <= 7 ? strtoul(s, NULL, 10) : ULONG_MAX;
    if (digits == 0 || strcmp(s + digits, "us") != 0) {
        snprintf(err, errlen, "\"%s\": expected off or microseconds such as 50us", s);
        return -1;
    }
    if (v > LOOP_BUSY_POLL_MAX_US) {
        snprintf(err, errlen, "\"%s\": at most %uus", s, LOOP_BUSY_POLL_MAX_US);
        return -1;
    }
    *out_us = (uint32_t)v;
    return 0;
}

static bool valid_name(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && n < MAP_NAMELEN &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

const char *map_proto_name(enum map_proto p)
{
    return p == MAP_UDP ? "udp" : p == MAP_RTSP ? "rtsp" : "tcp";
}

/* ---- one mapping ---- */

struct map_build {
    size_t idx;     /* in c->maps */
    unsigned seen;  /* bit per enum key */
    bool continued; /* the current line continues the previous key (INI multi-line) */
};

static void map_init(struct map_conf *m, const char *name, const char *source, int line)
{
    memset(m, 0, sizeof(*m));
    snprintf(m->name, sizeof(m->name), "%s", name);
    snprintf(m->source, sizeof(m->source), "%s", source);
    m->line = line;
    m->enabled = true;
    m->connect_timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS;
    m->max_sessions = DEFAULT_UDP_MAX_SESSIONS;
    m->rtp_lo = DEFAULT_RTP_PORT_LO;
    m->rtp_hi = DEFAULT_RTP_PORT_HI;
}

/* rtp-ports: "LO-HI", an even start and an odd end, room for one stream (two pairs) at least. */
static int parse_rtp_ports(const char *val, uint16_t *lo, uint16_t *hi, char *why, size_t len)
{
    unsigned a, b;
    int n = 0;
    if (sscanf(val, "%5u-%5u%n", &a, &b, &n) != 2 || (size_t)n != strlen(val) ||
        strspn(val, "0123456789-") != strlen(val)) {
        snprintf(why, len, "\"%s\": expected a port range such as 16384-17407", val);
        return -1;
    }
    if (a < 1024 || b > 65535 || a > b) {
        snprintf(why, len, "\"%s\": ports between 1024 and 65535, low to high", val);
        return -1;
    }
    if (a % 2 != 0 || b % 2 != 1) {
        snprintf(why, len, "\"%s\": RTP pairs start at an even port: an even start, an odd end",
                 val);
        return -1;
    }
    if (b - a + 1 < 4) {
        snprintf(why, len, "\"%s\": a stream takes two pairs (4 ports) at least", val);
        return -1;
    }
    *lo = (uint16_t)a;
    *hi = (uint16_t)b;
    return 0;
}

static int find_key(const char *key)
{
    for (int k = 0; k < K_COUNT; k++) {
        if (strcmp(key, key_names[k]) == 0) {
            return k;
        }
    }
    return -1;
}

/* Sets one mapping key. Returns 0, or -1 with err holding "KEY: reason". */
static int map_set(struct map_conf *m, struct map_build *b, const char *key, const char *val,
                   bool spec, char *err, size_t errlen)
{
    char why[512];
    int k = find_key(key);
    if (k < 0 || (k == K_NAME && !spec)) {
        snprintf(err, errlen, "unknown key \"%s\" (see docs/configuration.md)", key);
        return -1;
    }
    bool list = k == K_ALLOW || k == K_DENY;
    if ((b->seen & (1u << k)) && !list) {
        if (b->continued) {
            snprintf(err, errlen, "%s: only allow and deny may continue on a following line", key);
        } else {
            snprintf(err, errlen, "%s: set twice in this mapping", key);
        }
        return -1;
    }
    b->seen |= 1u << k;
    int rc = 0;
    struct addr_endpoint ep;
    switch ((enum key)k) {
    case K_PROTO:
        if (strcmp(val, "tcp") == 0) {
            m->proto = MAP_TCP;
        } else if (strcmp(val, "udp") == 0) {
            m->proto = MAP_UDP;
        } else if (strcmp(val, "rtsp") == 0) {
            m->proto = MAP_RTSP;
        } else {
            snprintf(why, sizeof(why), "\"%s\": expected tcp, udp or rtsp", val);
            rc = -1;
        }
        break;
    case K_LISTEN:
        rc = addr_parse_endpoint(val, &ep, why, sizeof(why));
        if (rc == 0 && addr_parse_ip(ep.host, &m->listen) != 0) {
            snprintf(why, sizeof(why),
                     "\"%s\": listen on an IP address (0.0.0.0 or [::] for every address), not a "
                     "host name",
                     val);
            rc = -1;
        }
        if (rc == 0) {
            m->listen_lo = ep.port_lo;
            m->listen_hi = ep.port_hi;
            addr_set_port(&m->listen, ep.port_lo);
        }
        break;
    case K_TARGET:
        rc = addr_parse_endpoint(val, &ep, why, sizeof(why));
        if (rc == 0) {
            snprintf(m->target_host, sizeof(m->target_host), "%s", ep.host);
            m->target_lo = ep.port_lo;
            m->target_hi = ep.port_hi;
            if (addr_parse_ip(ep.host, &m->target) == 0) {
                if (addr_is_any(&m->target)) {
                    snprintf(why, sizeof(why),
                             "\"%s\": a target must be a device's address, not %s", val, ep.host);
                    rc = -1;
                }
                addr_set_port(&m->target, ep.port_lo);
            }
        }
        break;
    case K_ALLOW:
        rc = cidr_set_add_list(&m->allow, val, why, sizeof(why));
        break;
    case K_DENY:
        rc = cidr_set_add_list(&m->deny, val, why, sizeof(why));
        break;
    case K_MAX_CONNS:
        rc = parse_uint(val, 10000000, &m->max_conns, why, sizeof(why));
        break;
    case K_MAX_CONNS_PER_IP:
        rc = parse_uint(val, 10000000, &m->max_conns_per_ip, why, sizeof(why));
        break;
    case K_MAX_SESSIONS:
        rc = parse_uint(val, 10000000, &m->max_sessions, why, sizeof(why));
        if (rc == 0 && m->max_sessions == 0) {
            snprintf(why, sizeof(why), "\"%s\": must be at least 1", val);
            rc = -1;
        }
        break;
    case K_CONNECT_TIMEOUT:
        rc = config_parse_duration(val, &m->connect_timeout_ms, why, sizeof(why));
        if (rc == 0 && m->connect_timeout_ms == 0) {
            snprintf(why, sizeof(why), "\"%s\": must be longer than 0", val);
            rc = -1;
        }
        break;
    case K_IDLE_TIMEOUT:
        rc = config_parse_duration(val, &m->idle_timeout_ms, why, sizeof(why));
        break;
    case K_ENABLED:
        rc = parse_bool(val, &m->enabled, why, sizeof(why));
        break;
    case K_RTP_PORTS:
        rc = parse_rtp_ports(val, &m->rtp_lo, &m->rtp_hi, why, sizeof(why));
        break;
    case K_NAME:
        if (!valid_name(val)) {
            snprintf(why, sizeof(why), "\"%s\": use 1 to %d letters, digits, '.', '_' or '-'", val,
                     MAP_NAMELEN - 1);
            rc = -1;
        } else {
            snprintf(m->name, sizeof(m->name), "%s", val);
        }
        break;
    case K_COUNT:
        break;
    }
    if (rc != 0) {
        snprintf(err, errlen, "%s: %s", key, why);
    }
    return rc;
}

/* Checks a mapping on its own once all its keys are read; reports at its definition. */
static void map_validate(struct config *c, struct map_conf *m, unsigned seen)
{
    char at[CONFIG_SOURCELEN + 16];
    where(at, sizeof(at), m->source, m->line);
    static const enum key required[] = {K_PROTO, K_LISTEN, K_TARGET};
    bool complete = true;
    for (size_t i = 0; i < 3; i++) {
        if (!(seen & (1u << required[i]))) {
            add_error(c, "%s: [map %s] missing %s", at, m->name, key_names[required[i]]);
            complete = false;
        }
    }
    if (!(seen & (1u << K_IDLE_TIMEOUT))) {
        m->idle_timeout_ms =
            m->proto == MAP_UDP ? DEFAULT_UDP_IDLE_TIMEOUT_MS : DEFAULT_TCP_IDLE_TIMEOUT_MS;
    }
    static const enum key tcp_only[] = {K_MAX_CONNS, K_MAX_CONNS_PER_IP, K_CONNECT_TIMEOUT};
    for (size_t i = 0; i < 3; i++) {
        if (m->proto == MAP_UDP && (seen & (1u << tcp_only[i]))) {
            add_error(c, "%s: [map %s] %s applies to tcp mappings only (use max-sessions for udp)",
                      at, m->name, key_names[tcp_only[i]]);
        }
    }
    if (m->proto == MAP_TCP && (seen & (1u << K_MAX_SESSIONS))) {
        add_error(c,
                  "%s: [map %s] max-sessions applies to udp and rtsp mappings only (use max-conns "
                  "for tcp)",
                  at, m->name);
    }
    if (m->proto != MAP_RTSP && (seen & (1u << K_RTP_PORTS))) {
        add_error(c, "%s: [map %s] rtp-ports applies to rtsp mappings only", at, m->name);
    }
    if (m->proto == MAP_RTSP && !(seen & (1u << K_MAX_SESSIONS))) {
        m->max_sessions = DEFAULT_RTSP_MAX_SESSIONS;
    }
    if (!complete || m->target_lo == 0 || m->listen_lo == 0) {
        return;
    }
    unsigned nlisten = (unsigned)m->listen_hi - m->listen_lo + 1;
    unsigned ntarget = (unsigned)m->target_hi - m->target_lo + 1;
    if (ntarget != 1 && ntarget != nlisten) {
        add_error(c,
                  "%s: [map %s] target: %u ports (%u-%u) for %u listening ports (%u-%u): give a "
                  "range of the same length, or one port",
                  at, m->name, ntarget, m->target_lo, m->target_hi, nlisten, m->listen_lo,
                  m->listen_hi);
    }
}

static struct map_conf *new_map(struct config *c, const char *name, const char *source, int line)
{
    struct map_conf *v = realloc(c->maps, (c->nmaps + 1) * sizeof(*v));
    if (v == NULL) {
        add_error(c, "%s: out of memory", source);
        return NULL;
    }
    c->maps = v;
    struct map_conf *m = &c->maps[c->nmaps++];
    map_init(m, name, source, line);
    return m;
}

/* ---- INI file ---- */

enum section { SEC_NONE, SEC_GATEWAY, SEC_MAP, SEC_BAD };

struct ini_state {
    struct config *c;
    const char *source;
    const char *buf;
    size_t len, pos;
    int line;
    enum section sec;
    struct map_build mb;
    bool gateway_seen;
    unsigned gw_seen;
    bool syntax_error_reported;
};

static void finish_section(struct ini_state *st)
{
    if (st->sec == SEC_MAP) {
        map_validate(st->c, &st->c->maps[st->mb.idx], st->mb.seen);
    }
    st->sec = SEC_NONE;
}

static void start_section(struct ini_state *st, const char *name)
{
    struct config *c = st->c;
    finish_section(st);
    if (strcmp(name, "gateway") == 0) {
        if (st->gateway_seen) {
            add_error(c, "%s:%d: [gateway] appears twice", st->source, st->line);
            st->sec = SEC_BAD;
            return;
        }
        st->gateway_seen = true;
        st->sec = SEC_GATEWAY;
        return;
    }
    if (strncmp(name, "map ", 4) != 0) {
        add_error(c, "%s:%d: unknown section [%s] (expected [gateway] or [map NAME])", st->source,
                  st->line, name);
        st->sec = SEC_BAD;
        return;
    }
    const char *mname = name + 4;
    while (*mname == ' ') {
        mname++;
    }
    if (!valid_name(mname)) {
        add_error(c, "%s:%d: [%s]: a mapping name is 1 to %d letters, digits, '.', '_' or '-'",
                  st->source, st->line, name, MAP_NAMELEN - 1);
        st->sec = SEC_BAD;
        return;
    }
    for (size_t i = 0; i < c->nmaps; i++) {
        if (strcmp(c->maps[i].name, mname) == 0) {
            char at[CONFIG_SOURCELEN + 16];
            where(at, sizeof(at), c->maps[i].source, c->maps[i].line);
            add_error(c, "%s:%d: [map %s] is defined twice (first at %s)", st->source, st->line,
                      mname, at);
            st->sec = SEC_BAD;
            return;
        }
    }
    if (new_map(c, mname, st->source, st->line) == NULL) {
        st->sec = SEC_BAD;
        return;
    }
    st->sec = SEC_MAP;
    st->mb = (struct map_build){.idx = c->nmaps - 1};
}

/*
 * inih reads lines through this function, so the line number of the line being handled is always
 * st->line. It also sees section headers and syntax errors first, which lets every error be
 * reported with its line (inih itself only returns the first error's line).
 */
static char *read_line(char *str, int num, void *stream)
{
    struct ini_state *st = stream;
    if (st->pos >= st->len) {
        return NULL;
    }
    const char *p = st->buf + st->pos;
    const char *nl = memchr(p, '\n', st->len - st->pos);
    size_t linelen = nl ? (size_t)(nl - p) : st->len - st->pos;
    st->pos += linelen + (nl ? 1 : 0);
    st->line++;
    size_t copy = linelen;
    if (copy > (size_t)num - 2) {
        add_error(st->c,
                  "%s:%d: line longer than %d characters (split allow/deny lists over "
                  "several lines)",
                  st->source, st->line, num - 2);
        copy = 0; /* hand inih an empty line: the rest of the file is still checked */
    }
    memcpy(str, p, copy);
    str[copy] = '\n';
    str[copy + 1] = '\0';

    /* Classify the line (inih skips a UTF-8 byte order mark on the first line; so do we). */
    const char *s = str;
    if (st->line == 1 && strncmp(s, "\xEF\xBB\xBF", 3) == 0) {
        s += 3;
    }
    bool indented = *s == ' ' || *s == '\t';
    while (*s == ' ' || *s == '\t' || *s == '\r') {
        s++;
    }
    if (memchr(str, '\0', copy) != NULL) {
        add_error(st->c, "%s:%d: NUL byte in line", st->source, st->line);
        str[0] = '\n';
        str[1] = '\0';
        return str;
    }
    st->mb.continued = false;
    if (*s == '\n' || *s == ';' || *s == '#') {
        return str;
    }
    if (*s == '[') {
        const char *end = strchr(s, ']');
        if (end == NULL) {
            add_error(st->c, "%s:%d: section header without ']'", st->source, st->line);
            finish_section(st);
            st->sec = SEC_BAD;
            return str;
        }
        char name[128];
        size_t n = (size_t)(end - s - 1);
        if (n >= sizeof(name)) {
            n = sizeof(name) - 1;
        }
        memcpy(name, s + 1, n);
        name[n] = '\0';
        start_section(st, name);
        return str;
    }
    if (indented && st->sec != SEC_NONE) {
        st->mb.continued = true; /* inih treats it as a continuation of the previous key */
        return str;
    }
    if (strpbrk(s, "=:") == NULL) {
        add_error(st->c, "%s:%d: expected KEY = VALUE or [section], got \"%.*s\"", st->source,
                  st->line, (int)strcspn(s, "\r\n"), s);
    } else if (st->sec == SEC_NONE) {
        add_error(st->c, "%s:%d: key outside any section (start with [gateway] or [map NAME])",
                  st->source, st->line);
        st->sec = SEC_BAD; /* one message, not one per key */
    }
    return str;
}

static int gateway_set(struct ini_state *st, const char *key, const char *val)
{
    struct config *c = st->c;
    char why[512];
    int rc = 0;
    unsigned bit;
    if (strcmp(key, "log-level") == 0) {
        bit = 1;
        if (log_level_parse(val, &c->gw.log_level) != 0) {
            snprintf(why, sizeof(why), "\"%s\": expected error, warn, info or debug", val);
            rc = -1;
        }
    } else if (strcmp(key, "drain-timeout") == 0) {
        bit = 2;
        rc = config_parse_duration(val, &c->gw.drain_timeout_ms, why, sizeof(why));
    } else if (strcmp(key, "splice") == 0) {
        bit = 4;
        rc = parse_bool(val, &c->gw.splice, why, sizeof(why));
    } else if (strcmp(key, "max-pipes") == 0) {
        bit = 8;
        rc = parse_uint(val, 1000000, &c->gw.max_pipes, why, sizeof(why));
    } else if (strcmp(key, "workers") == 0) {
        bit = 16;
        if (strcmp(val, "auto") == 0) {
            c->gw.workers = 0;
        } else if (val[0] == '\0' || strspn(val, "0123456789") != strlen(val)) {
            snprintf(why, sizeof(why), "\"%s\": expected a whole number or auto", val);
            rc = -1;
        } else if ((rc = parse_uint(val, CONFIG_MAX_WORKERS, &c->gw.workers, why, sizeof(why))) ==
                       0 &&
                   c->gw.workers == 0) {
            snprintf(why, sizeof(why), "\"%s\": at least 1 (or auto: one per CPU)", val);
            rc = -1;
        }
    } else if (strcmp(key, "busy-poll") == 0) {
        bit = 32;
        rc = parse_busy_poll(val, &c->gw.busy_poll_us, why, sizeof(why));
    } else {
        add_error(c, "%s:%d: [gateway] unknown key \"%s\" (see docs/configuration.md)", st->source,
                  st->line, key);
        return 0;
    }
    if (st->gw_seen & bit) {
        add_error(c, "%s:%d: [gateway] %s: set twice", st->source, st->line, key);
    } else if (rc != 0) {
        add_error(c, "%s:%d: [gateway] %s: %s", st->source, st->line, key, why);
    }
    st->gw_seen |= bit;
    return 0;
}

static int on_key(void *user, const char *section, const char *key, const char *val)
{
    struct ini_state *st = user;
    (void)section; /* st->sec follows the reader, which saw the header first */
    char err[768];
    switch (st->sec) {
    case SEC_GATEWAY:
        gateway_set(st, key, val);
        break;
    case SEC_MAP: {
        struct map_conf *m = &st->c->maps[st->mb.idx];
        if (*val == '\0') {
            add_error(st->c, "%s:%d: [map %s] %s: empty value", st->source, st->line, m->name, key);
        } else if (map_set(m, &st->mb, key, val, false, err, sizeof(err)) != 0) {
            add_error(st->c, "%s:%d: [map %s] %s", st->source, st->line, m->name, err);
        }
        break;
    }
    case SEC_NONE:
    case SEC_BAD:
        break;
    }
    return 1; /* errors are collected, never reported to inih */
}

int config_load_buffer(struct config *c, const char *source, const char *buf, size_t len)
{
    size_t before = c->nerrors;
    struct ini_state st = {.c = c, .source = source, .buf = buf, .len = len};
    int rc = ini_parse_stream(read_line, &st, on_key, &st);
    finish_section(&st);
    if (rc > 0 && c->nerrors == before) {
        add_error(c, "%s:%d: syntax error", source, rc);
    } else if (rc < 0) {
        add_error(c, "%s: out of memory while parsing", source);
    }
    return c->nerrors == before ? 0 : -1;
}

int config_load_file(struct config *c, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd == -1) {
        add_error(c, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    struct stat sb;
    if (fstat(fd, &sb) == -1 || !S_ISREG(sb.st_mode)) {
        add_error(c, "%s: not a regular file", path);
        close(fd);
        return -1;
    }
    if ((size_t)sb.st_size > CONFIG_MAX_FILE) {
        add_error(c, "%s: larger than %u bytes", path, CONFIG_MAX_FILE);
        close(fd);
        return -1;
    }
    char *buf = malloc((size_t)sb.st_size + 1);
    if (buf == NULL) {
        add_error(c, "%s: out of memory", path);
        close(fd);
        return -1;
    }
    size_t got = 0;
    while (got < (size_t)sb.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)sb.st_size - got);
        if (n == -1 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            add_error(c, "%s: read: %s", path, n == 0 ? "file shrank" : strerror(errno));
            free(buf);
            close(fd);
            return -1;
        }
        got += (size_t)n;
    }
    close(fd);
    int rc = config_load_buffer(c, path, buf, got);
    free(buf);
    return rc;
}

/* ---- --map SPEC ---- */

int config_add_spec(struct config *c, const char *spec, int index)
{
    char source[32], name[MAP_NAMELEN], err[768];
    snprintf(source, sizeof(source), "--map %d", index);
    snprintf(name, sizeof(name), "cli-%d", index);
    size_t before = c->nerrors;
    const char *colon = strchr(spec, ':');
    const char *eq = strchr(spec, '=');
    if (colon == NULL || eq == NULL || eq < colon) {
        add_error(c, "%s: \"%s\": expected PROTO:LISTEN=TARGET[,KEY=VALUE...]", source, spec);
        return -1;
    }
    struct map_conf *m = new_map(c, name, source, 0);
    if (m == NULL) {
        return -1;
    }
    struct map_build b = {.idx = c->nmaps - 1};
    char *copy = strdup(spec);
    if (copy == NULL) {
        add_error(c, "%s: out of memory", source);
        return -1;
    }
    /* PROTO : LISTEN = TARGET , items... where an item without '=' continues the previous value
     * (so that allow=192.0.2.0/24,198.51.100.0/24 is one list). */
    char *proto = copy;
    copy[colon - spec] = '\0';
    char *listen = copy + (colon - spec) + 1;
    copy[eq - spec] = '\0';
    char *rest = copy + (eq - spec) + 1;
    char *items[64];
    size_t nitems = 0;
    for (char *tok = rest; tok != NULL && nitems < 64;) {
        char *comma = strchr(tok, ',');
        if (comma) {
            *comma = '\0';
        }
        items[nitems++] = tok;
        tok = comma ? comma + 1 : NULL;
    }
    if (map_set(m, &b, "proto", proto, true, err, sizeof(err)) != 0 ||
        map_set(m, &b, "listen", listen, true, err, sizeof(err)) != 0 ||
        map_set(m, &b, "target", items[0], true, err, sizeof(err)) != 0) {
        add_error(c, "%s: %s", source, err);
    }
    for (size_t i = 1; i < nitems; i++) {
        char *kv = items[i];
        char *e = strchr(kv, '=');
        if (e == NULL) {
            add_error(c, "%s: \"%s\": expected KEY=VALUE", source, kv);
            continue;
        }
        *e = '\0';
        /* Gather the following items that have no '=': they belong to this value. */
        char val[2048];
        size_t off = (size_t)snprintf(val, sizeof(val), "%s", e + 1);
        while (i + 1 < nitems && strchr(items[i + 1], '=') == NULL && off < sizeof(val)) {
            off += (size_t)snprintf(val + off, sizeof(val) - off, ",%s", items[++i]);
        }
        if (*val == '\0') {
            add_error(c, "%s: %s: empty value", source, kv);
        } else if (map_set(m, &b, kv, val, true, err, sizeof(err)) != 0) {
            add_error(c, "%s: %s", source, err);
        }
    }
    free(copy);
    map_validate(c, &c->maps[b.idx], b.seen);
    return c->nerrors == before ? 0 : -1;
}

/* ---- the whole set ---- */

static bool listen_overlaps(const struct map_conf *a, const struct map_conf *b)
{
    if (map_proto_is_tcp(a->proto) != map_proto_is_tcp(b->proto) ||
        a->listen.ss_family != b->listen.ss_family) {
        return false;
    }
    if (a->listen_hi < b->listen_lo || b->listen_hi < a->listen_lo) {
        return false;
    }
    return addr_is_any(&a->listen) || addr_is_any(&b->listen) ||
           addr_ip_equal(&a->listen, &b->listen);
}

static void resolve_target(struct config *c, struct map_conf *m)
{
    struct sockaddr_storage ss;
    if (addr_parse_ip(m->target_host, &ss) == 0) {
        return; /* a literal, set by map_set */
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = m->proto == MAP_UDP ? SOCK_DGRAM : SOCK_STREAM};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(m->target_host, NULL, &hints, &res);
    if (rc != 0 || res == NULL) {
        char at[CONFIG_SOURCELEN + 16];
        where(at, sizeof(at), m->source, m->line);
        add_error(c, "%s: [map %s] target: cannot resolve \"%s\": %s", at, m->name, m->target_host,
                  rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
        if (res) {
            freeaddrinfo(res);
        }
        return;
    }
    memset(&m->target, 0, sizeof(m->target));
    memcpy(&m->target, res->ai_addr, res->ai_addrlen);
    addr_set_port(&m->target, m->target_lo);
    freeaddrinfo(res);
}

int config_finish(struct config *c, bool resolve)
{
    if (c->nmaps == 0 && c->nerrors == 0) {
        add_error(c, "no mappings: give a config file with [map NAME] sections (-c FILE) or --map "
                     "SPEC");
    }
    for (size_t i = 0; i < c->nmaps; i++) {
        struct map_conf *a = &c->maps[i];
        for (size_t j = 0; j < i; j++) {
            /* The file refuses a second [map NAME] as it reads it; a --map name= can still clash.
             */
            if (strcmp(a->name, c->maps[j].name) == 0) {
                char at[CONFIG_SOURCELEN + 16], bt[CONFIG_SOURCELEN + 16];
                where(at, sizeof(at), a->source, a->line);
                where(bt, sizeof(bt), c->maps[j].source, c->maps[j].line);
                add_error(c, "%s: name \"%s\" is already used by [map %s] at %s", at, a->name,
                          a->name, bt);
            }
        }
        if (!a->enabled || a->listen_lo == 0) {
            continue;
        }
        for (size_t j = 0; j < i; j++) {
            struct map_conf *b = &c->maps[j];
            if (b->enabled && b->listen_lo != 0 && listen_overlaps(a, b)) {
                char at[CONFIG_SOURCELEN + 16], bt[CONFIG_SOURCELEN + 16];
                where(at, sizeof(at), a->source, a->line);
                where(bt, sizeof(bt), b->source, b->line);
                add_error(c, "%s: [map %s] listen: %s ports %u-%u overlap [map %s] at %s", at,
                          a->name, map_proto_name(a->proto), a->listen_lo, a->listen_hi, b->name,
                          bt);
            }
        }
    }
    if (c->nerrors == 0 && resolve) {
        for (size_t i = 0; i < c->nmaps; i++) {
            resolve_target(c, &c->maps[i]);
        }
    }
    return c->nerrors == 0 ? 0 : -1;
}

/* ---- life cycle and comparison ---- */

struct config *config_new(void)
{
    struct config *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return NULL;
    }
    c->errors = malloc(8 * sizeof(*c->errors)); /* the reserved slot exists from the start */
    if (c->errors == NULL) {
        free(c);
        return NULL;
    }
    c->errors_cap = 8;
    c->gw.log_level = LOG_LVL_INFO;
    c->gw.drain_timeout_ms = DEFAULT_DRAIN_TIMEOUT_MS;
    c->gw.splice = true;
    return c;
}

void map_conf_clear(struct map_conf *m)
{
    cidr_set_clear(&m->allow);
    cidr_set_clear(&m->deny);
}

void config_free(struct config *c)
{
    if (c == NULL) {
        return;
    }
    for (size_t i = 0; i < c->nmaps; i++) {
        map_conf_clear(&c->maps[i]);
    }
    free(c->maps);
    for (size_t i = 0; i < c->nerrors; i++) {
        if (c->errors[i] != oom_message) {
            free(c->errors[i]);
        }
    }
    free(c->errors);
    free(c);
}

bool map_conf_same_listen(const struct map_conf *a, const struct map_conf *b)
{
    return a->proto == b->proto && addr_ip_equal(&a->listen, &b->listen) &&
           a->listen_lo == b->listen_lo && a->listen_hi == b->listen_hi;
}

bool map_conf_equal(const struct map_conf *a, const struct map_conf *b)
{
    return map_conf_same_listen(a, b) && strcmp(a->target_host, b->target_host) == 0 &&
           addr_equal(&a->target, &b->target) && a->target_lo == b->target_lo &&
           a->target_hi == b->target_hi && cidr_set_equal(&a->allow, &b->allow) &&
           cidr_set_equal(&a->deny, &b->deny) && a->max_conns == b->max_conns &&
           a->max_conns_per_ip == b->max_conns_per_ip && a->max_sessions == b->max_sessions &&
           a->connect_timeout_ms == b->connect_timeout_ms && a->rtp_lo == b->rtp_lo &&
           a->rtp_hi == b->rtp_hi && a->idle_timeout_ms == b->idle_timeout_ms &&
           a->enabled == b->enabled;
}

int map_conf_copy(struct map_conf *dst, const struct map_conf *src)
{
    *dst = *src;
    memset(&dst->allow, 0, sizeof(dst->allow));
    memset(&dst->deny, 0, sizeof(dst->deny));
    if (cidr_set_copy(&dst->allow, &src->allow) != 0 ||
        cidr_set_copy(&dst->deny, &src->deny) != 0) {
        map_conf_clear(dst);
        return -ENOMEM;
    }
    return 0;
}

void config_print(const struct config *c, FILE *out)
{
    fprintf(out, "%-16s %-5s %-28s %-28s %s\n", "NAME", "PROTO", "LISTEN", "TARGET", "OPTIONS");
    for (size_t i = 0; i < c->nmaps; i++) {
        const struct map_conf *m = &c->maps[i];
        char ip[ADDR_STRLEN], listen[ADDR_STRLEN + 8], target[ADDR_HOSTLEN + 16], tip[ADDR_STRLEN];
        char opts[1024], d[32];
        addr_format_ip(&m->listen, ip, sizeof(ip));
        const char *fmt = m->listen.ss_family == AF_INET6 ? "[%s]:%u" : "%s:%u";
        int n = snprintf(listen, sizeof(listen), fmt, ip, m->listen_lo);
        if (m->listen_hi != m->listen_lo) {
            snprintf(listen + n, sizeof(listen) - (size_t)n, "-%u", m->listen_hi);
        }
        bool v6 = strchr(m->target_host, ':') != NULL;
        n = snprintf(target, sizeof(target), v6 ? "[%s]:%u" : "%s:%u", m->target_host,
                     m->target_lo);
        if (m->target_hi != m->target_lo) {
            snprintf(target + n, sizeof(target) - (size_t)n, "-%u", m->target_hi);
        }
        size_t off = 0;
        opts[0] = '\0';
#define OPT(...)                                                                                   \
    do {                                                                                           \
        if (off < sizeof(opts))                                                                    \
            off += (size_t)snprintf(opts + off, sizeof(opts) - off, __VA_ARGS__);                  \
    } while (0)
        if (addr_parse_ip(m->target_host, &(struct sockaddr_storage){0}) != 0 &&
            m->target.ss_family != 0) {
            OPT("resolved=%s ", addr_format_ip(&m->target, tip, sizeof(tip)));
        }
        if (m->allow.n) {
            char l[512];
            OPT("allow=%s ", cidr_set_format(&m->allow, l, sizeof(l)));
        }
        if (m->deny.n) {
            char l[512];
            OPT("deny=%s ", cidr_set_format(&m->deny, l, sizeof(l)));
        }
        if (map_proto_is_tcp(m->proto)) {
            if (m->max_conns) {
                OPT("max-conns=%u ", m->max_conns);
            }
            if (m->max_conns_per_ip) {
                OPT("max-conns-per-ip=%u ", m->max_conns_per_ip);
            }
            OPT("connect-timeout=%s ", config_format_duration(m->connect_timeout_ms, d, sizeof(d)));
        }
        if (m->proto == MAP_RTSP) {
            OPT("rtp-ports=%u-%u max-sessions=%u ", m->rtp_lo, m->rtp_hi, m->max_sessions);
        } else if (m->proto == MAP_UDP) {
            OPT("max-sessions=%u ", m->max_sessions);
        }
        OPT("idle-timeout=%s", config_format_duration(m->idle_timeout_ms, d, sizeof(d)));
        if (!m->enabled) {
            OPT(" enabled=no");
        }
#undef OPT
        fprintf(out, "%-16s %-5s %-28s %-28s %s\n", m->name, map_proto_name(m->proto), listen,
                target, opts);
    }
}

struct config *config_build(const char *path, char *const *specs, int nspecs, bool resolve)
{
    struct config *c = config_new();
    if (c == NULL) {
        return NULL;
    }
    if (path != NULL) {
        config_load_file(c, path);
    }
    for (int i = 0; i < nspecs; i++) {
        config_add_spec(c, specs[i], i + 1);
    }
    config_finish(c, resolve);
    return c;
}
