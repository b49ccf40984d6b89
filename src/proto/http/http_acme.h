/*
 * http_acme: ACME HTTP-01 challenges (RFC 8555 8.3) answered from a webroot (acme-webroot), the
 * directory an ACME client writes its key authorizations into as
 * DIR/.well-known/acme-challenge/TOKEN (certbot --webroot -w DIR, lego --http.webroot DIR).
 * The HTTP filter (http_proxy.c) asks http_acme_target() of each request and answers a challenge
 * itself with what http_acme_read() finds; the device never sees one.
 * The first two functions are pure; http_acme_read() reads one small file and keeps nothing. It
 * runs on the worker's thread: a handful of syscalls on a local directory, a few times for each
 * certificate issued, which is not worth a thread of its own.
 */
#ifndef PORTGATE_HTTP_ACME_H
#define PORTGATE_HTTP_ACME_H

#include <stdbool.h>
#include <stddef.h>

#define HTTP_ACME_PREFIX "/.well-known/acme-challenge/"
#define HTTP_ACME_TOKEN_MAX 128 /* a token's characters at most (Let's Encrypt's are 43) */
#define HTTP_ACME_FILE_MAX 4096 /* a key authorization is a token, '.', and a 43-byte digest */

/* True if the request target (origin form, target[0..n)) is under HTTP_ACME_PREFIX: a request
 * the gateway answers itself when the mapping has an acme-webroot. */
bool http_acme_target(const char *target, size_t n);

/* Copies the token of a challenge target (http_acme_target() true) into token, NUL-terminated,
 * and returns true if it is one: 1 to HTTP_ACME_TOKEN_MAX base64url characters [A-Za-z0-9_-]
 * (RFC 8555 8.1), nothing else (no dot, slash, '%' or query). Else token is "" and false. */
bool http_acme_token(const char *target, size_t n, char token[HTTP_ACME_TOKEN_MAX + 1]);

/*
 * Reads webroot/.well-known/acme-challenge/token (token as http_acme_token() gives it) into
 * *body (malloc'd, the caller frees it; NULL unless 200) and *len. No component below webroot
 * may be a symbolic link (O_NOFOLLOW, each directory opened from the one before with openat),
 * the file must be a regular one of at most HTTP_ACME_FILE_MAX bytes, and its open never blocks
 * (O_NONBLOCK: a FIFO is refused, not waited on). Returns the status to answer: 200; 404 when
 * there is no such token or what is there is a link or no regular file; 500 when the file is
 * too large or cannot be read (the webroot gone, permissions). *why says why for every status
 * but 200, for the log.
 */
int http_acme_read(const char *webroot, const char *token, char **body, size_t *len, char *why,
                   size_t whylen);

#endif
