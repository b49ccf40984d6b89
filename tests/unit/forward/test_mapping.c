#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <pthread.h>
#include <string.h>

#include "forward/mapping.h"
#include "gateway/config.h"

static struct sockaddr_storage ip(const char *s, uint16_t port)
{
    struct sockaddr_storage ss;
    assert_int_equal(addr_parse_ip(s, &ss), 0);
    addr_set_port(&ss, port);
    return ss;
}

static struct mapping *make(const char *spec_text)
{
    struct config *c = config_new();
    assert_int_equal(config_add_spec(c, spec_text, 1), 0);
    struct mapping *m = mapping_new(&c->maps[0], NULL, 2); /* two workers */
    assert_non_null(m);
    config_free(c); /* the mapping owns a deep copy */
    return m;
}

static void test_acl(void **state)
{
    (void)state;
    struct mapping *m = make("tcp:0.0.0.0:80=192.0.2.1:80");
    struct sockaddr_storage a = ip("203.0.113.5", 1);
    assert_int_equal(mapping_check_acl(m, &a), MAPPING_ADMIT); /* no lists: everyone */
    mapping_unref(m);

    m = make("tcp:0.0.0.0:80=192.0.2.1:80,allow=198.51.100.0/24,2001:db8::/32,deny=198.51.100.7");
    struct sockaddr_storage in = ip("198.51.100.8", 1), denied = ip("198.51.100.7", 1),
                            out = ip("203.0.113.5", 1), v6 = ip("2001:db8::5", 1),
                            mapped = ip("::ffff:198.51.100.8", 1),
                            mapped_denied = ip("::ffff:198.51.100.7", 1);
    assert_int_equal(mapping_check_acl(m, &in), MAPPING_ADMIT);
    assert_int_equal(mapping_check_acl(m, &denied), MAPPING_DENIED); /* deny wins */
    assert_int_equal(mapping_check_acl(m, &out), MAPPING_DENIED);    /* not in allow */
    assert_int_equal(mapping_check_acl(m, &v6), MAPPING_ADMIT);
    assert_int_equal(mapping_check_acl(m, &mapped), MAPPING_ADMIT);
    assert_int_equal(mapping_check_acl(m, &mapped_denied), MAPPING_DENIED);
    mapping_unref(m);

    m = make("tcp:0.0.0.0:80=192.0.2.1:80,deny=203.0.113.0/24"); /* deny only */
    assert_int_equal(mapping_check_acl(m, &out), MAPPING_DENIED);
    assert_int_equal(mapping_check_acl(m, &in), MAPPING_ADMIT);
    mapping_unref(m);
}

/* accept-proxy: only trusted-proxies may send the header; the client it names is admitted as
 * any other, its refusals counted with allow/deny's. */
static void test_trusted_proxies(void **state)
{
    (void)state;
    struct mapping *m = make("tcp:0.0.0.0:80=192.0.2.1:80,accept-proxy=v1,"
                             "trusted-proxies=198.51.100.0/24,2001:db8::1,deny=203.0.113.9");
    struct sockaddr_storage lb = ip("198.51.100.2", 1), lb6 = ip("2001:db8::1", 1),
                            mapped = ip("::ffff:198.51.100.3", 1), other = ip("203.0.113.5", 1),
                            denied = ip("203.0.113.9", 1);
    assert_int_equal(mapping_check_proxy(m, 0, &lb), MAPPING_ADMIT);
    assert_int_equal(mapping_check_proxy(m, 0, &lb6), MAPPING_ADMIT);
    assert_int_equal(mapping_check_proxy(m, 1, &mapped), MAPPING_ADMIT);
    assert_int_equal(mapping_check_proxy(m, 1, &other), MAPPING_UNTRUSTED);
    assert_string_equal(mapping_verdict_reason(MAPPING_UNTRUSTED),
                        "accept-proxy: not one of trusted-proxies");
    assert_int_equal(mapping_admit(m, 0, &other), MAPPING_ADMIT);
    assert_int_equal(mapping_admit(m, 0, &denied), MAPPING_DENIED);
    struct mapping_stats st;
    mapping_stats_sum(m->state, &st);
    assert_int_equal(st.refused_acl, 2);
    assert_int_equal(st.accepted, 1);
    mapping_release(m, &other);
    mapping_unref(m);

    m = make("tcp:0.0.0.0:80=192.0.2.1:80"); /* none: nobody may */
    assert_int_equal(mapping_check_proxy(m, 0, &lb), MAPPING_UNTRUSTED);
    mapping_unref(m);
}

