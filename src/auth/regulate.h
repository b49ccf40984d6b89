/*
 * regulate: brute-force regulation of logins, as Authelia's: failures are counted per key (a
 * client address, a user name), and a key with REGULATE_MAX_FAILURES failures within
 * REGULATE_WINDOW_S seconds is refused for REGULATE_BAN_S seconds, whatever the password. A user
 * name is counted whether it exists or not, so a ban says nothing about which names exist. The
 * table holds at most REGULATE_MAX_KEYS keys; when full, the one left alone the longest goes.
 * Times are seconds on any clock that does not go back.
 */
#ifndef PORTGATE_REGULATE_H
#define PORTGATE_REGULATE_H

#include <stdbool.h>
#include <stdint.h>

#define REGULATE_MAX_FAILURES 5
#define REGULATE_WINDOW_S 300
#define REGULATE_BAN_S 900
#define REGULATE_MAX_KEYS 4096
#define REGULATE_KEYLEN 80

struct regulate;

struct regulate *regulate_new(void);
void regulate_free(struct regulate *r);
/* True if key is refused now; *left is then the seconds until it is not. */
bool regulate_banned(const struct regulate *r, const char *key, uint64_t now, uint64_t *left);
/* Counts a failure for key. Returns true when this one starts a ban (for one log line). */
bool regulate_fail(struct regulate *r, const char *key, uint64_t now);
/* A success: key's failures are forgotten. */
void regulate_success(struct regulate *r, const char *key);

#endif
