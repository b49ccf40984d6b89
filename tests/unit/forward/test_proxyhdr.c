/* forward/proxyhdr: the PROXY protocol header, v1 and v2, parsed from inputs against a guard page
 * (each valid one cut at every point, where it must ask for more), and built. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "core/addr.h"
#include "forward/proxyhdr.h"
#include "guard.h"

static int parse(const void *buf, size_t len, enum proxyhdr_version accept, struct proxyhdr *h,
                 const char **why)
{
    struct guarded g = guard_bytes(buf, len);
    int n = proxyhdr_parse(g.p, len, accept, h, why);
    guard_free(g);
    return n;
}

/* Every strict prefix of a valid header asks for more, and the whole returns its length. */
static void assert_whole_only(const void *buf, size_t len, size_t hdrlen,
                              enum proxyhdr_version accept)
{
    struct proxyhdr h;
    const char *why = NULL;
    for (size_t k = 0; k < hdrlen; k++) {
        int n = parse(buf, k, accept, &h, &why);
        if (n != 0) {
            fail_msg("cut at %zu of %zu: %d (%s)", k, hdrlen, n, n < 0 ? why : "");
        }
    }
    assert_int_equal(parse(buf, len, accept, &h, &why), (int)hdrlen);
}

static const char *fmt(const struct sockaddr_storage *ss, char *buf, size_t len)
{
    return addr_format(ss, buf, len);
}

static void test_v1_valid(void **state)
{
    (void)state;
    char unknown_max[PROXYHDR_V1_MAX + 1];
    snprintf(unknown_max, sizeof(unknown_max), "PROXY UNKNOWN %-91s\r\n", "x");
    assert_int_equal(strlen(unknown_max), PROXYHDR_V1_MAX);
    static const char six_max[] = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                                  "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    const struct {
        const char *in; /* the header, then what follows it */
        size_t hdrlen;
        const char *src, *dst; /* NULL: no addresses */
    } cases[] = {
        {"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET / HTTP/1.1\r\n", 45, "192.0.2.1:56324",
         "198.51.100.2:443"},
        {"PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n", 44, "0.0.0.0:0",
         "255.255.255.255:65535"},
        {"PROXY TCP6 2001:db8::1 2001:DB8::2 1 80\r\n\x16\x03\x01", 41, "[2001:db8::1]:1",
         "[2001:db8::2]:80"},
        /* IPv4-mapped: kept as given, an IPv6 address. */
        {"PROXY TCP6 ::ffff:192.0.2.1 ::ffff:192.0.2.2 10 20\r\n", 52, "[::ffff:192.0.2.1]:10",
         "[::ffff:192.0.2.2]:20"},
        {six_max, 104, "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
         "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"},
        {"PROXY UNKNOWN\r\nX", 15, NULL, NULL},
        {"PROXY UNKNOWN 192.0.2.1 whatever 1 2\r\n", 38, NULL, NULL},
        {unknown_max, PROXYHDR_V1_MAX, NULL, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t len = strlen(cases[i].in);
        for (int a = PROXYHDR_V1; a <= PROXYHDR_ANY; a += PROXYHDR_ANY - PROXYHDR_V1) {
            assert_whole_only(cases[i].in, len, cases[i].hdrlen, (enum proxyhdr_version)a);
        }
        struct proxyhdr h;
        const char *why = NULL;
        assert_int_equal(parse(cases[i].in, len, PROXYHDR_ANY, &h, &why), (int)cases[i].hdrlen);
        assert_int_equal(h.version, PROXYHDR_V1);
        assert_int_equal(h.has_addrs, cases[i].src != NULL);
        if (cases[i].src != NULL) {
            char b[ADDR_STRLEN];
            assert_string_equal(fmt(&h.src, b, sizeof(b)), cases[i].src);
            assert_string_equal(fmt(&h.dst, b, sizeof(b)), cases[i].dst);
        }
    }
}

