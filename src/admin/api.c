#include "admin/api.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "admin/mapjson.h"
#include "core/duration.h"
#include "core/log.h"

struct api {
    struct gateway *g;
    const struct api_auth_stats *auth_stats; /* admin/auth's, or NULL */
    /* The JSON text of each mapping's settings, source and status, without its closing brace,
     * for the running config of revision cache_rev. */
    uint64_t cache_rev;
    char **cache;
    size_t ncache;
};

struct api *api_new(struct gateway *g)
{
    struct api *api = calloc(1, sizeof(*api));
    if (api != NULL) {
        api->g = g;
    }
    return api;
}

void api_set_auth_stats(struct api *api, const struct api_auth_stats *stats)
{
    api->auth_stats = stats;
}

static void cache_clear(struct api *api)
{
    for (size_t i = 0; i < api->ncache; i++) {
        free(api->cache[i]);
    }
    free(api->cache);
    api->cache = NULL;
    api->ncache = 0;
}

void api_free(struct api *api)
{
    if (api != NULL) {
        cache_clear(api);
        free(api);
    }
}

/* ---- responses ---- */

/* The length of the valid UTF-8 sequence at s (RFC 3629: no overlong forms, no surrogates, at
 * most U+10FFFF), or 0. */
static size_t utf8_len(const unsigned char *s)
{
    if (s[0] < 0x80) {
        return 1;
    }
    size_t n = s[0] >= 0xC2 && s[0] <= 0xDF   ? 2
               : s[0] >= 0xE0 && s[0] <= 0xEF ? 3
               : s[0] >= 0xF0 && s[0] <= 0xF4 ? 4
                                              : 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            return 0;
        }
    }
    if ((s[0] == 0xE0 && s[1] < 0xA0) || (s[0] == 0xED && s[1] > 0x9F) ||
        (s[0] == 0xF0 && s[1] < 0x90) || (s[0] == 0xF4 && s[1] > 0x8F)) {
        return 0;
    }
    return n;
}

void api_text_clean(char *s)
{
    unsigned char *p = (unsigned char *)s;
    while (*p != '\0') {
        size_t n = utf8_len(p);
        if (n == 0) {
            *p++ = '?';
        } else {
            p += n;
        }
    }
}

static void error_resp(struct api_response *rs, unsigned status, const char *field, const char *fmt,
                       ...) __attribute__((format(printf, 4, 5)));

static void error_resp(struct api_response *rs, unsigned status, const char *field, const char *fmt,
                       ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    api_text_clean(msg);
    json_decref(rs->json);
    rs->status = status;
    rs->json = json_pack("{s:s}", "error", msg);
    if (field != NULL && rs->json != NULL) {
        json_object_set_new(rs->json, "field", json_string(field));
    }
}

/* A config message without the state file's name in front: the API's client did not write
 * that file, the message is about what it sent. */
static const char *strip_source(const struct config *c, const char *msg)
{
    size_t n = strlen(c->gw.state);
    if (n > 0 && strncmp(msg, c->gw.state, n) == 0 && strncmp(msg + n, ": ", 2) == 0) {
        return msg + n + 2;
    }
    return msg;
}

/* Answers with c's errors from index first on: the first as "error" and "field", all of them in
 * "errors". */
static void config_errors_resp(struct api_response *rs, unsigned status, const struct config *c,
                               size_t first)
{
    error_resp(rs, status, c->fields[first], "%s", strip_source(c, c->errors[first]));
    json_t *all = json_array();
    for (size_t i = first; i < c->nerrors && all != NULL; i++) {
        json_t *e = json_pack("{s:s}", "error", strip_source(c, c->errors[i]));
        if (e != NULL && c->fields[i] != NULL) {
            json_object_set_new(e, "field", json_string(c->fields[i]));
        }
        json_array_append_new(all, e);
    }
    if (rs->json != NULL && all != NULL) {
        json_object_set_new(rs->json, "errors", all);
    } else {
        json_decref(all);
    }
}

static void oom_resp(struct api_response *rs)
{
    error_resp(rs, 500, NULL, "out of memory");
}

/* ---- reading requests ---- */

/* The body as JSON, or NULL with the answer set (415, 400). */
static json_t *parse_body(const struct api_request *rq, struct api_response *rs)
{
    if (rq->content_type == NULL || strncasecmp(rq->content_type, "application/json", 16) != 0 ||
        (rq->content_type[16] != '\0' && rq->content_type[16] != ';')) {
        error_resp(rs, 415, NULL, "send JSON, with Content-Type: application/json");
        return NULL;
    }
    json_error_t jerr;
    json_t *j =
        json_loadb(rq->body != NULL ? rq->body : "", rq->body_len, JSON_REJECT_DUPLICATES, &jerr);
    if (j == NULL) {
        error_resp(rs, 400, NULL, "not valid JSON: %s (line %d, column %d)", jerr.text, jerr.line,
                   jerr.column);
    }
    return j;
}

