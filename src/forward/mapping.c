#include "forward/mapping.h"

#include <assert.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "forward/proto.h"

#define IP_KEY_LEN 17

/* Count of open connections per client address, for max-conns-per-ip. */
struct ip_count {
    struct ip_count *next;
    uint8_t key[IP_KEY_LEN];
    uint32_t n;
};

/* The table's key for a client: its family, then its address (unmapped: ::ffff:a.b.c.d is the
 * IPv4 client a.b.c.d), zero-padded. */
static void ip_key(const struct sockaddr_storage *ss, uint8_t key[IP_KEY_LEN])
{
    struct sockaddr_storage u = *ss;
    addr_unmap(&u);
    memset(key, 0, IP_KEY_LEN);
    key[0] = u.ss_family == AF_INET6 ? 6 : 4;
    if (u.ss_family == AF_INET6) {
        memcpy(key + 1, &((struct sockaddr_in6 *)&u)->sin6_addr, 16);
    } else {
        memcpy(key + 1, &((struct sockaddr_in *)&u)->sin_addr, 4);
    }
}

/* SipHash under the state's random key: clients cannot choose addresses that share a bucket,
 * whose chain every admission would walk under ip_lock. */
static size_t ip_hash(const struct mapping_state *st, const uint8_t key[IP_KEY_LEN],
                      size_t nbuckets)
{
    uint64_t h;
    crypto_shorthash((unsigned char *)&h, key, IP_KEY_LEN, st->hash_key);
    return (size_t)(h & (nbuckets - 1));
}

static struct ip_count **ip_find(struct mapping_state *st, const uint8_t key[IP_KEY_LEN])
{
    struct ip_count **pp = &st->buckets[ip_hash(st, key, st->nbuckets)];
    while (*pp != NULL && memcmp((*pp)->key, key, IP_KEY_LEN) != 0) {
        pp = &(*pp)->next;
    }
    return pp;
}

#define IP_MIN_BUCKETS 64

/* Rehashes the table into n buckets (a power of two). Returns 0, or -1 when out of memory (the
 * table is as it was: its chains just stay longer or shorter). */
static int ip_resize(struct mapping_state *st, size_t n)
{
    struct ip_count **b = calloc(n, sizeof(*b));
    if (b == NULL) {
        return -1;
    }
    for (size_t i = 0; i < st->nbuckets; i++) {
        for (struct ip_count *e = st->buckets[i], *next; e != NULL; e = next) {
            next = e->next;
            size_t h = ip_hash(st, e->key, n);
            e->next = b[h];
            b[h] = e;
        }
    }
    free(st->buckets);
    st->buckets = b;
    st->nbuckets = n;
    return 0;
}

