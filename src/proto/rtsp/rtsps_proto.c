/* The rtsps entry of the protocol table: RTSP over TLS towards the client, plain RTSP towards
 * the device, through the same filter as rtsp (rtsp_proxy.h). RTP rides interleaved in the TLS
 * connection: a SETUP for RTP over UDP is answered 461 with the reason, since its datagrams
 * would leave the TLS. URLs are rtsps:// for the client and rtsp:// for the device. */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "proto/rtsp/rtsp_proto.h"
#include "proto/rtsp/rtsp_proxy.h"
#include "tls/tls.h"

struct rtsps_conf {
    struct rtsp_proto_conf rtsp; /* first: the filter reads map_conf.pconf as this */
    struct tls_conf tls;
};

/* TLS's keys (no ALPN: RTSP has no name there), then rtsp's that apply behind TLS. */
static const char *const keys[] = {
    "cert", "key",       "ocsp",       "min-tls", "ciphers",     "handshake-timeout",
    "auth", "client-ca", "client-crl", "users",   "device-auth", NULL};

static const char *const stat_names[] = {RTSP_STAT_NAMES, TLS_STAT_NAMES, NULL};
_Static_assert(RTSP_STAT_COUNT + TLS_STAT_COUNT <= PROTO_MAX_STATS, "rtsps: too many counters");

static void conf_init(void *pconf)
{
    struct rtsps_conf *c = pconf;
    c->rtsp.tls = true; /* no rtp-ports: interleaved only */
    tls_conf_init(&c->tls, NULL, RTSP_STAT_COUNT);
}

static int conf_set(void *pconf, const char *key, const char *val, char *why, size_t len)
{
    struct rtsps_conf *c = pconf;
    if (strcmp(key, "device-auth") == 0) {
        return rtsp_proto_auth_set(&c->rtsp, val, why, len);
    }
    return tls_conf_set(&c->tls, key, val, why, len);
}

static void conf_format(const void *pconf, char *buf, size_t len)
{
    const struct rtsps_conf *c = pconf;
    tls_conf_format(&c->tls, buf, len);
    rtsp_proto_auth_format(&c->rtsp, buf, len);
}

static void *run_open(const void *pconf, const char *mapname, unsigned char id[32], char *why,
                      size_t len)
{
    return tls_run_open(&((const struct rtsps_conf *)pconf)->tls, mapname, id, why, len);
}

/* device-auth: every player is the device's user. */
static bool opens_device(const void *pconf)
{
    return ((const struct rtsps_conf *)pconf)->rtsp.auth.user[0] != '\0';
}

const struct proto rtsps_proto = {
    .name = "rtsps",
    .transport = SOCK_STREAM,
    .filter = &rtsp_proxy_filter,
    .layer = &tls_layer,
    .opens_device = opens_device,
    /* As rtsp: a session spans control connections (rtsp_proto.c). */
    .placement = PROTO_ONE_WORKER,
    .worker_new = rtsp_proxy_state_new,
    .worker_free = rtsp_proxy_state_free,
    .keys = keys,
    .conf_size = sizeof(struct rtsps_conf),
    .conf_init = conf_init,
    .conf_set = conf_set,
    .conf_format = conf_format,
    .run_open = run_open,
    .run_close = tls_run_close,
    .stat_names = stat_names,
    .sessions = rtsp_proxy_state_sessions,
};