static void test_limits(void **state)
{
    (void)state;
    struct mapping *m = make("tcp:0.0.0.0:80=192.0.2.1:80,max-conns=3,max-conns-per-ip=2");
    struct sockaddr_storage a = ip("198.51.100.1", 1000), b = ip("198.51.100.2", 1000),
                            a2 = ip("::ffff:198.51.100.1", 2000);
    /* The limits hold across workers (0 and 1); each worker counts in its own shard. */
    assert_int_equal(mapping_admit(m, 0, &a), MAPPING_ADMIT);
    assert_int_equal(mapping_admit(m, 1, &a2), MAPPING_ADMIT); /* same client, v4-mapped */
    assert_int_equal(mapping_admit(m, 0, &a), MAPPING_FULL_PER_IP);
    assert_int_equal(mapping_admit(m, 1, &b), MAPPING_ADMIT);
    assert_int_equal(mapping_admit(m, 1, &b), MAPPING_FULL); /* 3 open */
    assert_int_equal(mapping_active(m->state), 3);
    assert_int_equal(mapping_shard(m, 0)->stats.refused_limit, 1);
    assert_int_equal(mapping_shard(m, 1)->stats.refused_limit, 1);
    struct mapping_stats sum;
    mapping_stats_sum(m->state, &sum);
    assert_int_equal(sum.refused_limit, 2);
    assert_int_equal(sum.accepted, 3);
    mapping_release(m, &a);
    assert_int_equal(mapping_admit(m, 0, &b), MAPPING_ADMIT);
    mapping_release(m, &a2);
    mapping_release(m, &b);
    mapping_release(m, &b);
    assert_int_equal(mapping_active(m->state), 0);
    assert_int_equal(m->state->nips, 0);

    mapping_unref(m);

    /* Many clients: the per-address table grows with them and shrinks back when they go. */
    m = make("tcp:0.0.0.0:80=192.0.2.1:80,max-conns-per-ip=2");
    struct sockaddr_storage many[1000];
    for (int i = 0; i < 1000; i++) {
        many[i] = ip("2001:db8::", 1);
        ((struct sockaddr_in6 *)&many[i])->sin6_addr.s6_addr[14] = (uint8_t)(i >> 8);
        ((struct sockaddr_in6 *)&many[i])->sin6_addr.s6_addr[15] = (uint8_t)i;
        assert_int_equal(mapping_admit(m, 0, &many[i]), MAPPING_ADMIT);
    }
    assert_int_equal(m->state->nips, 1000);
    assert_true(m->state->nbuckets >= 1000);
    assert_true(mapping_per_ip_longest_chain(m->state) < 16);
    for (int i = 0; i < 1000; i++) {
        mapping_release(m, &many[i]);
    }
    assert_int_equal(m->state->nips, 0);
    assert_int_equal(mapping_active(m->state), 0);
    assert_true(m->state->nbuckets <= 64);
    mapping_unref(m);

    /* The state carries over to the next generation of the mapping. */
    m = make("tcp:0.0.0.0:80=192.0.2.1:80,max-conns=1");
    assert_int_equal(mapping_admit(m, 0, &a), MAPPING_ADMIT);
    struct config *c = config_new();
    config_add_spec(c, "tcp:0.0.0.0:80=192.0.2.2:80,max-conns=1", 1);
    struct mapping *next = mapping_new(&c->maps[0], m->state, 2);
    config_free(c);
    assert_int_equal(mapping_admit(next, 1, &b), MAPPING_FULL);
    mapping_release(m, &a);
    assert_int_equal(mapping_admit(next, 1, &b), MAPPING_ADMIT);
    mapping_release(next, &b);
    mapping_unref(m);
    mapping_unref(next);
}