size_t mapping_per_ip_longest_chain(const struct mapping_state *st)
{
    size_t longest = 0;
    for (size_t i = 0; i < st->nbuckets; i++) {
        size_t n = 0;
        for (const struct ip_count *e = st->buckets[i]; e != NULL; e = e->next) {
            n++;
        }
        longest = n > longest ? n : longest;
    }
    return longest;
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
    if (sodium_init() < 0) {
        return NULL; /* cannot happen on Linux: its randomness comes from getrandom() */
    }
    struct mapping_state *st = calloc(1, sizeof(*st));
    if (st == NULL) {
        return NULL;
    }
    randombytes_buf(st->hash_key, sizeof(st->hash_key));
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

struct mapping_group *mapping_group_new(struct mapping *const *maps, size_t n)
{
    struct mapping_group *g = malloc(sizeof(*g) + n * sizeof(g->maps[0]));
    if (g == NULL) {
        return NULL;
    }
    g->refs = 1;
    g->n = n;
    for (size_t i = 0; i < n; i++) {
        g->maps[i] = mapping_ref(maps[i]);
    }
    return g;
}

struct mapping_group *mapping_group_ref(struct mapping_group *g)
{
    __atomic_add_fetch(&g->refs, 1, __ATOMIC_RELAXED);
    return g;
}

void mapping_group_unref(struct mapping_group *g)
{
    if (g == NULL || __atomic_sub_fetch(&g->refs, 1, __ATOMIC_ACQ_REL) > 0) {
        return;
    }
    for (size_t i = 0; i < g->n; i++) {
        mapping_unref(g->maps[i]);
    }
    free(g);
}

_Static_assert(sizeof(((struct mapping_state *)0)->hash_key) == crypto_shorthash_KEYBYTES,
               "hash_key: a SipHash key");
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

uint64_t mapping_last_active(const struct mapping_state *st)
{
    uint64_t last = 0;
    for (unsigned w = 0; w < st->nshards; w++) {
        uint64_t t = __atomic_load_n(&st->shards[w].last_ms, __ATOMIC_RELAXED);
        last = t > last ? t : last;
    }
    return last;
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

enum mapping_verdict mapping_check_proxy(const struct mapping *m, unsigned w,
                                         const struct sockaddr_storage *peer)
{
    if (cidr_set_contains(&m->conf.trusted, peer)) {
        return MAPPING_ADMIT;
    }
    mapping_stat_add(&m->state->shards[w].stats.refused_acl, 1);
    return MAPPING_UNTRUSTED;
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

/* Counts one more connection from the client with key. Returns MAPPING_ADMIT,
 * MAPPING_FULL_PER_IP, or MAPPING_FULL (out of memory). Called with ip_lock held. */
static enum mapping_verdict ip_take(struct mapping_state *st, uint32_t max,
                                    const uint8_t key[IP_KEY_LEN])
{
    if (st->nbuckets == 0 && ip_resize(st, IP_MIN_BUCKETS) != 0) {
        return MAPPING_FULL;
    }
    struct ip_count **pp = ip_find(st, key);
    if (*pp != NULL && (*pp)->n >= max) {
        return MAPPING_FULL_PER_IP;
    }
    if (*pp == NULL) {
        struct ip_count *e = calloc(1, sizeof(*e));
        if (e == NULL) {
            return MAPPING_FULL;
        }
        memcpy(e->key, key, IP_KEY_LEN);
        *pp = e;
        if (++st->nips > st->nbuckets && ip_resize(st, st->nbuckets * 2) == 0) {
            pp = ip_find(st, key);
        }
    }
    (*pp)->n++;
    return MAPPING_ADMIT;
}

/* Counts one connection from the client with key less. Called with ip_lock held. */
static void ip_give(struct mapping_state *st, const uint8_t key[IP_KEY_LEN])
{
    struct ip_count **pp = ip_find(st, key);
    assert(*pp != NULL && (*pp)->n > 0);
    if (--(*pp)->n > 0) {
        return;
    }
    struct ip_count *e = *pp;
    *pp = e->next;
    free(e);
    if (--st->nips < st->nbuckets / 4 && st->nbuckets > IP_MIN_BUCKETS) {
        ip_resize(st, st->nbuckets / 2); /* a flood of clients gone leaves no big table */
    }
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
    v = mapping_hold(m, w, client);
    if (v == MAPPING_ADMIT) {
        mapping_stat_add(&stats->accepted, 1);
    }
    return v;
}

enum mapping_verdict mapping_hold(struct mapping *m, unsigned w,
                                  const struct sockaddr_storage *client)
{
    struct mapping_state *st = m->state;
    struct mapping_stats *stats = &st->shards[w].stats;
    enum mapping_verdict v;
    if (!take_place(&st->active, m->conf.max_conns)) {
        mapping_stat_add(&stats->refused_limit, 1);
        return MAPPING_FULL;
    }
    /* Clients are counted by address only under a max-conns-per-ip: without one there is no
     * table and no lock. A connection is released by the generation that admitted it, so one
     * admitted before a reload set a limit is not in the table and is not taken out of it. */
    if (m->conf.max_conns_per_ip != 0) {
        uint8_t key[IP_KEY_LEN];
        ip_key(client, key);
        pthread_mutex_lock(&st->ip_lock);
        v = ip_take(st, m->conf.max_conns_per_ip, key);
        pthread_mutex_unlock(&st->ip_lock);
        if (v != MAPPING_ADMIT) {
            __atomic_sub_fetch(&st->active, 1, __ATOMIC_RELAXED);
            mapping_stat_add(&stats->refused_limit, 1);
            return v;
        }
    }
    return MAPPING_ADMIT;
}

void mapping_release(struct mapping *m, const struct sockaddr_storage *client)
{
    struct mapping_state *st = m->state;
    uint32_t was = __atomic_fetch_sub(&st->active, 1, __ATOMIC_RELAXED);
    assert(was > 0);
    (void)was;
    if (m->conf.max_conns_per_ip != 0) {
        uint8_t key[IP_KEY_LEN];
        ip_key(client, key);
        pthread_mutex_lock(&st->ip_lock);
        ip_give(st, key);
        pthread_mutex_unlock(&st->ip_lock);
    }
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
    case MAPPING_UNTRUSTED:
        return "accept-proxy: not one of trusted-proxies";
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
