#include "admin/mapjson.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const read_only[] = {"source", "read-only", "status", "stats", NULL};

bool mapjson_is_read_only(const char *key)
{
    for (const char *const *k = read_only; *k != NULL; k++) {
        if (strcmp(*k, key) == 0) {
            return true;
        }
    }
    return false;
}

/* The key/value pairs being collected for config_add_map(); numbers are formatted into
 * nums, one slot per pair. */
struct pairs {
    struct config_kv *kv;
    char (*nums)[24];
    size_t n, cap;
};

static int pairs_add(struct pairs *p, const char *key, const char *val)
{
    if (p->n == p->cap) {
        return -1;
    }
    p->kv[p->n].key = key;
    p->kv[p->n].val = val;
    p->n++;
    return 0;
}

/* A string member's text, refused if it holds a NUL (JSON allows "\u0000"; C strings do not). */
static const char *text_of(const json_t *v)
{
    const char *s = json_string_value(v);
    return s != NULL && strlen(s) == json_string_length(v) ? s : NULL;
}

/* Converts one member to the pairs of the config grammar. Returns 0, or -1 with an error added
 * to c. */
static int add_member(struct config *c, const char *source, const char *name, struct pairs *p,
                      const char *key, const json_t *v)
{
    const char *where = name != NULL ? name : "?";
    switch (json_typeof(v)) {
    case JSON_STRING: {
        const char *s = text_of(v);
        if (s == NULL) {
            config_add_error(c, key, "%s: [map %s] %s: a NUL character in the value", source, where,
                             key);
            return -1;
        }
        return pairs_add(p, key, s);
    }
    case JSON_INTEGER: {
        char *num = p->nums[p->n];
        snprintf(num, sizeof(p->nums[0]), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return pairs_add(p, key, num);
    }
    case JSON_TRUE:
    case JSON_FALSE:
        return pairs_add(p, key, json_is_true(v) ? "yes" : "no");
    case JSON_ARRAY: {
        if (strcmp(key, "allow") != 0 && strcmp(key, "deny") != 0) {
            break;
        }
        size_t i;
        const json_t *item;
        json_array_foreach(v, i, item)
        {
            const char *s = text_of(item);
            if (s == NULL) {
                config_add_error(c, key,
                                 "%s: [map %s] %s: entry %zu: expected a string such as "
                                 "\"198.51.100.0/24\"",
                                 source, where, key, i + 1);
                return -1;
            }
            if (pairs_add(p, key, s) != 0) {
                config_add_error(c, key, "%s: [map %s] %s: more than %d entries", source, where,
                                 key, MAPJSON_MAX_LIST);
                return -1;
            }
        }
        return 0;
    }
    case JSON_NULL:
        return 0; /* the default */
    default:
        break;
    }
    config_add_error(c, key, "%s: [map %s] %s: expected %s", source, where, key,
                     strcmp(key, "allow") == 0 || strcmp(key, "deny") == 0
                         ? "an array of addresses or CIDRs"
                         : "a string, a whole number or true/false");
    return -1;
}

/* lease (API) or expires (state file): sets *expires. Returns 0, or -1 with an error added. */
static int read_lease(struct config *c, const char *source, const char *name, const char *key,
                      const json_t *v, enum mapjson_from from, int64_t now, int64_t *expires)
{
    if (json_is_null(v)) {
        *expires = 0;
        return 0;
    }
    json_int_t n = json_is_integer(v) ? json_integer_value(v) : -1;
    if (from == MAPJSON_API) {
        if (n < 1 || n > MAPJSON_MAX_LEASE) {
            config_add_error(c, key, "%s: [map %s] lease: expected seconds, 1 to %d", source, name,
                             MAPJSON_MAX_LEASE);
            return -1;
        }
        *expires = now + n;
    } else {
        if (n < 0) {
            config_add_error(c, key, "%s: [map %s] expires: expected a Unix time", source, name);
            return -1;
        }
        *expires = n;
    }
    return 0;
}

int mapjson_add(struct config *c, const char *source, const json_t *obj, enum mapjson_from from,
                int64_t now)
{
    if (!json_is_object(obj)) {
        config_add_error(c, NULL, "%s: a mapping is a JSON object", source);
        return -1;
    }
    const json_t *jname = json_object_get(obj, "name");
    const char *name = jname != NULL ? text_of(jname) : NULL;
    if (jname != NULL && name == NULL) {
        config_add_error(c, "name", "%s: name: expected a string", source);
        return -1;
    }
    size_t cap = json_object_size(obj);
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)obj, k, v)
    {
        if (json_is_array(v)) {
            cap += json_array_size(v) < MAPJSON_MAX_LIST ? json_array_size(v) : MAPJSON_MAX_LIST;
        }
    }
    struct pairs p = {
        .kv = calloc(cap + 1, sizeof(*p.kv)), .nums = calloc(cap + 1, sizeof(*p.nums)), .cap = cap};
    int rc = -1;
    if (p.kv == NULL || p.nums == NULL) {
        config_add_error(c, NULL, "%s: out of memory", source);
        goto out;
    }
    int64_t expires = 0;
    bool bad = false;
    size_t klen;
    json_object_keylen_foreach((json_t *)obj, k, klen, v)
    {
        if (klen != strlen(k)) {
            config_add_error(c, NULL, "%s: [map %s] a key with a NUL character", source,
                             name != NULL ? name : "?");
            bad = true;
        } else if (strcmp(k, "lease") == 0 || strcmp(k, "expires") == 0) {
            bool ours = (strcmp(k, "lease") == 0) == (from == MAPJSON_API);
            if (ours &&
                read_lease(c, source, name != NULL ? name : "?", k, v, from, now, &expires) != 0) {
                bad = true;
            }
        } else if (mapjson_is_read_only(k)) {
            continue;
        } else if (strcmp(k, "name") != 0 && !config_is_map_key(k)) {
            config_add_error(c, k, "%s: [map %s] unknown key \"%s\" (see docs/configuration.md)",
                             source, name != NULL ? name : "?", k);
            bad = true;
        } else if (add_member(c, source, name, &p, k, v) != 0) {
            bad = true;
        }
    }
    if (bad) {
        goto out;
    }
    if (config_add_map(c, source, p.kv, p.n) == 0) {
        c->maps[c->nmaps - 1].expires = expires;
        rc = 0;
    }
