#include "gateway/config.h"

#include <assert.h>
#include <ctype.h>
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

#include "core/duration.h"
#include "core/file.h"
#include "core/loop.h" /* LOOP_BUSY_POLL_MAX_US */
#include "proto/protocols.h"

#define CONFIG_MAX_FILE (4u << 20)

/* ---- errors ---- */

static void add_error_v(struct config *c, const char *field, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
static void add_error(struct config *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_field_error(struct config *c, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Stands in for a message that could not be stored: an error is never dropped, so a config with
 * errors is never taken for a good one. Never freed. */
static char oom_message[] = "out of memory while recording a configuration error";

/* Records an error about the mapping key field (NULL: none in particular). */
static void add_error_v(struct config *c, const char *field, const char *fmt, va_list ap)
{
    char buf[1024];
    vsnprintf(buf, sizeof(buf), fmt, ap);
    if (c->nerrors > 0 && c->errors[c->nerrors - 1] == oom_message) {
        return; /* already out of memory: the marker stands for the rest */
    }
    /* Keep one slot beyond the last error, so the marker always fits. */
    if (c->nerrors + 2 > c->errors_cap) {
        size_t cap = c->errors_cap ? c->errors_cap * 2 : 8;
        char **v = realloc(c->errors, cap * sizeof(*v));
        char **f = v != NULL ? realloc(c->fields, cap * sizeof(*f)) : NULL;
        if (v != NULL) {
            c->errors = v;
        }
        if (f == NULL) {
            c->fields[c->nerrors] = NULL;
            c->errors[c->nerrors++] = oom_message; /* the reserved slot */
            return;
        }
        c->fields = f;
        c->errors_cap = cap;
    }
    char *msg = strdup(buf);
    c->fields[c->nerrors] = msg != NULL && field != NULL ? strdup(field) : NULL;
    c->errors[c->nerrors++] = msg != NULL ? msg : oom_message;
}

static void add_error(struct config *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    add_error_v(c, NULL, fmt, ap);
    va_end(ap);
}

static void add_field_error(struct config *c, const char *field, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    add_error_v(c, field, fmt, ap);
    va_end(ap);
}

void config_add_error(struct config *c, const char *field, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    add_error_v(c, field, fmt, ap);
    va_end(ap);
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

/* admin: "off", or a loopback address and one port. */
static int parse_admin(const char *s, struct sockaddr_storage *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (strcasecmp(s, "off") == 0) {
        return 0;
    }
    struct addr_endpoint ep;
    if (addr_parse_endpoint(s, &ep, err, errlen) != 0) {
        return -1;
    }
    if (ep.port_lo != ep.port_hi) {
        snprintf(err, errlen, "\"%s\": one port, not a range", s);
        return -1;
    }
    if (addr_parse_ip(ep.host, out) != 0 || !addr_is_loopback(out)) {
        /* One TLS stack: remote administration goes through an https mapping of portgate's own
         * whose target is this listener. */
        snprintf(err, errlen,
                 "\"%s\": the admin interface listens on this host only (127.0.0.1:PORT or "
                 "[::1]:PORT); to administer from elsewhere, forward to it with a mapping",
                 s);
        memset(out, 0, sizeof(*out));
        return -1;
    }
    addr_set_port(out, ep.port_lo);
    return 0;
}

/* admin-origins: https://HOST or https://HOST:PORT, commas between (blanks around them dropped),
 * kept lower case. */
static int parse_origins(const char *s, char *out, size_t len, char *err, size_t errlen)
{
    size_t off = 0;
    out[0] = '\0';
    for (const char *p = s; *p != '\0';) {
        p += strspn(p, " \t");
        size_t n = strcspn(p, ","), e = n;
        while (e > 0 && (p[e - 1] == ' ' || p[e - 1] == '\t')) {
            e--;
        }
        char one[300];
        if (e >= sizeof(one) || off + e + 2 > len) {
            snprintf(err, errlen, "\"%.60s\": too long", s);
            return -1;
        }
        for (size_t i = 0; i < e; i++) {
            one[i] = (char)tolower((unsigned char)p[i]);
        }
        one[e] = '\0';
        const char *host = one + 8;
        bool ok = strncmp(one, "https://", 8) == 0 && host[0] != '\0' &&
                  strspn(host, "abcdefghijklmnopqrstuvwxyz0123456789.-:[]") == strlen(host);
        if (!ok) {
            snprintf(err, errlen,
                     "\"%s\": an https origin, https://HOST or https://HOST:PORT, as a browser "
                     "sends it (no path); the page is used from elsewhere only over TLS",
                     one);
            return -1;
        }
        off += (size_t)snprintf(out + off, len - off, "%s%s", off ? "," : "", one);
        p += n + (p[n] == ',');
    }
    return 0;
}

/* An absolute path that fits in len bytes; "off" (left empty) where off_ok. */
static int parse_path(const char *s, bool off_ok, char *out, size_t len, char *err, size_t errlen)
{
    if (off_ok && strcasecmp(s, "off") == 0) {
        out[0] = '\0';
        return 0;
    }
    if (s[0] != '/') {
        snprintf(err, errlen, "\"%s\": expected an absolute path%s", s, off_ok ? " or off" : "");
        return -1;
    }
    if (strlen(s) >= len) {
        snprintf(err, errlen, "\"%s\": longer than %zu bytes", s, len - 1);
        return -1;
    }
    snprintf(out, len, "%s", s);
    return 0;
}

static bool valid_name(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && n < MAP_CONF_NAMELEN &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

/* Filters for protocols_list(). */
static bool is_stream(const struct proto *p, const void *arg)
{
    (void)arg;
    return p->transport == SOCK_STREAM;
}

static bool has_sessions(const struct proto *p, const void *arg)
{
    (void)arg;
    return p->default_max_sessions != 0;
}

static bool has_key(const struct proto *p, const void *key)
{
    return proto_has_key(p, key);
}

/* ---- one mapping: the keys of every protocol ---- */

static int set_proto(struct map_conf *m, const char *val, char *why, size_t len)
{
    m->proto = protocols_find(val);
    if (m->proto == NULL) {
        char names[128];
        snprintf(why, len, "\"%s\": expected %s", val,
                 protocols_list(names, sizeof(names), NULL, NULL, "or"));
        return -1;
    }
    return 0;
}

static int set_listen(struct map_conf *m, const char *val, char *why, size_t len)
{
    struct addr_endpoint ep;
    if (addr_parse_endpoint(val, &ep, why, len) != 0) {
        return -1;
    }
    if (addr_parse_ip(ep.host, &m->listen) != 0) {
        snprintf(why, len,
                 "\"%s\": listen on an IP address (0.0.0.0 or [::] for every address), not a "
                 "host name",
                 val);
        return -1;
    }
    struct sockaddr_storage v4 = m->listen;
    addr_unmap(&v4);
    if (v4.ss_family != m->listen.ss_family) {
        /* IPv6 listening sockets are IPv6-only (so that 0.0.0.0:P and [::]:P can be two
         * mappings): one could never be bound to an IPv4 address. */
        char ip[ADDR_STRLEN], hi[8] = "";
        if (ep.port_hi != ep.port_lo) {
            snprintf(hi, sizeof(hi), "-%u", ep.port_hi);
        }
        snprintf(why, len, "\"%s\": an IPv4-mapped address; listen on %s:%u%s instead", val,
                 addr_format_ip(&v4, ip, sizeof(ip)), ep.port_lo, hi);
        return -1;
    }
    m->listen_lo = ep.port_lo;
    m->listen_hi = ep.port_hi;
    addr_set_port(&m->listen, ep.port_lo);
    return 0;
}

static int set_target(struct map_conf *m, const char *val, char *why, size_t len)
{
    struct addr_endpoint ep;
    if (addr_parse_endpoint(val, &ep, why, len) != 0) {
        return -1;
    }
    snprintf(m->target_host, sizeof(m->target_host), "%s", ep.host);
    m->target_lo = ep.port_lo;
    m->target_hi = ep.port_hi;
    if (addr_parse_ip(ep.host, &m->target) == 0) {
        addr_set_port(&m->target, ep.port_lo);
        if (addr_is_any(&m->target)) {
            snprintf(why, len, "\"%s\": a target must be a device's address, not %s", val, ep.host);
            return -1;
        }
    }
    return 0;
}

static int set_allow(struct map_conf *m, const char *val, char *why, size_t len)
{
    return cidr_set_add_list(&m->allow, val, why, len);
}

static int set_deny(struct map_conf *m, const char *val, char *why, size_t len)
{
    return cidr_set_add_list(&m->deny, val, why, len);
}

#define MAX_LIMIT 10000000u

static int set_max_conns(struct map_conf *m, const char *val, char *why, size_t len)
{
    return parse_uint(val, MAX_LIMIT, &m->max_conns, why, len);
}

static int set_max_conns_per_ip(struct map_conf *m, const char *val, char *why, size_t len)
{
    return parse_uint(val, MAX_LIMIT, &m->max_conns_per_ip, why, len);
}

static int set_max_sessions(struct map_conf *m, const char *val, char *why, size_t len)
{
    if (parse_uint(val, MAX_LIMIT, &m->max_sessions, why, len) != 0) {
        return -1;
    }
    if (m->max_sessions == 0) {
        snprintf(why, len, "\"%s\": must be at least 1", val);
        return -1;
    }
    return 0;
}

static int set_connect_timeout(struct map_conf *m, const char *val, char *why, size_t len)
{
    if (duration_parse(val, &m->connect_timeout_ms, why, len) != 0) {
        return -1;
    }
    if (m->connect_timeout_ms == 0) {
        snprintf(why, len, "\"%s\": must be longer than 0", val);
        return -1;
    }
    return 0;
}

static int set_idle_timeout(struct map_conf *m, const char *val, char *why, size_t len)
{
    return duration_parse(val, &m->idle_timeout_ms, why, len);
}

/* send-proxy (off, v1, v2) and accept-proxy (also any). */
static int parse_proxy_version(const char *s, bool any_ok, enum proxyhdr_version *out, char *why,
                               size_t len)
{
    for (enum proxyhdr_version v = PROXYHDR_OFF; v <= (any_ok ? PROXYHDR_ANY : PROXYHDR_V2); v++) {
        if (strcmp(s, proxyhdr_version_name(v)) == 0) {
            *out = v;
            return 0;
        }
    }
    snprintf(why, len, "\"%s\": expected v1, v2%s or off", s, any_ok ? ", any" : "");
    return -1;
}

static int set_send_proxy(struct map_conf *m, const char *val, char *why, size_t len)
{
    return parse_proxy_version(val, false, &m->send_proxy, why, len);
}

static int set_accept_proxy(struct map_conf *m, const char *val, char *why, size_t len)
{
    return parse_proxy_version(val, true, &m->accept_proxy, why, len);
}

static int set_trusted_proxies(struct map_conf *m, const char *val, char *why, size_t len)
{
    if (cidr_set_add_list(&m->trusted, val, why, len) != 0) {
        return -1;
    }
    if (m->trusted.n > MAP_CONF_MAX_TRUSTED) {
        snprintf(why, len, "\"%.60s\": at most %d entries", val, MAP_CONF_MAX_TRUSTED);
        return -1;
    }
    return 0;
}

static int set_enabled(struct map_conf *m, const char *val, char *why, size_t len)
{
    return parse_bool(val, &m->enabled, why, len);
}

static int set_name(struct map_conf *m, const char *val, char *why, size_t len)
{
    if (!valid_name(val)) {
        snprintf(why, len, "\"%s\": use 1 to %d letters, digits, '.', '_' or '-'", val,
                 MAP_CONF_NAMELEN - 1);
        return -1;
    }
    snprintf(m->name, sizeof(m->name), "%s", val);
    return 0;
}

/* The keys every protocol understands; a protocol adds its own (forward/proto.h). Which of them
 * apply to a mapping depends on its protocol, known once the whole mapping is read. */
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
    K_SEND_PROXY,
    K_ACCEPT_PROXY,
    K_TRUSTED_PROXIES,
    K_ENABLED,
    K_NAME,
    K_COUNT
};

static const struct map_key {
    const char *name;
    int (*set)(struct map_conf *m, const char *val, char *why, size_t len);
    bool list;      /* allow, deny: each line adds to the list */
    bool spec_only; /* name: a file names its mappings in [map NAME] */
} map_keys[K_COUNT] = {
    [K_PROTO] = {.name = "proto", .set = set_proto},
    [K_LISTEN] = {.name = "listen", .set = set_listen},
    [K_TARGET] = {.name = "target", .set = set_target},
    [K_ALLOW] = {.name = "allow", .set = set_allow, .list = true},
    [K_DENY] = {.name = "deny", .set = set_deny, .list = true},
    [K_MAX_CONNS] = {.name = "max-conns", .set = set_max_conns},
    [K_MAX_CONNS_PER_IP] = {.name = "max-conns-per-ip", .set = set_max_conns_per_ip},
    [K_MAX_SESSIONS] = {.name = "max-sessions", .set = set_max_sessions},
    [K_CONNECT_TIMEOUT] = {.name = "connect-timeout", .set = set_connect_timeout},
    [K_IDLE_TIMEOUT] = {.name = "idle-timeout", .set = set_idle_timeout},
    [K_SEND_PROXY] = {.name = "send-proxy", .set = set_send_proxy},
    [K_ACCEPT_PROXY] = {.name = "accept-proxy", .set = set_accept_proxy},
    [K_TRUSTED_PROXIES] = {.name = "trusted-proxies", .set = set_trusted_proxies},
    [K_ENABLED] = {.name = "enabled", .set = set_enabled},
    [K_NAME] = {.name = "name", .set = set_name, .spec_only = true},
};

/* A key of some protocol, kept as written until the mapping's protocol is known. */
struct proto_key {
    char *key, *val;
    int line; /* in the file; 0 for a SPEC */
};

/* A mapping being read. */
struct map_build {
    size_t idx;              /* in c->maps */
    unsigned seen;           /* bit per enum key */
    bool continued;          /* the current line continues the previous key (INI multi-line) */
    struct proto_key *pkeys; /* protocols' keys, in order */
    size_t npkeys;
};

static void map_build_clear(struct map_build *b)
{
    for (size_t i = 0; i < b->npkeys; i++) {
        free(b->pkeys[i].key);
        free(b->pkeys[i].val);
    }
    free(b->pkeys);
    b->pkeys = NULL;
    b->npkeys = 0;
}

static bool any_proto_has_key(const char *key)
{
    for (const struct proto *const *p = protocols; *p != NULL; p++) {
        if (proto_has_key(*p, key)) {
            return true;
        }
    }
    return false;
}

/* Keeps a protocol's key for map_validate(). Returns 0, or -1 with err set. */
static int defer_key(struct map_build *b, const char *key, const char *val, int line, char *err,
                     size_t errlen)
{
    for (size_t i = 0; i < b->npkeys; i++) {
        if (strcmp(b->pkeys[i].key, key) == 0) {
            snprintf(err, errlen, "%s: set twice in this mapping", key);
            return -1;
        }
    }
    struct proto_key *v = realloc(b->pkeys, (b->npkeys + 1) * sizeof(*v));
    if (v == NULL) {
        snprintf(err, errlen, "%s: out of memory", key);
        return -1;
    }
    b->pkeys = v;
    struct proto_key *k = &b->pkeys[b->npkeys];
    k->key = strdup(key);
    k->val = strdup(val);
    k->line = line;
    if (k->key == NULL || k->val == NULL) {
        free(k->key);
        free(k->val);
        snprintf(err, errlen, "%s: out of memory", key);
        return -1;
    }
    b->npkeys++;
    return 0;
}

/* Sets one mapping key given on line (0 in a SPEC). Returns 0, or -1 with err holding "KEY:
 * reason". */
static int map_set(struct map_conf *m, struct map_build *b, const char *key, const char *val,
                   bool spec, int line, char *err, size_t errlen)
{
    int k = 0;
    while (k < K_COUNT && strcmp(key, map_keys[k].name) != 0) {
        k++;
    }
    if (k == K_COUNT || (map_keys[k].spec_only && !spec)) {
        if (k == K_COUNT && any_proto_has_key(key)) {
            if (b->continued) {
                snprintf(err, errlen, "%s: only allow and deny may continue on a following line",
                         key);
                return -1;
            }
            return defer_key(b, key, val, line, err, errlen);
        }
        snprintf(err, errlen, "unknown key \"%s\" (see docs/configuration.md)", key);
        return -1;
    }
    const struct map_key *mk = &map_keys[k];
    if ((b->seen & (1u << k)) && !mk->list) {
        if (b->continued) {
            snprintf(err, errlen, "%s: only allow and deny may continue on a following line", key);
        } else {
            snprintf(err, errlen, "%s: set twice in this mapping", key);
        }
        return -1;
    }
    b->seen |= 1u << k;
    char why[512];
    if (mk->set(m, val, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "%s: %s", key, why);
        return -1;
    }
    return 0;
}

/* A key's error where the key was given: "FILE:LINE: [map NAME] KEY: ...", "--map N: ..." or
 * "STATE: [map NAME] KEY: ...". */
static void key_error(struct config *c, const struct map_conf *m, int line, const char *key,
                      const char *err)
{
    if (line > 0) {
        add_field_error(c, key, "%s:%d: [map %s] %s", m->source, line, m->name, err);
    } else if (m->origin == MAP_ORIGIN_SPEC) {
        add_field_error(c, key, "%s: %s", m->source, err);
    } else {
        add_field_error(c, key, "%s: [map %s] %s", m->source, m->name, err);
    }
}

/* Hands the protocol the keys kept for it, on the defaults of its settings. */
static void apply_proto_keys(struct config *c, struct map_conf *m, const struct map_build *b,
                             const char *at)
{
    const struct proto *p = m->proto;
    if (p->conf_size > 0) {
        m->pconf = calloc(1, p->conf_size);
        if (m->pconf == NULL) {
            add_error(c, "%s: [map %s] out of memory", at, m->name);
            return;
        }
        p->conf_init(m->pconf);
    }
    for (size_t i = 0; i < b->npkeys; i++) {
        const struct proto_key *k = &b->pkeys[i];
        char why[512], err[768], names[128];
        if (!proto_has_key(p, k->key)) {
            snprintf(err, sizeof(err), "%s applies to %s mappings only", k->key,
                     protocols_list(names, sizeof(names), has_key, k->key, "and"));
            if (k->line > 0) {
                key_error(c, m, k->line, k->key, err); /* where the key is */
            } else {
                add_field_error(c, k->key, "%s: [map %s] %s", at, m->name, err);
            }
            continue;
        }
        if (p->conf_set(m->pconf, k->key, k->val, why, sizeof(why)) != 0) {
            snprintf(err, sizeof(err), "%s: %s", k->key, why);
            key_error(c, m, k->line, k->key, err);
        }
    }
}

/* Checks a mapping on its own once all its keys are read, and applies its protocol's keys;
 * reports at its definition. Empties b. */
static void map_validate(struct config *c, struct map_conf *m, struct map_build *b)
{
    char at[MAP_CONF_SOURCELEN + 16], names[128];
    where(at, sizeof(at), m->source, m->line);
    static const enum key required[] = {K_PROTO, K_LISTEN, K_TARGET};
    bool complete = true;
    for (size_t i = 0; i < 3; i++) {
        if (!(b->seen & (1u << required[i]))) {
            add_field_error(c, map_keys[required[i]].name, "%s: [map %s] missing %s", at, m->name,
                            map_keys[required[i]].name);
            complete = false;
        }
    }
    const struct proto *p = m->proto;
    if (p == NULL) {
        map_build_clear(b); /* no protocol, or a bad one (reported): what applies is unknown */
        return;
    }
    if (!(b->seen & (1u << K_IDLE_TIMEOUT))) {
        m->idle_timeout_ms =
            is_stream(p, NULL) ? MAP_CONF_TCP_IDLE_TIMEOUT_MS : MAP_CONF_UDP_IDLE_TIMEOUT_MS;
    }
    static const enum key stream_only[] = {K_MAX_CONNS,  K_MAX_CONNS_PER_IP, K_CONNECT_TIMEOUT,
                                           K_SEND_PROXY, K_ACCEPT_PROXY,     K_TRUSTED_PROXIES};
    for (size_t i = 0; i < sizeof(stream_only) / sizeof(stream_only[0]); i++) {
        if (!is_stream(p, NULL) && (b->seen & (1u << stream_only[i]))) {
            bool hint = (stream_only[i] == K_MAX_CONNS || stream_only[i] == K_MAX_CONNS_PER_IP) &&
                        has_sessions(p, NULL);
            add_field_error(c, map_keys[stream_only[i]].name,
                            "%s: [map %s] %s applies to tcp mappings only (proto %s)%s%s", at,
                            m->name, map_keys[stream_only[i]].name,
                            protocols_list(names, sizeof(names), is_stream, NULL, "or"),
                            hint ? "; use max-sessions for " : "", hint ? p->name : "");
        }
    }
    if (!has_sessions(p, NULL) && (b->seen & (1u << K_MAX_SESSIONS))) {
        add_field_error(c, "max-sessions",
                        "%s: [map %s] max-sessions applies to %s mappings only%s%s%s", at, m->name,
                        protocols_list(names, sizeof(names), has_sessions, NULL, "and"),
                        is_stream(p, NULL) ? " (use max-conns for " : "",
                        is_stream(p, NULL) ? p->name : "", is_stream(p, NULL) ? ")" : "");
    }
    if (!(b->seen & (1u << K_MAX_SESSIONS))) {
        m->max_sessions = p->default_max_sessions;
    }
    if (m->accept_proxy != PROXYHDR_OFF && m->trusted.n == 0 && is_stream(p, NULL)) {
        /* proxy-protocol.txt 1: a header from anyone would let anyone claim any address. */
        add_field_error(c, "accept-proxy",
                        "%s: [map %s] accept-proxy: set trusted-proxies to the addresses of the "
                        "proxies that send the header (anyone else could claim any address)",
                        at, m->name);
    }
    apply_proto_keys(c, m, b, at);
    map_build_clear(b);
    if (!complete || m->target_lo == 0 || m->listen_lo == 0) {
        return;
    }
    unsigned nlisten = (unsigned)m->listen_hi - m->listen_lo + 1;
    unsigned ntarget = (unsigned)m->target_hi - m->target_lo + 1;
    if (ntarget != 1 && ntarget != nlisten) {
        add_field_error(
            c, "target",
            "%s: [map %s] target: %u ports (%u-%u) for %u listening ports (%u-%u): give a "
            "range of the same length, or one port",
            at, m->name, ntarget, m->target_lo, m->target_hi, nlisten, m->listen_lo, m->listen_hi);
    }
}

static struct map_conf *new_map(struct config *c, enum map_origin origin, const char *name,
                                const char *source, int line)
{
    struct map_conf *v = realloc(c->maps, (c->nmaps + 1) * sizeof(*v));
    if (v == NULL) {
        add_error(c, "%s: out of memory", source);
        return NULL;
    }
    c->maps = v;
    struct map_conf *m = &c->maps[c->nmaps++];
    map_conf_init(m, origin, name, source, line);
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
        map_validate(st->c, &st->c->maps[st->mb.idx], &st->mb);
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
                  st->source, st->line, name, MAP_CONF_NAMELEN - 1);
        st->sec = SEC_BAD;
        return;
    }
    for (size_t i = 0; i < c->nmaps; i++) {
        if (strcmp(c->maps[i].name, mname) == 0) {
            char at[MAP_CONF_SOURCELEN + 16];
            where(at, sizeof(at), c->maps[i].source, c->maps[i].line);
            add_error(c, "%s:%d: [map %s] is defined twice (first at %s)", st->source, st->line,
                      mname, at);
            st->sec = SEC_BAD;
            return;
        }
    }
    if (new_map(c, MAP_ORIGIN_FILE, mname, st->source, st->line) == NULL) {
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
        /* inih strips a comment after a value (" ; ...") on the key's own line only: so do
         * the same for a continuation line here. */
        for (char *c = str + 1; *c != '\0'; c++) {
            if (*c == ';' && (c[-1] == ' ' || c[-1] == '\t')) {
                c[0] = '\n';
                c[1] = '\0';
                break;
            }
        }
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
        rc = duration_parse(val, &c->gw.drain_timeout_ms, why, sizeof(why));
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
    } else if (strcmp(key, "admin") == 0) {
        bit = 64;
        rc = parse_admin(val, &c->gw.admin, why, sizeof(why));
    } else if (strcmp(key, "admin-socket") == 0) {
        bit = 128;
        rc =
            parse_path(val, true, c->gw.admin_socket, sizeof(c->gw.admin_socket), why, sizeof(why));
    } else if (strcmp(key, "state") == 0) {
        bit = 256;
        rc = parse_path(val, false, c->gw.state, sizeof(c->gw.state), why, sizeof(why));
    } else if (strcmp(key, "users-file") == 0) {
        bit = 512;
        rc = parse_path(val, false, c->gw.users_file, sizeof(c->gw.users_file), why, sizeof(why));
    } else if (strcmp(key, "admin-origins") == 0) {
        bit = 1024;
        rc = parse_origins(val, c->gw.admin_origins, sizeof(c->gw.admin_origins), why, sizeof(why));
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
            add_field_error(st->c, key, "%s:%d: [map %s] %s: empty value", st->source, st->line,
                            m->name, key);
        } else if (map_set(m, &st->mb, key, val, false, st->line, err, sizeof(err)) != 0) {
            add_field_error(st->c, key, "%s:%d: [map %s] %s", st->source, st->line, m->name, err);
        }
        break;
    }
    case SEC_NONE:
    case SEC_BAD:
        break;
    }
    return 1; /* errors are collected, never reported to inih */
}

