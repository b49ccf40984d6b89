#include "forward/proxyhdr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* proxy-protocol.txt 2.2: the 12 bytes that start a v2 header (a NUL among them). */
static const unsigned char v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                         0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
static const char v1_sig[] = "PROXY "; /* 2.1: "PROXY", then exactly one space */
#define V1_SIG_LEN 6
#define V2_HEAD_LEN 16 /* signature, version and command, family, length */

#define V2_CMD_LOCAL 0x0
#define V2_CMD_PROXY 0x1
#define V2_FAM_UNSPEC 0x0
#define V2_FAM_INET 0x1
#define V2_FAM_INET6 0x2
#define V2_FAM_UNIX 0x3
#define V2_TRANS_UNSPEC 0x0
#define V2_TRANS_STREAM 0x1
#define V2_TRANS_DGRAM 0x2
#define V2_INET_LEN 12  /* 2 * 4 address bytes + 2 * 2 port bytes */
#define V2_INET6_LEN 36 /* 2 * 16 + 2 * 2 */

static size_t min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

/* A v1 port: decimal, 0 to 65535, no leading zero (2.1: no confusion with octal). */
static int v1_port(const char *s, uint16_t *out)
{
    size_t n = strlen(s);
    if (n == 0 || n > 5 || strspn(s, "0123456789") != n || (s[0] == '0' && n > 1)) {
        return -1;
    }
    unsigned long v = 0;
    for (size_t i = 0; i < n; i++) {
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v > 65535) {
        return -1;
    }
    *out = (uint16_t)v;
    return 0;
}

/* A v1 address of family af ("TCP4": AF_INET) and its port, into ss. inet_pton() is strict as
 * 2.1 asks: IPv4 is four decimal numbers of 0 to 255 without leading zeros. */
static int v1_addr(int af, const char *ip, const char *port, struct sockaddr_storage *ss)
{
    uint16_t p;
    if (v1_port(port, &p) != 0) {
        return -2;
    }
    memset(ss, 0, sizeof(*ss));
    if (af == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(p);
        return inet_pton(AF_INET, ip, &sin->sin_addr) == 1 ? 0 : -1;
    }
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(p);
    return inet_pton(AF_INET6, ip, &sin6->sin6_addr) == 1 ? 0 : -1;
}

/* Version 1 (2.1): buf starts with a prefix of "PROXY ". */
static int parse_v1(const char *buf, size_t len, struct proxyhdr *h, const char **why)
{
    /* The receiver waits for the CRLF before decoding, within 107 bytes; a lone CR or LF, or a
     * byte no header holds, refuses the line at once. */
    size_t n = min_size(len, PROXYHDR_V1_MAX), end = 0;
    bool found = false;
    for (size_t i = 0; i < n && !found; i++) {
        unsigned char ch = (unsigned char)buf[i];
        if (ch == '\r') {
            if (i + 1 == PROXYHDR_V1_MAX) {
                break; /* the LF would be byte 108 */
            }
            if (i + 1 == len) {
                return 0;
            }
            if (buf[i + 1] != '\n') {
                *why = "v1: a CR without LF";
                return -1;
            }
            end = i;
            found = true;
        } else if (ch == '\n') {
            *why = "v1: a LF without CR";
            return -1;
        } else if (ch < 0x20 || ch > 0x7e) {
            *why = "v1: a byte that is not printable ASCII";
            return -1;
        }
    }
    if (!found) {
        if (len < PROXYHDR_V1_MAX) {
            return 0;
        }
        *why = "v1: no CRLF within 107 bytes";
        return -1;
    }
    char line[PROXYHDR_V1_MAX];
    memcpy(line, buf, end);
    line[end] = '\0';
    const char *p = line + V1_SIG_LEN;
    if (strncmp(p, "UNKNOWN", 7) == 0 && (p[7] == '\0' || p[7] == ' ')) {
        /* 2.1: for UNKNOWN, the receiver ignores what comes before the CRLF. */
        h->version = PROXYHDR_V1;
        h->has_addrs = false;
        return (int)end + 2;
    }
    int af;
    if (strncmp(p, "TCP4 ", 5) == 0) {
        af = AF_INET;
    } else if (strncmp(p, "TCP6 ", 5) == 0) {
        af = AF_INET6;
    } else {
        *why = "v1: the protocol is not TCP4, TCP6 or UNKNOWN";
        return -1;
    }
    /* Exactly four fields, one space apart. */
    char *field[4];
    char *s = line + V1_SIG_LEN + 5;
    for (int i = 0; i < 4; i++) {
        char *sp = strchr(s, ' ');
        if ((sp == NULL) != (i == 3) || *s == ' ' || *s == '\0') {
            *why = "v1: expected SRC DST SPORT DPORT, one space apart";
            return -1;
        }
        field[i] = s;
        if (sp != NULL) {
            *sp = '\0';
            s = sp + 1;
        }
    }
    int rs = v1_addr(af, field[0], field[2], &h->src);
    int rd = v1_addr(af, field[1], field[3], &h->dst);
    if (rs == -2 || rd == -2) {
        *why = "v1: a port that is not a decimal number from 0 to 65535 without leading zeros";
        return -1;
    }
    if (rs != 0 || rd != 0) {
        *why = af == AF_INET ? "v1: TCP4 with an address that is not IPv4"
                             : "v1: TCP6 with an address that is not IPv6";
        return -1;
    }
    h->version = PROXYHDR_V1;
    h->has_addrs = true;
    return (int)end + 2;
}

