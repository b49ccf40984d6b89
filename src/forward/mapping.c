#include "forward/mapping.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "forward/proto.h"

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

static struct ip_count **ip_find(struct mapping_state *st, int family, const uint8_t ip[16])
{
    struct ip_count **pp = &st->buckets[ip_hash(family, ip, st->nbuckets)];
    while (*pp != NULL && ((*pp)->family != family || memcmp((*pp)->ip, ip, 16) != 0)) {
        pp = &(*pp)->next;
    }
    return pp;
}

static int ip_grow(struct mapping_state *st)
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

static void state_unref(struct mapping_state *st)
{
    if (st == NULL || __atomic_sub_fetch(&st->refs, 1, __ATOMIC_ACQ_REL) > 0) {
        return;
    }
    for (size_t i = 0; i < st->nbuckets; i++) {
        for (struct ip_count *e = st->buckets[i], *next; e != NULL; e = next) {
            next = e->next;
            free(e);
        }
    }
    free(st->buckets);
    pthread_mutex_destroy(&st->ip_lock);
    free(st->shards);
    free(st);
}

static struct mapping_state *state_new(unsigned nworkers)
{
    struct mapping_state *st = calloc(1, sizeof(*st));
    if (st == NULL) {
        return NULL;
    }
    st->nshards = nworkers > 0 ? nworkers : 1;
    st->shards = aligned_alloc(_Alignof(struct mapping_shard), st->nshards * sizeof(*st->shards));
    if (st->shards == NULL) {
        free(st);
        return NULL;
    }
    memset(st->shards, 0, st->nshards * sizeof(*st->shards));
    pthread_mutex_init(&st->ip_lock, NULL);
    return st;
}

struct mapping *mapping_new(const struct map_conf *conf, struct mapping_state *state,
                            unsigned nworkers)
{
    struct mapping *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        return NULL;
    }
    if (map_conf_copy(&m->conf, conf) != 0) {
        free(m);
        return NULL;
    }
    if (state == NULL && (state = state_new(nworkers)) == NULL) {
        map_conf_clear(&m->conf);
        free(m);
        return NULL;
    }
    __atomic_add_fetch(&state->refs, 1, __ATOMIC_RELAXED);
    m->state = state;
    m->refs = 1;
    return m;
}

struct mapping *mapping_ref(struct mapping *m)
{
    __atomic_add_fetch(&m->refs, 1, __ATOMIC_RELAXED);
    return m;
}

void mapping_unref(struct mapping *m)
{
    if (m == NULL || __atomic_sub_fetch(&m->refs, 1, __ATOMIC_ACQ_REL) > 0) {
        return;
    }
    state_unref(m->state);
    map_conf_clear(&m->conf);
    free(m);
}

_Static_assert(sizeof(struct mapping_stats) % sizeof(uint64_t) == 0,
               "mapping_stats: only uint64_t counters");

void mapping_stats_sum(const struct mapping_state *st, struct mapping_stats *out)
{
    memset(out, 0, sizeof(*out));
    uint64_t *o = (uint64_t *)out;
    for (unsigned w = 0; w < st->nshards; w++) {
        const uint64_t *in = (const uint64_t *)&st->shards[w].stats;
        for (size_t i = 0; i < sizeof(*out) / sizeof(uint64_t); i++) {
            o[i] += __atomic_load_n(&in[i], __ATOMIC_RELAXED);
        }
    }
}

uint32_t mapping_active(const struct mapping_state *st)
{
    return __atomic_load_n(&st->active, __ATOMIC_RELAXED);
}

enum mapping_verdict mapping_check_acl(const struct mapping *m,
                                       const struct sockaddr_storage *client)
{
    if (cidr_set_contains(&m->conf.deny, client)) {
        return MAPPING_DENIED;
    }
    if (m->conf.allow.n > 0 && !cidr_set_contains(&m->conf.allow, client)) {
        return MAPPING_DENIED;
    }
    return MAPPING_ADMIT;
}