out:
    free(p.kv);
    free(p.nums);
    return rc;
}

static void put_key(void *arg, const char *key, enum config_kind kind, const char *val)
{
    json_t *obj = arg;
    switch (kind) {
    case CONFIG_TEXT:
        json_object_set_new(obj, key, json_string(val));
        break;
    case CONFIG_COUNT:
        json_object_set_new(obj, key, json_integer((json_int_t)strtoll(val, NULL, 10)));
        break;
    case CONFIG_BOOL:
        json_object_set_new(obj, key, json_boolean(strcmp(val, "yes") == 0));
        break;
    case CONFIG_LIST: {
        json_t *list = json_object_get(obj, key);
        if (list == NULL) {
            list = json_array();
            json_object_set_new(obj, key, list);
        }
        if (val != NULL) {
            json_array_append_new(list, json_string(val));
        }
        break;
    }
    }
}

json_t *mapjson_from_conf(const struct map_conf *m, int64_t now)
{
    json_t *obj = json_object();
    if (obj == NULL) {
        return NULL;
    }
    config_map_keys(m, put_key, obj);
    if (m->expires != 0) {
        json_object_set_new(obj, "lease",
                            json_integer(m->expires > now ? (json_int_t)(m->expires - now) : 0));
        json_object_set_new(obj, "expires", json_integer((json_int_t)m->expires));
    }
    return obj;
}
