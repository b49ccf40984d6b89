/*
 * client: the HTTP/1.1 client the portgate commands use to talk to a running gateway's admin
 * interface, over its unix socket or its HTTP listener. One request per connection
 * (Connection: close), blocking, with a timeout; the answer is read whole (at most
 * CLIENT_MAX_BODY bytes).
 */
#ifndef PORTGATE_CLIENT_H
#define PORTGATE_CLIENT_H

#include <stddef.h>

#define CLIENT_MAX_BODY (64u << 20)
#define CLIENT_TIMEOUT_MS 30000

struct client_target {
    const char *socket; /* a unix socket path, or NULL */
    char host[256];     /* else: an http://HOST:PORT URL, split */
    char port[8];
    const char *token; /* sent as Authorization: Bearer, or NULL */
};

struct client_response {
    int status;
    char *body; /* NUL-terminated; the caller frees it */
    size_t len;
    char etag[64];
};

/* Fills t from a URL "http://HOST[:PORT][/]" (IPv6 in brackets). Returns 0, or -1 with err. */
int client_parse_url(const char *url, struct client_target *t, char *err, size_t errlen);

/* Sends method path with body (JSON, or NULL) and reads the answer. Returns 0, or -1 with a
 * reason in err (cannot connect, timeout, a malformed answer). */
int client_request(const struct client_target *t, const char *method, const char *path,
                   const char *body, struct client_response *r, char *err, size_t errlen);

/* Parses an HTTP/1.1 response head+body held in buf (for tests and fuzzing). Returns 0 or -1. */
int client_parse_response(const char *buf, size_t len, struct client_response *r);

#endif