/* A gateway run from a config file has the admin interface unless the file turns it off. */
static void set_file_defaults(struct config_gateway *gw)
{
    char err[128];
    int rc = parse_admin(CONFIG_ADMIN, &gw->admin, err, sizeof(err));
    assert(rc == 0);
    (void)rc;
    snprintf(gw->admin_socket, sizeof(gw->admin_socket), "%s", CONFIG_ADMIN_SOCKET);
    snprintf(gw->state, sizeof(gw->state), "%s", CONFIG_STATE);
    snprintf(gw->users_file, sizeof(gw->users_file), "%s", CONFIG_USERS_FILE);
}

int config_load_buffer(struct config *c, const char *source, const char *buf, size_t len)
{
    size_t before = c->nerrors;
    set_file_defaults(&c->gw);
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
    char *buf;
    size_t len;
    int rc = file_read(path, false, CONFIG_MAX_FILE, &buf, &len, NULL);
    if (rc == -EFBIG) {
        add_error(c, "%s: larger than %u bytes", path, CONFIG_MAX_FILE);
        return -1;
    }
    if (rc != 0) {
        add_error(c, "%s: %s%s", path,
                  rc == -EINVAL || rc == -ENODATA ? "" : "cannot open: ", file_strerror(rc));
        return -1;
    }
    rc = config_load_buffer(c, path, buf, len);
    free(buf);
    return rc;
}

