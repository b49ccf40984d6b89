/* auth/totp: base32 (RFC 4648 section 10), HOTP (RFC 4226 appendix D), TOTP (RFC 6238 appendix
 * B), the check of a code with its window and replays, the otpauth URI and the QR code. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <qrencode.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/totp.h"
#include "guard.h"

static const unsigned char rfc_key[] = "12345678901234567890";
#define RFC_KEYLEN 20

/* RFC 4648 section 10. */
static const struct {
    const char *plain, *b32;
} b32_vectors[] = {
    {"", ""},
    {"f", "MY======"},
    {"fo", "MZXQ===="},
    {"foo", "MZXW6==="},
    {"foob", "MZXW6YQ="},
    {"fooba", "MZXW6YTB"},
    {"foobar", "MZXW6YTBOI======"},
};

static ssize_t decode(const char *text, unsigned char *out, size_t outlen)
{
    /* Against a guard page: a read past the text faults. */
    struct guarded g = guard_bytes(text, strlen(text));
    ssize_t n = totp_base32_decode(g.p, strlen(text), out, outlen);
    guard_free(g);
    return n;
}

static void test_base32_rfc4648(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(b32_vectors) / sizeof(b32_vectors[0]); i++) {
        const char *plain = b32_vectors[i].plain, *b32 = b32_vectors[i].b32;
        size_t n = strlen(plain);
        char out[32];
        assert_int_equal(totp_base32_len(n, true), strlen(b32));
        assert_int_equal(
            totp_base32_encode((const unsigned char *)plain, n, true, out, sizeof(out)),
            strlen(b32));
        assert_string_equal(out, b32);
        /* Without the padding, as otpauth URIs have it. */
        size_t bare = strcspn(b32, "=");
        assert_int_equal(totp_base32_len(n, false), bare);
        assert_int_equal(
            totp_base32_encode((const unsigned char *)plain, n, false, out, sizeof(out)), bare);
        assert_memory_equal(out, b32, bare);
        assert_int_equal(out[bare], '\0');
        /* And back, with or without it. */
        unsigned char back[16];
        assert_int_equal(decode(b32, back, sizeof(back)), n);
        assert_memory_equal(back, plain, n);
        assert_int_equal(decode(out, back, sizeof(back)), n);
        assert_memory_equal(back, plain, n);
    }
    /* Too small a buffer, for the text and its NUL. */
    char small[8];
    assert_int_equal(totp_base32_encode((const unsigned char *)"fooba", 5, true, small, 8), -1);
    char nine[9];
    assert_int_equal(totp_base32_encode((const unsigned char *)"fooba", 5, true, nine, 9), 8);
    unsigned char two[2];
    assert_int_equal(decode("MZXW6===", two, sizeof(two)), -1);
}

static void test_base32_refusals(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "mzxw6ytb",  /* lower case */
        "MZXW6YT1",  /* not the alphabet */
        "MZXW6YT8",  /* not the alphabet */
        "MZXW6YT",   /* 7 characters, 4 bytes, but bits set beyond them */
        "MZX",       /* 3: no encoding is that long */
        "M",         /* 1 */
        "MZXW6Y",    /* 6 */
        "MY=====",   /* padding that does not end a quantum */
        "MY==",      /* part of the padding */
        "MZXW6YQ==", /* too much */
        "MZXW6==",   /* too little */
        "MZ======",  /* bits set beyond the last byte (f is MY) */
        "MZXW6YTB=", /* padding after a whole quantum */
        "=",         /* nothing but padding */
        "MZ=XW6YT",  /* padding inside */
        "MZXW 6YTB", /* a space */
    };
    unsigned char out[16];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ssize_t n = decode(bad[i], out, sizeof(out));
        if (n != -1) {
            fail_msg("\"%s\" decoded to %zd bytes", bad[i], n);
        }
    }
    /* 7 characters is a valid length: "foob" unpadded. */
    assert_int_equal(decode("MZXW6YQ", out, sizeof(out)), 4);
    assert_memory_equal(out, "foob", 4);
}

/* RFC 4226 appendix D: HOTP of the counters 0 to 9. */
static void test_hotp_rfc4226(void **state)
{
    (void)state;
    static const uint32_t want[] = {755224, 287082, 359152, 969429, 338314,
                                    254676, 287922, 162583, 399871, 520489};
    for (uint64_t c = 0; c < 10; c++) {
        uint32_t code = 0;
        assert_int_equal(totp_hotp(rfc_key, RFC_KEYLEN, c, 6, &code), 0);
        assert_int_equal(code, want[c]);
    }
    uint32_t code;
    assert_int_equal(totp_hotp(rfc_key, RFC_KEYLEN, 0, 5, &code), -1);
    assert_int_equal(totp_hotp(rfc_key, RFC_KEYLEN, 0, 9, &code), -1);
    assert_int_equal(totp_hotp(rfc_key, 0, 0, 6, &code), -1);
    assert_int_equal(totp_hotp(rfc_key, TOTP_MAX_SECRET + 1, 0, 6, &code), -1);
}

