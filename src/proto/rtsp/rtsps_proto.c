/* The rtsps entry of the protocol table: RTSP over TLS towards the client, plain RTSP towards
 * the device, through the same filter as rtsp (rtsp_proxy.h). RTP rides interleaved in the TLS
 * connection: a SETUP for RTP over UDP is answered 461 with the reason, since its datagrams
 * would leave the TLS. URLs are rtsps:// for the client and rtsp:// for the device. */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "auth/users.h"
#include "core/names.h"
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

/* auth is TLS's (client-cert) or the filter's (login: the players' login to the gateway); users
 * is either's list, kept here and given to TLS at run_open() when client certificates are
 * asked for. */
static int conf_set(void *pconf, const char *key, const char *val, char *why, size_t len)
{
    struct rtsps_conf *c = pconf;
    if (strcmp(key, "device-auth") == 0) {
        return rtsp_proto_auth_set(&c->rtsp, val, why, len);
    }
    if (strcmp(key, "auth") == 0) {
        if (strcmp(val, "login") == 0) {
            c->tls.client_cert = false;
            c->rtsp.login = true;
            return 0;
        }
        if (strcmp(val, "client-cert") != 0 && strcmp(val, "none") != 0) {
            snprintf(why, len,
                     "\"%s\": login (players log in to the gateway, by Digest or Basic), "
                     "client-cert (players show a certificate of client-ca), or none",
                     val);
            return -1;
        }
        c->rtsp.login = false;
        return tls_conf_set(&c->tls, key, val, why, len);
    }
    if (strcmp(key, "users") == 0) {
        return names_parse(val, "a name", 256, c->rtsp.users, sizeof(c->rtsp.users), why, len);
    }
    return tls_conf_set(&c->tls, key, val, why, len);
}

static void conf_format(const void *pconf, char *buf, size_t len)
{
    const struct rtsps_conf *c = pconf;
    tls_conf_format(&c->tls, buf, len);
    size_t off = strlen(buf);
    if (c->rtsp.login && off + 1 < len) {
        off += (size_t)snprintf(buf + off, len - off, "%sauth=login", off > 0 ? " " : "");
    }
    if (c->rtsp.users[0] != '\0' && off + 1 < len) {
        snprintf(buf + off, len - off, "%susers=%s", off > 0 ? " " : "", c->rtsp.users);
    }
    rtsp_proto_auth_format(&c->rtsp, buf, len);
}

static void *run_open(const void *pconf, const char *mapname, unsigned char id[32], char *why,
                      size_t len)
{
    const struct rtsps_conf *c = pconf;
    struct tls_conf tls = c->tls;
    if (tls.client_cert) {
        snprintf(tls.users, sizeof(tls.users), "%s", c->rtsp.users);
    }
    return tls_run_open(&tls, mapname, id, why, len);
}

/* users says who may come: it needs auth; with login, it names the users file's users. */
static int conf_check(const void *pconf, char *why, size_t len)
{
    const struct rtsps_conf *c = pconf;
    if (c->rtsp.users[0] != '\0' && !c->rtsp.login && !c->tls.client_cert) {
        snprintf(why, len, "users: applies with auth = login or auth = client-cert");
        return -1;
    }
    for (const char *p = c->rtsp.users; c->rtsp.login && *p != '\0';) {
        size_t n = strcspn(p, ",");
        char name[USERS_NAMELEN];
        snprintf(name, sizeof(name), "%.*s", (int)n, p);
        if (n >= USERS_NAMELEN || !users_valid_name(name)) {
            snprintf(why, len,
                     "users: \"%.*s\": with auth = login, a user's name (letters, digits, '.', "
                     "'_', '-' or '@')",
                     (int)(n < 80 ? n : 80), p);
            return -1;
        }
        p += n + (p[n] == ',');
    }
    return 0;
}

/* device-auth with no login and no client certificates: every player is the device's user. */
static bool opens_device(const void *pconf)
{
    const struct rtsps_conf *c = pconf;
    return c->rtsp.auth.user[0] != '\0' && !c->rtsp.login && !c->tls.client_cert;
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
    .conf_check = conf_check,
    .run_open = run_open,
    .run_close = tls_run_close,
    .stat_names = stat_names,
    .sessions = rtsp_proxy_state_sessions,
};