/* ---- --map SPEC ---- */

int config_add_spec(struct config *c, const char *spec, int index)
{
    char source[32], name[MAP_CONF_NAMELEN], err[768];
    snprintf(source, sizeof(source), "--map %d", index);
    snprintf(name, sizeof(name), "cli-%d", index);
    size_t before = c->nerrors;
    const char *colon = strchr(spec, ':');
    const char *eq = strchr(spec, '=');
    if (colon == NULL || eq == NULL || eq < colon) {
        add_error(c, "%s: \"%s\": expected PROTO:LISTEN=TARGET[,KEY=VALUE...]", source, spec);
        return -1;
    }
    struct map_conf *m = new_map(c, MAP_ORIGIN_SPEC, name, source, 0);
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
     * (so that allow=192.0.2.0/24,198.51.100.0/24 is one list). Items are cut in place in the
     * copy: there is no limit on their number or length. */
    char *proto = copy;
    copy[colon - spec] = '\0';
    char *listen = copy + (colon - spec) + 1;
    copy[eq - spec] = '\0';
    char *target = copy + (eq - spec) + 1;
    char *item = strchr(target, ',');
    if (item != NULL) {
        *item++ = '\0';
    }
    const char *head[3][2] = {{"proto", proto}, {"listen", listen}, {"target", target}};
    for (size_t i = 0; i < 3; i++) {
        if (map_set(m, &b, head[i][0], head[i][1], true, 0, err, sizeof(err)) != 0) {
            add_field_error(c, head[i][0], "%s: %s", source, err);
        }
    }
    while (item != NULL) {
        char *end = strchr(item, ',');
        char *e = memchr(item, '=', end != NULL ? (size_t)(end - item) : strlen(item));
        if (e != NULL) {
            /* The value runs on over the following items that have no '='. */
            while (end != NULL) {
                char *next = end + 1, *after = strchr(next, ',');
                if (memchr(next, '=', after != NULL ? (size_t)(after - next) : strlen(next))) {
                    break;
                }
                end = after;
            }
        }
        if (end != NULL) {
            *end = '\0';
        }
        char *val = e != NULL ? e + 1 : NULL;
        if (e != NULL) {
            *e = '\0'; /* item is the key */
        }
        if (val == NULL) {
            add_error(c, "%s: \"%s\": expected KEY=VALUE", source, item);
        } else if (*val == '\0') {
            add_field_error(c, item, "%s: %s: empty value", source, item);
        } else if (map_set(m, &b, item, val, true, 0, err, sizeof(err)) != 0) {
            add_field_error(c, item, "%s: %s", source, err);
        }
        item = end != NULL ? end + 1 : NULL;
    }
    free(copy);
    map_validate(c, &c->maps[b.idx], &b);
    return c->nerrors == before ? 0 : -1;
}

