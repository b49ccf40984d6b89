/*
 * addr: socket addresses and CIDR sets.
 *
 * Pure functions, no sockets, no name resolution (config.c resolves host names). Parsers write a
 * one-line reason into err (what is wrong with the text, quoting it) and return -1; they never
 * log. IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are treated as the IPv4 address they carry,
 * both in CIDR sets and when a client address is checked against one.
 */
#ifndef PORTGATE_ADDR_H
#define PORTGATE_ADDR_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Enough for "[ffff:...:ffff%ifname]:65535". */
#define ADDR_STRLEN 72
#define ADDR_HOSTLEN 254

/* "HOST:PORT" or "HOST:LO-HI" as written: host is an IP literal (without brackets) or a name. */
struct addr_endpoint {
    char host[ADDR_HOSTLEN];
    bool bracketed; /* written as [v6] */
    uint16_t port_lo, port_hi;
};

/*
 * Parses "192.0.2.1:80", "[2001:db8::1]:80", "name.example:80", and ranges "0.0.0.0:6000-6009".
 * Returns 0, or -1 with err set.
 */
int addr_parse_endpoint(const char *s, struct addr_endpoint *out, char *err, size_t errlen);

/* Parses an IP literal (no port, no brackets). Returns 0 or -1 (not an IP literal). */
int addr_parse_ip(const char *s, struct sockaddr_storage *out);

socklen_t addr_len(const struct sockaddr_storage *ss);
uint16_t addr_port(const struct sockaddr_storage *ss);
void addr_set_port(struct sockaddr_storage *ss, uint16_t port);
/* True for 0.0.0.0 and ::. */
bool addr_is_any(const struct sockaddr_storage *ss);
/* True for 127.0.0.0/8 and ::1 (and 127/8 mapped into IPv6). */
bool addr_is_loopback(const struct sockaddr_storage *ss);
/* True if ss is an address no one on the internet reaches: loopback, RFC 1918, shared (RFC
 * 6598), link-local, IPv6 unique local (fc00::/7) and link-local. A wildcard is not (it
 * listens on every address, public ones too). */
bool addr_is_private(const struct sockaddr_storage *ss);
/* Same family, address and port. */
bool addr_equal(const struct sockaddr_storage *a, const struct sockaddr_storage *b);
/* Same family and address; ports ignored. */
bool addr_ip_equal(const struct sockaddr_storage *a, const struct sockaddr_storage *b);
/* If ss is an IPv4-mapped IPv6 address, rewrites it as AF_INET in place. */
void addr_unmap(struct sockaddr_storage *ss);

/* Formats "192.0.2.1:80" or "[2001:db8::1]:80" into buf (ADDR_STRLEN) and returns buf. */
char *addr_format(const struct sockaddr_storage *ss, char *buf, size_t len);
/* Formats the address without the port. */
char *addr_format_ip(const struct sockaddr_storage *ss, char *buf, size_t len);

struct cidr {
    int family; /* AF_INET or AF_INET6 */
    uint8_t prefix;
    uint8_t net[16]; /* network bytes, host bits zero */
};

/*
 * Parses "192.0.2.0/24", "2001:db8::/32", or a bare address (a /32 or /128). Host bits set
 * beyond the prefix are an error, since an allow list with a typo must not silently widen.
 * Returns 0, or -1 with err set.
 */
int cidr_parse(const char *s, struct cidr *out, char *err, size_t errlen);

struct cidr_set {
    struct cidr *v;
    size_t n, cap;
};

/* Adds every entry of a comma-separated list ("192.0.2.0/24, 2001:db8::/32"; a trailing comma is
 * allowed, an empty entry elsewhere is not). Returns 0, or -1
 * with err set (-ENOMEM is reported the same way). Entries before the bad one stay added. */
int cidr_set_add_list(struct cidr_set *set, const char *list, char *err, size_t errlen);
bool cidr_set_contains(const struct cidr_set *set, const struct sockaddr_storage *ss);
bool cidr_set_equal(const struct cidr_set *a, const struct cidr_set *b);
/* Copies src into dst (which must be empty). Returns 0 or -ENOMEM. */
int cidr_set_copy(struct cidr_set *dst, const struct cidr_set *src);
/* Enough for "ffff:...:ffff/128". */
#define CIDR_STRLEN 50
/* Formats c as "192.0.2.0/24" into buf (CIDR_STRLEN) and returns buf. */
char *cidr_format(const struct cidr *c, char *buf, size_t len);
/* Formats the set as a comma-separated list into buf, cut at len; returns buf. */
char *cidr_set_format(const struct cidr_set *set, char *buf, size_t len);
void cidr_set_clear(struct cidr_set *set);

#endif
