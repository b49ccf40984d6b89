#include "mapping.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/* Count of open connections per client address, for max-conns-per-ip. */
struct ip_count {
    struct ip_count *next;
    int family;
    uint8_t ip[16];
    uint32_t n;
};

static void ip_key(const struct sockaddr_storage *ss, int *family, uint8_t ip[16])
{
    struct sockaddr_storage u = *ss;
    addr_unmap(&u);
    memset(ip, 0, 16);
    *family = u.ss_family;
    if (u.ss_family == AF_INET6) {
        memcpy(ip, &((struct sockaddr_in6 *)&u)->sin6_addr, 16);
    } else {
        memcpy(ip, &((struct sockaddr_in *)&u)->sin_addr, 4);
    }
}

static size_t ip_hash(int family, const uint8_t ip[16], size_t nbuckets)
{
    /* FNV-1a; the table holds only clients that were already admitted by the ACL. */
    uint64_t h = 1469598103934665603ull ^ (uint64_t)family;
    for (int i = 0; i < 16; i++) {
        h = (h ^ ip[i]) * 1099511628211ull;
    }
    return (size_t)(h & (nbuckets - 1));
}

static struct ip_count **ip_find(struct map_state *st, int family, const uint8_t ip[16])
{
    struct ip_count **pp = &st->buckets[ip_hash(family, ip, st->nbuckets)];
    while (*pp != NULL && ((*pp)->family != family || memcmp((*pp)->ip, ip, 16) != 0)) {
        pp = &(*pp)->next;
    }
    return pp;
}

static int ip_grow(struct map_state *st)
{
    size_t n = st->nbuckets ? st->nbuckets * 2 : 64;
    struct ip_count **b = calloc(n, sizeof(*b));
    if (b == NULL) {
        return -1;
    }
    for (size_t i = 0; i < st->nbuckets; i++) {
        for (struct ip_count *e = st->buckets[i], *next; e != NULL; e = next) {
            next = e->next;
            size_t h = ip_hash(e->family, e->ip, n);
            e->next = b[h];
            b[h] = e;
        }
    }
    free(st->buckets);
    st->buckets = b;
    st->nbuckets = n;
    return 0;
}

static void state_unref(struct map_state *st)
{
    if (st == NULL || --st->refs > 0) {
        return;
    }
    for (size_t i = 0; i < st->nbuckets; i++) {
        for (struct ip_count *e = st->buckets[i], *next; e != NULL; e = next) {
            next = e->next;
            free(e);
        }
    }
    free(st->buckets);
    free(st);
}

struct mapping *mapping_new(const struct map_conf *conf, struct map_state *state)
{
    struct mapping *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        return NULL;
    }
    if (map_conf_copy(&m->conf, conf) != 0) {
        free(m);
        return NULL;
    }
    if (state == NULL) {
        state = calloc(1, sizeof(*state));
        if (state == NULL) {
            map_conf_clear(&m->conf);
            free(m);
            return NULL;
        }
    }
    state->refs++;
    m->state = state;
    m->refs = 1;
    return m;
}

struct mapping *mapping_ref(struct mapping *m)
{
    m->refs++;
    return m;
}

void mapping_unref(struct mapping *m)
{
    if (m == NULL || --m->refs > 0) {
        return;
    }
    state_unref(m->state);
    map_conf_clear(&m->conf);
    free(m);
}

enum map_verdict mapping_check_acl(const struct mapping *m, const struct sockaddr_storage *client)
{
    if (cidr_set_contains(&m->conf.deny, client)) {
        return MAP_DENIED;
    }
    if (m->conf.allow.n > 0 && !cidr_set_contains(&m->conf.allow, client)) {
        return MAP_DENIED;
    }
    return MAP_ADMIT;
}

enum map_verdict mapping_admit(struct mapping *m, const struct sockaddr_storage *client)
{
    struct map_state *st = m->state;
    enum map_verdict v = mapping_check_acl(m, client);
    if (v != MAP_ADMIT) {
        st->stats.refused_acl++;
        return v;
    }
    if (m->conf.max_conns != 0 && st->active >= m->conf.max_conns) {
        st->stats.refused_limit++;
        return MAP_FULL;
    }
    /* Per-address counts are kept whether or not a limit is set now, so that a reload that sets
     * max-conns-per-ip applies to the clients already connected. */
    int family;
    uint8_t ip[16];
    ip_key(client, &family, ip);
    if (st->nbuckets == 0 && ip_grow(st) != 0) {
        st->stats.refused_limit++;
        return MAP_FULL;
    }
    struct ip_count **pp = ip_find(st, family, ip);
    if (*pp != NULL && m->conf.max_conns_per_ip != 0 && (*pp)->n >= m->conf.max_conns_per_ip) {
        st->stats.refused_limit++;
        return MAP_FULL_PER_IP;
    }
    if (*pp == NULL) {
        struct ip_count *e = calloc(1, sizeof(*e));
        if (e == NULL) {
            st->stats.refused_limit++;
            return MAP_FULL;
        }
        e->family = family;
        memcpy(e->ip, ip, 16);
        *pp = e;
        if (++st->nips > st->nbuckets) {
            ip_grow(st); /* on failure the chains just get longer */
        }
        pp = ip_find(st, family, ip);
    }
    (*pp)->n++;
    st->active++;
    st->stats.accepted++;
    return MAP_ADMIT;
}

void mapping_release(struct mapping *m, const struct sockaddr_storage *client)
{
    struct map_state *st = m->state;
    int family;
    uint8_t ip[16];
    ip_key(client, &family, ip);
    assert(st->active > 0 && st->nbuckets > 0);
    st->active--;
    struct ip_count **pp = ip_find(st, family, ip);
    assert(*pp != NULL && (*pp)->n > 0);
    if (--(*pp)->n == 0) {
        struct ip_count *e = *pp;
        *pp = e->next;
        free(e);
        st->nips--;
    }
}

const char *map_verdict_reason(enum map_verdict v)
{
    switch (v) {
    case MAP_ADMIT:
        return "admitted";
    case MAP_DENIED:
        return "not allowed by allow/deny";
    case MAP_FULL:
        return "max-conns reached";
    case MAP_FULL_PER_IP:
        return "max-conns-per-ip reached";
    }
    return "?";
}

void mapping_target(const struct mapping *m, uint16_t port, struct sockaddr_storage *out)
{
    *out = m->conf.target;
    if (m->conf.target_hi != m->conf.target_lo) {
        addr_set_port(out, (uint16_t)(m->conf.target_lo + (port - m->conf.listen_lo)));
    } else {
        addr_set_port(out, m->conf.target_lo);
    }
}
