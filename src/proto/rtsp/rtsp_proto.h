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
#include "message/digest.h"

/* Defaults, documented in docs/configuration.md. */
#define RTSP_PROTO_MAX_SESSIONS 64u
#define RTSP_PROTO_RTP_LO 16384u
#define RTSP_PROTO_RTP_HI 17407u

/* An rtsp mapping's own settings (map_conf.pconf). */
struct rtsp_proto_conf {
    uint16_t rtp_lo, rtp_hi; /* rtp-ports: UDP ports for RTP/RTCP pairs, lo even, hi odd; 0:
                              * none (rtsps: RTP only interleaved) */
    bool tls;                /* rtsps: rtsps:// towards the client, rtsp:// towards the device */
    /* device-auth: the device's login, which the gateway answers the device's challenges with
     * (rtsp_proxy.h); user[0] == '\0' when none. */
    struct digest_login auth;
    /* auth = login (rtsps): players log in to the gateway first (rtsp_proxy.h), as one of users
     * when given (commas between; with auth = client-cert, the certificates' names). */
    bool login;
    char users[1024];
};

/* The key device-auth of rtsp and rtsps: "USER:PASSWORD", "file:/PATH" or "off", as
 * digest_login_set() reads it, but with no blank in it (conf_format() lists values without
 * spaces). Returns 0, or -1 with the reason in why (never the password). */
int rtsp_proto_auth_set(struct rtsp_proto_conf *c, const char *val, char *why, size_t len);
/* Appends " device-auth=VALUE" (without the space when buf is empty) when one is set. */
void rtsp_proto_auth_format(const struct rtsp_proto_conf *c, char *buf, size_t len);

/* The counters of an rtsp mapping (mapping_stats.proto): sessions with RTP over UDP, requests
 * the gateway refused itself (461, 453, 400), the RTP/RTCP bytes and drops of their streams
 * (their packets count in the mapping's datagrams each way), and with device-auth the device's
 * challenges the gateway answered and the requests it answered 502 for want of a login the
 * device took. */
enum rtsp_proto_stat {
    RTSP_STAT_SESSIONS,
    RTSP_STAT_REFUSED,
    RTSP_STAT_RTP_BYTES_IN,
    RTSP_STAT_RTP_BYTES_OUT,
    RTSP_STAT_RTP_DROPPED_SOURCE,
    RTSP_STAT_RTP_DROPPED_SEND,
    RTSP_STAT_AUTH_ANSWERED,
    RTSP_STAT_AUTH_FAILED,
    RTSP_STAT_LOGINS,
    RTSP_STAT_LOGIN_FAILED,
    RTSP_STAT_COUNT
};
/* Their names, in that order (rtsp's stat_names, and rtsps's before TLS's). */
#define RTSP_STAT_NAMES                                                                            \
    "rtsp sessions", "rtsp requests refused", "rtp bytes to targets", "rtp bytes to clients",      \
        "rtp datagrams from strangers", "rtp datagrams not sent", "rtsp device-auth answers",      \
        "rtsp device-auth failures", "rtsp logins", "rtsp failed logins"

extern const struct proto rtsp_proto;
extern const struct proto rtsps_proto;

#endif
