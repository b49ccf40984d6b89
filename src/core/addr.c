#include "core/addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t v4mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* Parses a decimal port 1..65535 from [s, s+len). Returns 0 or -1. */
static int parse_port(const char *s, size_t len, uint16_t *out)
{
    if (len == 0 || len > 5) {
        return -1;
    }
    unsigned v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return -1;
        }
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v == 0 || v > 65535) {
        return -1;
    }
    *out = (uint16_t)v;
    return 0;
}

int addr_parse_endpoint(const char *s, struct addr_endpoint *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    const char *host = s, *host_end, *ports;
    if (*s == '[') {
        host = s + 1;
        host_end = strchr(host, ']');
        if (host_end == NULL) {
            snprintf(err, errlen, "\"%s\": missing ']' after IPv6 address", s);
            return -1;
        }
        if (host_end[1] != ':') {
            snprintf(err, errlen, "\"%s\": expected ':PORT' after ']'", s);
            return -1;
        }
        ports = host_end + 2;
        out->bracketed = true;
    } else {
        host_end = strrchr(s, ':');
        if (host_end == NULL) {
            snprintf(err, errlen, "\"%s\": expected HOST:PORT", s);
            return -1;
        }
        if (memchr(s, ':', (size_t)(host_end - s)) != NULL) {
            snprintf(err, errlen,
                     "\"%s\": an IPv6 address must be written in brackets, as [%.*s]:PORT", s,
                     (int)(host_end - s), s);
            return -1;
        }
        ports = host_end + 1;
    }
    size_t hlen = (size_t)(host_end - host);
    if (hlen == 0) {
        snprintf(err, errlen, "\"%s\": missing host (use 0.0.0.0 or [::] for every address)", s);
        return -1;
    }
    if (hlen >= sizeof(out->host)) {
        snprintf(err, errlen, "\"%.40s...\": host name too long", s);
        return -1;
    }
    memcpy(out->host, host, hlen);
    out->host[hlen] = '\0';
    if (out->bracketed) {
        struct in6_addr a6;
        if (inet_pton(AF_INET6, out->host, &a6) != 1) {
            snprintf(err, errlen, "\"%s\": \"%s\" is not an IPv6 address", s, out->host);
            return -1;
        }
    } else {
        for (const char *p = out->host; *p; p++) {
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                  (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_')) {
                snprintf(err, errlen, "\"%s\": \"%s\" is neither an IP address nor a host name", s,
                         out->host);
                return -1;
            }
        }
        /* All digits and dots but not a valid IPv4 literal (e.g. 192.0.2.300): say so, rather than
         * trying to resolve it as a name. */
        if (strspn(out->host, "0123456789.") == hlen) {
            struct in_addr a4;
            if (inet_pton(AF_INET, out->host, &a4) != 1) {
                snprintf(err, errlen, "\"%s\": \"%s\" is not an IPv4 address", s, out->host);
                return -1;
            }
        }
    }
    const char *dash = strchr(ports, '-');
    size_t lo_len = dash ? (size_t)(dash - ports) : strlen(ports);
    if (parse_port(ports, lo_len, &out->port_lo) != 0) {
        snprintf(err, errlen, "\"%s\": port \"%.*s\" is not a number from 1 to 65535", s,
                 (int)lo_len, ports);
        return -1;
    }
    out->port_hi = out->port_lo;
    if (dash != NULL) {
        if (parse_port(dash + 1, strlen(dash + 1), &out->port_hi) != 0) {
            snprintf(err, errlen, "\"%s\": port \"%s\" is not a number from 1 to 65535", s,
                     dash + 1);
            return -1;
        }
        if (out->port_hi < out->port_lo) {
            snprintf(err, errlen, "\"%s\": port range %u-%u is backwards", s, out->port_lo,
                     out->port_hi);
            return -1;
        }
    }
    return 0;
}

int addr_parse_ip(const char *s, struct sockaddr_storage *out)
{
    memset(out, 0, sizeof(*out));
    struct sockaddr_in *sin = (struct sockaddr_in *)out;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)out;
    if (inet_pton(AF_INET, s, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, s, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        return 0;
    }
    return -1;
}

socklen_t addr_len(const struct sockaddr_storage *ss)
{
    return ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

uint16_t addr_port(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET6) {
        return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
    }
    return ntohs(((const struct sockaddr_in *)ss)->sin_port);
}

void addr_set_port(struct sockaddr_storage *ss, uint16_t port)
{
    if (ss->ss_family == AF_INET6) {
        ((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
    } else {
        ((struct sockaddr_in *)ss)->sin_port = htons(port);
    }
}

bool addr_is_any(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET6) {
        return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)ss)->sin6_addr);
    }
    return ((const struct sockaddr_in *)ss)->sin_addr.s_addr == htonl(INADDR_ANY);
}

bool addr_is_loopback(const struct sockaddr_storage *ss)
{
    struct sockaddr_storage v4 = *ss;
    addr_unmap(&v4);
    if (v4.ss_family == AF_INET6) {
        return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)&v4)->sin6_addr);
    }
    /* RFC 1122 3.2.1.3: all of 127.0.0.0/8 */
    return v4.ss_family == AF_INET &&
           (ntohl(((const struct sockaddr_in *)&v4)->sin_addr.s_addr) >> 24) == 127;
}