/* RFC 6238 appendix B, the SHA1 rows: 8 digits. */
static void test_totp_rfc6238(void **state)
{
    (void)state;
    static const struct {
        int64_t t;
        uint64_t step;
        const char *code;
    } v[] = {
        {59, 0x1, "94287082"},
        {1111111109, 0x23523EC, "07081804"},
        {1111111111, 0x23523ED, "14050471"},
        {1234567890, 0x273EF07, "89005924"},
        {2000000000, 0x3F940AA, "69279037"},
        {20000000000, 0x27BC86AA, "65353130"},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        char out[9];
        assert_int_equal(totp_step(v[i].t), v[i].step);
        assert_int_equal(totp_code(rfc_key, RFC_KEYLEN, v[i].t, 8, out), 0);
        assert_string_equal(out, v[i].code);
        /* 6 digits are the last 6 of the 8 (both are the same number modulo a power of 10). */
        char six[7];
        assert_int_equal(totp_code(rfc_key, RFC_KEYLEN, v[i].t, 6, six), 0);
        assert_string_equal(six, v[i].code + 2);
    }
    assert_int_equal(totp_step(-1), 0);
    assert_int_equal(totp_step(29), 0);
    assert_int_equal(totp_step(30), 1);
}

static void test_verify_window_and_replay(void **state)
{
    (void)state;
    const int64_t t = 1111111111; /* step 0x23523ED, 1 s into it */
    const uint64_t now = 0x23523ED;
    char before[7], cur[7], after[7], far[7];
    totp_code(rfc_key, RFC_KEYLEN, t - 30, 6, before);
    totp_code(rfc_key, RFC_KEYLEN, t, 6, cur);
    totp_code(rfc_key, RFC_KEYLEN, t + 30, 6, after);
    totp_code(rfc_key, RFC_KEYLEN, t + 60, 6, far);
    uint64_t step = 0;
    assert_int_equal(totp_verify(rfc_key, RFC_KEYLEN, cur, t, 0, &step), TOTP_OK);
    assert_int_equal(step, now);
    /* One step either way: a clock a little off, a code typed slowly. */
    assert_int_equal(totp_verify(rfc_key, RFC_KEYLEN, before, t, 0, &step), TOTP_OK);
    assert_int_equal(step, now - 1);
    assert_int_equal(totp_verify(rfc_key, RFC_KEYLEN, after, t, 0, &step), TOTP_OK);
    assert_int_equal(step, now + 1);
    /* Two steps: no. */
    assert_int_equal(totp_verify(rfc_key, RFC_KEYLEN, far, t, 0, &step), TOTP_WRONG);
    /* Once accepted, a code is used: the same one again is a replay, and so is an earlier one
     * (it must not win back the step it lost to a later code). */
    assert_int_equal(totp_verify(rfc_key, RFC_KEYLEN, cur, t, now, &step), TOTP_REPLAYED);
    assert_int_equal(totp_verify(rfc_key, RFC_KEYLEN, before, t, now, &step), TOTP_REPLAYED);
    assert_int_equal(totp_verify(rfc_key, RFC_KEYLEN, after, t, now, &step), TOTP_OK);
    assert_int_equal(step, now + 1);
    assert_int_equal(totp_verify(rfc_key, RFC_KEYLEN, after, t + 20, now + 1, &step),
                     TOTP_REPLAYED);
    /* Not six digits: wrong, whatever the digits. */
    char longer[8];
    snprintf(longer, sizeof(longer), "%s0", cur);
    static const char *const junk[] = {"", "12345", "abcdef", "12 456", "１２３４５６"};
    assert_int_equal(totp_verify(rfc_key, RFC_KEYLEN, longer, t, 0, &step), TOTP_WRONG);
    for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
        assert_int_equal(totp_verify(rfc_key, RFC_KEYLEN, junk[i], t, 0, &step), TOTP_WRONG);
    }
    /* A wrong digit. */
    char off[7];
    snprintf(off, sizeof(off), "%s", cur);
    off[5] = off[5] == '9' ? '0' : (char)(off[5] + 1);
    if (strcmp(off, before) != 0 && strcmp(off, after) != 0) {
        assert_int_equal(totp_verify(rfc_key, RFC_KEYLEN, off, t, 0, &step), TOTP_WRONG);
    }
    /* The very start of time has no step before it. */
    char zero[7];
    totp_code(rfc_key, RFC_KEYLEN, 0, 6, zero);
    assert_int_equal(totp_verify(rfc_key, RFC_KEYLEN, zero, 10, 0, &step), TOTP_REPLAYED);
    assert_int_equal(totp_verify(rfc_key, RFC_KEYLEN, zero, 40, 0, &step), TOTP_REPLAYED);
}

