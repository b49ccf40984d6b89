#include "auth/totp.h"

#include <openssl/evp.h>
#include <qrencode.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char b32_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

size_t totp_base32_len(size_t n, bool pad)
{
    return pad ? (n + 4) / 5 * 8 : (n * 8 + 4) / 5;
}

ssize_t totp_base32_encode(const unsigned char *in, size_t n, bool pad, char *out, size_t outlen)
{
    size_t need = totp_base32_len(n, pad);
    if (outlen <= need) {
        return -1;
    }
    size_t o = 0;
    uint32_t acc = 0;
    unsigned bits = 0;
    for (size_t i = 0; i < n; i++) {
        acc = (acc << 8) | in[i];
        bits += 8;
        while (bits >= 5) {
            bits -= 5;
            out[o++] = b32_alphabet[(acc >> bits) & 31];
        }
    }
    if (bits > 0) {
        out[o++] = b32_alphabet[(acc << (5 - bits)) & 31];
    }
    while (o < need) {
        out[o++] = '=';
    }
    out[o] = '\0';
    return (ssize_t)o;
}

static int b32_value(char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= '2' && c <= '7') {
        return c - '2' + 26;
    }
    return -1;
}

ssize_t totp_base32_decode(const char *in, size_t len, unsigned char *out, size_t outlen)
{
    /* RFC 4648 6: the last quantum of 1, 2, 3 or 4 bytes is 2, 4, 5 or 7 characters, padded
     * with 6, 4, 3 or 1 '='. */
    size_t data = len;
    while (data > 0 && in[data - 1] == '=') {
        data--;
    }
    size_t pad = len - data, rest = data % 8;
    static const signed char pad_for[8] = {0, -1, 6, -1, 4, 3, -1, 1};
    if (pad_for[rest] < 0 || (pad != 0 && (size_t)pad_for[rest] != pad)) {
        return -1;
    }
    size_t nbytes = data * 5 / 8;
    if (nbytes > outlen) {
        return -1;
    }
    size_t o = 0;
    uint32_t acc = 0;
    unsigned bits = 0;
    for (size_t i = 0; i < data; i++) {
        int v = b32_value(in[i]);
        if (v < 0) {
            return -1;
        }
        acc = (acc << 5) | (uint32_t)v;
        bits += 5;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    /* RFC 4648 3.5: the bits left over are zero in a canonical encoding. */
    if ((acc & ((1u << bits) - 1)) != 0) {
        sodium_memzero(out, o);
        return -1;
    }
    return (ssize_t)o;
}

static const uint32_t powers_of_10[] = {1,      10,      100,      1000,     10000,
                                        100000, 1000000, 10000000, 100000000};

int totp_hotp(const unsigned char *key, size_t keylen, uint64_t counter, unsigned digits,
              uint32_t *code)
{
    if (digits < 6 || digits > 8 || keylen == 0 || keylen > TOTP_MAX_SECRET) {
        return -1;
    }
    unsigned char msg[8];
    for (int i = 7; i >= 0; i--) {
        msg[i] = (unsigned char)counter;
        counter >>= 8;
    }
    unsigned char mac[EVP_MAX_MD_SIZE];
    size_t maclen = 0;
    if (EVP_Q_mac(NULL, "HMAC", NULL, "SHA1", NULL, key, keylen, msg, sizeof(msg), mac, sizeof(mac),
                  &maclen) == NULL ||
        maclen != 20) {
        sodium_memzero(mac, sizeof(mac));
        return -1;
    }
    /* RFC 4226 5.3: dynamic truncation. */
    unsigned off = mac[19] & 0x0f;
    uint32_t bin = ((uint32_t)(mac[off] & 0x7f) << 24) | ((uint32_t)mac[off + 1] << 16) |
                   ((uint32_t)mac[off + 2] << 8) | mac[off + 3];
    *code = bin % powers_of_10[digits];
    sodium_memzero(mac, sizeof(mac));
    return 0;
}

uint64_t totp_step(int64_t t)
{
    return t < 0 ? 0 : (uint64_t)t / TOTP_PERIOD;
}

/* The code of step as digits characters and a NUL. */
static int step_code(const unsigned char *key, size_t keylen, uint64_t step, unsigned digits,
                     char *out)
{
    uint32_t code;
    if (totp_hotp(key, keylen, step, digits, &code) != 0) {
        return -1;
    }
    snprintf(out, digits + 1, "%0*u", (int)digits, (unsigned)code);
    return 0;
}

int totp_code(const unsigned char *key, size_t keylen, int64_t t, unsigned digits, char *out)
{
    return step_code(key, keylen, totp_step(t), digits, out);
}

enum totp_verdict totp_verify(const unsigned char *key, size_t keylen, const char *code, int64_t t,
                              uint64_t last_step, uint64_t *step)
{
    if (strnlen(code, TOTP_DIGITS + 1) != TOTP_DIGITS ||
        strspn(code, "0123456789") != TOTP_DIGITS) {
        return TOTP_WRONG;
    }
    uint64_t now = totp_step(t), best = 0;
    unsigned fresh = 0, used = 0;
    /* Every step of the window is computed and compared, whatever matched before; the latest
     * fresh match is kept with a mask rather than a branch. */
    for (uint64_t s = now > 0 ? now - 1 : 0; s <= now + 1; s++) {
        char want[TOTP_DIGITS + 1];
        if (step_code(key, keylen, s, TOTP_DIGITS, want) != 0) {
            return TOTP_WRONG;
        }
        unsigned match = (unsigned)(sodium_memcmp(want, code, TOTP_DIGITS) == 0);
        sodium_memzero(want, sizeof(want));
        unsigned is_fresh = match & (unsigned)(s > last_step);
        uint64_t mask = 0 - (uint64_t)is_fresh;
        best = (best & ~mask) | (s & mask);
        fresh |= is_fresh;
        used |= match & (unsigned)(s <= last_step);
    }
    if (fresh) {
        *step = best;
        return TOTP_OK;
    }
    return used ? TOTP_REPLAYED : TOTP_WRONG;
}

/* Appends s percent-encoded (RFC 3986 2.3: all but the unreserved characters) at out + *o. */
static void pct_encode(const char *s, char *out, size_t len, size_t *o)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        bool plain = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                     (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_' || *p == '~';
        char enc[3] = {'%', hex[*p >> 4], hex[*p & 15]};
        size_t n = plain ? 1 : 3;
        if (*o + n < len) {
            memcpy(out + *o, plain ? (const char *)p : enc, n);
        }
        *o += n;
    }
}