bool addr_is_private(const struct sockaddr_storage *ss)
{
    struct sockaddr_storage v4 = *ss;
    addr_unmap(&v4);
    if (addr_is_loopback(&v4)) {
        return true;
    }
    if (v4.ss_family == AF_INET6) {
        const uint8_t *a = ((const struct sockaddr_in6 *)&v4)->sin6_addr.s6_addr;
        return (a[0] & 0xfe) == 0xfc || (a[0] == 0xfe && (a[1] & 0xc0) == 0x80);
    }
    if (v4.ss_family != AF_INET) {
        return false;
    }
    uint32_t ip = ntohl(((const struct sockaddr_in *)&v4)->sin_addr.s_addr);
    return (ip >> 24) == 10 || (ip >> 20) == 0xac1 || (ip >> 16) == 0xc0a8 ||
           (ip >> 16) == 0xa9fe || (ip >> 22) == (100u << 2 | 1);
}

bool addr_ip_equal(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family) {
        return false;
    }
    if (a->ss_family == AF_INET6) {
        return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                      &((const struct sockaddr_in6 *)b)->sin6_addr, 16) == 0 &&
               ((const struct sockaddr_in6 *)a)->sin6_scope_id ==
                   ((const struct sockaddr_in6 *)b)->sin6_scope_id;
    }
    return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
           ((const struct sockaddr_in *)b)->sin_addr.s_addr;
}

bool addr_equal(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    return addr_ip_equal(a, b) && addr_port(a) == addr_port(b);
}

void addr_unmap(struct sockaddr_storage *ss)
{
    if (ss->ss_family != AF_INET6) {
        return;
    }
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    if (memcmp(sin6->sin6_addr.s6_addr, v4mapped_prefix, 12) != 0) {
        return;
    }
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = sin6->sin6_port};
    memcpy(&sin.sin_addr, sin6->sin6_addr.s6_addr + 12, 4);
    memset(ss, 0, sizeof(*ss));
    memcpy(ss, &sin, sizeof(sin));
}

char *addr_format_ip(const struct sockaddr_storage *ss, char *buf, size_t len)
{
    const void *src = ss->ss_family == AF_INET6
                          ? (const void *)&((const struct sockaddr_in6 *)ss)->sin6_addr
                          : (const void *)&((const struct sockaddr_in *)ss)->sin_addr;
    if (inet_ntop(ss->ss_family, src, buf, (socklen_t)len) == NULL) {
        snprintf(buf, len, "?");
    }
    return buf;
}

char *addr_format(const struct sockaddr_storage *ss, char *buf, size_t len)
{
    char ip[INET6_ADDRSTRLEN];
    addr_format_ip(ss, ip, sizeof(ip));
    if (ss->ss_family == AF_INET6) {
        snprintf(buf, len, "[%s]:%u", ip, addr_port(ss));
    } else {
        snprintf(buf, len, "%s:%u", ip, addr_port(ss));
    }
    return buf;
}

/* ---- CIDR ---- */

static void mask_bytes(uint8_t *net, int nbytes, int prefix)
{
    for (int i = 0; i < nbytes; i++) {
        int bits = prefix - 8 * i;
        uint8_t m = bits >= 8 ? 0xff : bits <= 0 ? 0 : (uint8_t)(0xff << (8 - bits));
        net[i] &= m;
    }
}

int cidr_parse(const char *s, struct cidr *out, char *err, size_t errlen)
{
    char ip[INET6_ADDRSTRLEN + 1];
    const char *slash = strchr(s, '/');
    size_t iplen = slash ? (size_t)(slash - s) : strlen(s);
    memset(out, 0, sizeof(*out));
    if (iplen == 0 || iplen >= sizeof(ip)) {
        snprintf(err, errlen, "\"%s\": not an address or CIDR", s);
        return -1;
    }
    memcpy(ip, s, iplen);
    ip[iplen] = '\0';
    int maxbits;
    if (inet_pton(AF_INET, ip, out->net) == 1) {
        out->family = AF_INET;
        maxbits = 32;
    } else if (inet_pton(AF_INET6, ip, out->net) == 1) {
        out->family = AF_INET6;
        maxbits = 128;
    } else {
        snprintf(err, errlen, "\"%s\": \"%s\" is not an IPv4 or IPv6 address", s, ip);
        return -1;
    }
    int prefix = maxbits;
    if (slash != NULL) {
        const char *p = slash + 1;
        if (*p == '\0' || strspn(p, "0123456789") != strlen(p) || strlen(p) > 3) {
            snprintf(err, errlen, "\"%s\": prefix length \"%s\" is not a number", s, p);
            return -1;
        }
        prefix = atoi(p);
        if (prefix > maxbits) {
            snprintf(err, errlen, "\"%s\": prefix longer than %d", s, maxbits);
            return -1;
        }
    }
    uint8_t masked[16];
    memcpy(masked, out->net, 16);
    mask_bytes(masked, maxbits / 8, prefix);
    if (memcmp(masked, out->net, (size_t)maxbits / 8) != 0) {
        char fixed[INET6_ADDRSTRLEN];
        inet_ntop(out->family, masked, fixed, sizeof(fixed));
        snprintf(err, errlen,
                 "\"%s\": address has bits set beyond the /%d prefix (did you mean %s/%d?)", s,
                 prefix, fixed, prefix);
        return -1;
    }
    out->prefix = (uint8_t)prefix;
    /* ::ffff:a.b.c.d/N with N >= 96 is the IPv4 network a.b.c.d/(N-96). */
    if (out->family == AF_INET6 && prefix >= 96 && memcmp(out->net, v4mapped_prefix, 12) == 0) {
        memmove(out->net, out->net + 12, 4);
        memset(out->net + 4, 0, 12);
        out->family = AF_INET;
        out->prefix = (uint8_t)(prefix - 96);
    }
    return 0;
}

