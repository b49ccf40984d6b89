#include "auth/session.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

struct sessions {
    struct session *v;
    size_t n;
};

struct sessions *sessions_new(void)
{
    struct sessions *s = calloc(1, sizeof(*s));
    if (s != NULL) {
        s->v = calloc(SESSION_MAX, sizeof(*s->v));
        if (s->v == NULL) {
            free(s);
            return NULL;
        }
    }
    return s;
}

void sessions_free(struct sessions *s)
{
    if (s != NULL) {
        sodium_memzero(s->v, SESSION_MAX * sizeof(*s->v));
        free(s->v);
        free(s);
    }
}

static void random_id(char *out)
{
    unsigned char raw[32];
    randombytes_buf(raw, sizeof(raw));
    sodium_bin2base64(out, SESSION_IDLEN + 1, raw, sizeof(raw),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(raw, sizeof(raw));
}

static bool live(const struct session *se, uint64_t now)
{
    return now - se->last < SESSION_IDLE_S && now - se->created < SESSION_MAX_AGE_S;
}

static void drop(struct sessions *s, size_t i)
{
    s->v[i] = s->v[--s->n];
    sodium_memzero(&s->v[s->n], sizeof(s->v[0]));
}

struct session *sessions_create(struct sessions *s, const char *user,
                                const unsigned char stamp[USERS_STAMP_LEN], uint64_t now)
{
    for (size_t i = s->n; i-- > 0;) {
        if (!live(&s->v[i], now)) {
            drop(s, i);
        }
    }
    if (s->n == SESSION_MAX) {
        size_t oldest = 0;
        for (size_t i = 1; i < s->n; i++) {
            if (s->v[i].last < s->v[oldest].last) {
                oldest = i;
            }
        }
        drop(s, oldest);
    }
    struct session *se = &s->v[s->n++];
    random_id(se->id);
    random_id(se->csrf);
    snprintf(se->user, sizeof(se->user), "%s", user);
    memcpy(se->stamp, stamp, USERS_STAMP_LEN);
    se->created = se->last = now;
    return se;
}

/* Index of the session with id, compared in constant time against every one; or -1. */
static ssize_t lookup(const struct sessions *s, const char *id)
{
    if (strlen(id) != SESSION_IDLEN) {
        return -1;
    }
    ssize_t found = -1;
    for (size_t i = 0; i < s->n; i++) {
        if (sodium_memcmp(s->v[i].id, id, SESSION_IDLEN) == 0) {
            found = (ssize_t)i;
        }
    }
    return found;
}

struct session *sessions_find(struct sessions *s, const char *id, uint64_t now)
{
    ssize_t i = lookup(s, id);
    if (i < 0) {
        return NULL;
    }
    if (!live(&s->v[i], now)) {
        drop(s, (size_t)i);
        return NULL;
    }
    s->v[i].last = now;
    return &s->v[i];
}

void sessions_end(struct sessions *s, const char *id)
{
    ssize_t i = lookup(s, id);
    if (i >= 0) {
        drop(s, (size_t)i);
    }
}

void sessions_end_user(struct sessions *s, const char *user, const struct session *keep)
{
    char keep_id[SESSION_IDLEN + 1] = "";
    if (keep != NULL) {
        snprintf(keep_id, sizeof(keep_id), "%s", keep->id);
    }
    for (size_t i = s->n; i-- > 0;) {
        if (strcmp(s->v[i].user, user) == 0 && strcmp(s->v[i].id, keep_id) != 0) {
            drop(s, i);
        }
    }
}

bool session_csrf_ok(const struct session *se, const char *header)
{
    return header != NULL && strlen(header) == SESSION_IDLEN &&
           sodium_memcmp(se->csrf, header, SESSION_IDLEN) == 0;
}
