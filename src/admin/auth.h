/*
 * auth: who may use the admin interface's HTTP listener, and the endpoints that log in and out,
 * change a password and manage API tokens (/api/v1/session, /password, /tokens). The unix socket
 * is trusted by its peer's credentials (admin/server.c) and needs none of this; over HTTP every
 * API request carries either an API token (Authorization: Bearer) or the page's session cookie,
 * and with the cookie, every request that changes something also its CSRF token.
 *
 * A user with a second factor (TOTP, auth/users.h) logs in with a code too, and enrols or
 * removes it at /me/totp. Logins are regulated per client address and per user name
 * (auth/regulate.h); a wrong user, a wrong password and a wrong code get the same answer (after
 * the same work, for the first two), and each counts as a failure. No password, token, secret
 * or code is ever logged.
 */
#ifndef PORTGATE_AUTH_H
#define PORTGATE_AUTH_H

#include <stdbool.h>

#include "admin/api.h"

struct auth;

/* Reads the users file at path (it may not exist yet). NULL when out of memory. */
struct auth *auth_new(const char *users_file);
void auth_free(struct auth *a);
/* The counters of logins and second factors, for /metrics (valid while a lives). */
const struct api_auth_stats *auth_stats(const struct auth *a);

struct auth_request {
    const char *method;
    const char *path;   /* after /api/v1 */
    const char *cookie; /* the headers, or NULL */
    const char *authorization;
    const char *csrf; /* X-CSRF-Token */
    const char *content_type;
    const char *body;
    size_t body_len;
    const char *client; /* the peer's address, for regulation and logs */
    bool local;         /* on the unix socket */
    uint64_t now;       /* seconds, monotonic */
};

/* What auth_handle() decided. */
enum auth_verdict {
    AUTH_ANSWERED, /* rs holds the answer (a login endpoint, or a refusal) */
    AUTH_PASS,     /* the request goes on to the API */
};

/* True if the headers carry a credential: a valid API token, or the cookie of a live session.
 * The server asks before it reads a body, so that only those get to send one (and a login its
 * few bytes). */
bool auth_credentials(struct auth *a, const char *cookie, const char *authorization, uint64_t now);

/*
 * Handles the login endpoints and checks every other API request. set_cookie (len bytes) gets
 * a Set-Cookie header value to send, or stays empty.
 */
enum auth_verdict auth_handle(struct auth *a, const struct auth_request *rq,
                              struct api_response *rs, char *set_cookie, size_t len);

#endif