/* Without max-conns-per-ip there is no per-address table at all: nothing to fill, and no lock
 * taken on admission. */
static void test_no_table_without_per_ip_limit(void **state)
{
    (void)state;
    struct mapping *m = make("tcp:0.0.0.0:80=192.0.2.1:80,max-conns=100");
    struct sockaddr_storage a = ip("198.51.100.1", 1), b = ip("2001:db8::1", 1);
    assert_int_equal(mapping_admit(m, 0, &a), MAPPING_ADMIT);
    assert_int_equal(mapping_admit(m, 1, &b), MAPPING_ADMIT);
    assert_int_equal(m->state->nbuckets, 0);
    assert_int_equal(m->state->nips, 0);
    /* A reload that sets a limit counts the connections made from then on; the earlier ones
     * end without touching the table. */
    struct config *c = config_new();
    config_add_spec(c, "tcp:0.0.0.0:80=192.0.2.1:80,max-conns-per-ip=1", 1);
    struct mapping *next = mapping_new(&c->maps[0], m->state, 2);
    config_free(c);
    assert_int_equal(mapping_admit(next, 0, &a), MAPPING_ADMIT);
    assert_int_equal(mapping_admit(next, 0, &a), MAPPING_FULL_PER_IP);
    assert_int_equal(m->state->nips, 1);
    mapping_release(m, &a);
    mapping_release(m, &b);
    assert_int_equal(m->state->nips, 1);
    mapping_release(next, &a);
    assert_int_equal(m->state->nips, 0);
    assert_int_equal(mapping_active(m->state), 0);
    mapping_unref(m);
    mapping_unref(next);
}

/* The FNV-1a the per-address table used to hash with, as an attacker who reads the code would
 * compute it: addresses it puts in one bucket. */
static uint64_t fnv(const uint8_t ip16[16])
{
    uint64_t h = 1469598103934665603ull ^ (uint64_t)AF_INET6;
    for (int i = 0; i < 16; i++) {
        h = (h ^ ip16[i]) * 1099511628211ull;
    }
    return h;
}

/* Clients cannot choose addresses that share a bucket: the table's hash is keyed. 1,000
 * addresses of one /64 that an unkeyed FNV-1a put in one bucket of 1,024 spread out. */
static void test_per_ip_table_is_keyed(void **state)
{
    (void)state;
    struct mapping *m = make("tcp:0.0.0.0:80=192.0.2.1:80,max-conns-per-ip=5");
    static struct sockaddr_storage c[1000];
    size_t n = 0;
    for (uint32_t x = 0; n < 1000; x++) {
        struct sockaddr_storage s = ip("2001:db8::", 1);
        uint8_t *b = ((struct sockaddr_in6 *)&s)->sin6_addr.s6_addr;
        memcpy(b + 12, &x, 4);
        if ((fnv(b) & 1023) == 0) {
            c[n++] = s;
        }
    }
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(mapping_admit(m, (unsigned)(i & 1), &c[i]), MAPPING_ADMIT);
    }
    assert_int_equal(m->state->nbuckets, 1024);
    assert_true(mapping_per_ip_longest_chain(m->state) < 16);
    for (size_t i = 0; i < n; i++) {
        mapping_release(m, &c[i]);
    }
    mapping_unref(m);
}

/* max-sessions counts the sessions of every worker. */
static void test_sessions(void **state)
{
    (void)state;
    struct mapping *m = make("udp:0.0.0.0:5000=192.0.2.1:5000,max-sessions=2");
    assert_true(mapping_session_begin(m));
    assert_true(mapping_session_begin(m));
    assert_false(mapping_session_begin(m));
    mapping_session_end(m);
    assert_true(mapping_session_begin(m));
    assert_int_equal(mapping_active(m->state), 2);
    mapping_session_end(m);
    mapping_session_end(m);
    assert_int_equal(mapping_active(m->state), 0);
    mapping_unref(m);
}