/* Checks the TLVs of a v2 block (2.2: type, 16-bit length, value): whole, none cut short. */
static int v2_tlvs(const unsigned char *p, size_t len)
{
    while (len > 0) {
        if (len < 3) {
            return -1;
        }
        size_t vlen = (size_t)p[1] << 8 | p[2];
        if (vlen > len - 3) {
            return -1;
        }
        p += 3 + vlen;
        len -= 3 + vlen;
    }
    return 0;
}

/* Version 2 (2.2): buf starts with a prefix of the signature. */
static int parse_v2(const char *buf, size_t len, struct proxyhdr *h, const char **why)
{
    const unsigned char *b = (const unsigned char *)buf;
    unsigned cmd = 0, fam = V2_FAM_UNSPEC, trans = V2_TRANS_UNSPEC;
    if (len > 12) {
        cmd = b[12] & 0x0f;
        if (b[12] >> 4 != 2) {
            *why = "v2: a version other than 2";
            return -1;
        }
        if (cmd != V2_CMD_LOCAL && cmd != V2_CMD_PROXY) {
            *why = "v2: a command that is neither LOCAL nor PROXY";
            return -1;
        }
    }
    /* LOCAL: the block is discarded, its family with it, whatever it says. */
    if (len > 13 && cmd == V2_CMD_PROXY) {
        fam = b[13] >> 4;
        trans = b[13] & 0x0f;
        if (fam > V2_FAM_UNIX || trans > V2_TRANS_DGRAM) {
            *why = "v2: an unassigned address family or transport";
            return -1;
        }
        if (fam == V2_FAM_UNIX) {
            *why = "v2: a UNIX socket's addresses, not an IP connection's";
            return -1;
        }
        if (trans == V2_TRANS_DGRAM) {
            *why = "v2: a DGRAM (UDP) connection, not a stream";
            return -1;
        }
    }
    if (len < V2_HEAD_LEN) {
        return 0;
    }
    size_t total = V2_HEAD_LEN + ((size_t)b[14] << 8 | b[15]);
    if (total > PROXYHDR_MAX) {
        *why = "v2: a header longer than 1024 bytes";
        return -1;
    }
    if (len < total) {
        return 0;
    }
    h->version = PROXYHDR_V2;
    h->has_addrs = false;
    /* LOCAL, and UNSPEC in either half of the family (2.2: the receiver may use the real
     * endpoints and ignore the address information): the connection's own addresses. */
    if (cmd == V2_CMD_LOCAL || fam == V2_FAM_UNSPEC || trans == V2_TRANS_UNSPEC) {
        return (int)total;
    }
    size_t alen = fam == V2_FAM_INET ? V2_INET_LEN : V2_INET6_LEN;
    if (total - V2_HEAD_LEN < alen) {
        *why = fam == V2_FAM_INET ? "v2: INET with fewer than 12 address bytes"
                                  : "v2: INET6 with fewer than 36 address bytes";
        return -1;
    }
    if (v2_tlvs(b + V2_HEAD_LEN + alen, total - V2_HEAD_LEN - alen) != 0) {
        *why = "v2: a TLV cut short by the header's length";
        return -1;
    }
    const unsigned char *a = b + V2_HEAD_LEN;
    memset(&h->src, 0, sizeof(h->src));
    memset(&h->dst, 0, sizeof(h->dst));
    if (fam == V2_FAM_INET) {
        struct sockaddr_in *s = (struct sockaddr_in *)&h->src, *d = (struct sockaddr_in *)&h->dst;
        s->sin_family = d->sin_family = AF_INET;
        memcpy(&s->sin_addr, a, 4);
        memcpy(&d->sin_addr, a + 4, 4);
        memcpy(&s->sin_port, a + 8, 2); /* both in network order already */
        memcpy(&d->sin_port, a + 10, 2);
    } else {
        struct sockaddr_in6 *s = (struct sockaddr_in6 *)&h->src;
        struct sockaddr_in6 *d = (struct sockaddr_in6 *)&h->dst;
        s->sin6_family = d->sin6_family = AF_INET6;
        memcpy(&s->sin6_addr, a, 16);
        memcpy(&d->sin6_addr, a + 16, 16);
        memcpy(&s->sin6_port, a + 32, 2);
        memcpy(&d->sin6_port, a + 34, 2);
    }
    h->has_addrs = true;
    return (int)total;
}