/* ---- the whole set ---- */

static const char *transport_name(const struct proto *p)
{
    return p->transport == SOCK_STREAM ? "tcp" : "udp";
}

/* The UDP ports m binds for itself (forward/proto.h): the key that sets them, or NULL. */
static const char *own_udp_ports(const struct map_conf *m, uint16_t *lo, uint16_t *hi)
{
    if (m->pconf == NULL || m->proto->own_udp_ports == NULL) {
        return NULL;
    }
    return m->proto->own_udp_ports(m->pconf, lo, hi);
}

/* Two mappings may not both use a UDP port: the ports a protocol binds for itself (rtp-ports)
 * and UDP listeners, on any address, since a relay's sockets bind on the addresses clients and
 * devices use. b was defined before a; reports at a. */
static void check_own_udp_ports(struct config *c, const struct map_conf *a,
                                const struct map_conf *b, const char *at, const char *bt)
{
    uint16_t alo, ahi, blo, bhi;
    const char *akey = own_udp_ports(a, &alo, &ahi), *bkey = own_udp_ports(b, &blo, &bhi);
    if (akey != NULL && bkey != NULL && alo <= bhi && blo <= ahi) {
        add_field_error(c, akey, "%s: [map %s] %s %u-%u overlap the %s of [map %s] at %s", at,
                        a->name, akey, alo, ahi, bkey, b->name, bt);
    }
    if (akey != NULL && b->proto->transport == SOCK_DGRAM && alo <= b->listen_hi &&
        b->listen_lo <= ahi) {
        add_field_error(c, akey, "%s: [map %s] %s %u-%u overlap udp ports %u-%u of [map %s] at %s",
                        at, a->name, akey, alo, ahi, b->listen_lo, b->listen_hi, b->name, bt);
    }
    if (bkey != NULL && a->proto->transport == SOCK_DGRAM && blo <= a->listen_hi &&
        a->listen_lo <= bhi) {
        add_field_error(c, "listen",
                        "%s: [map %s] listen: udp ports %u-%u overlap the %s of [map %s] at %s", at,
                        a->name, a->listen_lo, a->listen_hi, bkey, b->name, bt);
    }
}

