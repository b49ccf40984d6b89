/*
 * users: the admin interface's users and API tokens, kept in the users file (gateway key
 * users-file). One entry per line, '#' starts a comment:
 *
 *   user NAME $argon2id$v=19$m=65536,t=2,p=1$...       a password, hashed with argon2id
 *   digest NAME MD5 SHA256 BOUND                       the user's keys for players' Digest
 *                                                      logins (H(NAME:portgate:PASSWORD), by
 *                                                      MD5 and SHA-256, in hex), and a BLAKE2b
 *                                                      of the hash they were made with (keys
 *                                                      of another one count as none); only
 *                                                      for users made with passwd --digest
 *   token NAME HASH CREATED                            an API token: BLAKE2b-256 of it, in hex,
 *                                                      and the Unix time it was made
 *   totp NAME SECRET LASTSTEP                          the user's second factor (auth/totp.h):
 *                                                      its secret in base32, and the last time
 *                                                      step a code was accepted for (0: none)
 *   recovery NAME HASH...                              the user's unused recovery codes, 1 to 10:
 *                                                      a BLAKE2b-256 of each, in hex
 *
 * A digest or totp line follows its user's line, and a recovery line its totp line.
 * A Digest key is as good as the password for logging in (RFC 7616 5.2), and a fast hash: one
 * who reads the file can try passwords against it at MD5's speed, not argon2id's. So the keys are
 * kept only for the users who need them (RTSP players, which do Digest: auth = login on rtsps),
 * and follow every change of the password (users_set_password()).
 * Passwords are hashed with libsodium's crypto_pwhash_str (argon2id, the "interactive" limits).
 * A token is 32 random bytes, shown once as "pgt_" and 43 base64url characters; only its hash is
 * kept, which is enough since it cannot be guessed (no slow hash needed), and it is compared in
 * constant time.
 *
 * The gateway reads the file again whenever it changed (users_refresh()); `portgate passwd` and
 * `portgate token` rewrite it whole (a temporary file and a rename, under a lock on its
 * directory), as does the gateway when a user changes a password or makes a token on the page,
 * so that neither loses the other's change (a password change keeps the second factor). The
 * TOTP secrets are in the file as they are (a code cannot be checked without one), which is one
 * more reason for its mode. The file is mode 0600 and stays its owner's: run as
 * root, the commands give the new file the owner of the old one, or of the directory for a new
 * one (the state directory, which a service's user owns), so the gateway can still read and
 * rewrite it. Its directory is made (0750) if missing.
 */
#ifndef PORTGATE_USERS_H
#define PORTGATE_USERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "message/digest.h"

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
/* A digest of user's password hash and TOTP secret (false if the user is gone): a session made
 * at a login keeps it, and ends when it no longer matches (the password was changed, or the
 * second factor turned on or off, by any means). A code used up changes nothing here. */
#define USERS_STAMP_LEN 16
bool users_stamp(const struct users *u, const char *user, unsigned char stamp[USERS_STAMP_LEN]);
/* The realm of the Digest keys: what players are told, and part of what they hash. */
#define USERS_DIGEST_REALM "portgate"
/* True if user has Digest keys. */
bool users_digest_enabled(const struct users *u, const char *user);
/* Checks Digest answer a, to a request of method (mlen bytes), against its user's key for its
 * algorithm, in constant time. A user without keys (or no user) is checked against a random key,
 * so the work is the same. Returns 1 on a match, 0 on none, -ENOENT when the user has no keys. */
int users_check_digest(const struct users *u, const struct digest_answer *a, const char *method,
                       size_t mlen);

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
 * characters), and makes its Digest keys from it (USERS_DIGEST_ON), removes them
 * (USERS_DIGEST_OFF), or makes them again only if it had them (USERS_DIGEST_KEEP);
 * users_token_create() makes a token named name (which must be new) and writes it into token
 * (USERS_TOKEN_LEN + 1 bytes); users_token_revoke() removes one (-1 if none has that name).
 */
enum users_digest { USERS_DIGEST_KEEP, USERS_DIGEST_ON, USERS_DIGEST_OFF };
int users_set_password(const char *path, const char *user, const char *password,
                       enum users_digest digest, char *err, size_t errlen);
