/*
 * authhdr: the request headers that carry credentials to the admin interface, parsed. Pure
 * functions over untrusted text (fuzzed): they never read past the string's end, and they
 * refuse what is malformed or longer than the caller's buffer rather than cut it.
 */
#ifndef PORTGATE_AUTHHDR_H
#define PORTGATE_AUTHHDR_H

#include <stddef.h>

/*
 * The value of the cookie called name in a Cookie header ("a=1; portgate_session=xyz"), RFC 6265
 * 4.2.1: pairs separated by "; ", the value optionally in double quotes. The first cookie of
 * that name counts. Returns its length with the value in out (len bytes, NUL-terminated), or -1
 * if there is none, or it is empty or longer than len - 1 bytes.
 */
int authhdr_cookie(const char *header, const char *name, char *out, size_t len);

/* The token of an "Authorization: Bearer TOKEN" header (RFC 6750 2.1: the scheme in any case,
 * one or more spaces, token68 characters). Returns its length with it in out, or -1. */
int authhdr_bearer(const char *header, char *out, size_t len);

#endif
