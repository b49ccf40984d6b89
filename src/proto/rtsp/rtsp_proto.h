/*
 * rtsp_proto: the rtsp entry of the protocol table (forward/proto.h). An rtsp mapping is TCP
 * that understands RTSP (the rtsp_proxy filter), with UDP ports of its own for the RTP and RTCP
 * it relays (rtp-ports), and it runs on one worker, since its sessions span connections.
 */
#ifndef PORTGATE_RTSP_PROTO_H
#define PORTGATE_RTSP_PROTO_H

#include <stdbool.h>
#include <stdint.h>

#include "forward/proto.h"

/* Defaults, documented in docs/configuration.md. */
#define RTSP_PROTO_MAX_SESSIONS 64u
#define RTSP_PROTO_RTP_LO 16384u
#define RTSP_PROTO_RTP_HI 17407u

/* An rtsp mapping's own settings (map_conf.pconf). */
struct rtsp_proto_conf {
    uint16_t rtp_lo, rtp_hi; /* rtp-ports: UDP ports for RTP/RTCP pairs, lo even, hi odd; 0:
                              * none (rtsps: RTP only interleaved) */
    bool tls;                /* rtsps: rtsps:// towards the client, rtsp:// towards the device */
};

/* The counters of an rtsp mapping (mapping_stats.proto): sessions with RTP over UDP, requests
 * the gateway refused itself (461, 453, 400), and the RTP/RTCP bytes and drops of their streams
 * (their packets count in the mapping's datagrams each way). */
enum rtsp_proto_stat {
    RTSP_STAT_SESSIONS,
    RTSP_STAT_REFUSED,
    RTSP_STAT_RTP_BYTES_IN,
    RTSP_STAT_RTP_BYTES_OUT,
    RTSP_STAT_RTP_DROPPED_SOURCE,
    RTSP_STAT_RTP_DROPPED_SEND,
    RTSP_STAT_COUNT
};
/* Their names, in that order (rtsp's stat_names, and rtsps's before TLS's). */
#define RTSP_STAT_NAMES                                                                            \
    "rtsp sessions", "rtsp requests refused", "rtp bytes to targets", "rtp bytes to clients",      \
        "rtp datagrams from strangers", "rtp datagrams not sent"

extern const struct proto rtsp_proto;
extern const struct proto rtsps_proto;

#endif
