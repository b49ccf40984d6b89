#include "proto/rtsp/rtsp_proto.h"

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "proto/rtsp/rtsp_proxy.h"

static const char *const keys[] = {"rtp-ports", "device-auth", NULL};

static const char *const stat_names[RTSP_STAT_COUNT + 1] = {RTSP_STAT_NAMES, NULL};
_Static_assert(RTSP_STAT_COUNT <= PROTO_MAX_STATS, "rtsp: too many counters");

static void conf_init(void *pconf)
{
    struct rtsp_proto_conf *c = pconf;
    c->rtp_lo = RTSP_PROTO_RTP_LO;
    c->rtp_hi = RTSP_PROTO_RTP_HI;
}

int rtsp_proto_auth_set(struct rtsp_proto_conf *c, const char *val, char *why, size_t len)
{
    /* The value is shown as it is by check and the admin API, one "KEY=VALUE" among others
     * that spaces separate (forward/proto.h): a password with a blank goes in a file. Neither
     * message repeats the value, which may hold a password. */
    if (strpbrk(val, " \t") != NULL && strncmp(val, "file:", 5) == 0) {
        snprintf(why, len, "\"%.200s\": a path with a blank, which check cannot list", val);
        return -1;
    }
    if (strpbrk(val, " \t") != NULL) {
        snprintf(why, len,
                 "\"(not shown)\": a blank in it, which check cannot list: put USER:PASSWORD "
                 "in a file and give file:/PATH");
        return -1;
    }
    return digest_login_set(&c->auth, val, why, len);
}

void rtsp_proto_auth_format(const struct rtsp_proto_conf *c, char *buf, size_t len)
{
    if (c->auth.user[0] == '\0') {
        return;
    }
    size_t off = strlen(buf);
    if (off + 1 >= len) {
        return;
    }
    char val[sizeof(c->auth.file) + sizeof(c->auth.user) + sizeof(c->auth.password)];
    digest_login_format(&c->auth, val, sizeof(val));
    snprintf(buf + off, len - off, "%sdevice-auth=%s", off > 0 ? " " : "", val);
}

/* rtp-ports: "LO-HI", an even start and an odd end, room for one stream (two pairs) at least;
 * device-auth. */
static int conf_set(void *pconf, const char *key, const char *val, char *why, size_t len)
{
    struct rtsp_proto_conf *c = pconf;
    if (strcmp(key, "device-auth") == 0) {
        return rtsp_proto_auth_set(c, val, why, len);
    }
    unsigned a, b;
    int n = 0;
    if (sscanf(val, "%5u-%5u%n", &a, &b, &n) != 2 || (size_t)n != strlen(val) ||
        strspn(val, "0123456789-") != strlen(val)) {
        snprintf(why, len, "\"%s\": expected a port range such as 16384-17407", val);
        return -1;
    }
    if (a < 1024 || b > 65535 || a > b) {
        snprintf(why, len, "\"%s\": ports between 1024 and 65535, low to high", val);
        return -1;
    }
    if (a % 2 != 0 || b % 2 != 1) {
        snprintf(why, len, "\"%s\": RTP pairs start at an even port: an even start, an odd end",
                 val);
        return -1;
    }
    if (b - a + 1 < 4) {
        snprintf(why, len, "\"%s\": a stream takes two pairs (4 ports) at least", val);
        return -1;
    }
    c->rtp_lo = (uint16_t)a;
    c->rtp_hi = (uint16_t)b;
    return 0;
}

static void conf_format(const void *pconf, char *buf, size_t len)
{
    const struct rtsp_proto_conf *c = pconf;
    snprintf(buf, len, "rtp-ports=%u-%u", c->rtp_lo, c->rtp_hi);
    rtsp_proto_auth_format(c, buf, len);
}

static const char *own_udp_ports(const void *pconf, uint16_t *lo, uint16_t *hi)
{
    const struct rtsp_proto_conf *c = pconf;
    *lo = c->rtp_lo;
    *hi = c->rtp_hi;
    return keys[0];
}

static bool always(const void *pconf)
{
    (void)pconf;
    return true;
}

/* device-auth: every player is the device's user. */
static bool opens_device(const void *pconf)
{
    return ((const struct rtsp_proto_conf *)pconf)->auth.user[0] != '\0';
}

const struct proto rtsp_proto = {
    .name = "rtsp",
    .transport = SOCK_STREAM,
    .filter = &rtsp_proxy_filter,
    /* RFC 2326 lets a session span control connections (keep-alives or a TEARDOWN on a new
     * one), and the kernel would hash a client's connections to different workers: so they all
     * run on one, which keeps a session, its RTP ports and every connection that names it on one
     * loop, with no lock. An encoder serves a few players; one core carries their streams. */
    .placement = PROTO_ONE_WORKER,
    .cleartext_logins = always,
    .opens_device = opens_device,
    .worker_new = rtsp_proxy_state_new,
    .worker_free = rtsp_proxy_state_free,
    .default_max_sessions = RTSP_PROTO_MAX_SESSIONS,
    .keys = keys,
    .conf_size = sizeof(struct rtsp_proto_conf),
    .conf_init = conf_init,
    .conf_set = conf_set,
    .conf_format = conf_format,
    .own_udp_ports = own_udp_ports,
    .stat_names = stat_names,
    .sessions = rtsp_proxy_state_sessions,
};