static bool cidr_match(const struct cidr *c, const uint8_t *a)
{
    int full = c->prefix / 8, rest = c->prefix % 8;
    if (memcmp(c->net, a, (size_t)full) != 0) {
        return false;
    }
    if (rest == 0) {
        return true;
    }
    uint8_t m = (uint8_t)(0xff << (8 - rest));
    return (a[full] & m) == c->net[full];
}

bool cidr_set_contains(const struct cidr_set *set, const struct sockaddr_storage *ss)
{
    const uint8_t *a;
    int family = ss->ss_family;
    if (family == AF_INET6) {
        a = ((const struct sockaddr_in6 *)ss)->sin6_addr.s6_addr;
        if (memcmp(a, v4mapped_prefix, 12) == 0) {
            a += 12;
            family = AF_INET;
        }
    } else {
        a = (const uint8_t *)&((const struct sockaddr_in *)ss)->sin_addr;
    }
    for (size_t i = 0; i < set->n; i++) {
        if (set->v[i].family == family && cidr_match(&set->v[i], a)) {
            return true;
        }
    }
    return false;
}

static int cidr_set_push(struct cidr_set *set, const struct cidr *c)
{
    if (set->n == set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 4;
        struct cidr *v = realloc(set->v, cap * sizeof(*v));
        if (v == NULL) {
            return -ENOMEM;
        }
        set->v = v;
        set->cap = cap;
    }
    set->v[set->n++] = *c;
    return 0;
}

int cidr_set_add_list(struct cidr_set *set, const char *list, char *err, size_t errlen)
{
    const char *p = list;
    for (;;) {
        while (*p == ' ' || *p == '\t') {
            p++;
        }
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t')) {
            len--;
        }
        char item[INET6_ADDRSTRLEN + 8];
        if (len == 0 && end == NULL && p != list) {
            return 0; /* a trailing comma, as at the end of a line continued on the next */
        }
        if (len == 0) {
            snprintf(err, errlen, "\"%s\": empty entry in list", list);
            return -1;
        }
        if (len >= sizeof(item)) {
            snprintf(err, errlen, "\"%.*s\": not an address or CIDR", (int)len, p);
            return -1;
        }
        memcpy(item, p, len);
        item[len] = '\0';
        struct cidr c;
        if (cidr_parse(item, &c, err, errlen) != 0) {
            return -1;
        }
        if (cidr_set_push(set, &c) != 0) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        if (end == NULL) {
            return 0;
        }
        p = end + 1;
    }
}

bool cidr_set_equal(const struct cidr_set *a, const struct cidr_set *b)
{
    if (a->n != b->n) {
        return false;
    }
    for (size_t i = 0; i < a->n; i++) {
        if (a->v[i].family != b->v[i].family || a->v[i].prefix != b->v[i].prefix ||
            memcmp(a->v[i].net, b->v[i].net, 16) != 0) {
            return false;
        }
    }
    return true;
}

int cidr_set_copy(struct cidr_set *dst, const struct cidr_set *src)
{
    for (size_t i = 0; i < src->n; i++) {
        if (cidr_set_push(dst, &src->v[i]) != 0) {
            return -ENOMEM;
        }
    }
    return 0;
}

char *cidr_format(const struct cidr *c, char *buf, size_t len)
{
    char ip[INET6_ADDRSTRLEN];
    inet_ntop(c->family, c->net, ip, sizeof(ip));
    snprintf(buf, len, "%s/%u", ip, c->prefix);
    return buf;
}

char *cidr_set_format(const struct cidr_set *set, char *buf, size_t len)
{
    size_t off = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < set->n && off < len; i++) {
        char one[CIDR_STRLEN];
        int n = snprintf(buf + off, len - off, "%s%s", i ? "," : "",
                         cidr_format(&set->v[i], one, sizeof(one)));
        if (n < 0) {
            break;
        }
        off += (size_t)n;
    }
    return buf;
}

void cidr_set_clear(struct cidr_set *set)
{
    free(set->v);
    set->v = NULL;
    set->n = set->cap = 0;
}
