/*
 * proxyhdr: the PROXY protocol header (HAProxy's proxy-protocol.txt, versions 1 and 2), which a
 * proxy sends first on a connection to say whom it carries: the client's address and port, and
 * the address and port the client connected to.
 *
 * Pure functions over buffers, for untrusted input (fuzzed: fuzz/forward/fuzz_proxyhdr.c).
 * proxyhdr_parse() reads a header at the start of what a connection has received so far, and
 * never reads past len; proxyhdr_build() writes one for a TCP connection. Neither keeps any
 * state or allocates.
 *
 * What is accepted, strictly (anything else is refused, never guessed at):
 *   v1: "PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n" in at most 107 bytes, single spaces, addresses
 *       of the stated family as inet_pton() reads them (IPv4: four decimal numbers without
 *       leading zeros), ports 0 to 65535 in decimal without leading zeros; or "PROXY UNKNOWN",
 *       then CRLF or a space and anything printable up to the CRLF (no addresses).
 *   v2: the 12-byte signature, version 2, command LOCAL (the block is skipped whatever it
 *       holds: no addresses) or PROXY with family INET or INET6 over STREAM (addresses), or
 *       family UNSPEC (no addresses). UNIX, DGRAM and unassigned values are refused. The block
 *       must hold the family's addresses; what follows them must be whole TLVs, which are
 *       skipped. A header is at most PROXYHDR_MAX bytes (TLVs included): the largest headers
 *       known senders make are a few hundred bytes, and the limit bounds the bytes a peer can
 *       make the receiver hold before the connection starts.
 * IPv4-mapped IPv6 addresses are kept as given (a TCP6 line with ::ffff:192.0.2.1 is an IPv6
 * address).
 */
#ifndef PORTGATE_PROXYHDR_H
#define PORTGATE_PROXYHDR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* Which versions a mapping sends or accepts (map_conf: send-proxy, accept-proxy). */
enum proxyhdr_version {
    PROXYHDR_OFF = 0,
    PROXYHDR_V1 = 1,
    PROXYHDR_V2 = 2,
    PROXYHDR_ANY = 3, /* accept-proxy only: either, told apart by their first byte */
};

#define PROXYHDR_V1_MAX 107    /* the longest v1 line, CRLF included (the spec's worst case) */
#define PROXYHDR_MAX 1024      /* the longest header parsed (v2 with TLVs) */
#define PROXYHDR_BUILD_MAX 108 /* enough for any header proxyhdr_build() writes */

/* What a header says. */
struct proxyhdr {
    enum proxyhdr_version version; /* PROXYHDR_V1 or PROXYHDR_V2 */
    /* False for v1 UNKNOWN, v2 LOCAL and v2 UNSPEC: no addresses, the connection's own stand.
     * True: src is the client, dst the address it connected to (ports included). */
    bool has_addrs;
    struct sockaddr_storage src, dst;
};

/*
 * Parses a header of a version that accept allows (V1, V2 or ANY) at the start of buf's len
 * bytes. Returns the header's length (the bytes to consume; *h filled), 0 when buf is a valid
 * beginning of a header and more bytes are needed, or -1 with *why set to a one-line reason
 * (static text) when buf does not start with an acceptable header. An incomplete header is
 * refused as soon as a byte shows it cannot become valid.
 */
int proxyhdr_parse(const char *buf, size_t len, enum proxyhdr_version accept, struct proxyhdr *h,
                   const char **why);

/*
 * Writes the version v (V1 or V2) header of a TCP connection from src to dst (the client's
 * address, and the address it connected to) into buf, which has room for len bytes
 * (PROXYHDR_BUILD_MAX is always enough). v1 says TCP4 or TCP6, v2 PROXY over INET or INET6
 * STREAM, without TLVs. When one address is IPv4 and the other IPv6, the IPv4 one is written
 * IPv4-mapped. Returns the header's length, or -1 if src or dst is not an IP address or len is
 * too small.
 */
int proxyhdr_build(enum proxyhdr_version v, const struct sockaddr_storage *src,
                   const struct sockaddr_storage *dst, char *buf, size_t len);

/* "off", "v1", "v2" or "any", as the config file writes them. */
const char *proxyhdr_version_name(enum proxyhdr_version v);

#endif