/* True if the request may go on: no If-Match, or one that names the running revision ("7", 7,
 * W/"7" or *). Else answers 412. */
static bool if_match_ok(const struct config *run, const struct api_request *rq,
                        struct api_response *rs)
{
    const char *v = rq->if_match;
    if (v == NULL) {
        return true;
    }
    while (*v == ' ') {
        v++;
    }
    if (strcmp(v, "*") == 0) {
        return true;
    }
    if (strncmp(v, "W/", 2) == 0) {
        v += 2;
    }
    char want[32];
    snprintf(want, sizeof(want), "%llu", (unsigned long long)run->revision);
    size_t n = strlen(want);
    bool quoted = v[0] == '"';
    const char *num = v + quoted;
    if (strncmp(num, want, n) == 0 && (quoted ? strcmp(num + n, "\"") == 0 : num[n] == '\0')) {
        return true;
    }
    error_resp(rs, 412, NULL,
               "the configuration changed since you read it (revision %llu now, If-Match %s): "
               "read it again and redo the change",
               (unsigned long long)run->revision, rq->if_match);
    return false;
}

/* ---- mappings as the API shows them ---- */

/* What a read adds to a mapping's settings, and never changes between revisions. */
static json_t *mapping_static(const struct map_conf *m)
{
    json_t *o = mapjson_from_conf(m, 0);
    if (o == NULL) {
        return NULL;
    }
    /* A lease's seconds left change by the second: they are added when the mapping is read. */
    json_object_del(o, "lease");
    json_object_del(o, "expires");
    char src[MAP_CONF_SOURCELEN + 16];
    if (m->origin == MAP_ORIGIN_API) {
        snprintf(src, sizeof(src), "api");
    } else if (m->line > 0) {
        snprintf(src, sizeof(src), "%s:%d", m->source, m->line);
    } else {
        snprintf(src, sizeof(src), "%s", m->source);
    }
    json_object_set_new(o, "source", json_string(src));
    json_object_set_new(o, "read-only", json_boolean(m->origin != MAP_ORIGIN_API));
    /* A configuration is applied whole or not at all, so an enabled mapping listens; but for
     * one of the API's that could not run at start or at a reload, kept in the table. */
    if (!m->enabled) {
        json_object_set_new(o, "status", json_pack("{s:s}", "state", "disabled"));
    } else if (m->failed[0] != '\0') {
        json_object_set_new(o, "status",
                            json_pack("{s:s,s:s}", "state", "failed", "reason", m->failed));
    } else {
        json_object_set_new(o, "status", json_pack("{s:s}", "state", "listening"));
    }
    return o;
}

/* Makes the cache of the running config's mappings current. Returns 0 or -ENOMEM. */
static int cache_update(struct api *api)
{
    const struct config *run = gateway_config(api->g);
    if (api->cache != NULL && api->cache_rev == run->revision && api->ncache == run->nmaps) {
        return 0;
    }
    cache_clear(api);
    api->cache = calloc(run->nmaps + 1, sizeof(*api->cache));
    if (api->cache == NULL) {
        return -ENOMEM;
    }
    api->ncache = run->nmaps;
    for (size_t i = 0; i < run->nmaps; i++) {
        json_t *o = mapping_static(&run->maps[i]);
        char *text = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        if (text == NULL) {
            cache_clear(api);
            return -ENOMEM;
        }
        text[strlen(text) - 1] = '\0'; /* the closing brace: the counters follow */
        api->cache[i] = text;
    }
    api->cache_rev = run->revision;
    return 0;
}

/* Writes mapping i of the running config as the API shows it: its cached settings, its lease,
 * and its counters as of now. */
