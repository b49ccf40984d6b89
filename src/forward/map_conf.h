/*
 * map_conf: the settings of one mapping, as the config file or a --map SPEC gave them once
 * checked (gateway/config.c builds them). The relays read them through struct mapping, which
 * keeps an immutable copy.
 *
 * A map_conf owns its three CIDR sets and, when its protocol has settings of its own, a block of
 * proto->conf_size bytes (pconf) that only the protocol reads (see forward/proto.h), and holds a
 * reference to what the protocol made of them to run (run). Copy one with map_conf_copy() and
 * release it with map_conf_clear(); plain assignment would share them.
 */
#ifndef PORTGATE_MAP_CONF_H
#define PORTGATE_MAP_CONF_H

#include <stdbool.h>
#include <stdint.h>

#include "core/addr.h"
#include "forward/proxyhdr.h"

struct proto;

/* A protocol's run-time object for a mapping (forward/proto.h: run_open), shared by the copies of
 * its map_conf: the last map_conf_clear() closes it. */
struct map_run {
    unsigned refs; /* atomic */
    const struct proto *proto;
    void *obj;
    unsigned char id[32];
};

/* Where a mapping comes from. */
enum map_origin {
    MAP_ORIGIN_FILE, /* a [map NAME] section of the config file */
    MAP_ORIGIN_SPEC, /* a --map SPEC */
    MAP_ORIGIN_API,  /* the admin interface, kept in its state file */
};

#define MAP_CONF_NAMELEN 64
#define MAP_CONF_SOURCELEN 256

/* Defaults, documented in docs/configuration.md. */
#define MAP_CONF_CONNECT_TIMEOUT_MS 10000u
#define MAP_CONF_TCP_IDLE_TIMEOUT_MS 3600000u
#define MAP_CONF_UDP_IDLE_TIMEOUT_MS 60000u
#define MAP_CONF_MAX_TRUSTED 16 /* trusted-proxies: entries at most */

struct map_conf {
    char name[MAP_CONF_NAMELEN];
    const struct proto *proto;      /* an entry of the protocol table; NULL until proto = */
    struct sockaddr_storage listen; /* port is listen_lo */
    uint16_t listen_lo, listen_hi;
    char target_host[ADDR_HOSTLEN]; /* as written: an IP literal or a host name */
    struct sockaddr_storage target; /* resolved by config_finish(); port is target_lo */
    uint16_t target_lo, target_hi;  /* target_lo == target_hi: every listen port goes there */
    struct cidr_set allow, deny;
    uint32_t max_conns;        /* stream protocols, 0 = no limit */
    uint32_t max_conns_per_ip; /* stream protocols, 0 = no limit */
    uint32_t max_sessions;     /* what the protocol counts as a session (see forward/proto.h) */
    uint32_t connect_timeout_ms;
    uint32_t idle_timeout_ms; /* 0 = never */
    /* Stream protocols: the PROXY protocol header (forward/proxyhdr.h) sent to the target first
     * (send-proxy), and the one the client's proxy must send first (accept-proxy), from an
     * address of trusted (trusted-proxies, which http's forwarding headers trust too). */
    enum proxyhdr_version send_proxy, accept_proxy;
    struct cidr_set trusted;
    bool enabled;
    void *pconf;         /* the protocol's own settings (proto->conf_size bytes), or NULL */
    struct map_run *run; /* what the protocol made from them to run (config_finish), or NULL */
    /* Where it was defined, for messages and for the admin interface (which changes only the
     * mappings it made); none of this is a setting: map_conf_equal() ignores it. */
    enum map_origin origin;
    char source[MAP_CONF_SOURCELEN];
    int line;
    int64_t expires; /* a lease: the Unix time the admin interface removes it at; 0: never */
    /* Why it does not run although enabled, or "": an admin interface mapping that could not
     * run at start or at a reload (its target did not resolve, its port was taken) is kept,
     * failed, rather than keep the whole configuration from running (gateway/config.h). */
    char failed[320];
};

/* True if m runs: enabled, and not failed. */
static inline bool map_conf_runs(const struct map_conf *m)
{
    return m->enabled && m->failed[0] == '\0';
}

/* Empties m and sets the defaults that do not depend on the protocol. */
void map_conf_init(struct map_conf *m, enum map_origin origin, const char *name, const char *source,
                   int line);
/* Copies src into dst, deep (the CIDR sets and pconf). Returns 0 or -ENOMEM (dst then holds
 * nothing to clear). */
int map_conf_copy(struct map_conf *dst, const struct map_conf *src);
/* Frees what m owns; m may be cleared again. */
void map_conf_clear(struct map_conf *m);
/* Makes m's run object with its protocol's run_open(), unless it has one or its protocol needs
 * none. Returns 0, or -1 with the reason in why (-ENOMEM is reported there too). */
int map_conf_open_run(struct map_conf *m, char *why, size_t whylen);
/* m's run object (forward/proto.h: run_open), or NULL. */
static inline void *map_conf_run(const struct map_conf *m)
{
    return m->run != NULL ? m->run->obj : NULL;
}
/* True if two mappings have the same settings (name and source position ignored), and run
 * objects made from the same files. */
bool map_conf_equal(const struct map_conf *a, const struct map_conf *b);
/* True if the listening sockets of a and b would be the same (transport, address, ports). */
bool map_conf_same_listen(const struct map_conf *a, const struct map_conf *b);

#endif