/* True if a and b may listen on the same port: their protocol routes each connection to one of
 * them (forward/proto.h: router), they listen on the same address and ports, and the protocol
 * can tell their clients apart. Else false, with why when it is about their settings. */
static bool may_share(const struct map_conf *a, const struct map_conf *b, char *why, size_t whylen)
{
    const struct proto *p = a->proto;
    if (p != b->proto || p->router == NULL || p->can_share == NULL) {
        return false;
    }
    if (!addr_equal(&a->listen, &b->listen) || a->listen_lo != b->listen_lo ||
        a->listen_hi != b->listen_hi) {
        snprintf(why, whylen, "%s mappings share a port only on the same listen address and ports",
                 p->name);
        return false;
    }
    /* A PROXY header is read before anything tells the mappings apart. */
    if (a->accept_proxy != b->accept_proxy ||
        (a->accept_proxy != PROXYHDR_OFF && !cidr_set_equal(&a->trusted, &b->trusted))) {
        snprintf(why, whylen,
                 "mappings that share a port must have the same accept-proxy and, with it, the "
                 "same trusted-proxies");
        return false;
    }
    return p->can_share(a->pconf, b->pconf, why, whylen);
}

/* Has m's protocol check its settings together, then make what it needs to run (TLS: read the
 * certificates). An API mapping that cannot is kept, failed, like one whose target does not
 * resolve; any other is an error. */
static void open_run(struct config *c, struct map_conf *m)
{
    char why[512];
    int rc = 0;
    if (m->pconf != NULL && m->proto->conf_check != NULL) {
        rc = m->proto->conf_check(m->pconf, why, sizeof(why));
    }
    if (rc == 0 && (!map_conf_runs(m) || m->run != NULL || m->proto->run_open == NULL)) {
        return;
    }
    if (rc == 0 && map_conf_open_run(m, why, sizeof(why)) == 0) {
        return;
    }
    if (c->keep_failed && m->origin == MAP_ORIGIN_API) {
        size_t n = strnlen(why, sizeof(m->failed) - 1);
        memcpy(m->failed, why, n);
        m->failed[n] = '\0';
        return;
    }
    /* The reason starts with the key it is about ("cert: ..."), the field to show it at. */
    char field[32] = "";
    size_t klen = strcspn(why, ":");
    if (klen < sizeof(field) && why[klen] == ':') {
        memcpy(field, why, klen);
        field[klen] = '\0';
    }
    char at[MAP_CONF_SOURCELEN + 16];
    where(at, sizeof(at), m->source, m->line);
    add_field_error(c, proto_has_key(m->proto, field) ? field : NULL, "%s: [map %s] %s", at,
                    m->name, why);
}