static void test_v1_refusals(void **state)
{
    (void)state;
    char no_crlf[PROXYHDR_V1_MAX + 1], too_long[PROXYHDR_V1_MAX + 2];
    snprintf(no_crlf, sizeof(no_crlf), "PROXY UNKNOWN %-93s", "x");
    snprintf(too_long, sizeof(too_long), "PROXY UNKNOWN %-92s\r\n", "x");
    const struct {
        const char *in, *why;
        enum proxyhdr_version accept;
    } cases[] = {
        {"PROXY  TCP4 192.0.2.1 198.51.100.2 1 2\r\n", "not TCP4, TCP6 or UNKNOWN", PROXYHDR_ANY},
        {"PROXY UDP4 192.0.2.1 198.51.100.2 1 2\r\n", "not TCP4, TCP6 or UNKNOWN", PROXYHDR_ANY},
        {"PROXY tcp4 192.0.2.1 198.51.100.2 1 2\r\n", "not TCP4, TCP6 or UNKNOWN", PROXYHDR_ANY},
        {"PROXY UNKNOWNX\r\n", "not TCP4, TCP6 or UNKNOWN", PROXYHDR_ANY},
        {"PROXY TCP4\r\n", "not TCP4, TCP6 or UNKNOWN", PROXYHDR_ANY},
        {"PROXY TCP4 \r\n", "one space apart", PROXYHDR_ANY},
        {"PROXY TCP4  192.0.2.1 198.51.100.2 1 2\r\n", "one space apart", PROXYHDR_ANY},
        {"PROXY TCP4 192.0.2.1  198.51.100.2 1 2\r\n", "one space apart", PROXYHDR_ANY},
        {"PROXY TCP4 192.0.2.1 198.51.100.2 1 2 \r\n", "one space apart", PROXYHDR_ANY},
        {"PROXY TCP4 192.0.2.1 198.51.100.2 1\r\n", "one space apart", PROXYHDR_ANY},
        {"PROXY TCP4 192.0.2.1 198.51.100.2 1 2 3\r\n", "one space apart", PROXYHDR_ANY},
        {"PROXY TCP4 192.0.2.1 198.51.100.2 0443 2\r\n", "a port", PROXYHDR_ANY},
        {"PROXY TCP4 192.0.2.1 198.51.100.2 1 00\r\n", "a port", PROXYHDR_ANY},
        {"PROXY TCP4 192.0.2.1 198.51.100.2 65536 2\r\n", "a port", PROXYHDR_ANY},
        {"PROXY TCP4 192.0.2.1 198.51.100.2 1 655350\r\n", "a port", PROXYHDR_ANY},
        {"PROXY TCP4 192.0.2.1 198.51.100.2 +1 2\r\n", "a port", PROXYHDR_ANY},
        {"PROXY TCP4 192.0.2.1 198.51.100.2 -1 2\r\n", "a port", PROXYHDR_ANY},
        {"PROXY TCP4 192.0.2.1 198.51.100.2 1a 2\r\n", "a port", PROXYHDR_ANY},
        {"PROXY TCP4 192.0.2.01 198.51.100.2 1 2\r\n", "TCP4 with an address that is not IPv4",
         PROXYHDR_ANY},
        {"PROXY TCP4 192.0.2 198.51.100.2 1 2\r\n", "not IPv4", PROXYHDR_ANY},
        {"PROXY TCP4 192.0.2.256 198.51.100.2 1 2\r\n", "not IPv4", PROXYHDR_ANY},
        {"PROXY TCP4 2001:db8::1 198.51.100.2 1 2\r\n", "not IPv4", PROXYHDR_ANY},
        {"PROXY TCP4 192.0.2.1 cam.example 1 2\r\n", "not IPv4", PROXYHDR_ANY},
        {"PROXY TCP6 192.0.2.1 2001:db8::2 1 2\r\n", "TCP6 with an address that is not IPv6",
         PROXYHDR_ANY},
        {"PROXY TCP6 [2001:db8::1] 2001:db8::2 1 2\r\n", "not IPv6", PROXYHDR_ANY},
        {"PROXY TCP6 2001:db8:::1 2001:db8::2 1 2\r\n", "not IPv6", PROXYHDR_ANY},
        {"PROXY TCP4 192.0.2.1 198.51.100.2 1 2\n", "a LF without CR", PROXYHDR_ANY},
        {"PROXY TCP4 192.0.2.1 198.51.100.2 1 2\rX", "a CR without LF", PROXYHDR_ANY},
        {"PROXY TCP4 192.0.2.1 198.51.100.2 1 2\r\r\n", "a CR without LF", PROXYHDR_ANY},
        {"PROXY TCP4 192.0.2.1\t198.51.100.2 1 2\r\n", "not printable", PROXYHDR_ANY},
        {"PROXY UNKNOWN \x80\r\n", "not printable", PROXYHDR_ANY},
        {no_crlf, "no CRLF within 107 bytes", PROXYHDR_ANY},
        {too_long, "no CRLF within 107 bytes", PROXYHDR_ANY},
        {"proxy TCP4 192.0.2.1 198.51.100.2 1 2\r\n", "not a PROXY protocol header", PROXYHDR_ANY},
        {"PROXX", "not a PROXY protocol header", PROXYHDR_ANY},
        {"GET / HTTP/1.1\r\n", "not a PROXY protocol header", PROXYHDR_ANY},
        {"\x16\x03\x01\x02\x00", "not a PROXY protocol header", PROXYHDR_ANY},
        {"P", "a v1 header where v2 is expected", PROXYHDR_V2},
        {"\r", "a v2 header where v1 is expected", PROXYHDR_V1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct proxyhdr h;
        const char *why = NULL;
        int n = parse(cases[i].in, strlen(cases[i].in), cases[i].accept, &h, &why);
        if (n != -1 || why == NULL || strstr(why, cases[i].why) == NULL) {
            fail_msg("case %zu %s: %d %s", i, cases[i].in, n, why ? why : "(no reason)");
        }
    }
    /* Refused as soon as a byte shows it cannot become valid: long before a CRLF. */
    struct proxyhdr h;
    const char *why = NULL;
    assert_int_equal(parse("PROXY TCP4 1.2.3.4\n", 19, PROXYHDR_V1, &h, &why), -1);
    assert_int_equal(parse("PROXZ", 5, PROXYHDR_V1, &h, &why), -1);
}

/* A v2 header: the signature, then ver_cmd, fam, the block's length, and the block. */
static size_t v2(unsigned char *out, unsigned ver_cmd, unsigned fam, const void *block, size_t blen)
{
    static const unsigned char sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                          0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
    memcpy(out, sig, 12);
    out[12] = (unsigned char)ver_cmd;
    out[13] = (unsigned char)fam;
    out[14] = (unsigned char)(blen >> 8);
    out[15] = (unsigned char)blen;
    if (blen > 0) {
        memcpy(out + 16, block, blen);
    }
    return 16 + blen;
}

/* 192.0.2.1:56324 -> 198.51.100.2:443, then extra bytes (TLVs). */
static const unsigned char inet_block[12] = {192, 0, 2, 1, 198, 51, 100, 2, 0xdc, 0x04, 0x01, 0xbb};

static void test_v2_valid(void **state)
{
    (void)state;
    unsigned char buf[PROXYHDR_MAX + 64], block[PROXYHDR_MAX];
    char b[ADDR_STRLEN];
    struct proxyhdr h;
    const char *why = NULL;

    /* PROXY over INET STREAM, followed by a TLS ClientHello's first bytes. */
    size_t n = v2(buf, 0x21, 0x11, inet_block, sizeof(inet_block));
    memcpy(buf + n, "\x16\x03\x01", 3);
    assert_whole_only(buf, n + 3, n, PROXYHDR_V2);
    assert_int_equal(parse(buf, n + 3, PROXYHDR_ANY, &h, &why), 28);
    assert_int_equal(h.version, PROXYHDR_V2);
    assert_true(h.has_addrs);
    assert_string_equal(fmt(&h.src, b, sizeof(b)), "192.0.2.1:56324");
    assert_string_equal(fmt(&h.dst, b, sizeof(b)), "198.51.100.2:443");

    /* INET6, with TLVs after the addresses (ALPN, then NOOP padding), which are skipped. */
    unsigned char a6[36] = {0x20, 0x01, 0x0d,     0xb8,     [15] = 1, [16] = 0x20, 0x01,
                            0x0d, 0xb8, [31] = 2, [32] = 0, 80,       0x1f,        0x90};
    memcpy(block, a6, 36);
    memcpy(block + 36, "\x01\x00\x02h2\x04\x00\x03\x00\x00\x00", 11);
    n = v2(buf, 0x21, 0x21, block, 47);
    assert_whole_only(buf, n, n, PROXYHDR_ANY);
    assert_int_equal(parse(buf, n, PROXYHDR_V2, &h, &why), 16 + 47);
    assert_true(h.has_addrs);
    assert_string_equal(fmt(&h.src, b, sizeof(b)), "[2001:db8::1]:80");
    assert_string_equal(fmt(&h.dst, b, sizeof(b)), "[2001:db8::2]:8080");

    /* IPv4-mapped IPv6 addresses stay IPv6. */
    unsigned char m6[36] = {[10] = 0xff, 0xff, 192, 0, 2, 1, [26] = 0xff, 0xff, 192, 0, 2, 2};
    n = v2(buf, 0x21, 0x21, m6, 36);
    assert_int_equal(parse(buf, n, PROXYHDR_V2, &h, &why), 52);
    assert_string_equal(fmt(&h.src, b, sizeof(b)), "[::ffff:192.0.2.1]:0");

    /* No addresses: LOCAL (whatever its block says, even an unassigned family), PROXY over
     * UNSPEC in either half of the family byte. */
    const struct {
        unsigned ver_cmd, fam;
        size_t blen;
    } none[] = {
        {0x20, 0x00, 0}, {0x20, 0x11, 12}, {0x20, 0xff, 5},  {0x20, 0x31, 216},
        {0x21, 0x00, 0}, {0x21, 0x01, 7},  {0x21, 0x10, 12}, {0x21, 0x20, 3},
    };
    memset(block, 0xee, sizeof(block));
    for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++) {
        n = v2(buf, none[i].ver_cmd, none[i].fam, block, none[i].blen);
        assert_whole_only(buf, n, n, PROXYHDR_V2);
        h.has_addrs = true;
        assert_int_equal(parse(buf, n, PROXYHDR_ANY, &h, &why), (int)n);
        assert_false(h.has_addrs);
    }

    /* The longest header taken: PROXYHDR_MAX bytes, TLVs included. */
    memcpy(block, inet_block, 12);
    size_t tlv = PROXYHDR_MAX - 16 - 12 - 3;
    block[12] = 0x04;
    block[13] = (unsigned char)(tlv >> 8);
    block[14] = (unsigned char)tlv;
    memset(block + 15, 0, tlv);
    n = v2(buf, 0x21, 0x11, block, PROXYHDR_MAX - 16);
    assert_int_equal(n, PROXYHDR_MAX);
    assert_whole_only(buf, n, n, PROXYHDR_V2);
}

