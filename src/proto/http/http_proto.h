/*
 * http_proto: the http and https entries of the protocol table (forward/proto.h). Both are TCP
 * through the HTTP filter (http_proxy.h), which reads each request and answer, refuses what a
 * weak device should never see, and rewrites what names the device; https has the TLS layer
 * (tls/tls.h) under it.
 */
#ifndef PORTGATE_HTTP_PROTO_H
#define PORTGATE_HTTP_PROTO_H

#include <stdbool.h>
#include <stdint.h>

#include "core/addr.h"
#include "forward/proto.h"
#include "message/digest.h"
#include "proto/http/http_route.h"
#include "tls/tls.h"

/* Defaults, documented in docs/configuration.md. */
#define HTTP_HEADER_TIMEOUT_MS 10000u
#define HTTP_KEEPALIVE_TIMEOUT_MS 60000u
#define HTTP_MAX_HEADER 16384u
#define HTTP_HSTS_DEFAULT "max-age=31536000"
#define HTTP_WEBROOT_LEN 256 /* acme-webroot: an absolute path, shorter than this */

/* The HTTP filter's settings, shared by http and https (plain data: forward/proto.h). */
struct http_conf {
    char hosts[HTTP_HOSTS_LEN];      /* host: the names it answers for on a shared port; "": any */
    char target_host[256];           /* target-host: the Host the device gets; "": the client's */
    struct digest_login device_auth; /* the device's own login, answered by the gateway */
    bool login;       /* auth = login: the gateway's own login before the device (http_login.h) */
    char users[1024]; /* users: who may log in (auth = login; https's client-cert: the common
                       * names), commas between; "": every user */
    char redirect_https[64]; /* http: "PORT" or "HOST:PORT" of the https twin; "": none */
    char hsts[128];          /* https: the Strict-Transport-Security value; "": none */
    /* The directory an ACME client writes HTTP-01 challenges into (http_acme.h); "": none,
     * challenges go to the device like any request. */
    char acme_webroot[HTTP_WEBROOT_LEN];
    uint32_t header_timeout_ms;
    uint32_t keepalive_timeout_ms; /* between requests */
    uint32_t max_header;
    bool tls; /* https: TLS outside (X-Forwarded-Proto, HSTS, the scheme of rewritten URLs) */
};

/* An https mapping's settings: TLS's and the filter's. */
struct https_conf {
    struct http_conf http; /* first: the filter reads map_conf.pconf as a struct http_conf */
    struct tls_conf tls;
};

/* The counters of http and https mappings (mapping_stats.proto): requests relayed, those the
 * gateway answered itself with an error (4xx, 5xx), connections upgraded (websocket), ACME
 * challenges answered from acme-webroot (200 only: the others count as answered by the
 * gateway); then TLS's. */
enum http_proto_stat {
    HTTP_STAT_REQUESTS,
    HTTP_STAT_REFUSED,
    HTTP_STAT_UPGRADES,
    HTTP_STAT_ACME,
    HTTP_STAT_DEVICE_AUTH,
    HTTP_STAT_LOGINS,
    HTTP_STAT_LOGIN_FAILED,
    HTTP_STAT_COUNT
};

extern const struct proto http_proto;
extern const struct proto https_proto;

#endif
