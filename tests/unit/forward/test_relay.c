/* relay: the pools of one loop, and the hash of its tables. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <string.h>

#include "core/loop.h"
#include "forward/relay.h"

#define NBUCKETS 1024

/* The fullest of NBUCKETS buckets after hashing n addresses made by make(i). */
static size_t fullest(const struct relay_ctx *ctx, size_t n,
                      void (*make)(size_t i, struct sockaddr_storage *ss))
{
    static size_t load[NBUCKETS];
    memset(load, 0, sizeof(load));
    size_t most = 0;
    for (size_t i = 0; i < n; i++) {
        struct sockaddr_storage ss;
        make(i, &ss);
        size_t b = (size_t)(relay_addr_hash(ctx, &ss) & (NBUCKETS - 1));
        most = ++load[b] > most ? load[b] : most;
    }
    return most;
}

/* Clients of one /104 that differ in their last three bytes only, from one port. */
static void v6_tail(size_t i, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    s6->sin6_family = AF_INET6;
    inet_pton(AF_INET6, "2001:db8::", &s6->sin6_addr);
    s6->sin6_addr.s6_addr[13] = (uint8_t)(i >> 16);
    s6->sin6_addr.s6_addr[14] = (uint8_t)(i >> 8);
    s6->sin6_addr.s6_addr[15] = (uint8_t)i;
    s6->sin6_port = htons(5000);
}

/* One IPv4 address, every source port. */
static void v4_ports(size_t i, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    s4->sin_family = AF_INET;
    inet_pton(AF_INET, "198.51.100.7", &s4->sin_addr);
    s4->sin_port = htons((uint16_t)(1024 + i));
}

/* Every client of one /24, from a few ports each. */
static void v4_net(size_t i, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    s4->sin_family = AF_INET;
    s4->sin_addr.s_addr = htonl(0xc0000200u | (uint32_t)(i & 0xff)); /* 192.0.2.0/24 */
    s4->sin_port = htons((uint16_t)(5000 + (i >> 8)));
}

/* No client chooses its way into one bucket: addresses that differ only in bits an unkeyed or
 * weak hash drops spread as evenly as random ones (8,192 into 1,024 buckets: 8 on average, the
 * fullest well under 32). */
static void test_addr_hash_spreads(void **state)
{
    (void)state;
    struct loop *loop = loop_new();
    struct relay_ctx a, b;
    assert_int_equal(relay_ctx_init(&a, loop, 0), 0);
    assert_int_equal(relay_ctx_init(&b, loop, 1), 0);
    assert_true(fullest(&a, 8192, v6_tail) < 32);
    assert_true(fullest(&a, 8192, v4_ports) < 32);
    assert_true(fullest(&a, 8192, v4_net) < 32);
    /* Each loop has a key of its own: the same client hashes differently. */
    struct sockaddr_storage ss;
    v6_tail(1, &ss);
    assert_true(relay_addr_hash(&a, &ss) != relay_addr_hash(&b, &ss));
    relay_ctx_fini(&a);
    relay_ctx_fini(&b);
    loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addr_hash_spreads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
