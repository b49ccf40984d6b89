/*
 * rtsp_stream: the RTP and RTCP ports of an RTSP session's streams, and the relay of their
 * datagrams between the device and the client.
 *
 * A stream is what one SETUP with RTP over UDP makes: an even/odd pair of UDP ports towards the
 * device (the "inside" pair, which the device is told are the client's) and one towards the
 * client (the "outside" pair, which the client is told are the server's), both drawn from the
 * mapping's rtp-ports range. Datagrams are relayed pairwise: RTP from the device's RTP port to
 * the client's, RTCP both ways, and RTP from the client (a back channel) to the device.
 *
 * Never an open relay: the inside pair accepts datagrams only from the device's address, and
 * from its server ports once the SETUP answer named them; the outside pair only from the
 * client's address, and each socket locks to the first source port the client sends from
 * (players behind a NAT do not send from the ports they announced). Everything else is dropped
 * and counted. A stream belongs to the loop of the worker that made it.
 */
#ifndef PORTGATE_RTSP_STREAM_H
#define PORTGATE_RTSP_STREAM_H

#include <stdint.h>
#include <sys/socket.h>

#include "forward/relay.h"

struct rtsp_stream;

struct rtsp_stream_conf {
    struct sockaddr_storage out_local; /* the gateway's address the client uses (port ignored) */
    struct sockaddr_storage in_local;  /* the gateway's address towards the device */
    struct sockaddr_storage client;    /* the client's address (port ignored) */
    uint16_t client_port[2];           /* RTP, RTCP, as the client's Transport announced */
    struct sockaddr_storage device;    /* the device's address (port ignored) */
    uint16_t port_lo, port_hi;         /* rtp-ports: pairs start at even ports in [lo, hi) */
    /* Its mapping's last activity on this worker (struct mapping_shard), stamped with each
     * datagram relayed; it must outlive the stream. NULL: none. */
    uint64_t *activity;
};

enum rtsp_stream_path {
    RTSP_STREAM_RTP_DOWN,
    RTSP_STREAM_RTCP_DOWN,
    RTSP_STREAM_RTP_UP,
    RTSP_STREAM_RTCP_UP
}; /* down: to client */

struct rtsp_stream_stats {
    uint64_t pkts[4], bytes[4]; /* relayed, by enum rtsp_stream_path */
    uint64_t dropped_source;    /* from an address or port that is not the peer's */
    uint64_t dropped_send;      /* the send failed (a full buffer, an ICMP error) */
    uint64_t last_ms;           /* loop time of the last datagram relayed */
};

/*
 * Binds the two pairs, trying even ports of the range from a random start. Returns the stream,
 * or NULL with *err: -EADDRINUSE when every pair of the range is taken, or another -errno.
 * *in_port and *out_port are the RTP ports of the inside and outside pairs (RTCP is +1).
 */
struct rtsp_stream *rtsp_stream_new(struct relay_ctx *ctx, const struct rtsp_stream_conf *conf,
                                    uint16_t *in_port, uint16_t *out_port, int *err);
/* The device's server ports (RTP, RTCP) from its SETUP answer. Until they are known, datagrams
 * from the device's address are accepted from any port, and the client's are dropped. */
void rtsp_stream_set_server(struct rtsp_stream *s, const uint16_t server_port[2]);
const struct rtsp_stream_stats *rtsp_stream_stats(const struct rtsp_stream *s);
/* Closes the four sockets. NULL is a no-op. */
void rtsp_stream_free(struct rtsp_stream *s);

#endif
