/*
 * digest: the gateway as an HTTP or RTSP client of a device's own authentication (device-auth):
 * a WWW-Authenticate challenge read, and the Authorization that answers it, by Basic (RFC 7617)
 * or Digest (RFC 7616: MD5 or SHA-256, qop=auth or none, as RTSP devices still use). Pure
 * functions over buffers, but for the client nonce, which is random.
 *
 * Limits: a realm, nonce and opaque of at most DIGEST_FIELD_MAX - 1 bytes each; a challenge
 * that exceeds them, repeats a parameter, or offers only what is not supported (qop=auth-int
 * alone, an unknown or -sess algorithm, userhash=true, another scheme) is refused with the
 * reason.
 */
#ifndef PORTGATE_DIGEST_H
#define PORTGATE_DIGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DIGEST_FIELD_MAX 256
/* The Authorization values a buffer of this size holds: any but those for a request URI of
 * kilobytes (with a realm, nonce and opaque of DIGEST_FIELD_MAX bytes all escaped, 1.5 KiB is
 * taken before the URI). */
#define DIGEST_CRED_MAX 4096

enum digest_scheme { DIGEST_NONE, DIGEST_BASIC, DIGEST_MD5, DIGEST_SHA256 };

struct digest_challenge {
    enum digest_scheme scheme;
    bool qop_auth; /* qop=auth offered (else the RFC 2069 form: no qop, nc or cnonce) */
    bool stale;    /* the nonce expired, the credentials were right: answer again */
    char realm[DIGEST_FIELD_MAX];
    char nonce[DIGEST_FIELD_MAX];
    char opaque[DIGEST_FIELD_MAX]; /* "" when none was given */
    bool has_opaque;
};

/* The device's login, as the device-auth key gives it: "USER:PASSWORD" written in the
 * configuration (no spaces), or "file:/ABSOLUTE/PATH" of a file that holds USER:PASSWORD on one
 * line (and must not be readable by every user). Plain data (forward/proto.h: a protocol's
 * settings). */
struct digest_login {
    char user[128];
    char password[256];
    char file[256]; /* the file it came from, or "" */
};

/* Reads a device-auth value into l ("" or "off": none, user[0] == '\0'). The file form reads
 * the file now: a reload reads it again. Returns 0, or -1 with "\"VALUE\": what is wrong" in
 * why (never the password). */
int digest_login_set(struct digest_login *l, const char *val, char *why, size_t whylen);
/* Writes the value back as digest_login_set() takes it: "file:PATH" or "USER:PASSWORD". */
void digest_login_format(const struct digest_login *l, char *buf, size_t len);

/* Reads one WWW-Authenticate value (value, n bytes: one challenge; several comma-separated
 * challenges in one value are read up to the first that parses). Returns 0 with *c filled, or -1
 * with a static reason in *why. */
int digest_parse(const char *value, size_t n, struct digest_challenge *c, const char **why);

/* True if a is a better choice than b among a device's challenges: SHA-256 Digest over MD5
 * Digest over Basic. */
bool digest_better(const struct digest_challenge *a, const struct digest_challenge *b);

/*
 * Writes the Authorization value ("Basic ..." or "Digest username=...") that answers c for the
 * request method and uri (as sent on the request line), as user with password, the nc-th use
 * of c's nonce (from 1). Returns its length, or 0 when it would not fit len bytes (see
 * DIGEST_CRED_MAX) or user has a ':' that Basic cannot carry.
 */
size_t digest_credentials(const struct digest_challenge *c, const char *user, const char *password,
                          const char *method, size_t mlen, const char *uri, size_t ulen,
                          uint32_t nc, char *out, size_t len);

/* As digest_credentials(), with the client nonce given (for tests against known answers). */
size_t digest_credentials_cnonce(const struct digest_challenge *c, const char *user,
                                 const char *password, const char *method, size_t mlen,
                                 const char *uri, size_t ulen, uint32_t nc, const char *cnonce,
                                 char *out, size_t len);

/* ---- the gateway as the server: a player's credentials (auth = login on rtsps) ---- */

#define DIGEST_PASSWORD_MAX 1024 /* of a Basic password */
#define DIGEST_URI_MAX 1024      /* of a Digest answer's uri */
/* The WWW-Authenticate lines digest_challenges_write() makes fit this (a realm and a nonce of
 * at most 64 bytes each). */
#define DIGEST_CHALLENGES_MAX 384

/*
 * A client's Authorization, read: Basic (RFC 7617: user and password) or Digest (RFC 7616: MD5
 * or SHA-256, qop=auth or the RFC 2069 form without qop, as live555 players send). Refused:
 * another scheme, a -sess algorithm, userhash, username*, qop=auth-int, a parameter given twice
 * or missing, a Basic user or password with a control character, anything over its field's size.
 */
struct digest_answer {
    enum digest_scheme scheme;
    char user[DIGEST_FIELD_MAX];
    char password[DIGEST_PASSWORD_MAX + 1]; /* Basic */
    /* Digest */
    char realm[DIGEST_FIELD_MAX];
    char nonce[DIGEST_FIELD_MAX];
    char uri[DIGEST_URI_MAX];
    char response[65]; /* lower-case hex, as long as the algorithm's digest */
    char cnonce[DIGEST_FIELD_MAX];
    char nc[9]; /* 8 hex digits */
    bool qop_auth;
};

/* Reads an Authorization value (n bytes) into a. Returns 0, or -1 with a static reason in *why
 * (never a password). */
int digest_answer_parse(const char *value, size_t n, struct digest_answer *a, const char **why);

/* The hex of H(user:realm:password) by scheme s (DIGEST_MD5 or DIGEST_SHA256): what a server
 * keeps to check Digest answers without the password (and as good as the password to anyone who
 * reads it, for that realm). */
void digest_ha1(enum digest_scheme s, const char *user, const char *realm, const char *password,
                char hex[65]);

/* True if Digest answer a, to a request of method (mlen bytes), carries the response that ha1
 * (digest_ha1()'s hex for a's scheme) gives. Compared in constant time. */
bool digest_answer_ok(const struct digest_answer *a, const char *ha1, const char *method,
                      size_t mlen);

/*
 * Writes the challenges a server offers into out (len bytes), as header lines each ending in
 * CRLF: Digest SHA-256, Digest MD5 (both qop="auth", with nonce, stale=true when asked), then
 * Basic, all for realm. Players that understand one Digest take the last (ffmpeg, live555): MD5,
 * which all of them know. Returns the length, or 0 if it does not fit.
 */
size_t digest_challenges_write(char *out, size_t len, const char *realm, const char *nonce,
                               bool stale);

#endif
