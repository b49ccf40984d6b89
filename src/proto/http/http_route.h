/*
 * http_route: which of the http (or https) mappings that share a port a connection is for, by
 * the Host of its first request, and under TLS by the server name of its handshake (SNI). A
 * mapping answers for the names of its `host` key, exactly or by a wildcard ("*.example.org":
 * one label more); one mapping of a port may have no `host` and answers for every other name.
 * A request for a host no mapping answers for gets 404 from the gateway, and one whose Host
 * names another mapping than its SNI did gets 421: neither reaches a device.
 */
#ifndef PORTGATE_HTTP_ROUTE_H
#define PORTGATE_HTTP_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

#include "forward/tcp.h"

#define HTTP_HOSTS_LEN 1024 /* a host key's names, as kept: lower case, commas between */
#define HTTP_MAX_HOSTS 16

/* Reads a host key's value: names separated by commas (blanks around them ignored), each a DNS
 * name, "*." and a name, or an IP literal ([v6] in brackets). Writes them to out lower case,
 * commas between. Returns 0, or -1 with "\"VALUE\": what is wrong" in why. */
int http_hosts_parse(const char *val, char *out, size_t outlen, char *why, size_t whylen);

/* How well a list of names (as http_hosts_parse() wrote it) matches host (n bytes, any case,
 * without its port): 2 for an equal name, 1 for a wildcard's, 0 for none. */
int http_hosts_match(const char *hosts, const char *host, size_t n);

/* True if the two lists share a name, or one's wildcard covers the other's name: the first
 * such name (the covered one) is written to buf. */
bool http_hosts_overlap(const char *a, const char *b, char *buf, size_t len);

/* The router of http and https (forward/tcp.h). */
extern const struct tcp_router http_router;

#endif