static void test_v2_refusals(void **state)
{
    (void)state;
    unsigned char buf[PROXYHDR_MAX + 64], block[PROXYHDR_MAX + 64] = {0};
    memcpy(block, inet_block, 12);
    const struct {
        unsigned ver_cmd, fam;
        size_t blen;
        const char *extra; /* TLV bytes after the INET addresses, or NULL */
        size_t nextra;
        const char *why;
    } cases[] = {
        {0x11, 0x11, 12, NULL, 0, "a version other than 2"},
        {0x31, 0x11, 12, NULL, 0, "a version other than 2"},
        {0x22, 0x11, 12, NULL, 0, "neither LOCAL nor PROXY"},
        {0x2f, 0x11, 12, NULL, 0, "neither LOCAL nor PROXY"},
        {0x21, 0x31, 216, NULL, 0, "UNIX"},
        {0x21, 0x30, 216, NULL, 0, "UNIX"},
        {0x21, 0x12, 12, NULL, 0, "DGRAM"},
        {0x21, 0x22, 36, NULL, 0, "DGRAM"},
        {0x21, 0x02, 0, NULL, 0, "DGRAM"},
        {0x21, 0x41, 12, NULL, 0, "unassigned"},
        {0x21, 0x13, 12, NULL, 0, "unassigned"},
        {0x21, 0x11, 11, NULL, 0, "INET with fewer than 12"},
        {0x21, 0x11, 0, NULL, 0, "INET with fewer than 12"},
        {0x21, 0x21, 35, NULL, 0, "INET6 with fewer than 36"},
        {0x21, 0x21, 12, NULL, 0, "INET6 with fewer than 36"},
        {0x21, 0x11, 14, "\x04\x00", 2, "a TLV cut short"},
        {0x21, 0x11, 16, "\x04\x00\x02\x00", 4, "a TLV cut short"},
        {0x21, 0x11, 18, "\x04\x00\x00\x04\x00\x03", 6, "a TLV cut short"},
        {0x21, 0x11, PROXYHDR_MAX - 15, NULL, 0, "longer than 1024 bytes"},
        {0x21, 0x11, 0xffff, NULL, 0, "longer than 1024 bytes"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (cases[i].extra != NULL) {
            memcpy(block + 12, cases[i].extra, cases[i].nextra);
        }
        size_t blen = cases[i].blen > PROXYHDR_MAX ? 0 : cases[i].blen;
        size_t n = v2(buf, cases[i].ver_cmd, cases[i].fam, block, blen);
        buf[14] = (unsigned char)(cases[i].blen >> 8);
        buf[15] = (unsigned char)cases[i].blen;
        struct proxyhdr h;
        const char *why = NULL;
        int r = parse(buf, n, PROXYHDR_ANY, &h, &why);
        if (r != -1 || strstr(why, cases[i].why) == NULL) {
            fail_msg("case %zu: %d %s", i, r, why ? why : "(no reason)");
        }
    }
    /* Refused as soon as the byte that says so is in: the version (13th), the family (14th),
     * the length (16th), before the block. */
    struct proxyhdr h;
    const char *why = NULL;
    size_t n = v2(buf, 0x11, 0x11, inet_block, 12);
    assert_int_equal(parse(buf, 13, PROXYHDR_V2, &h, &why), -1);
    n = v2(buf, 0x21, 0x31, inet_block, 12);
    assert_int_equal(parse(buf, 14, PROXYHDR_V2, &h, &why), -1);
    n = v2(buf, 0x21, 0x11, inet_block, 12);
    buf[14] = 0x04;
    assert_int_equal(parse(buf, 16, PROXYHDR_V2, &h, &why), -1);
    /* A wrong byte of the signature, even its NUL. */
    for (size_t i = 0; i < 12; i++) {
        n = v2(buf, 0x21, 0x11, inet_block, 12);
        buf[i] ^= 0x20;
        assert_int_equal(parse(buf, n, PROXYHDR_ANY, &h, &why), -1);
        assert_string_equal(why, "not a PROXY protocol header");
    }
}

static struct sockaddr_storage ep(const char *ip, uint16_t port)
{
    struct sockaddr_storage ss;
    assert_int_equal(addr_parse_ip(ip, &ss), 0);
    addr_set_port(&ss, port);
    return ss;
}

static void test_build(void **state)
{
    (void)state;
    char buf[PROXYHDR_BUILD_MAX], b[ADDR_STRLEN];
    struct proxyhdr h;
    const char *why = NULL;
    struct sockaddr_storage c4 = ep("192.0.2.1", 56324), d4 = ep("198.51.100.2", 443);
    struct sockaddr_storage c6 = ep("2001:db8::1", 80), d6 = ep("2001:db8::2", 8080);

    int n = proxyhdr_build(PROXYHDR_V1, &c4, &d4, buf, sizeof(buf));
    assert_int_equal(n, 45);
    assert_memory_equal(buf, "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n", 45);
    n = proxyhdr_build(PROXYHDR_V1, &c6, &d6, buf, sizeof(buf));
    assert_memory_equal(buf, "PROXY TCP6 2001:db8::1 2001:db8::2 80 8080\r\n", (size_t)n);

    unsigned char want[28];
    v2(want, 0x21, 0x11, inet_block, 12);
    n = proxyhdr_build(PROXYHDR_V2, &c4, &d4, buf, sizeof(buf));
    assert_int_equal(n, 28);
    assert_memory_equal(buf, want, 28);
    n = proxyhdr_build(PROXYHDR_V2, &c6, &d6, buf, sizeof(buf));
    assert_int_equal(n, 52);

    /* Each built header parses back to its addresses; mixed families are written IPv6, the
     * IPv4 one mapped; the longest v1 line fits PROXYHDR_BUILD_MAX. */
    struct sockaddr_storage f6 = ep("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
    const struct {
        struct sockaddr_storage *src, *dst;
        const char *want_src, *want_dst;
    } rt[] = {
        {&c4, &d4, "192.0.2.1:56324", "198.51.100.2:443"},
        {&c6, &d6, "[2001:db8::1]:80", "[2001:db8::2]:8080"},
        {&c4, &d6, "[::ffff:192.0.2.1]:56324", "[2001:db8::2]:8080"},
        {&f6, &f6, "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
         "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"},
    };
    for (size_t i = 0; i < sizeof(rt) / sizeof(rt[0]); i++) {
        for (int v = PROXYHDR_V1; v <= PROXYHDR_V2; v++) {
            n = proxyhdr_build((enum proxyhdr_version)v, rt[i].src, rt[i].dst, buf, sizeof(buf));
            assert_true(n > 0);
            assert_int_equal(parse(buf, (size_t)n, (enum proxyhdr_version)v, &h, &why), n);
            assert_true(h.has_addrs);
            assert_string_equal(fmt(&h.src, b, sizeof(b)), rt[i].want_src);
            assert_string_equal(fmt(&h.dst, b, sizeof(b)), rt[i].want_dst);
        }
    }

    /* Refused: no IP address, no version to build, no room. */
    struct sockaddr_storage un = {.ss_family = AF_UNIX};
    assert_int_equal(proxyhdr_build(PROXYHDR_V1, &un, &d4, buf, sizeof(buf)), -1);
    assert_int_equal(proxyhdr_build(PROXYHDR_V2, &c4, &un, buf, sizeof(buf)), -1);
    assert_int_equal(proxyhdr_build(PROXYHDR_OFF, &c4, &d4, buf, sizeof(buf)), -1);
    assert_int_equal(proxyhdr_build(PROXYHDR_ANY, &c4, &d4, buf, sizeof(buf)), -1);
    assert_int_equal(proxyhdr_build(PROXYHDR_V1, &c4, &d4, buf, 45), -1);
    assert_int_equal(proxyhdr_build(PROXYHDR_V2, &c4, &d4, buf, 27), -1);

    assert_string_equal(proxyhdr_version_name(PROXYHDR_OFF), "off");
    assert_string_equal(proxyhdr_version_name(PROXYHDR_ANY), "any");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1_valid), cmocka_unit_test(test_v1_refusals),
        cmocka_unit_test(test_v2_valid), cmocka_unit_test(test_v2_refusals),
        cmocka_unit_test(test_build),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
