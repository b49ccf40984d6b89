/*
 * users: the admin interface's users and API tokens, kept in the users file (gateway key
 * users-file). One entry per line, '#' starts a comment:
 *
 *   user NAME $argon2id$v=19$m=65536,t=2,p=1$...       a password, hashed with argon2id
 *   token NAME HASH CREATED                            an API token: BLAKE2b-256 of it, in hex,
 *                                                      and the Unix time it was made
 *
 * Passwords are hashed with libsodium's crypto_pwhash_str (argon2id, the "interactive" limits).
 * A token is 32 random bytes, shown once as "pgt_" and 43 base64url characters; only its hash is
 * kept, which is enough since it cannot be guessed (no slow hash needed), and it is compared in
 * constant time.
 *
 * The gateway reads the file again whenever it changed (users_refresh()); `portgate passwd` and
 * `portgate token` rewrite it whole (a temporary file and a rename, under a lock on its
 * directory), as does the gateway when a user changes a password or makes a token on the page,
 * so that neither loses the other's change. The file is mode 0600 and stays its owner's: run as
 * root, the commands give the new file the owner of the old one, or of the directory for a new
 * one (the state directory, which a service's user owns), so the gateway can still read and
 * rewrite it. Its directory is made (0750) if missing.
 */
#ifndef PORTGATE_USERS_H
#define PORTGATE_USERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define USERS_NAMELEN 64
#define USERS_MIN_PASSWORD 8
#define USERS_MAX_PASSWORD 1024
#define USERS_MAX_ENTRIES 10000
/* "pgt_" + base64url of 32 bytes, without padding. */
#define USERS_TOKEN_LEN 47

struct users;

/* The users file at path, read now (missing: no users yet). Returns NULL when out of memory;
 * otherwise check users_error(). */
struct users *users_open(const char *path);
void users_free(struct users *u);
/* Reads the file again if it changed since it was read (its inode, size or time); a file that
 * no longer parses is reported (logged once) and the entries read before are kept. */
void users_refresh(struct users *u);
/* Why the file could not be read, or NULL. */
const char *users_error(const struct users *u);
/* True if at least one user has a password. */
bool users_any(const struct users *u);

/*
 * Checks a user's password. The time it takes does not say whether the user exists: an unknown
 * user is checked against a hash of the same cost. Returns true on a match.
 */
bool users_check_password(const struct users *u, const char *user, const char *password);
/* Computes the hash an unknown user is checked against now, rather than at the first unknown
 * user's login (whose answer would then take twice as long). */
void users_prepare(void);
/* True if user has a password in the file. */
bool users_exists(const struct users *u, const char *user);
/* A digest of user's password hash (false if the user is gone): a session made at a login
 * keeps it, and ends when it no longer matches (the password was changed, by any means). */
#define USERS_STAMP_LEN 16
bool users_stamp(const struct users *u, const char *user, unsigned char stamp[USERS_STAMP_LEN]);
/* The name of the token given (a "pgt_..." string), or NULL if it is none of the file's. */
const char *users_check_token(const struct users *u, const char *token);

/* The tokens, for listing: calls fn with each name and the time it was made. */
void users_each_token(const struct users *u,
                      void (*fn)(void *arg, const char *name, int64_t created), void *arg);

/* Valid user and token names: 1 to 63 letters, digits, '.', '_', '-' or '@'. */
bool users_valid_name(const char *name);

/*
 * Changes to the file at path, each under its lock, atomically. Return 0, or a negative errno
 * with a reason in err: -EINVAL (a bad name or password), -EEXIST (a token of that name
 * exists), -ENOENT (no token of that name), -EIO (the file could not be read or written).
 * users_set_password() adds the user or changes its password (at least USERS_MIN_PASSWORD
 * characters); users_token_create() makes a token named name (which must be new) and writes it
 * into token (USERS_TOKEN_LEN + 1 bytes); users_token_revoke() removes one (-1 if none has that
 * name).
 */
int users_set_password(const char *path, const char *user, const char *password, char *err,
                       size_t errlen);
int users_token_create(const char *path, const char *name, char *token, char *err, size_t errlen);
int users_token_revoke(const char *path, const char *name, char *err, size_t errlen);

/* Parses the file's text (for tests and fuzzing). Returns NULL when out of memory; a parse
 * error is in users_error(). */
struct users *users_parse(const char *source, const char *buf, size_t len);

#endif
