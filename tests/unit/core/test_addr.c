#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <string.h>

#include "core/addr.h"
#include "guard.h"

static int parse_ep(const char *s, struct addr_endpoint *ep, char *err, size_t errlen)
{
    struct guarded g = guard_str(s);
    int rc = addr_parse_endpoint(g.p, ep, err, errlen);
    guard_free(g);
    return rc;
}

static void test_endpoint_ok(void **state)
{
    (void)state;
    static const struct {
        const char *in, *host;
        unsigned lo, hi;
        bool br;
    } cases[] = {
        {"0.0.0.0:8080", "0.0.0.0", 8080, 8080, false},
        {"192.0.2.10:80", "192.0.2.10", 80, 80, false},
        {"[::]:5000", "::", 5000, 5000, true},
        {"[2001:db8::1]:80", "2001:db8::1", 80, 80, true},
        {"0.0.0.0:6000-6009", "0.0.0.0", 6000, 6009, false},
        {"encoder.example:554", "encoder.example", 554, 554, false},
        {"my_host-1:1", "my_host-1", 1, 1, false},
        {"h:65535", "h", 65535, 65535, false},
        {"[::ffff:192.0.2.1]:7-7", "::ffff:192.0.2.1", 7, 7, true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct addr_endpoint ep;
        char err[256] = "";
        int rc = parse_ep(cases[i].in, &ep, err, sizeof(err));
        if (rc != 0) {
            fail_msg("%s: %s", cases[i].in, err);
        }
        assert_string_equal(ep.host, cases[i].host);
        assert_int_equal(ep.port_lo, cases[i].lo);
        assert_int_equal(ep.port_hi, cases[i].hi);
        assert_int_equal(ep.bracketed, cases[i].br);
    }
}

static void test_endpoint_errors(void **state)
{
    (void)state;
    static const struct {
        const char *in, *msg;
    } cases[] = {
        {"", "expected HOST:PORT"},
        {"192.0.2.1", "expected HOST:PORT"},
        {":80", "missing host"},
        {"[::1", "missing ']'"},
        {"[::1]80", "expected ':PORT'"},
        {"[zz::1]:80", "is not an IPv6 address"},
        {"2001:db8::1:80", "must be written in brackets"},
        {"192.0.2.300:80", "is not an IPv4 address"},
        {"a b:80", "neither an IP address nor a host name"},
        {"h:0", "not a number from 1 to 65535"},
        {"h:65536", "not a number from 1 to 65535"},
        {"h:", "not a number from 1 to 65535"},
        {"h:8o", "not a number from 1 to 65535"},
        {"h:123456", "not a number from 1 to 65535"},
        {"h:10-", "not a number from 1 to 65535"},
        {"h:10-x", "not a number from 1 to 65535"},
        {"h:10-9", "backwards"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct addr_endpoint ep;
        char err[256] = "";
        assert_int_equal(parse_ep(cases[i].in, &ep, err, sizeof(err)), -1);
        if (strstr(err, cases[i].msg) == NULL) {
            fail_msg("%s: got \"%s\", want \"%s\"", cases[i].in, err, cases[i].msg);
        }
    }
    /* A host name longer than the buffer. */
    char longname[400];
    memset(longname, 'a', sizeof(longname));
    strcpy(longname + 390, ":80");
    struct addr_endpoint ep;
    char err[256];
    assert_int_equal(parse_ep(longname, &ep, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "too long"));
}

static void test_addr_format_and_compare(void **state)
{
    (void)state;
    struct sockaddr_storage a, b;
    char buf[ADDR_STRLEN];
    assert_int_equal(addr_parse_ip("192.0.2.1", &a), 0);
    addr_set_port(&a, 80);
    assert_string_equal(addr_format(&a, buf, sizeof(buf)), "192.0.2.1:80");
    assert_int_equal(addr_parse_ip("2001:db8::1", &b), 0);
    addr_set_port(&b, 443);
    assert_string_equal(addr_format(&b, buf, sizeof(buf)), "[2001:db8::1]:443");
    assert_int_equal(addr_port(&b), 443);
    assert_false(addr_equal(&a, &b));
    assert_int_equal(addr_parse_ip("::ffff:192.0.2.1", &b), 0);
    addr_set_port(&b, 80);
    assert_false(addr_equal(&a, &b));
    addr_unmap(&b);
    assert_int_equal(b.ss_family, AF_INET);
    assert_true(addr_equal(&a, &b));
    assert_int_equal(addr_parse_ip("0.0.0.0", &a), 0);
    assert_true(addr_is_any(&a));
    assert_int_equal(addr_parse_ip("::", &a), 0);
    assert_true(addr_is_any(&a));
    assert_int_equal(addr_parse_ip("::1", &a), 0);
    assert_false(addr_is_any(&a));
    assert_int_equal(addr_parse_ip("localhost", &a), -1);
    assert_int_equal(addr_parse_ip("", &a), -1);
}

static bool in_set(const struct cidr_set *s, const char *ip)
{
    struct sockaddr_storage ss;
    if (addr_parse_ip(ip, &ss) != 0) {
        fail_msg("bad test address %s", ip);
    }
    return cidr_set_contains(s, &ss);
}

static void test_cidr_parse(void **state)
{
    (void)state;
    struct cidr c;
    char err[256];
    assert_int_equal(cidr_parse("192.0.2.0/24", &c, err, sizeof(err)), 0);
    assert_int_equal(c.family, AF_INET);
    assert_int_equal(c.prefix, 24);
    assert_int_equal(cidr_parse("192.0.2.7", &c, err, sizeof(err)), 0);
    assert_int_equal(c.prefix, 32);
    assert_int_equal(cidr_parse("2001:db8::/32", &c, err, sizeof(err)), 0);
    assert_int_equal(c.family, AF_INET6);
    assert_int_equal(c.prefix, 32);
    assert_int_equal(cidr_parse("::/0", &c, err, sizeof(err)), 0);
    assert_int_equal(cidr_parse("0.0.0.0/0", &c, err, sizeof(err)), 0);
    /* A mapped network is the IPv4 network. */
    assert_int_equal(cidr_parse("::ffff:198.51.100.0/120", &c, err, sizeof(err)), 0);
    assert_int_equal(c.family, AF_INET);
    assert_int_equal(c.prefix, 24);

    static const struct {
        const char *in, *msg;
    } bad[] = {
        {"10.0.0.0/33", "prefix longer than 32"},
        {"2001:db8::/129", "prefix longer than 128"},
        {"192.0.2.1/24", "did you mean 192.0.2.0/24?"},
        {"2001:db8::1/32", "did you mean 2001:db8::/32?"},
        {"192.0.2.0/", "is not a number"},
        {"192.0.2.0/a", "is not a number"},
        {"192.0.2.0/-1", "is not a number"},
        {"192.0.2.0/0024", "is not a number"},
        {"example.com/24", "is not an IPv4 or IPv6 address"},
        {"/24", "not an address or CIDR"},
        {"", "not an address or CIDR"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct guarded g = guard_str(bad[i].in);
        err[0] = '\0';
        assert_int_equal(cidr_parse(g.p, &c, err, sizeof(err)), -1);
        guard_free(g);
        if (strstr(err, bad[i].msg) == NULL) {
            fail_msg("%s: got \"%s\", want \"%s\"", bad[i].in, err, bad[i].msg);
        }
    }
}

static void test_cidr_set(void **state)
{
    (void)state;
    struct cidr_set s = {0};
    char err[256];
    assert_int_equal(
        cidr_set_add_list(&s, "192.0.2.0/24, 198.51.100.128/25,2001:db8::/48", err, sizeof(err)),
        0);
    assert_int_equal(s.n, 3);
    assert_true(in_set(&s, "192.0.2.0"));
    assert_true(in_set(&s, "192.0.2.255"));
    assert_false(in_set(&s, "192.0.3.0"));
    assert_false(in_set(&s, "198.51.100.127"));
    assert_true(in_set(&s, "198.51.100.128"));
    assert_true(in_set(&s, "2001:db8:0:ffff::1"));
    assert_false(in_set(&s, "2001:db8:1::1"));
    /* IPv4-mapped clients match IPv4 entries, never IPv6 ones. */
    assert_true(in_set(&s, "::ffff:192.0.2.9"));
    assert_false(in_set(&s, "::ffff:203.0.113.1"));
    char buf[256];
    assert_string_equal(cidr_set_format(&s, buf, sizeof(buf)),
                        "192.0.2.0/24,198.51.100.128/25,2001:db8::/48");

    struct cidr_set t = {0};
    assert_int_equal(cidr_set_copy(&t, &s), 0);
    assert_true(cidr_set_equal(&s, &t));
    assert_int_equal(cidr_set_add_list(&t, "203.0.113.0/24", err, sizeof(err)), 0);
    assert_false(cidr_set_equal(&s, &t));
    cidr_set_clear(&t);

    /* Prefix lengths that are not multiples of 8, and everything. */
    assert_int_equal(cidr_set_add_list(&t, "203.0.113.64/27", err, sizeof(err)), 0);
    assert_true(in_set(&t, "203.0.113.95"));
    assert_false(in_set(&t, "203.0.113.96"));
    assert_false(in_set(&t, "::1"));
    cidr_set_clear(&t);
    assert_int_equal(cidr_set_add_list(&t, "0.0.0.0/0", err, sizeof(err)), 0);
    assert_true(in_set(&t, "203.0.113.96"));
    assert_false(in_set(&t, "2001:db8::1"));
    cidr_set_clear(&t);

    assert_int_equal(cidr_set_add_list(&t, "192.0.2.0/24,,198.51.100.0/24", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "empty entry"));
    assert_int_equal(cidr_set_add_list(&t, ",192.0.2.0/24", err, sizeof(err)), -1);
    assert_int_equal(cidr_set_add_list(&t, "", err, sizeof(err)), -1);
    cidr_set_clear(&t);
    assert_int_equal(cidr_set_add_list(&t, "192.0.2.0/24,", err, sizeof(err)), 0);
    assert_int_equal(t.n, 1);
    assert_int_equal(cidr_set_add_list(&t, "192.0.2.0/24,nope", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "\"nope\""));
    cidr_set_clear(&t);
    cidr_set_clear(&s);
}

static void test_private(void **state)
{
    (void)state;
    static const struct {
        const char *ip;
        bool private;
    } cases[] = {
        {"127.0.0.1", true},
        {"10.1.2.3", true},
        {"172.16.0.1", true},
        {"172.31.255.255", true},
        {"172.32.0.1", false},
        {"192.168.1.1", true},
        {"169.254.1.1", true},
        {"100.64.0.1", true},
        {"100.128.0.1", false},
        {"192.0.2.10", false},
        {"203.0.113.5", false},
        {"0.0.0.0", false},
        {"::1", true},
        {"fd00::1", true},
        {"fc12::1", true},
        {"fe80::1", true},
        {"2001:db8::1", false},
        {"::", false},
        {"::ffff:10.0.0.1", true},
        {"::ffff:8.8.8.8", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sockaddr_storage ss;
        assert_int_equal(addr_parse_ip(cases[i].ip, &ss), 0);
        if (addr_is_private(&ss) != cases[i].private) {
            fail_msg("%s: want %s", cases[i].ip, cases[i].private ? "private" : "public");
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_endpoint_ok),
        cmocka_unit_test(test_endpoint_errors),
        cmocka_unit_test(test_addr_format_and_compare),
        cmocka_unit_test(test_cidr_parse),
        cmocka_unit_test(test_cidr_set),
        cmocka_unit_test(test_private),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
