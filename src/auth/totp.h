/*
 * totp: the one-time codes of a second factor, as authenticator apps make them, and what it
 * takes to enrol one. Pure functions, no state, no I/O:
 *
 *   - RFC 4648 base32 (the alphabet A-Z 2-7), in which apps show and take a secret;
 *   - RFC 4226 HOTP and RFC 6238 TOTP: HMAC-SHA1 (OpenSSL's) of the number of 30-second steps
 *     since 1970, truncated to 6 decimal digits (6 to 8 for the RFC's own test vectors);
 *   - the check of a code typed by a user: the steps before and after the current one are
 *     accepted too (clocks drift, people type slowly), every candidate is computed and
 *     compared in constant time, and a step at or before the last one accepted is refused, so
 *     that a code works once (RFC 6238 section 5.2);
 *   - the otpauth:// URI that enrols the secret in an app (Google's Key Uri Format, which every
 *     app reads), and an SVG of its QR code (libqrencode).
 *
 * A secret is 20 random bytes (160 bits: RFC 4226 section 4 recommends it, and it is what
 * apps expect from SHA1). The caller owns every buffer and wipes the secrets it holds.
 */
#ifndef PORTGATE_TOTP_H
#define PORTGATE_TOTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define TOTP_PERIOD 30
#define TOTP_DIGITS 6
#define TOTP_SECRET_LEN 20
/* What a secret may be: RFC 4226 section 4 asks for at least 128 bits; HMAC-SHA1 hashes longer
 * keys first, so more than 64 bytes adds nothing. */
#define TOTP_MIN_SECRET 16
#define TOTP_MAX_SECRET 64
/* The base32 of TOTP_MAX_SECRET bytes without padding, and its NUL. */
#define TOTP_MAX_SECRET_B32 104
/* The longest text totp_qr_svg() and totp_qr_path() take. */
#define TOTP_QR_MAX_TEXT 1024

/* The base32 length of n bytes: padded to a multiple of 8 with '=', or not. */
size_t totp_base32_len(size_t n, bool pad);
/*
 * Writes the base32 of the n bytes at in, and a NUL, into out (outlen bytes). Returns the
 * length written (without the NUL), or -1 if out is too small.
 */
ssize_t totp_base32_encode(const unsigned char *in, size_t n, bool pad, char *out, size_t outlen);
/*
 * Decodes the len characters at in: upper-case RFC 4648 base32, with its '=' padding or
 * without it (but not a part of it). Non-canonical text (a length no encoding has, bits set
 * beyond the last byte) is refused, so that a secret has one spelling. Returns the number of
 * bytes written to out, or -1 if in is not base32 or out (outlen bytes) is too small.
 */
ssize_t totp_base32_decode(const char *in, size_t len, unsigned char *out, size_t outlen);

/*
 * RFC 4226 HOTP: the code for counter under key (1 to TOTP_MAX_SECRET bytes), digits long (6
 * to 8). Returns 0 with *code below 10^digits, or -1 (a bad argument, or OpenSSL failed).
 */
int totp_hotp(const unsigned char *key, size_t keylen, uint64_t counter, unsigned digits,
              uint32_t *code);
/* RFC 6238 4.2: the time step of Unix time t, floor(t / TOTP_PERIOD); 0 before 1970. */
uint64_t totp_step(int64_t t);
/* The TOTP code at Unix time t as digits decimal characters (leading zeros kept) and a NUL, in
 * out (digits + 1 bytes). Returns 0 or -1, as totp_hotp(). */
int totp_code(const unsigned char *key, size_t keylen, int64_t t, unsigned digits, char *out);

enum totp_verdict {
    TOTP_WRONG,    /* no step of the window has this code */
    TOTP_OK,       /* *step is the step it matched: the caller's new last step */
    TOTP_REPLAYED, /* it matches, but only a step at or before last_step: already used */
};

/*
 * Checks code (NUL-terminated; TOTP_DIGITS digits, anything else is wrong) against key at Unix
 * time t: the steps of t - TOTP_PERIOD, t and t + TOTP_PERIOD are all computed and compared in
 * constant time, and only a step after last_step counts (0: none accepted yet). On TOTP_OK,
 * *step is the latest step that matched.
 */
enum totp_verdict totp_verify(const unsigned char *key, size_t keylen, const char *code, int64_t t,
                              uint64_t last_step, uint64_t *step);

/*
 * The otpauth:// URI that enrols secret_b32 for account at issuer in an app:
 *   otpauth://totp/ISSUER:ACCOUNT?secret=...&issuer=ISSUER&algorithm=SHA1&digits=6&period=30
 * with the issuer and the account percent-encoded (all but RFC 3986's unreserved characters).
 * Returns its length, or -1 if it does not fit in out (len bytes, with the NUL).
 */
int totp_uri(const char *issuer, const char *account, const char *secret_b32, char *out,
             size_t len);

/*
 * A QR code of text (at most TOTP_QR_MAX_TEXT bytes) at error correction level M, as the path
 * data of an SVG <path>: one rectangle per run of dark modules in a row, on a grid of *size x
 * *size modules that includes a quiet zone of 4 modules on every side. malloc'd; NULL if text
 * is too long or memory is short.
 */
char *totp_qr_path(const char *text, unsigned *size);
/* The same QR code as a whole SVG document: a white square and the black path on it. malloc'd,
 * or NULL. */
char *totp_qr_svg(const char *text);

#endif