static void resolve_target(struct config *c, struct map_conf *m)
{
    struct sockaddr_storage ss;
    if (addr_parse_ip(m->target_host, &ss) == 0) {
        return; /* a literal, set by map_set */
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = m->proto->transport};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(m->target_host, NULL, &hints, &res);
    if ((rc != 0 || res == NULL) && c->keep_failed && m->origin == MAP_ORIGIN_API) {
        snprintf(m->failed, sizeof(m->failed), "target: cannot resolve \"%s\": %s", m->target_host,
                 rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
        if (res) {
            freeaddrinfo(res);
        }
        return;
    }
    if (rc != 0 || res == NULL) {
        char at[MAP_CONF_SOURCELEN + 16];
        where(at, sizeof(at), m->source, m->line);
        add_field_error(c, "target", "%s: [map %s] target: cannot resolve \"%s\": %s", at, m->name,
                        m->target_host, rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
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

/* ---- the checks across mappings ----
 *
 * Every pair of mappings could clash (a name, listening ports, a protocol's own UDP ports), but
 * a config may hold thousands of mappings and the admin interface checks the whole set on every
 * change: so the pairs are found by sorting, and only pairs that do clash (or, for the rare
 * mappings that bind UDP ports of their own, that might) are looked at. Each clash is reported
 * at the later mapping, naming the earlier, in the order of the later ones.
 */

enum clash { CLASH_NAME, CLASH_LISTEN, CLASH_OWN_PORTS };

struct pair {
    uint32_t a, b; /* a defined after b */
    uint32_t kind;
};

struct pairs {
    struct pair *v;
    size_t n, cap;
    bool oom;
};

static void pair_add(struct pairs *ps, size_t i, size_t j, enum clash kind)
{
    if (ps->n == ps->cap) {
        size_t cap = ps->cap ? ps->cap * 2 : 16;
        struct pair *v = realloc(ps->v, cap * sizeof(*v));
        if (v == NULL) {
            ps->oom = true;
            return;
        }
        ps->v = v;
        ps->cap = cap;
    }
    ps->v[ps->n++] =
        (struct pair){.a = (uint32_t)(i > j ? i : j), .b = (uint32_t)(i > j ? j : i), .kind = kind};
}

static int cmp_pair(const void *x, const void *y)
{
    const struct pair *p = x, *q = y;
    if (p->a != q->a) {
        return p->a < q->a ? -1 : 1;
    }
    if (p->kind != q->kind) {
        return p->kind < q->kind ? -1 : 1;
    }
    return p->b < q->b ? -1 : (p->b > q->b);
}

/* qsort_r() comparisons of indices into the config given as ctx. */
static int cmp_name(const void *x, const void *y, void *ctx)
{
    const struct config *c = ctx;
    const uint32_t *i = x, *j = y;
    int r = strcmp(c->maps[*i].name, c->maps[*j].name);
    return r != 0 ? r : (*i < *j ? -1 : (*i > *j));
}

static bool listening(const struct map_conf *m)
{
    return m->enabled && m->listen_lo != 0 && m->proto != NULL;
}

/* The address part of a listener, for sorting: transport, family, then the address bytes. */
static int cmp_listen_addr(const struct map_conf *a, const struct map_conf *b)
{
    if (a->proto->transport != b->proto->transport) {
        return a->proto->transport < b->proto->transport ? -1 : 1;
    }
    if (a->listen.ss_family != b->listen.ss_family) {
        return a->listen.ss_family < b->listen.ss_family ? -1 : 1;
    }
    if (a->listen.ss_family == AF_INET6) {
        return memcmp(&((const struct sockaddr_in6 *)&a->listen)->sin6_addr,
                      &((const struct sockaddr_in6 *)&b->listen)->sin6_addr, 16);
    }
    return memcmp(&((const struct sockaddr_in *)&a->listen)->sin_addr,
                  &((const struct sockaddr_in *)&b->listen)->sin_addr, 4);
}

/* Listeners by (transport, family, wildcard first, address, first port). */
static int cmp_listen(const void *x, const void *y, void *ctx)
{
    const struct config *c = ctx;
    const struct map_conf *a = &c->maps[*(const uint32_t *)x];
    const struct map_conf *b = &c->maps[*(const uint32_t *)y];
    if (a->proto->transport != b->proto->transport || a->listen.ss_family != b->listen.ss_family) {
        return cmp_listen_addr(a, b);
    }
    bool wa = addr_is_any(&a->listen), wb = addr_is_any(&b->listen);
    if (wa != wb) {
        return wa ? -1 : 1;
    }
    int r = cmp_listen_addr(a, b);
    if (r != 0) {
        return r;
    }
    return a->listen_lo < b->listen_lo ? -1 : (a->listen_lo > b->listen_lo);
}

static bool same_family_and_transport(const struct map_conf *a, const struct map_conf *b)
{
    return a->proto->transport == b->proto->transport && a->listen.ss_family == b->listen.ss_family;
}

/* Finds the pairs of listeners whose ports overlap on the same address, or where one is a
 * wildcard of the other's family and transport. idx holds the listening mappings. */
static void find_listen_clashes(const struct config *c, uint32_t *idx, size_t n, struct pairs *ps)
{
    qsort_r(idx, n, sizeof(*idx), cmp_listen, (void *)c);
    /* The same address (wildcards among themselves too): sorted by first port, a listener
     * overlaps the following ones that start before it ends. */
    for (size_t i = 0; i < n; i++) {
        const struct map_conf *a = &c->maps[idx[i]];
        for (size_t j = i + 1; j < n; j++) {
            const struct map_conf *b = &c->maps[idx[j]];
            if (cmp_listen_addr(a, b) != 0 || addr_is_any(&a->listen) != addr_is_any(&b->listen) ||
                b->listen_lo > a->listen_hi) {
                break;
            }
            pair_add(ps, idx[i], idx[j], CLASH_LISTEN);
        }
    }
    /* A specific address against the wildcards of its family and transport, which sort first
     * in their group: the wildcards whose first port is at most its last, back from the last
     * one, while the highest last port among them can still reach its first. */
    size_t g = 0;
    while (g < n) {
        size_t w_end = g, end = g;
        while (end < n && same_family_and_transport(&c->maps[idx[g]], &c->maps[idx[end]])) {
            end++;
        }
        while (w_end < end && addr_is_any(&c->maps[idx[w_end]].listen)) {
            w_end++;
        }
        if (w_end > g) {
            size_t nw = w_end - g;
            uint16_t *reach = malloc(nw * sizeof(*reach)); /* highest last port so far */
            uint32_t *w = malloc(nw * sizeof(*w));
            if (reach == NULL || w == NULL) {
                ps->oom = true;
                free(reach);
                free(w);
                return;
            }
            /* The wildcards by first port (they are sorted so already within their address). */
            memcpy(w, idx + g, nw * sizeof(*w));
            for (size_t k = 0; k < nw; k++) {
                uint16_t hi = c->maps[w[k]].listen_hi;
                reach[k] = k > 0 && reach[k - 1] > hi ? reach[k - 1] : hi;
            }
            for (size_t s = w_end; s < end; s++) {
                const struct map_conf *m = &c->maps[idx[s]];
                size_t lo = 0, hi = nw; /* the first wildcard starting after m's last port */
                while (lo < hi) {
                    size_t mid = (lo + hi) / 2;
                    if (c->maps[w[mid]].listen_lo <= m->listen_hi) {
                        lo = mid + 1;
                    } else {
                        hi = mid;
                    }
                }
                for (size_t k = lo; k-- > 0 && reach[k] >= m->listen_lo;) {
                    if (c->maps[w[k]].listen_hi >= m->listen_lo) {
                        pair_add(ps, idx[s], w[k], CLASH_LISTEN);
                    }
                }
            }
            free(reach);
            free(w);
        }
        g = end;
    }
}

/* At most this many clashes are listed; a config with more gets one line saying so. */
#define MAX_CLASHES 100

int config_finish(struct config *c, bool resolve)
{
    if (c->nmaps == 0 && c->nerrors == 0 && !config_admin_on(&c->gw)) {
        add_error(c, "no mappings: give a config file with [map NAME] sections (-c FILE) or --map "
                     "SPEC");
    }
    struct pairs ps = {0};
    uint32_t *idx = malloc((c->nmaps + 1) * sizeof(*idx));
    if (idx == NULL) {
        add_error(c, "out of memory checking the configuration");
        return -1;
    }
    /* Names: the file refuses a second [map NAME] as it reads it; a --map name= or the state
     * file can still clash. Equal names sort next to each other. */
    for (size_t i = 0; i < c->nmaps; i++) {
        idx[i] = (uint32_t)i;
    }
    qsort_r(idx, c->nmaps, sizeof(*idx), cmp_name, c);
    for (size_t i = 1; i < c->nmaps; i++) {
        for (size_t j = i; j-- > 0 && strcmp(c->maps[idx[j]].name, c->maps[idx[i]].name) == 0;) {
            pair_add(&ps, idx[i], idx[j], CLASH_NAME);
        }
    }
    size_t n = 0;
    for (size_t i = 0; i < c->nmaps; i++) {
        if (listening(&c->maps[i])) {
            idx[n++] = (uint32_t)i;
        }
    }
    find_listen_clashes(c, idx, n, &ps);
    /* A protocol's own UDP ports (rtp-ports): the few mappings that have some, against all. */
    for (size_t i = 0; i < c->nmaps; i++) {
        uint16_t lo, hi;
        if (!listening(&c->maps[i]) || own_udp_ports(&c->maps[i], &lo, &hi) == NULL) {
            continue;
        }
        for (size_t j = 0; j < c->nmaps; j++) {
            uint16_t lo2, hi2;
            bool theirs = own_udp_ports(&c->maps[j], &lo2, &hi2) != NULL;
            if (j != i && listening(&c->maps[j]) && !(theirs && j > i)) {
                pair_add(&ps, i, j, CLASH_OWN_PORTS);
            }
        }
    }
    free(idx);
    if (ps.oom) {
        add_error(c, "out of memory checking the configuration");
    }
    if (ps.n > 0) {
        qsort(ps.v, ps.n, sizeof(*ps.v), cmp_pair);
    }
    size_t shown = 0, before = c->nerrors;
    for (size_t k = 0; k < ps.n; k++) {
        const struct map_conf *a = &c->maps[ps.v[k].a], *b = &c->maps[ps.v[k].b];
        if (k > 0 && cmp_pair(&ps.v[k], &ps.v[k - 1]) == 0) {
            continue; /* found twice (two wildcards) */
        }
        if (shown == MAX_CLASHES) {
            add_error(c, "... and more clashes between mappings (only the first %d are listed)",
                      MAX_CLASHES);
            break;
        }
        char at[MAP_CONF_SOURCELEN + 16], bt[MAP_CONF_SOURCELEN + 16];
        where(at, sizeof(at), a->source, a->line);
        where(bt, sizeof(bt), b->source, b->line);
        switch (ps.v[k].kind) {
        case CLASH_NAME:
            add_field_error(c, "name", "%s: name \"%s\" is already used by [map %s] at %s", at,
                            a->name, a->name, bt);
            break;
        case CLASH_LISTEN: {
            char why[320] = "";
            if (may_share(a, b, why, sizeof(why))) {
                break;
            }
            add_field_error(c, "listen",
                            "%s: [map %s] listen: %s ports %u-%u overlap [map %s] at %s%s%s", at,
                            a->name, transport_name(a->proto), a->listen_lo, a->listen_hi, b->name,
                            bt, why[0] != '\0' ? ": " : "", why);
            break;
        }
        default:
            check_own_udp_ports(c, a, b, at, bt);
            break;
        }
        c->conflicts += c->nerrors - before;
        shown += c->nerrors > before;
        before = c->nerrors;
    }
    free(ps.v);
    if (c->nerrors == 0) {
        for (size_t i = 0; i < c->nmaps; i++) {
            open_run(c, &c->maps[i]);
        }
    }
    if (c->nerrors == 0 && resolve) {
        for (size_t i = 0; i < c->nmaps; i++) {
            if (c->maps[i].target.ss_family == 0 && c->maps[i].failed[0] == '\0') {
                resolve_target(c, &c->maps[i]);
            }
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
    /* the reserved slot exists from the start */
    c->errors = malloc(8 * sizeof(*c->errors));
    c->fields = malloc(8 * sizeof(*c->fields));
    if (c->errors == NULL || c->fields == NULL) {
        free(c->errors);
        free(c->fields);
        free(c);
        return NULL;
    }
    c->errors_cap = 8;
    c->gw.log_level = LOG_LVL_INFO;
    c->gw.drain_timeout_ms = CONFIG_DRAIN_TIMEOUT_MS;
    c->gw.splice = true;
    return c;
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
        free(c->fields[i]);
    }
    free(c->errors);
    free(c->fields);
    free(c);
}

/* Writes " KEY=a,b,c" for a CIDR set, whole: a rule is never cut from what check shows. */
static void print_cidrs(FILE *out, const char *key, const struct cidr_set *set)
{
    for (size_t i = 0; i < set->n; i++) {
        char one[CIDR_STRLEN];
        fprintf(out, "%s%s", i == 0 ? key : ",", cidr_format(&set->v[i], one, sizeof(one)));
    }
}

/* "0.0.0.0:80", "[::]:6000-6009" */
static char *format_listen(const struct map_conf *m, char *buf, size_t len)
{
    char ip[ADDR_STRLEN];
    addr_format_ip(&m->listen, ip, sizeof(ip));
    const char *fmt = m->listen.ss_family == AF_INET6 ? "[%s]:%u" : "%s:%u";
    int n = snprintf(buf, len, fmt, ip, m->listen_lo);
    if (m->listen_hi != m->listen_lo && n > 0 && (size_t)n < len) {
        snprintf(buf + n, len - (size_t)n, "-%u", m->listen_hi);
    }
    return buf;
}

/* The target as written: "192.0.2.10:80", "[2001:db8::10]:80", "cam.example:554" */
static char *format_target(const struct map_conf *m, char *buf, size_t len)
{
    bool v6 = strchr(m->target_host, ':') != NULL;
    int n = snprintf(buf, len, v6 ? "[%s]:%u" : "%s:%u", m->target_host, m->target_lo);
    if (m->target_hi != m->target_lo && n > 0 && (size_t)n < len) {
        snprintf(buf + n, len - (size_t)n, "-%u", m->target_hi);
    }
    return buf;
}

/* Warns that m faces the internet with no allow list, and why that matters (what). */
static void warn_exposed(const struct map_conf *m, const char *at, const char *what,
                         void (*fn)(void *arg, const char *msg), void *arg)
{
    char a[ADDR_STRLEN], msg[1024];
    format_listen(m, a, sizeof(a));
    snprintf(msg, sizeof(msg), "%s: [map %s] %s on %s%s faces the internet with no allow list%s",
             at, m->name, m->proto->name, a, addr_is_any(&m->listen) ? " (every address)" : "",
             what);
    fn(arg, msg);
}

size_t config_warnings(const struct config *c, void (*fn)(void *arg, const char *msg), void *arg)
{
    size_t n = 0;
    for (size_t i = 0; i < c->nmaps; i++) {
        const struct map_conf *m = &c->maps[i];
        if (!map_conf_runs(m)) {
            continue;
        }
        char at[MAP_CONF_SOURCELEN + 16], msg[1024], a[ADDR_STRLEN];
        where(at, sizeof(at), m->source, m->line);
        bool exposed = m->allow.n == 0 && !addr_is_private(&m->listen);
        if (exposed && m->proto->cleartext_logins != NULL && m->proto->cleartext_logins(m->pconf)) {
            warn_exposed(m, at,
                         ": the device's own login goes over it in the clear; set allow to "
                         "who needs it, or serve it over TLS (https, rtsps)",
                         fn, arg);
            n++;
        }
        if (exposed && m->proto->opens_device != NULL && m->proto->opens_device(m->pconf)) {
            warn_exposed(m, at,
                         ", and its device-auth logs every client in to the device as its "
                         "user: set allow to who needs it",
                         fn, arg);
            n++;
        }
        if (m->proto->layer != NULL && m->target.ss_family != 0 && !addr_is_private(&m->target)) {
            addr_format_ip(&m->target, a, sizeof(a));
            snprintf(msg, sizeof(msg),
                     "%s: [map %s] %s ends TLS here and sends the device's traffic in the clear "
                     "to %s, which is not a private address: that leg is not encrypted",
                     at, m->name, m->proto->name, a);
            fn(arg, msg);
            n++;
        }
    }
    return n;
}

void config_print(const struct config *c, FILE *out)
{
    fprintf(out, "%-16s %-5s %-28s %-28s %s\n", "NAME", "PROTO", "LISTEN", "TARGET", "OPTIONS");
    for (size_t i = 0; i < c->nmaps; i++) {
        const struct map_conf *m = &c->maps[i];
        char listen[ADDR_STRLEN + 8], target[ADDR_HOSTLEN + 16], tip[ADDR_STRLEN];
        char d[32];
        fprintf(out, "%-16s %-5s %-28s %-28s", m->name, m->proto->name,
                format_listen(m, listen, sizeof(listen)), format_target(m, target, sizeof(target)));
        if (addr_parse_ip(m->target_host, &(struct sockaddr_storage){0}) != 0 &&
            m->target.ss_family != 0) {
            fprintf(out, " resolved=%s", addr_format_ip(&m->target, tip, sizeof(tip)));
        }
        print_cidrs(out, " allow=", &m->allow);
        print_cidrs(out, " deny=", &m->deny);
        if (is_stream(m->proto, NULL)) {
            if (m->max_conns) {
                fprintf(out, " max-conns=%u", m->max_conns);
            }
            if (m->max_conns_per_ip) {
                fprintf(out, " max-conns-per-ip=%u", m->max_conns_per_ip);
            }
            fprintf(out, " connect-timeout=%s",
                    duration_format(m->connect_timeout_ms, d, sizeof(d)));
            if (m->send_proxy != PROXYHDR_OFF) {
                fprintf(out, " send-proxy=%s", proxyhdr_version_name(m->send_proxy));
            }
            if (m->accept_proxy != PROXYHDR_OFF) {
                fprintf(out, " accept-proxy=%s", proxyhdr_version_name(m->accept_proxy));
            }
            print_cidrs(out, " trusted-proxies=", &m->trusted);
        }
        if (m->pconf != NULL) {
            char own[PROTO_CONF_FORMAT_MAX];
            m->proto->conf_format(m->pconf, own, sizeof(own));
            fprintf(out, " %s", own);
        }
        if (has_sessions(m->proto, NULL)) {
            fprintf(out, " max-sessions=%u", m->max_sessions);
        }
        fprintf(out, " idle-timeout=%s%s\n", duration_format(m->idle_timeout_ms, d, sizeof(d)),
                m->enabled ? "" : " enabled=no");
    }
}

struct config *config_build(const char *path, char *const *specs, int nspecs, bool resolve,
                            config_extra_fn extra, void *arg)
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
    if (extra != NULL) {
        extra(arg, c);
    }
    c->keep_failed = true;
    config_finish(c, resolve);
    return c;
}

/* ---- mappings as keys: the admin interface ---- */

struct config *config_copy(const struct config *c)
{
    struct config *n = config_new();
    if (n == NULL) {
        return NULL;
    }
    n->gw = c->gw;
    n->revision = c->revision;
    n->maps = calloc(c->nmaps + 1, sizeof(*n->maps));
    if (n->maps == NULL) {
        config_free(n);
        return NULL;
    }
    for (size_t i = 0; i < c->nmaps; i++) {
        if (map_conf_copy(&n->maps[i], &c->maps[i]) != 0) {
            config_free(n);
            return NULL;
        }
        n->nmaps++;
    }
    return n;
}

ssize_t config_find_map(const struct config *c, const char *name)
{
    for (size_t i = 0; i < c->nmaps; i++) {
        if (strcmp(c->maps[i].name, name) == 0) {
            return (ssize_t)i;
        }
    }
    return -1;
}

void config_remove_map(struct config *c, size_t i)
{
    assert(i < c->nmaps);
    map_conf_clear(&c->maps[i]);
    memmove(&c->maps[i], &c->maps[i + 1], (c->nmaps - i - 1) * sizeof(*c->maps));
    c->nmaps--;
}

bool config_is_map_key(const char *key)
{
    for (int k = 0; k < K_COUNT; k++) {
        if (strcmp(key, map_keys[k].name) == 0) {
            return true;
        }
    }
    return any_proto_has_key(key);
}

int config_add_map(struct config *c, const char *source, const struct config_kv *kv, size_t n)
{
    size_t before = c->nerrors;
    const char *name = NULL;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(kv[i].key, "name") == 0) {
            if (name != NULL) {
                add_field_error(c, "name", "%s: name: set twice", source);
                return -1;
            }
            name = kv[i].val;
        }
    }
    if (name == NULL) {
        add_field_error(c, "name", "%s: a mapping without a name", source);
        return -1;
    }
    if (!valid_name(name)) {
        add_field_error(c, "name", "%s: name: \"%s\": use 1 to %d letters, digits, '.', '_' or '-'",
                        source, name, MAP_CONF_NAMELEN - 1);
        return -1;
    }
    if (new_map(c, MAP_ORIGIN_API, name, source, 0) == NULL) {
        return -1;
    }
    struct map_build b = {.idx = c->nmaps - 1};
    struct map_conf *m = &c->maps[b.idx];
    for (size_t i = 0; i < n; i++) {
        char err[768];
        if (strcmp(kv[i].key, "name") == 0) {
            continue;
        }
        if (kv[i].val[0] == '\0') {
            snprintf(err, sizeof(err), "%s: empty value", kv[i].key);
            key_error(c, m, 0, kv[i].key, err);
        } else if (map_set(m, &b, kv[i].key, kv[i].val, true, 0, err, sizeof(err)) != 0) {
            key_error(c, m, 0, kv[i].key, err);
        }
    }
    map_validate(c, m, &b);
    return c->nerrors == before ? 0 : -1;
}

void config_map_keys(const struct map_conf *m, config_key_fn fn, void *arg)
{
    char buf[ADDR_HOSTLEN + 16];
    fn(arg, "name", CONFIG_TEXT, m->name);
    fn(arg, "proto", CONFIG_TEXT, m->proto->name);
    fn(arg, "listen", CONFIG_TEXT, format_listen(m, buf, sizeof(buf)));
    fn(arg, "target", CONFIG_TEXT, format_target(m, buf, sizeof(buf)));
    const struct {
        const char *key;
        const struct cidr_set *set;
    } lists[] = {{"allow", &m->allow}, {"deny", &m->deny}};
    for (size_t l = 0; l < 2; l++) {
        if (lists[l].set->n == 0) {
            fn(arg, lists[l].key, CONFIG_LIST, NULL); /* an empty list */
        }
        for (size_t i = 0; i < lists[l].set->n; i++) {
            fn(arg, lists[l].key, CONFIG_LIST, cidr_format(&lists[l].set->v[i], buf, sizeof(buf)));
        }
    }
    if (is_stream(m->proto, NULL)) {
        snprintf(buf, sizeof(buf), "%u", m->max_conns);
        fn(arg, "max-conns", CONFIG_COUNT, buf);
        snprintf(buf, sizeof(buf), "%u", m->max_conns_per_ip);
        fn(arg, "max-conns-per-ip", CONFIG_COUNT, buf);
        fn(arg, "connect-timeout", CONFIG_TEXT,
           duration_format(m->connect_timeout_ms, buf, sizeof(buf)));
        fn(arg, "send-proxy", CONFIG_TEXT, proxyhdr_version_name(m->send_proxy));
        fn(arg, "accept-proxy", CONFIG_TEXT, proxyhdr_version_name(m->accept_proxy));
        if (m->trusted.n > 0) {
            /* One comma-separated value, as the file writes it (not a list like allow). */
            char list[MAP_CONF_MAX_TRUSTED * CIDR_STRLEN];
            fn(arg, "trusted-proxies", CONFIG_TEXT,
               cidr_set_format(&m->trusted, list, sizeof(list)));
        }
    }
    if (has_sessions(m->proto, NULL)) {
        snprintf(buf, sizeof(buf), "%u", m->max_sessions);
        fn(arg, "max-sessions", CONFIG_COUNT, buf);
    }
    fn(arg, "idle-timeout", CONFIG_TEXT, duration_format(m->idle_timeout_ms, buf, sizeof(buf)));
    fn(arg, "enabled", CONFIG_BOOL, m->enabled ? "yes" : "no");
    if (m->pconf != NULL) {
        /* conf_format() writes "KEY=VALUE KEY=VALUE" (forward/proto.h), values without spaces. */
        char own[PROTO_CONF_FORMAT_MAX];
        m->proto->conf_format(m->pconf, own, sizeof(own));
        for (char *save = NULL, *item = strtok_r(own, " ", &save); item != NULL;
             item = strtok_r(NULL, " ", &save)) {
            char *eq = strchr(item, '=');
            if (eq != NULL) {
                *eq = '\0';
                fn(arg, item, CONFIG_TEXT, eq + 1);
            }
        }
    }
}