int users_token_create(const char *path, const char *name, char *token, char *err, size_t errlen);
int users_token_revoke(const char *path, const char *name, char *err, size_t errlen);

/*
 * A second factor: TOTP (auth/totp.h), enrolled from the admin page, and recovery codes for the
 * day the phone is lost. A recovery code is USERS_RECOVERY_LEN base32 characters (50 random
 * bits), shown once when TOTP is turned on; the file keeps a BLAKE2b-256 hash of each (a fast
 * hash is enough for so many random bits, as for tokens), and each works once. A code is
 * typed in any case, with spaces or dashes.
 */
#define USERS_RECOVERY_CODES 10
#define USERS_RECOVERY_LEN 10
/* The base32 of a new TOTP secret (TOTP_SECRET_LEN bytes), without padding. */
#define USERS_TOTP_SECRET_B32 32
/* The longest code taken, spaces and dashes included; a longer one is wrong. */
#define USERS_MAX_CODE 64

/* True if user has a second factor. */
bool users_totp_enabled(const struct users *u, const char *user);
/* How many recovery codes user has left. */
unsigned users_recovery_left(const struct users *u, const char *user);

/* What users_second_factor() accepted. */
enum users_factor {
    USERS_FACTOR_TOTP = 1, /* a TOTP code */
    USERS_FACTOR_RECOVERY, /* a recovery code, now used up */
};

/*
 * Checks code, a TOTP code or a recovery code of user, at Unix time now. u is the users as
 * read (users_refresh() first): a code that matches nothing there is wrong at once, with no
 * lock taken and no file read. A code that matches is checked again under the file's lock,
 * against the file as it is then, and used up there, atomically: a TOTP code's step becomes
 * the user's last one (a code, or an earlier one, never works twice), a recovery code is
 * removed. Everything secret is compared in constant time. Returns USERS_FACTOR_TOTP or
 * USERS_FACTOR_RECOVERY; 0 for a wrong code; -EALREADY for a TOTP code that was right but is
 * used already (a replay); -ENOENT if user has no second factor (or no such user); -EIO if the
 * file could not be read or written. err says why, for the log (never the code).
 */
int users_second_factor(const char *path, const struct users *u, const char *user, const char *code,
                        int64_t now, char *err, size_t errlen);
/* The same, as a yes or no: true if users_second_factor() accepted the code. */
bool users_check_second_factor(const char *path, const struct users *u, const char *user,
                               const char *code, int64_t now, char *err, size_t errlen);

/*
 * The first half of an enrolment: a new random secret for user, in base32 (no padding) in
 * secret, which changes nothing yet: the caller keeps it (and shows it, as an otpauth:// URI
 * made by totp_uri()) until users_totp_confirm(). Returns 0, -ENOENT (no such user) or -EEXIST
 * (user has a second factor already: disable it first), with err set.
 */
int users_totp_begin(const struct users *u, const char *user,
                     char secret[USERS_TOTP_SECRET_B32 + 1], char *err, size_t errlen);
/*
 * The second half: if code is secret's TOTP code at Unix time now (the app has the secret
 * right), turns the second factor on for user, in the file at path under its lock, with that
 * code's step used up, and USERS_RECOVERY_CODES new recovery codes, written into recovery (to
 * show once; only their hashes are kept). Returns 0, -EACCES (a wrong code), -EINVAL (secret
 * is not a base32 secret of TOTP_MIN_SECRET to TOTP_MAX_SECRET bytes), -ENOENT (no such user),
 * -EEXIST (it has a second factor already), -EIO; err says why.
 */
int users_totp_confirm(const char *path, const char *user, const char *secret, const char *code,
                       int64_t now, char recovery[USERS_RECOVERY_CODES][USERS_RECOVERY_LEN + 1],
                       char *err, size_t errlen);
/* Turns user's second factor off, its recovery codes with it. The caller has checked that the
 * user may (a password or a code). Returns 0, -ENOENT (none to turn off), -EIO. */
int users_totp_disable(const char *path, const char *user, char *err, size_t errlen);

/* Parses the file's text (for tests and fuzzing). Returns NULL when out of memory; a parse
 * error is in users_error(). */
struct users *users_parse(const char *source, const char *buf, size_t len);

#endif