static void write_mapping(FILE *out, struct api *api, size_t i, const struct gateway_map_stats *s)
{
    const struct map_conf *m = &gateway_config(api->g)->maps[i];
    int64_t now = (int64_t)time(NULL);
    uint64_t mono = loop_now(gateway_loop(api->g));
    fputs(api->cache[i], out);
    if (m->expires != 0) {
        fprintf(out, ",\"lease\":%lld,\"expires\":%lld",
                (long long)(m->expires > now ? m->expires - now : 0), (long long)m->expires);
    }
    const struct mapping_stats *st = &s->st;
    fprintf(out,
            ",\"stats\":{\"open\":%u,\"sessions\":%u,\"accepted\":%llu,\"refused-acl\":%llu,"
            "\"refused-limit\":%llu,\"connect-failed\":%llu,\"bytes-in\":%llu,\"bytes-out\":%llu,"
            "\"bytes-spliced\":%llu,\"datagrams-in\":%llu,\"datagrams-out\":%llu,"
            "\"datagrams-dropped\":%llu,\"evicted\":%llu",
            s->open, s->sessions, (unsigned long long)st->accepted,
            (unsigned long long)st->refused_acl, (unsigned long long)st->refused_limit,
            (unsigned long long)st->connect_failed, (unsigned long long)st->bytes_in,
            (unsigned long long)st->bytes_out, (unsigned long long)st->bytes_spliced,
            (unsigned long long)st->dgrams_in, (unsigned long long)st->dgrams_out,
            (unsigned long long)st->dgrams_dropped, (unsigned long long)st->evicted);
    /* The protocol's own, by the names it gives them, as keys: "rtsp sessions" is
     * "rtsp-sessions" (the names are the protocol's constants: letters and spaces). */
    const char *const *names = m->proto->stat_names;
    for (size_t k = 0; names != NULL && names[k] != NULL; k++) {
        fputs(",\"", out);
        for (const char *c = names[k]; *c != '\0'; c++) {
            fputc(*c == ' ' ? '-' : *c, out);
        }
        fprintf(out, "\":%llu", (unsigned long long)st->proto[k]);
    }
    if (s->last_ms == 0) {
        fputs(",\"last-activity\":null}}", out);
    } else {
        uint64_t ago = mono > s->last_ms ? (mono - s->last_ms) / 1000 : 0;
        fprintf(out, ",\"last-activity\":%lld}}", (long long)(now - (int64_t)ago));
    }
}

/* The JSON text of {"revision": N, [the gateway's settings,] "mappings": [...]}, or of one
 * mapping (only >= 0); NULL when out of memory. */