/* Two workers admit and release at once: the limits and the counts stay exact. */
struct racer {
    struct mapping *m;
    unsigned worker;
    unsigned admitted;
    uint32_t max_seen;
    uint32_t *per_ip;         /* open connections per client, as the test counts them */
    uint32_t max_seen_per_ip; /* the most one client had open at once */
};

static void *race(void *arg)
{
    struct racer *r = arg;
    for (int i = 0; i < 200000; i++) {
        struct sockaddr_storage c = ip("198.51.100.1", 1);
        ((struct sockaddr_in *)&c)->sin_addr.s_addr ^= htonl((uint32_t)(i % 7));
        struct mapping *ref = mapping_ref(r->m);
        if (mapping_admit(ref, r->worker, &c) == MAPPING_ADMIT) {
            r->admitted++;
            uint32_t n = mapping_active(ref->state);
            r->max_seen = n > r->max_seen ? n : r->max_seen;
            uint32_t k = __atomic_add_fetch(&r->per_ip[i % 7], 1, __ATOMIC_SEQ_CST);
            r->max_seen_per_ip = k > r->max_seen_per_ip ? k : r->max_seen_per_ip;
            __atomic_sub_fetch(&r->per_ip[i % 7], 1, __ATOMIC_SEQ_CST);
            mapping_release(ref, &c);
        }
        mapping_unref(ref);
    }
    return NULL;
}

static void test_workers_race(void **state)
{
    (void)state;
    struct mapping *m = make("tcp:0.0.0.0:80=192.0.2.1:80,max-conns=3,max-conns-per-ip=1");
    uint32_t per_ip[7] = {0};
    struct racer r[2] = {{.m = m, .worker = 0, .per_ip = per_ip},
                         {.m = m, .worker = 1, .per_ip = per_ip}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_create(&t[i], NULL, race, &r[i]), 0);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
    }
    assert_true(r[0].max_seen <= 3 && r[1].max_seen <= 3);
    /* max-conns-per-ip = 1: no client ever had two open, though both workers admitted it. */
    assert_int_equal(r[0].max_seen_per_ip, 1);
    assert_int_equal(r[1].max_seen_per_ip, 1);
    assert_true(r[0].admitted > 0 && r[1].admitted > 0);
    assert_int_equal(mapping_active(m->state), 0);
    assert_int_equal(m->state->nips, 0);
    assert_int_equal(m->refs, 1);
    struct mapping_stats sum;
    mapping_stats_sum(m->state, &sum);
    assert_int_equal(sum.accepted, r[0].admitted + r[1].admitted);
    assert_int_equal(sum.accepted + sum.refused_limit, 400000);
    assert_int_equal(mapping_shard(m, 0)->stats.accepted, r[0].admitted);
    mapping_unref(m);
}

static void test_target(void **state)
{
    (void)state;
    struct mapping *m = make("tcp:0.0.0.0:6000-6009=192.0.2.1:7000-7009");
    struct sockaddr_storage t;
    mapping_target(m, 6000, &t);
    assert_int_equal(addr_port(&t), 7000);
    mapping_target(m, 6009, &t);
    assert_int_equal(addr_port(&t), 7009);
    mapping_unref(m);
    m = make("tcp:0.0.0.0:6000-6009=192.0.2.1:7000");
    mapping_target(m, 6005, &t);
    assert_int_equal(addr_port(&t), 7000);
    mapping_unref(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_acl),
        cmocka_unit_test(test_trusted_proxies),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_no_table_without_per_ip_limit),
        cmocka_unit_test(test_per_ip_table_is_keyed),
        cmocka_unit_test(test_sessions),
        cmocka_unit_test(test_workers_race),
        cmocka_unit_test(test_target),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
