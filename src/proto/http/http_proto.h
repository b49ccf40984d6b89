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
#include "tls/tls.h"

/* Defaults, documented in docs/configuration.md. */
#define HTTP_HEADER_TIMEOUT_MS 10000u
#define HTTP_KEEPALIVE_TIMEOUT_MS 60000u
#define HTTP_MAX_HEADER 16384u
#define HTTP_HSTS_DEFAULT "max-age=31536000"

/* The HTTP filter's settings, shared by http and https (plain data: forward/proto.h). */
struct http_conf {
    char target_host[256];   /* target-host: the Host the device gets; "": the client's */
    char redirect_https[64]; /* http: "PORT" or "HOST:PORT" of the https twin; "": none */
    char hsts[128];          /* https: the Strict-Transport-Security value; "": none */
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
 * gateway answered itself (4xx, redirects), connections upgraded (websocket); then TLS's. */
enum http_proto_stat { HTTP_STAT_REQUESTS, HTTP_STAT_REFUSED, HTTP_STAT_UPGRADES, HTTP_STAT_COUNT };

extern const struct proto http_proto;
extern const struct proto https_proto;

#endif