static void test_uri(void **state)
{
    (void)state;
    char uri[512];
    int n = totp_uri("portgate", "alice", "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", uri, sizeof(uri));
    assert_string_equal(uri, "otpauth://totp/portgate:alice?secret="
                             "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=portgate&algorithm=SHA1"
                             "&digits=6&period=30");
    assert_int_equal(n, strlen(uri));
    /* Everything but the unreserved characters is percent-encoded. */
    totp_uri("port gate", "bob@example.org", "MY", uri, sizeof(uri));
    assert_string_equal(uri, "otpauth://totp/port%20gate:bob%40example.org?secret=MY&issuer="
                             "port%20gate&algorithm=SHA1&digits=6&period=30");
    totp_uri("portgate", "a.b_c-d~\xc3\xa9", "MY", uri, sizeof(uri));
    assert_non_null(strstr(uri, "portgate:a.b_c-d~%C3%A9?"));
    /* Just too small, and just big enough. */
    n = totp_uri("portgate", "alice", "MY", uri, sizeof(uri));
    char exact[128];
    assert_true((size_t)n < sizeof(exact));
    assert_int_equal(totp_uri("portgate", "alice", "MY", exact, (size_t)n), -1);
    assert_int_equal(exact[0], '\0');
    assert_int_equal(totp_uri("portgate", "alice", "MY", exact, (size_t)n + 1), n);
    assert_string_equal(exact, uri);
}

/* Reads the path's rectangles back into a grid of size x size modules. */
static unsigned char *path_grid(const char *d, unsigned size)
{
    unsigned char *g = calloc((size_t)size * size, 1);
    assert_non_null(g);
    const char *p = d;
    while (*p != '\0') {
        int x, y, w, w2, used = 0;
        assert_int_equal(sscanf(p, "M%d %dh%dv1h-%dz%n", &x, &y, &w, &w2, &used), 4);
        assert_int_equal(w, w2);
        assert_true(x >= 0 && y >= 0 && w > 0 && (unsigned)(x + w) <= size && (unsigned)y < size);
        for (int i = 0; i < w; i++) {
            assert_int_equal(g[(size_t)y * size + (size_t)(x + i)], 0); /* no overlap */
            g[(size_t)y * size + (size_t)(x + i)] = 1;
        }
        p += used;
    }
    return g;
}

static void test_qr(void **state)
{
    (void)state;
    const char *text = "otpauth://totp/portgate:alice?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
                       "&issuer=portgate&algorithm=SHA1&digits=6&period=30";
    unsigned size = 0;
    char *d = totp_qr_path(text, &size);
    assert_non_null(d);
    /* The path draws exactly the modules libqrencode made, 4 modules in from every side. */
    QRcode *qr = QRcode_encodeString(text, 0, QR_ECLEVEL_M, QR_MODE_8, 1);
    assert_non_null(qr);
    assert_int_equal(size, (unsigned)qr->width + 8);
    unsigned char *g = path_grid(d, size);
    size_t dark = 0;
    for (unsigned y = 0; y < size; y++) {
        for (unsigned x = 0; x < size; x++) {
            bool inside = x >= 4 && y >= 4 && x < size - 4 && y < size - 4;
            unsigned char want = inside ? qr->data[(y - 4) * (unsigned)qr->width + (x - 4)] & 1 : 0;
            assert_int_equal(g[(size_t)y * size + x], want);
            dark += want;
        }
    }
    assert_true(dark > 100);
    /* The finder pattern's top-left corner: a dark run of 7 modules at (4, 4). */
    assert_non_null(strstr(d, "M4 4h7v1h-7z"));
    free(g);
    QRcode_free(qr);
    free(d);

    char *svg = totp_qr_svg(text);
    assert_non_null(svg);
    char head[128];
    snprintf(head, sizeof(head), "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %u %u\"",
             size, size);
    assert_memory_equal(svg, head, strlen(head));
    assert_non_null(strstr(svg, "<path fill=\"#000\" d=\"M"));
    assert_null(strstr(strstr(svg, "<path") + 1, "<path")); /* one path */
    assert_string_equal(svg + strlen(svg) - 9, "\"/></svg>");
    free(svg);

    /* Limits: the longest text taken, and one byte more. */
    char *big = malloc(TOTP_QR_MAX_TEXT + 2);
    memset(big, 'A', TOTP_QR_MAX_TEXT + 1);
    big[TOTP_QR_MAX_TEXT + 1] = '\0';
    assert_null(totp_qr_path(big, &size));
    assert_null(totp_qr_svg(big));
    big[TOTP_QR_MAX_TEXT] = '\0';
    d = totp_qr_path(big, &size);
    assert_non_null(d);
    free(d);
    free(big);
}

int main(void)
{
    assert_true(sodium_init() >= 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base32_rfc4648),
        cmocka_unit_test(test_base32_refusals),
        cmocka_unit_test(test_hotp_rfc4226),
        cmocka_unit_test(test_totp_rfc6238),
        cmocka_unit_test(test_verify_window_and_replay),
        cmocka_unit_test(test_uri),
        cmocka_unit_test(test_qr),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
