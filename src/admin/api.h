/*
 * api: the REST API (/api/v1, JSON), on the running gateway. Each request is handled whole on
 * the control thread: a change is built as a new configuration from the running one, checked
 * like a config file, then applied through gateway_apply(), which binds, writes the state file
 * and swaps, all or nothing. Requests come from admin/server.c, already authenticated;
 * docs/admin.md lists every endpoint.
 */
#ifndef PORTGATE_API_H
#define PORTGATE_API_H

#include <jansson.h>
#include <stddef.h>

#include "gateway/gateway.h"

/* The largest request body taken (413 beyond). */
#define API_MAX_BODY (1u << 20)

struct api_request {
    const char *method; /* "GET", "POST"... */
    const char *path;   /* after /api/v1, such as "/mappings/web" */
    const char *body;   /* NULL or body_len bytes */
    size_t body_len;
    const char *content_type; /* the header, or NULL */
    const char *if_match;     /* the header, or NULL */
    const char *mapping;      /* the query's mapping=NAME, or NULL */
};

struct api_response {
    unsigned status;
    json_t *json;            /* the body, or NULL; the caller frees it */
    char *text;              /* or a text body (metrics), malloc'd; the caller frees it */
    const char *text_type;   /* its Content-Type */
    char location[128];      /* a Location header, or empty */
    unsigned long long etag; /* an ETag (the revision), or 0 */
};

/* The admin login's counters, which admin/auth keeps and /metrics shows. */
struct api_auth_stats {
    uint64_t logins;           /* logins that made a session */
    uint64_t login_failures;   /* a wrong user, password or code */
    uint64_t totp_enrolled;    /* second factors turned on */
    uint64_t totp_disabled;    /* and off */
    uint64_t totp_wrong_codes; /* wrong or replayed codes: at a login, a confirmation, a disable */
    uint64_t recovery_used;    /* recovery codes used up */
};

/* The API of gateway g. It keeps the JSON of each mapping's settings between requests (made
 * again when the configuration's revision moves), so that listing thousands of mappings every
 * two seconds costs their counters, not their settings. NULL when out of memory. */
struct api *api_new(struct gateway *g);
void api_free(struct api *api);
/* The login counters /metrics shows (valid while api lives), or NULL for none. */
void api_set_auth_stats(struct api *api, const struct api_auth_stats *stats);
/* Handles one request. Never fails: errors are responses. */
void api_handle(struct api *api, const struct api_request *rq, struct api_response *rs);

/* Makes s valid UTF-8 in place, each byte of an invalid sequence becoming '?': a message that
 * quotes what a client sent (a path, a header) must still be a JSON string. */
void api_text_clean(char *s);

/* Open file descriptors of the process. */
size_t api_open_fds(void);

/* Prometheus text exposition of g's counters, and of the login's (auth may be NULL)
 * (admin/metrics.c). NULL when out of memory. */
char *api_metrics(struct gateway *g, const struct api_auth_stats *auth);

#endif
