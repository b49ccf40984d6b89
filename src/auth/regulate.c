#include "auth/regulate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct slot {
    char key[REGULATE_KEYLEN];
    unsigned failures;
    uint64_t window_start, banned_until, last;
};

struct regulate {
    struct slot *v;
    size_t n;
};

struct regulate *regulate_new(void)
{
    struct regulate *r = calloc(1, sizeof(*r));
    if (r != NULL) {
        r->v = calloc(REGULATE_MAX_KEYS, sizeof(*r->v));
        if (r->v == NULL) {
            free(r);
            return NULL;
        }
    }
    return r;
}

void regulate_free(struct regulate *r)
{
    if (r != NULL) {
        free(r->v);
        free(r);
    }
}

static struct slot *find(const struct regulate *r, const char *key)
{
    for (size_t i = 0; i < r->n; i++) {
        if (strncmp(r->v[i].key, key, REGULATE_KEYLEN - 1) == 0) {
            return &r->v[i];
        }
    }
    return NULL;
}

bool regulate_banned(const struct regulate *r, const char *key, uint64_t now, uint64_t *left)
{
    const struct slot *s = find(r, key);
    if (s == NULL || s->banned_until <= now) {
        return false;
    }
    *left = s->banned_until - now;
    return true;
}

bool regulate_fail(struct regulate *r, const char *key, uint64_t now)
{
    struct slot *s = find(r, key);
    if (s == NULL) {
        if (r->n < REGULATE_MAX_KEYS) {
            s = &r->v[r->n++];
        } else {
            /* Full: the key left alone the longest makes room, a banned one last. */
            s = &r->v[0];
            for (size_t i = 1; i < r->n; i++) {
                bool a = r->v[i].banned_until > now, b = s->banned_until > now;
                if (a < b || (a == b && r->v[i].last < s->last)) {
                    s = &r->v[i];
                }
            }
        }
        memset(s, 0, sizeof(*s));
        snprintf(s->key, sizeof(s->key), "%s", key);
    }
    s->last = now;
    if (s->banned_until > now) {
        return false; /* banned already: counted in the ban */
    }
    if (s->failures == 0 || now - s->window_start >= REGULATE_WINDOW_S) {
        s->failures = 0;
        s->window_start = now;
    }
    if (++s->failures >= REGULATE_MAX_FAILURES) {
        s->failures = 0;
        s->banned_until = now + REGULATE_BAN_S;
        return true;
    }
    return false;
}

void regulate_success(struct regulate *r, const char *key)
{
    struct slot *s = find(r, key);
    if (s != NULL) {
        *s = r->v[--r->n];
    }
}
