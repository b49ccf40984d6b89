/*
 * login: the gateway's own login in front of devices (auth = login on http and https mappings).
 * Its users are the admin interface's (the users file, auth/users.h), their passwords are
 * checked by a thread of their own (argon2id takes tens of milliseconds, which a worker must not
 * spend while its other connections wait), failures are regulated per client address and per
 * user name as the admin login's are (auth/regulate.h), and a login makes a session (a random
 * 256-bit id, the cookie LOGIN_COOKIE and the mapping's name) for one mapping, its scope. One
 * service per process, shared by every worker under its locks; the gateway points it at the users
 * file at start and at every reload (login_configure) and stops it last (login_shutdown).
 *
 * A wrong user and a wrong password get the same result after the same work; a ban is said as
 * such (the client learns nothing it did not know: it failed that often). Every login, failure,
 * ban and logout is one log line ("login: ..."), never with a password.
 */
#ifndef PORTGATE_LOGIN_H
#define PORTGATE_LOGIN_H

#include <stdbool.h>
#include <stdint.h>

#include "auth/session.h"
#include "auth/users.h"

/* The session cookie's name is this and the mapping's name: a browser sends a host's cookies to
 * every port of it, so each mapping has its own (and every http mapping removes them all from
 * what its device gets). Not the admin page's: both may be on one host. */
#define LOGIN_COOKIE "portgate_login_"
#define LOGIN_QUEUE_MAX 64 /* checks waiting at most; more are refused as busy */
#define LOGIN_SCOPE_LEN 64 /* a mapping's name */

/* Points the service at the users file (it may not exist yet: nobody can log in then), and
 * starts its thread the first time. Returns 0, or a negative errno (the thread or memory). */
int login_configure(const char *users_file);
/* Stops the thread and frees everything; jobs not done end refused. */
void login_shutdown(void);

enum login_result {
    LOGIN_PENDING, /* not checked yet */
    LOGIN_OK,      /* a session was made: its id is given */
    LOGIN_REFUSED, /* a wrong user or password */
    LOGIN_BANNED,  /* too many failures from that address or for that user: *wait_s */
    LOGIN_BUSY,    /* too many checks waiting, or no users file configured */
};

struct login_job;

/*
 * Starts checking user's password, and code when the user has a second factor (a TOTP code or
 * a recovery code, used up by a good login; "" when none was given), for a login to scope (a
 * mapping's name) from client (its address, for regulation and the log). allowed lists the
 * users scope lets in (commas between; "": all): another user's login fails as a wrong one
 * does, after the same work, and uses up no code. A wrong user, password or code are one
 * result, and one failure. The job copies what it needs and wipes the password and code once
 * checked. Returns NULL when out of memory.
 */
struct login_job *login_start(const char *user, const char *password, const char *code,
                              const char *client, const char *scope, const char *allowed);
/* The job's result; with LOGIN_OK the new session's id in id, with LOGIN_BANNED the seconds to
 * wait in *wait_s. Any thread. */
enum login_result login_poll(struct login_job *j, char id[SESSION_IDLEN + 1], uint64_t *wait_s);
/* Drops the caller's hold on the job, once its result is taken. */
void login_job_free(struct login_job *j);
/* The same for a client that left, its job done or not: a session the job made, or makes
 * still, is ended, since nobody will use it. NULL is a no-op. */
void login_job_abandon(struct login_job *j);

/* True if id (a cookie's value) is a live session for scope of a user who still has the
 * password it logged in with; its user is then copied to user, and its idle time starts again. */
bool login_session(const char *id, const char *scope, char user[USERS_NAMELEN]);
/* Ends session id (logout), logged with who and from where; a no-op if there is none. */
void login_logout(const char *id, const char *client);
/* Ends session id of scope without a log line: the connection it was made for has closed. */
void login_session_end(const char *id, const char *scope);

/*
 * Players (auth = login on rtsps): an RTSP player logs in with Basic or Digest (message/digest.h)
 * on each connection, whose session then lasts as long as it (login_session_end()).
 * login_start_player() checks answer a as login_start() checks a password: Basic against the
 * password, Digest against the user's Digest keys (auth/users.h; method is the request's) with
 * the same work for a user without them, who is refused (the log says how to make them). A user
 * with a second factor is refused: a player cannot give a code, and a password alone must not
 * get past it. The caller checks a Digest answer's nonce first (login_nonce_check()).
 */
struct login_job *login_start_player(const struct digest_answer *a, const char *method,
                                     const char *client, const char *scope, const char *allowed);

/* Digest nonces: the time they were made and a MAC of it, the scope and the connection's key
 * (LOGIN_CONN_KEY random bytes it keeps), under a key made at start, base64url; good for
 * LOGIN_NONCE_TTL_S seconds, on their connection only: an answer seen elsewhere (a player's
 * debug log) logs in nowhere else. */
#define LOGIN_NONCE_LEN 32
#define LOGIN_NONCE_TTL_S 300
#define LOGIN_CONN_KEY 16
void login_nonce(const char *scope, const unsigned char conn[LOGIN_CONN_KEY],
                 char nonce[LOGIN_NONCE_LEN + 1]);
/* 1: a fresh nonce of this scope and connection; 0: one of theirs, but stale (the player
 * answers again with a new one); -1: none of theirs. */
int login_nonce_check(const char *nonce, const char *scope,
                      const unsigned char conn[LOGIN_CONN_KEY]);
/* The same at the time now (seconds of the monotonic clock), for tests. */
void login_nonce_at(const char *scope, const unsigned char conn[LOGIN_CONN_KEY], uint64_t now,
                    char nonce[LOGIN_NONCE_LEN + 1]);
int login_nonce_check_at(const char *nonce, const char *scope,
                         const unsigned char conn[LOGIN_CONN_KEY], uint64_t now);

#endif