int proxyhdr_parse(const char *buf, size_t len, enum proxyhdr_version accept, struct proxyhdr *h,
                   const char **why)
{
    if (len == 0) {
        return 0;
    }
    /* 2.2: the two are told apart by their first bytes. */
    bool v1 = memcmp(buf, v1_sig, min_size(len, V1_SIG_LEN)) == 0;
    bool v2 = memcmp(buf, v2_sig, min_size(len, sizeof(v2_sig))) == 0;
    if (!v1 && !v2) {
        *why = "not a PROXY protocol header";
        return -1;
    }
    if (v1 && !(accept & PROXYHDR_V1)) {
        *why = "a v1 header where v2 is expected";
        return -1;
    }
    if (v2 && !(accept & PROXYHDR_V2)) {
        *why = "a v2 header where v1 is expected";
        return -1;
    }
    if (len < (v1 ? V1_SIG_LEN : sizeof(v2_sig))) {
        return 0;
    }
    return v1 ? parse_v1(buf, len, h, why) : parse_v2(buf, len, h, why);
}

/* ss as IPv6: an IPv4 address becomes IPv4-mapped (::ffff:a.b.c.d), port kept. */
static void map_v6(struct sockaddr_storage *ss)
{
    if (ss->ss_family != AF_INET) {
        return;
    }
    struct sockaddr_in v4 = *(struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    memset(ss, 0, sizeof(*ss));
    v6->sin6_family = AF_INET6;
    v6->sin6_port = v4.sin_port;
    v6->sin6_addr.s6_addr[10] = 0xff;
    v6->sin6_addr.s6_addr[11] = 0xff;
    memcpy(&v6->sin6_addr.s6_addr[12], &v4.sin_addr, 4);
}

int proxyhdr_build(enum proxyhdr_version v, const struct sockaddr_storage *src,
                   const struct sockaddr_storage *dst, char *buf, size_t len)
{
    struct sockaddr_storage s = *src, d = *dst;
    bool ip = (s.ss_family == AF_INET || s.ss_family == AF_INET6) &&
              (d.ss_family == AF_INET || d.ss_family == AF_INET6);
    if (!ip || (v != PROXYHDR_V1 && v != PROXYHDR_V2)) {
        return -1;
    }
    if (s.ss_family != d.ss_family) {
        map_v6(&s);
        map_v6(&d);
    }
    bool v4 = s.ss_family == AF_INET;
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)&s, *d4 = (const void *)&d;
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&s, *d6 = (const void *)&d;
    if (v == PROXYHDR_V1) {
        char sa[INET6_ADDRSTRLEN], da[INET6_ADDRSTRLEN];
        inet_ntop(s.ss_family, v4 ? (const void *)&s4->sin_addr : &s6->sin6_addr, sa, sizeof(sa));
        inet_ntop(d.ss_family, v4 ? (const void *)&d4->sin_addr : &d6->sin6_addr, da, sizeof(da));
        int n = snprintf(buf, len, "PROXY TCP%c %s %s %u %u\r\n", v4 ? '4' : '6', sa, da,
                         ntohs(v4 ? s4->sin_port : s6->sin6_port),
                         ntohs(v4 ? d4->sin_port : d6->sin6_port));
        return n > 0 && (size_t)n < len ? n : -1;
    }
    size_t alen = v4 ? V2_INET_LEN : V2_INET6_LEN;
    if (len < V2_HEAD_LEN + alen) {
        return -1;
    }
    unsigned char *b = (unsigned char *)buf;
    memcpy(b, v2_sig, sizeof(v2_sig));
    b[12] = 0x20 | V2_CMD_PROXY;
    b[13] = (unsigned char)((v4 ? V2_FAM_INET : V2_FAM_INET6) << 4 | V2_TRANS_STREAM);
    b[14] = 0;
    b[15] = (unsigned char)alen;
    unsigned char *a = b + V2_HEAD_LEN;
    if (v4) {
        memcpy(a, &s4->sin_addr, 4);
        memcpy(a + 4, &d4->sin_addr, 4);
        memcpy(a + 8, &s4->sin_port, 2);
        memcpy(a + 10, &d4->sin_port, 2);
    } else {
        memcpy(a, &s6->sin6_addr, 16);
        memcpy(a + 16, &d6->sin6_addr, 16);
        memcpy(a + 32, &s6->sin6_port, 2);
        memcpy(a + 34, &d6->sin6_port, 2);
    }
    return (int)(V2_HEAD_LEN + alen);
}

const char *proxyhdr_version_name(enum proxyhdr_version v)
{
    switch (v) {
    case PROXYHDR_OFF:
        return "off";
    case PROXYHDR_V1:
        return "v1";
    case PROXYHDR_V2:
        return "v2";
    case PROXYHDR_ANY:
        return "any";
    }
    return "?";
}