/* Takes a place among max places in *count (max 0: no limit); false if none is left. */
static bool take_place(uint32_t *count, uint32_t max)
{
    uint32_t n = __atomic_add_fetch(count, 1, __ATOMIC_RELAXED);
    if (max != 0 && n > max) {
        __atomic_sub_fetch(count, 1, __ATOMIC_RELAXED);
        return false;
    }
    return true;
}

/* Counts one more connection from ip. Returns MAPPING_ADMIT, MAPPING_FULL_PER_IP, or MAPPING_FULL
 * (out of memory). Called with ip_lock held. */
static enum mapping_verdict ip_take(struct mapping_state *st, uint32_t max, int family,
                                    const uint8_t ip[16])
{
    if (st->nbuckets == 0 && ip_grow(st) != 0) {
        return MAPPING_FULL;
    }
    struct ip_count **pp = ip_find(st, family, ip);
    if (*pp != NULL && max != 0 && (*pp)->n >= max) {
        return MAPPING_FULL_PER_IP;
    }
    if (*pp == NULL) {
        struct ip_count *e = calloc(1, sizeof(*e));
        if (e == NULL) {
            return MAPPING_FULL;
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
    return MAPPING_ADMIT;
}

enum mapping_verdict mapping_admit(struct mapping *m, unsigned w,
                                   const struct sockaddr_storage *client)
{
    struct mapping_state *st = m->state;
    struct mapping_stats *stats = &st->shards[w].stats;
    enum mapping_verdict v = mapping_check_acl(m, client);
    if (v != MAPPING_ADMIT) {
        mapping_stat_add(&stats->refused_acl, 1);
        return v;
    }
    if (!take_place(&st->active, m->conf.max_conns)) {
        mapping_stat_add(&stats->refused_limit, 1);
        return MAPPING_FULL;
    }
    /* Per-address counts are kept whether or not a limit is set now, so that a reload that sets
     * max-conns-per-ip applies to the clients already connected. */
    int family;
    uint8_t ip[16];
    ip_key(client, &family, ip);
    pthread_mutex_lock(&st->ip_lock);
    v = ip_take(st, m->conf.max_conns_per_ip, family, ip);
    pthread_mutex_unlock(&st->ip_lock);
    if (v != MAPPING_ADMIT) {
        __atomic_sub_fetch(&st->active, 1, __ATOMIC_RELAXED);
        mapping_stat_add(&stats->refused_limit, 1);
        return v;
    }
    mapping_stat_add(&stats->accepted, 1);
    return MAPPING_ADMIT;
}

void mapping_release(struct mapping *m, const struct sockaddr_storage *client)
{
    struct mapping_state *st = m->state;
    int family;
    uint8_t ip[16];
    ip_key(client, &family, ip);
    uint32_t was = __atomic_fetch_sub(&st->active, 1, __ATOMIC_RELAXED);
    assert(was > 0);
    (void)was;
    pthread_mutex_lock(&st->ip_lock);
    assert(st->nbuckets > 0);
    struct ip_count **pp = ip_find(st, family, ip);
    assert(*pp != NULL && (*pp)->n > 0);
    if (--(*pp)->n == 0) {
        struct ip_count *e = *pp;
        *pp = e->next;
        free(e);
        st->nips--;
    }
    pthread_mutex_unlock(&st->ip_lock);
}

static uint32_t *session_count(const struct mapping *m)
{
    return m->conf.proto->transport == SOCK_DGRAM ? &m->state->active : &m->state->sessions;
}

bool mapping_session_begin(const struct mapping *m)
{
    return take_place(session_count(m), m->conf.max_sessions);
}

void mapping_session_end(const struct mapping *m)
{
    uint32_t was = __atomic_fetch_sub(session_count(m), 1, __ATOMIC_RELAXED);
    assert(was > 0);
    (void)was;
}

const char *mapping_verdict_reason(enum mapping_verdict v)
{
    switch (v) {
    case MAPPING_ADMIT:
        return "admitted";
    case MAPPING_DENIED:
        return "not allowed by allow/deny";
    case MAPPING_FULL:
        return "max-conns reached";
    case MAPPING_FULL_PER_IP:
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