static char *mappings_text(struct api *api, ssize_t only, json_t *gateway)
{
    const struct config *run = gateway_config(api->g);
    struct gateway_map_stats *stats = calloc(run->nmaps + 1, sizeof(*stats));
    char *text = NULL;
    size_t len = 0;
    FILE *out = stats != NULL && cache_update(api) == 0 ? open_memstream(&text, &len) : NULL;
    if (out == NULL) {
        free(stats);
        return NULL;
    }
    gateway_all_stats(api->g, stats);
    if (only >= 0) {
        write_mapping(out, api, (size_t)only, &stats[only]);
    } else {
        fprintf(out, "{\"revision\":%llu,", (unsigned long long)run->revision);
        if (gateway != NULL) {
            char *g = json_dumps(gateway, JSON_COMPACT);
            fprintf(out, "\"gateway\":%s,", g != NULL ? g : "null");
            free(g);
        }
        fputs("\"mappings\":[", out);
        for (size_t i = 0; i < run->nmaps; i++) {
            if (i > 0) {
                fputc(',', out);
            }
            write_mapping(out, api, i, &stats[i]);
        }
        fputs("]}", out);
    }
    free(stats);
    if (fclose(out) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

/* Answers with the mappings (or one: only >= 0) as JSON text. */
static void mappings_resp(struct api *api, ssize_t only, json_t *gateway, unsigned status,
                          struct api_response *rs)
{
    rs->text = mappings_text(api, only, gateway);
    json_decref(gateway);
    if (rs->text == NULL) {
        oom_resp(rs);
        return;
    }
    rs->text_type = "application/json";
    rs->status = status;
}

/* ---- changes ---- */

/* Moves the last mapping of c to index i (a replaced mapping keeps its place in the table). */
static void move_last_to(struct config *c, size_t i)
{
    if (i + 1 >= c->nmaps) {
        return;
    }
    struct map_conf last = c->maps[c->nmaps - 1];
    memmove(&c->maps[i + 1], &c->maps[i], (c->nmaps - 1 - i) * sizeof(*c->maps));
    c->maps[i] = last;
}

/*
 * Checks cand, a copy of the running config with the change made (its own errors, from index
 * own_errors on, are the request's: 400), against the whole set (name taken, ports in use by
 * another mapping: 409; a target that does not resolve, files that do not load: 400), then,
 * unless dry_run, applies it.
 * Returns true if it was applied (or would be); cand is then the gateway's (or freed). On
 * false the answer is set and cand freed.
 */
static bool check_and_apply(struct gateway *g, struct config *cand, size_t own_errors, bool dry_run,
                            struct api_response *rs)
{
    if (cand->nerrors > own_errors) {
        config_errors_resp(rs, 400, cand, own_errors);
        config_free(cand);
        return false;
    }
    if (config_finish(cand, true) != 0) {
        /* A name taken or ports overlapping are a conflict with the other mappings; a target
         * that does not resolve or a certificate that does not load is the request's; an error
         * with no key is the gateway's own trouble (out of memory). */
        const char *f = cand->fields[own_errors];
        unsigned status = cand->conflicts > 0 ? 409 : f == NULL ? 500 : 400;
        config_errors_resp(rs, status, cand, own_errors);
        config_free(cand);
        return false;
    }
    if (dry_run) {
        config_free(cand);
        return true;
    }
    char why[512];
    int rc = gateway_apply(g, cand, why, sizeof(why));
    if (rc != 0) {
        config_free(cand);
        if (rc == -EADDRINUSE) {
            error_resp(rs, 409, "listen", "%s", why);
        } else if (rc == -EADDRNOTAVAIL || rc == -EACCES) {
            /* Not a conflict: no interface has the address, or the port needs a privilege. */
            error_resp(rs, rc == -EACCES ? 403 : 400, "listen", "%s", why);
        } else if (rc == -ESHUTDOWN) {
            error_resp(rs, 503, NULL, "%s", why);
        } else {
            error_resp(rs, 500, NULL, "the change was not made: %s", why);
        }
        return false;
    }
    rs->etag = gateway_config(g)->revision;
    return true;
}

/* The running config's mapping called name, when the API may change it; else answers 404 or
 * 403 and returns -1. */
static ssize_t writable_mapping(const struct config *run, const char *name, struct api_response *rs)
{
    ssize_t i = config_find_map(run, name);
    if (i < 0) {
        error_resp(rs, 404, NULL, "no mapping called \"%s\"", name);
        return -1;
    }
    const struct map_conf *m = &run->maps[i];
    if (m->origin != MAP_ORIGIN_API) {
        char at[MAP_CONF_SOURCELEN + 16];
        snprintf(at, sizeof(at), m->line > 0 ? "%s:%d" : "%s", m->source, m->line);
        error_resp(rs, 403, NULL,
                   "[map %s] is defined in %s: change it there and reload; the API changes only "
                   "the mappings it made",
                   name, at);
        return -1;
    }
    return i;
}

/* Replaces (i >= 0) or adds (i < 0) a mapping from obj. */
static void put_mapping(struct api *api, json_t *obj, ssize_t i, bool created,
                        struct api_response *rs)
{
    struct gateway *g = api->g;
    int64_t now = (int64_t)time(NULL);
    struct config *cand = config_copy(gateway_config(g));
    if (cand == NULL) {
        oom_resp(rs);
        return;
    }
    if (i >= 0) {
        config_remove_map(cand, (size_t)i);
    }
    mapjson_add(cand, cand->gw.state, obj, MAPJSON_API, now);
    if (i >= 0 && cand->nerrors == 0) {
        move_last_to(cand, (size_t)i);
    }
    const char *name = json_string_value(json_object_get(obj, "name"));
    if (!check_and_apply(g, cand, 0, false, rs)) {
        return;
    }
    mappings_resp(api, config_find_map(gateway_config(g), name), NULL, created ? 201 : 200, rs);
    if (created) {
        snprintf(rs->location, sizeof(rs->location), "/api/v1/mappings/%s", name);
    }
    log_info("map %s: %s through the admin API", name, created ? "added" : "changed");
}

static void post_mappings(struct api *api, const struct api_request *rq, struct api_response *rs)
{
    struct gateway *g = api->g;
    const struct config *run = gateway_config(g);
    json_t *obj = parse_body(rq, rs);
    if (obj == NULL || !if_match_ok(run, rq, rs)) {
        json_decref(obj);
        return;
    }
    const char *name = json_is_object(obj) ? json_string_value(json_object_get(obj, "name")) : NULL;
    if (name != NULL && config_find_map(run, name) >= 0) {
        error_resp(rs, 409, "name", "name \"%s\" is taken: choose another, or PUT to change it",
                   name);
    } else {
        put_mapping(api, obj, -1, true, rs);
    }
    json_decref(obj);
}

/* PUT (replace), PATCH (merge: null resets a key) and enable/disable (patch of enabled). */
static void change_mapping(struct api *api, const struct api_request *rq, const char *name,
                           json_t *patch, bool replace, struct api_response *rs)
{
    struct gateway *g = api->g;
    const struct config *run = gateway_config(g);
    if (!if_match_ok(run, rq, rs)) {
        return;
    }
    ssize_t i = writable_mapping(run, name, rs);
    if (i < 0) {
        return;
    }
    if (!json_is_object(patch)) {
        error_resp(rs, 400, NULL, "a mapping is a JSON object");
        return;
    }
    const json_t *jn = json_object_get(patch, "name");
    if (jn != NULL && !(json_is_string(jn) && strcmp(json_string_value(jn), name) == 0)) {
        error_resp(rs, 400, "name",
                   "name: a mapping keeps its name (%s); delete it and add one to rename it", name);
        return;
    }
    json_t *obj;
    if (replace) {
        obj = json_deep_copy(patch);
    } else {
        obj = mapjson_from_conf(&run->maps[i], (int64_t)time(NULL));
        const char *k;
        json_t *v;
        json_object_foreach(patch, k, v)
        {
            if (obj != NULL && json_is_null(v)) {
                json_object_del(obj, k);
            } else if (obj != NULL) {
                json_object_set(obj, k, v);
            }
        }
    }
    if (obj == NULL || json_object_set_new(obj, "name", json_string(name)) != 0) {
        json_decref(obj);
        oom_resp(rs);
        return;
    }
    put_mapping(api, obj, i, false, rs);
    json_decref(obj);
}

static void delete_mapping(struct gateway *g, const struct api_request *rq, const char *name,
                           struct api_response *rs)
{
    const struct config *run = gateway_config(g);
    if (!if_match_ok(run, rq, rs)) {
        return;
    }
    ssize_t i = writable_mapping(run, name, rs);
    if (i < 0) {
        return;
    }
    struct config *cand = config_copy(run);
    if (cand == NULL) {
        oom_resp(rs);
        return;
    }
    config_remove_map(cand, (size_t)i);
    if (check_and_apply(g, cand, 0, false, rs)) {
        rs->status = 204;
        log_info("map %s: deleted through the admin API", name);
    }
}

/* True if obj is m as the API shows it, leaving out what reads add and a lease's seconds
 * left (which change by the second). */
static bool shows_as(const struct map_conf *m, const json_t *obj)
{
    json_t *want = mapjson_from_conf(m, 0);
    json_t *got = json_is_object(obj) ? json_deep_copy(obj) : NULL;
    bool same = false;
    if (want != NULL && got != NULL) {
        const char *k;
        json_t *v;
        void *tmp;
        json_object_foreach_safe(got, tmp, k, v)
        {
            if (mapjson_is_read_only(k) || strcmp(k, "lease") == 0 || strcmp(k, "expires") == 0) {
                json_object_del(got, k);
            }
        }
        json_object_del(want, "lease");
        json_object_del(want, "expires");
        same = json_equal(want, got);
    }
    json_decref(want);
    json_decref(got);
    return same;
}

/*
 * A candidate whose API mappings are those of the array maps (PUT /config, POST /check). An
 * entry naming a mapping of the config file must show it as it is (what GET returned). Returns
 * NULL with the answer set.
 */
static struct config *replace_api_mappings(struct gateway *g, const json_t *maps,
                                           struct api_response *rs)
{
    const struct config *run = gateway_config(g);
    if (!json_is_array(maps)) {
        error_resp(rs, 400, "mappings", "mappings: expected an array of mapping objects");
        return NULL;
    }
    int64_t now = (int64_t)time(NULL);
    struct config *cand = config_copy(run);
    if (cand == NULL) {
        oom_resp(rs);
        return NULL;
    }
    for (size_t i = cand->nmaps; i-- > 0;) {
        if (cand->maps[i].origin == MAP_ORIGIN_API) {
            config_remove_map(cand, i);
        }
    }
    size_t idx;
    const json_t *obj;
    json_array_foreach(maps, idx, obj)
    {
        const char *name =
            json_is_object(obj) ? json_string_value(json_object_get(obj, "name")) : NULL;
        ssize_t r = name != NULL ? config_find_map(run, name) : -1;
        bool same = r >= 0 && shows_as(&run->maps[r], obj);
        if (r >= 0 && run->maps[r].origin != MAP_ORIGIN_API) {
            /* Read-only: it must be unchanged, compared as the API shows it. */
            if (!same) {
                writable_mapping(run, name, rs); /* the 403 */
                config_free(cand);
                return NULL;
            }
            continue;
        }
        if (same) {
            /* An API mapping given back as it is keeps what it is: its resolved target, its
             * lease's end, and its failure if it failed at start (it is not checked again). */
            struct map_conf *v = realloc(cand->maps, (cand->nmaps + 1) * sizeof(*v));
            if (v == NULL || map_conf_copy(&v[cand->nmaps], &run->maps[r]) != 0) {
                if (v != NULL) {
                    cand->maps = v;
                }
                config_free(cand);
                oom_resp(rs);
                return NULL;
            }
            cand->maps = v;
            cand->nmaps++;
            continue;
        }
        mapjson_add(cand, cand->gw.state, obj, MAPJSON_API, now);
    }
    return cand;
}

static void put_config(struct gateway *g, const struct api_request *rq, struct api_response *rs)
{
    json_t *body = parse_body(rq, rs);
    if (body == NULL || !if_match_ok(gateway_config(g), rq, rs)) {
        json_decref(body);
        return;
    }
    struct config *cand = replace_api_mappings(g, json_object_get(body, "mappings"), rs);
    json_decref(body);
    if (cand != NULL && check_and_apply(g, cand, 0, false, rs)) {
        rs->status = 200;
        rs->json = json_pack("{s:I}", "revision", (json_int_t)gateway_config(g)->revision);
        log_info("configuration replaced through the admin API");
    }
}

/* POST /reload: what SIGHUP does (certificates renewed on disk are read again), answered with
 * its outcome. */
static void post_reload(struct gateway *g, struct api_response *rs)
{
    struct config *errs = NULL;
    if (gateway_reload(g, &errs) == 0) {
        rs->json = json_pack("{s:I}", "revision", (json_int_t)gateway_config(g)->revision);
        rs->status = 200;
    } else if (errs != NULL) {
        config_errors_resp(rs, 400, errs, 0);
        config_free(errs);
    } else {
        error_resp(rs, 500, NULL, "the reload failed: the gateway's log says why");
    }
}

static void post_check(struct gateway *g, const struct api_request *rq, struct api_response *rs)
{
    json_t *body = parse_body(rq, rs);
    if (body == NULL) {
        return;
    }
    struct config *cand = NULL;
    if (json_is_object(body) && json_object_get(body, "mappings") != NULL) {
        cand = replace_api_mappings(g, json_object_get(body, "mappings"), rs);
    } else {
        /* One mapping: checked as it would be added, or replace the API mapping it names. */
        const struct config *run = gateway_config(g);
        const char *name =
            json_is_object(body) ? json_string_value(json_object_get(body, "name")) : NULL;
        ssize_t i = name != NULL ? config_find_map(run, name) : -1;
        if (i >= 0 && writable_mapping(run, name, rs) < 0) {
            json_decref(body);
            return;
        }
        cand = config_copy(run);
        if (cand == NULL) {
            oom_resp(rs);
        } else {
            if (i >= 0) {
                config_remove_map(cand, (size_t)i);
            }
            mapjson_add(cand, cand->gw.state, body, MAPJSON_API, (int64_t)time(NULL));
        }
    }
    json_decref(body);
    if (cand != NULL && check_and_apply(g, cand, 0, true, rs)) {
        rs->status = 200;
        rs->json = json_pack("{s:b}", "ok", 1);
    }
}

/* ---- reading ---- */

static json_t *gateway_view(const struct config *c)
{
    char d[32], busy[32], admin[ADDR_STRLEN];
    duration_format(c->gw.drain_timeout_ms, d, sizeof(d));
    if (c->gw.busy_poll_us == 0) {
        snprintf(busy, sizeof(busy), "off");
    } else {
        snprintf(busy, sizeof(busy), "%uus", c->gw.busy_poll_us);
    }
    if (c->gw.admin.ss_family == 0) {
        snprintf(admin, sizeof(admin), "off");
    } else {
        addr_format(&c->gw.admin, admin, sizeof(admin));
    }
    json_t *j =
        json_pack("{s:s,s:s,s:b,s:I,s:s,s:s,s:s,s:s,s:s}", "log-level",
                  log_level_name(c->gw.log_level), "drain-timeout", d, "splice", c->gw.splice,
                  "max-pipes", (json_int_t)c->gw.max_pipes, "busy-poll", busy, "admin", admin,
                  "admin-socket", c->gw.admin_socket[0] ? c->gw.admin_socket : "off", "state",
                  c->gw.state, "users-file", c->gw.users_file);
    if (j != NULL && c->gw.admin_origins[0] != '\0') {
        json_object_set_new(j, "admin-origins", json_string(c->gw.admin_origins));
    }
    if (j != NULL) {
        if (c->gw.workers == 0) {
            json_object_set_new(j, "workers", json_string("auto"));
        } else {
            json_object_set_new(j, "workers", json_integer(c->gw.workers));
        }
    }
    return j;
}

size_t api_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    size_t n = 0;
    if (d == NULL) {
        return 0;
    }
    while (readdir(d) != NULL) {
        n++;
    }
    closedir(d);
    return n > 3 ? n - 3 : 0; /* ".", ".." and the directory's own descriptor */
}

static void get_status(struct gateway *g, struct api_response *rs)
{
    const struct config *run = gateway_config(g);
    struct gateway_status st;
    gateway_get_status(g, &st);
    struct rlimit rl = {0};
    getrlimit(RLIMIT_NOFILE, &rl);
    size_t api = 0, enabled = 0;
    for (size_t i = 0; i < run->nmaps; i++) {
        api += run->maps[i].origin == MAP_ORIGIN_API;
        enabled += run->maps[i].enabled;
    }
    uint64_t up_ms = loop_now(gateway_loop(g)) - st.started_ms;
    rs->status = 200;
    rs->json = json_pack(
        "{s:s,s:I,s:I,s:I,s:{s:I,s:I},s:{s:I,s:I,s:I},s:{s:I,s:I,s:I,s:I},s:{s:I,s:I},s:I,s:I}",
        "version", PORTGATE_VERSION, "uptime", (json_int_t)(up_ms / 1000), "workers",
        (json_int_t)st.workers, "revision", (json_int_t)run->revision, "fds", "open",
        (json_int_t)api_open_fds(), "limit", (json_int_t)rl.rlim_cur, "relay", "connections",
        (json_int_t)st.conns, "pipes", (json_int_t)st.pipes_used, "max-pipes",
        (json_int_t)st.max_pipes, "mappings", "total", (json_int_t)run->nmaps, "enabled",
        (json_int_t)enabled, "api", (json_int_t)api, "config", (json_int_t)(run->nmaps - api),
        "reloads", "total", (json_int_t)st.reloads, "failed", (json_int_t)st.reload_failures,
        "listening-ports", (json_int_t)st.listeners, "pid", (json_int_t)getpid());
    if (rs->json == NULL) {
        oom_resp(rs);
        return;
    }
    /* Where the mappings come from, in the order they are read. */
    json_t *src = json_array();
    const char *last = NULL;
    for (size_t i = 0; i < run->nmaps && src != NULL; i++) {
        const struct map_conf *m = &run->maps[i];
        const char *s = m->origin == MAP_ORIGIN_SPEC ? "command line" : m->source;
        if (last == NULL || strcmp(last, s) != 0) {
            json_array_append_new(src, json_pack("{s:s,s:s}", "source", s, "kind",
                                                 m->origin == MAP_ORIGIN_API    ? "state"
                                                 : m->origin == MAP_ORIGIN_FILE ? "config"
                                                                                : "command line"));
            last = s;
        }
    }
    json_object_set_new(rs->json, "sources", src);
    rs->etag = run->revision;
}

/* ---- connections and sessions ---- */

/* "198.51.100.7:51234", or the address alone when the port is not known (0). */
static json_t *endpoint(const struct sockaddr_storage *ss)
{
    char buf[ADDR_STRLEN];
    if (ss->ss_family == 0) {
        return json_null();
    }
    if (addr_port(ss) == 0) {
        return json_string(addr_format_ip(ss, buf, sizeof(buf)));
    }
    return json_string(addr_format(ss, buf, sizeof(buf)));
}

static json_t *seconds_since(uint64_t then_ms, uint64_t now_ms)
{
    return json_integer(now_ms > then_ms ? (json_int_t)((now_ms - then_ms) / 1000) : 0);
}

static void get_connections(struct gateway *g, const struct api_request *rq,
                            struct api_response *rs)
{
    struct gateway_conn *v = NULL;
    ssize_t n = gateway_connections(g, rq->mapping, &v);
    json_t *list = json_array();
    if (n < 0 || list == NULL) {
        free(v);
        json_decref(list);
        oom_resp(rs);
        return;
    }
    uint64_t now = loop_now(gateway_loop(g));
    for (ssize_t i = 0; i < n; i++) {
        char id[48];
        snprintf(id, sizeof(id), "%u-%llu", v[i].worker, (unsigned long long)v[i].id);
        json_array_append_new(
            list,
            json_pack("{s:s,s:s,s:s,s:o,s:o,s:I,s:I,s:o,s:o,s:b}", "id", id, "mapping",
                      v[i].mapping, "proto", v[i].proto, "client", endpoint(&v[i].client), "target",
                      endpoint(&v[i].target), "bytes-in", (json_int_t)v[i].bytes[0], "bytes-out",
                      (json_int_t)v[i].bytes[1], "age", seconds_since(v[i].start_ms, now), "idle",
                      seconds_since(v[i].last_ms, now), "connected", v[i].connected));
    }
    free(v);
    rs->status = 200;
    rs->json = json_pack("{s:o}", "connections", list);
}

static void delete_connection(struct gateway *g, const char *id, struct api_response *rs)
{
    unsigned w;
    unsigned long long n;
    char end;
    if (sscanf(id, "%u-%llu%c", &w, &n, &end) != 2) {
        error_resp(rs, 404, NULL, "no connection \"%s\" (ids look like 0-17)", id);
        return;
    }
    if (gateway_close_connection(g, w, n, "ended through the admin API") != 0) {
        error_resp(rs, 404, NULL, "no open connection %s (it may have ended)", id);
        return;
    }
    rs->status = 204;
}

static void get_sessions(struct gateway *g, const struct api_request *rq, struct api_response *rs)
{
    struct gateway_session *v = NULL;
    ssize_t n = gateway_sessions(g, rq->mapping, &v);
    json_t *list = json_array();
    if (n < 0 || list == NULL) {
        free(v);
        json_decref(list);
        oom_resp(rs);
        return;
    }
    uint64_t now = loop_now(gateway_loop(g));
    for (ssize_t i = 0; i < n; i++) {
        const struct proto_session_info *si = &v[i].si;
        json_t *o = json_pack(
            "{s:s,s:s,s:o,s:o,s:o,s:o,s:I,s:I,s:I,s:I}", "kind", si->kind, "mapping", v[i].mapping,
            "client", endpoint(&si->client), "target", endpoint(&si->target), "age",
            seconds_since(si->start_ms, now), "idle", seconds_since(si->last_ms, now), "bytes-in",
            (json_int_t)si->bytes[0], "bytes-out", (json_int_t)si->bytes[1], "datagrams-in",
            (json_int_t)si->pkts[0], "datagrams-out", (json_int_t)si->pkts[1]);
        if (o != NULL && si->detail[0] != '\0') {
            json_object_set_new(o, "detail", json_string(si->detail));
        }
        json_array_append_new(list, o);
    }
    free(v);
    rs->status = 200;
    rs->json = json_pack("{s:o}", "sessions", list);
}

/* ---- routing ---- */

static bool is(const struct api_request *rq, const char *method)
{
    return strcmp(rq->method, method) == 0;
}

static void not_allowed(struct api_response *rs, const char *allowed)
{
    error_resp(rs, 405, NULL, "method not allowed here (allowed: %s)", allowed);
}

void api_handle(struct api *api, const struct api_request *rq, struct api_response *rs)
{
    struct gateway *g = api->g;
    memset(rs, 0, sizeof(*rs));
    const char *p = rq->path;
    const struct config *run = gateway_config(g);
    if (strcmp(p, "/mappings") == 0) {
        if (is(rq, "GET")) {
            mappings_resp(api, -1, NULL, 200, rs);
            rs->etag = run->revision;
        } else if (is(rq, "POST")) {
            post_mappings(api, rq, rs);
        } else {
            not_allowed(rs, "GET, POST");
        }
    } else if (strncmp(p, "/mappings/", 10) == 0) {
        char name[MAP_CONF_NAMELEN];
        const char *rest = p + 10;
        size_t n = strcspn(rest, "/");
        if (n == 0 || n >= sizeof(name)) {
            error_resp(rs, 404, NULL, "no such mapping");
            goto out;
        }
        memcpy(name, rest, n);
        name[n] = '\0';
        const char *action = rest[n] == '/' ? rest + n + 1 : NULL;
        if (action != NULL) {
            bool on = strcmp(action, "enable") == 0;
            if (!on && strcmp(action, "disable") != 0) {
                error_resp(rs, 404, NULL, "no such action: use enable or disable");
            } else if (!is(rq, "POST")) {
                not_allowed(rs, "POST");
            } else {
                json_t *patch = json_pack("{s:b}", "enabled", on);
                change_mapping(api, rq, name, patch, false, rs);
                json_decref(patch);
            }
        } else if (is(rq, "GET")) {
            ssize_t i = config_find_map(run, name);
            if (i < 0) {
                error_resp(rs, 404, NULL, "no mapping called \"%s\"", name);
            } else {
                mappings_resp(api, i, NULL, 200, rs);
                rs->etag = run->revision;
            }
        } else if (is(rq, "PUT") || is(rq, "PATCH")) {
            json_t *body = parse_body(rq, rs);
            if (body != NULL) {
                change_mapping(api, rq, name, body, is(rq, "PUT"), rs);
            }
            json_decref(body);
        } else if (is(rq, "DELETE")) {
            delete_mapping(g, rq, name, rs);
        } else {
            not_allowed(rs, "GET, PUT, PATCH, DELETE");
        }
    } else if (strcmp(p, "/config") == 0) {
        if (is(rq, "GET")) {
            mappings_resp(api, -1, gateway_view(run), 200, rs);
            rs->etag = run->revision;
        } else if (is(rq, "PUT")) {
            put_config(g, rq, rs);
        } else {
            not_allowed(rs, "GET, PUT");
        }
    } else if (strcmp(p, "/reload") == 0) {
        if (is(rq, "POST")) {
            post_reload(g, rs);
        } else {
            not_allowed(rs, "POST");
        }
    } else if (strcmp(p, "/check") == 0) {
        if (is(rq, "POST")) {
            post_check(g, rq, rs);
        } else {
            not_allowed(rs, "POST");
        }
    } else if (strcmp(p, "/status") == 0) {
        if (is(rq, "GET")) {
            get_status(g, rs);
        } else {
            not_allowed(rs, "GET");
        }
    } else if (strcmp(p, "/connections") == 0) {
        if (is(rq, "GET")) {
            get_connections(g, rq, rs);
        } else {
            not_allowed(rs, "GET");
        }
    } else if (strncmp(p, "/connections/", 13) == 0) {
        if (is(rq, "DELETE")) {
            delete_connection(g, p + 13, rs);
        } else {
            not_allowed(rs, "DELETE");
        }
    } else if (strcmp(p, "/sessions") == 0) {
        if (is(rq, "GET")) {
            get_sessions(g, rq, rs);
        } else {
            not_allowed(rs, "GET");
        }
    } else if (strcmp(p, "/metrics") == 0) {
        if (is(rq, "GET")) {
            rs->text = api_metrics(g, api->auth_stats);
            rs->text_type = "text/plain; version=0.0.4; charset=utf-8";
            rs->status = 200;
        } else {
            not_allowed(rs, "GET");
        }
    } else {
        error_resp(rs, 404, NULL, "no such endpoint: %s (see docs/admin.md)", p);
    }
out:
    if (rs->status == 0 || (rs->json == NULL && rs->text == NULL && rs->status != 204)) {
        oom_resp(rs);
    }
}
