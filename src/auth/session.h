/*
 * session: the web page's login sessions, kept in the gateway's memory (a restart logs everyone
 * out). A session is named by a random 256-bit id, sent as the HttpOnly, SameSite=Strict cookie
 * SESSION_COOKIE, and carries a random CSRF token that the page sends back in the
 * X-CSRF-Token header of every request that changes something. Both are compared in constant
 * time. A session ends at logout, after SESSION_IDLE_S seconds unused, or SESSION_MAX_AGE_S
 * after the login; at most SESSION_MAX are open, the one unused the longest making room.
 */
#ifndef PORTGATE_SESSION_H
#define PORTGATE_SESSION_H

#include <stdbool.h>
#include <stdint.h>

#include "auth/users.h"

#define SESSION_COOKIE "portgate_session"
#define SESSION_IDLE_S 1800
#define SESSION_MAX_AGE_S 43200
#define SESSION_MAX 1024
/* base64url of 32 bytes, without padding */
#define SESSION_IDLEN 43

struct session {
    char id[SESSION_IDLEN + 1];
    char csrf[SESSION_IDLEN + 1];
    char user[USERS_NAMELEN];
    unsigned char stamp[USERS_STAMP_LEN]; /* users_stamp() at the login */
    uint64_t created, last;               /* seconds, monotonic */
    /* A second factor being enrolled: its secret in base32 until it is confirmed (empty: none),
     * and when it was made. Wiped with the session. */
    char totp_pending[USERS_TOTP_SECRET_B32 + 1];
    uint64_t totp_pending_at;
};

struct sessions;

struct sessions *sessions_new(void);
void sessions_free(struct sessions *s);
/* A new session for user, whose password has the stamp given (users_stamp()). Pointers to
 * sessions are valid until the next call that makes or ends one. */
struct session *sessions_create(struct sessions *s, const char *user,
                                const unsigned char stamp[USERS_STAMP_LEN], uint64_t now);
/* The live session whose id is id (its last use becomes now), or NULL. */
struct session *sessions_find(struct sessions *s, const char *id, uint64_t now);
/* Ends the session id (logout); a no-op if there is none. */
void sessions_end(struct sessions *s, const char *id);
/* Ends every session of user but keep (which may be NULL): after a password change. */
void sessions_end_user(struct sessions *s, const char *user, const struct session *keep);
/* True if header (X-CSRF-Token, may be NULL) is se's CSRF token. */
bool session_csrf_ok(const struct session *se, const char *header);

#endif
