/*
 * rtsp: the RTSP message and the rewrites a gateway needs. Pure functions over buffers: no
 * sockets, no allocation, nothing kept between calls.
 *
 * The parser reads the head of one message (RTSP 1.0, RFC 2326; RTSP 2.0 heads, RFC 7826, parse
 * the same way) in place: the start line and each header are pointer+length slices of the
 * caller's buffer, valid as long as it is. It returns the head's length, MSG_PARTIAL when the
 * head is not complete yet, or MSG_ERROR with a reason. Lines end in CRLF or a bare LF (RFC
 * 2326 4: receivers accept both); folded header lines are refused (no server folds).
 *
 * The rewriter copies a message while replacing every address that names the device with the one
 * the client used, or the reverse (the URL authorities of the request line, Content-Base,
 * Content-Location, Location and RTP-Info url=, and in an SDP body the a=control URLs and the
 * o=, c= and a=rtcp: addresses, which also take the family of the address the client used),
 * fixing Content-Length when the body changes. The Transport header is
 * left to the caller, which owns the RTP ports (rtsp_transport_* helps it).
 */
#ifndef PORTGATE_RTSP_H
#define PORTGATE_RTSP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "message/msg.h"

#define RTSP_ERROR (-1)

/* Parses the head of the RTSP message at buf (message/msg.h, MSG_RTSP). Returns head_len (> 0),
 * MSG_PARTIAL, or MSG_ERROR with *why set to a static reason. */
ssize_t rtsp_parse(const char *buf, size_t len, struct msg *m, const char **why);

/*
 * An interleaved frame (RFC 2326 10.12): '$', a channel byte, a 16-bit length, the data. At a
 * message boundary, buf[0] == '$' starts one. Returns its whole length (4 + data, at most
 * 65,539) as soon as its 4-byte header is in buf, whether or not its data is yet; MSG_PARTIAL
 * before. A frame may be longer than a relay buffer, so it is passed on in pieces.
 */
ssize_t rtsp_frame_len(const char *buf, size_t len);

/*
 * One side of an address rewrite: a host (an IP literal, without brackets, or a name) and a port.
 * A URL authority matches it when the host is equal (case-insensitive) and the port is equal,
 * a URL without a port having 554 (RFC 2326 3.2).
 */
struct rtsp_endpoint {
    char host[64];
    uint16_t port;
};

struct rtsp_rewrite {
    struct rtsp_endpoint from, to;
    char to_ip[64]; /* the address o= and c= lines get (an IP literal); empty: to.host */
    /* The scheme a rewritten URL gets ("rtsp://" towards a device behind rtsps, "rtsps://"
     * back), or NULL: it keeps its own. */
    const char *scheme;
};

/*
 * Copies the message at in (head_len + length bytes, as parsed into m) to out, rewriting URLs
 * and SDP addresses from rw->from to rw->to, and the Transport header's value to transport when
 * that is not NULL. Returns the length written, or RTSP_ERROR with *why set (out_room too small,
 * or a body that cannot be rewritten).
 */
ssize_t rtsp_rewrite(const char *in, const struct msg *m, const struct rtsp_rewrite *rw,
                     const char *transport, char *out, size_t out_room, const char **why);

/* Rewrites one URL (rtsp://, rtsps://, rtspu://, any case) to out if its authority matches
 * rw->from. Returns the length written, 0 if it does not match (nothing written), or
 * RTSP_ERROR when out_room is too small. */
ssize_t rtsp_rewrite_url(struct msg_str url, const struct rtsp_rewrite *rw, char *out,
                         size_t out_room);

/* The host and port an absolute rtsp URL names (554 when it gives none). Returns 0, or -1 for
 * anything else ("*", a relative URL, another scheme, a host too long). */
int rtsp_url_endpoint(struct msg_str url, struct rtsp_endpoint *ep);

/*
 * Transport (RFC 2326 12.39, RFC 7826 18.54): a comma-separated list of transport specs, each a
 * protocol (RTP/AVP, RTP/AVP/UDP, RTP/AVP/TCP...) and ;-separated parameters.
 */
enum rtsp_lower { RTSP_UDP, RTSP_TCP };

struct rtsp_transport {
    struct msg_str spec; /* the whole spec, for copying what is not rewritten */
    enum rtsp_lower lower;
    bool multicast; /* "multicast" (the default for RTSP 1.0 is unicast) */
    bool record;    /* mode=record (or mode="RECORD") */
    bool has_client_port, has_server_port, has_interleaved;
    uint16_t client_port[2], server_port[2]; /* RTP, RTCP */
    struct msg_str source, destination;      /* empty when absent */
};

/* Parses the first spec of a Transport value starting at *pos and moves *pos past it and its
 * comma. Returns 1 with t filled, 0 at the end of the value, or RTSP_ERROR (*why set) for a spec
 * that is not RTP or whose parameters do not parse. */
int rtsp_transport_next(struct msg_str value, size_t *pos, struct rtsp_transport *t,
                        const char **why);

#endif
