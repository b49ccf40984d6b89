/*
 * http_login: what the gateway's login in front of a device (auth = login) says over HTTP: its
 * pages (the login form, the logout button), its answers (the redirect to the login page, the
 * cookie of a new session, its end), and the form's fields read from a request body. Pure
 * functions over buffers: the filter (http_proxy.c) decides when to answer with them, and
 * auth/login.h checks the passwords and keeps the sessions.
 *
 * The gateway's own paths are under HTTP_LOGIN_PREFIX, which a device behind auth = login never
 * sees. Every page is text/html with a Content-Security-Policy that allows nothing but its own
 * form and inline style, is never cached, and may not be framed.
 */
#ifndef PORTGATE_HTTP_LOGIN_H
#define PORTGATE_HTTP_LOGIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_LOGIN_PREFIX "/.portgate/"
#define HTTP_LOGIN_PAGE "/.portgate/login"
#define HTTP_LOGOUT_PAGE "/.portgate/logout"
#define HTTP_LOGIN_FORM_MAX 4096 /* a login form's body at most */
#define HTTP_LOGIN_NEXT_MAX 512  /* the path to go back to after the login */
#define HTTP_LOGIN_ANSWER_MAX 8192

/* The value of field key in an application/x-www-form-urlencoded body (body[0..n)): '+' is a
 * space and %XX a byte; the first field of that name counts. Returns its length with the value
 * in out (NUL-terminated), or -1 when there is none, it is longer than len - 1 bytes, or it is
 * malformed (a bad %, a NUL or a control character once decoded). */
int http_form_get(const char *body, size_t n, const char *key, char *out, size_t len);

/* target (n bytes) if it is a path of this host to go back to after the login ("/x?y": one '/'
 * first, no '\', no control character or space, at most HTTP_LOGIN_NEXT_MAX bytes), else "/".
 * Writes it NUL-terminated to out (HTTP_LOGIN_NEXT_MAX + 1 bytes). */
void http_login_next(const char *target, size_t n, char *out);

/* The login page's next from its request target's query (?next=/path), as http_login_next()
 * checks it, or "/". */
void http_login_query_next(const char *target, size_t n, char *next);

/* What the filter answers (each returns the answer's length in out, len at least
 * HTTP_LOGIN_ANSWER_MAX; close: with Connection: close): */
/* the login page (200; error: a line above the form, or NULL; status 200, or 429 when banned,
 * 403 when the user may not use the mapping); head: no body. */
size_t http_login_page(char *out, size_t len, int status, const char *mapname, const char *next,
                       const char *error, bool head, bool close);
/* a request without a session: 303 to the login page with next (GET, HEAD), or 401 (others) */
size_t http_login_needed(char *out, size_t len, bool get, bool head, const char *target,
                         size_t tlen, bool close);
/* a login to mapname that made session id: 303 to next, with the cookie (Secure when tls) */
size_t http_login_done(char *out, size_t len, const char *mapname, const char *id, const char *next,
                       bool tls, bool close);
/* the logout page (GET: a button), or after a logout (POST): 303 to the login page, the cookie
 * expired; who: the user logged in, or "" */
size_t http_logout_page(char *out, size_t len, const char *mapname, bool post, const char *who,
                        bool tls, bool head, bool close);
/* a path under HTTP_LOGIN_PREFIX that is none of the above: 404 */
size_t http_login_unknown(char *out, size_t len, bool head, bool close);

#endif