int totp_uri(const char *issuer, const char *account, const char *secret_b32, char *out, size_t len)
{
    size_t o = 0;
    char digits[48];
    const char *parts[] = {
        "otpauth://totp/", NULL, ":", NULL, "?secret=", secret_b32, "&issuer=", NULL, NULL};
    snprintf(digits, sizeof(digits), "&algorithm=SHA1&digits=%d&period=%d", TOTP_DIGITS,
             TOTP_PERIOD);
    parts[8] = digits;
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
        if (parts[i] == NULL) {
            pct_encode(i == 3 ? account : issuer, out, len, &o);
            continue;
        }
        size_t n = strlen(parts[i]);
        if (o + n < len) {
            memcpy(out + o, parts[i], n);
        }
        o += n;
    }
    if (o >= len || o > INT32_MAX) {
        if (len > 0) {
            out[0] = '\0';
        }
        return -1;
    }
    out[o] = '\0';
    return (int)o;
}

/* The quiet zone ISO/IEC 18004 asks around a QR code, in modules. */
#define QUIET 4

char *totp_qr_path(const char *text, unsigned *size)
{
    if (strnlen(text, TOTP_QR_MAX_TEXT + 1) > TOTP_QR_MAX_TEXT) {
        return NULL;
    }
    QRcode *qr = QRcode_encodeString(text, 0, QR_ECLEVEL_M, QR_MODE_8, 1);
    if (qr == NULL) {
        return NULL;
    }
    char *d = NULL;
    size_t dlen = 0;
    FILE *f = open_memstream(&d, &dlen);
    if (f == NULL) {
        QRcode_free(qr);
        return NULL;
    }
    int w = qr->width;
    for (int y = 0; y < w; y++) {
        for (int x = 0; x < w;) {
            /* Bit 0 of a module is its colour: 1 dark. */
            if ((qr->data[y * w + x] & 1) == 0) {
                x++;
                continue;
            }
            int run = 1;
            while (x + run < w && (qr->data[y * w + x + run] & 1) != 0) {
                run++;
            }
            fprintf(f, "M%d %dh%dv1h-%dz", x + QUIET, y + QUIET, run, run);
            x += run;
        }
    }
    QRcode_free(qr);
    if (fclose(f) != 0) {
        free(d);
        return NULL;
    }
    *size = (unsigned)w + 2 * QUIET;
    return d;
}

char *totp_qr_svg(const char *text)
{
    unsigned size;
    char *d = totp_qr_path(text, &size);
    if (d == NULL) {
        return NULL;
    }
    char *svg = NULL;
    /* Black on white whatever the page's colours: a scanner needs the contrast, and the quiet
     * zone is part of the code. */
    if (asprintf(&svg,
                 "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %u %u\" "
                 "shape-rendering=\"crispEdges\"><rect width=\"%u\" height=\"%u\" "
                 "fill=\"#fff\"/><path fill=\"#000\" d=\"%s\"/></svg>",
                 size, size, size, size, d) < 0) {
        svg = NULL;
    }
    free(d);
    return svg;
}
