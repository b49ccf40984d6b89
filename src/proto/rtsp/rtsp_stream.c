#include "proto/rtsp/rtsp_stream.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "core/addr.h"
#include "core/sock.h"
#include "forward/mapping.h"

#define READ_BATCH 64 /* datagrams per wake-up and socket, so one busy stream cannot starve */

enum { IN_RTP, IN_RTCP, OUT_RTP, OUT_RTCP };

struct rtp_sock {
    struct loop_io io;
    struct rtsp_stream *s;
    unsigned idx;
    uint16_t peer_port; /* where this socket's peer sends from and is sent to; 0: not known */
    bool locked;        /* outside sockets: the client's source port is fixed */
};

struct rtsp_stream {
    struct relay_ctx *ctx;
    uint64_t *activity;
    struct rtp_sock sk[4];
    struct sockaddr_storage client, device; /* addresses; the ports are in sk[].peer_port */
    struct rtsp_stream_stats st;
};

/* Is from (a datagram's source) the peer's address? peer is stored unmapped (stream_new);
 * from is unmapped only when it is a v4-mapped IPv6 address, so the common case copies
 * nothing per datagram. */
static bool same_ip(const struct sockaddr_storage *from, const struct sockaddr_storage *peer)
{
    if (from->ss_family == AF_INET && peer->ss_family == AF_INET) {
        return ((const struct sockaddr_in *)from)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)peer)->sin_addr.s_addr;
    }
    if (from->ss_family == AF_INET6 && peer->ss_family == AF_INET6) {
        return memcmp(&((const struct sockaddr_in6 *)from)->sin6_addr,
                      &((const struct sockaddr_in6 *)peer)->sin6_addr, 16) == 0;
    }
    struct sockaddr_storage x = *from;
    addr_unmap(&x);
    return x.ss_family == AF_INET && peer->ss_family == AF_INET &&
           ((const struct sockaddr_in *)&x)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)peer)->sin_addr.s_addr;
}

static void on_datagram(struct loop_io *io, uint32_t ev)
{
    (void)ev;
    struct rtp_sock *k = container_of(io, struct rtp_sock, io);
    struct rtsp_stream *s = k->s;
    bool inside = k->idx == IN_RTP || k->idx == IN_RTCP;
    unsigned rtcp = k->idx == IN_RTCP || k->idx == OUT_RTCP;
    struct rtp_sock *to = &s->sk[inside ? OUT_RTP + rtcp : IN_RTP + rtcp];
    const struct sockaddr_storage *peer = inside ? &s->device : &s->client;
    const struct sockaddr_storage *dest = inside ? &s->client : &s->device;
    enum rtsp_stream_path path = inside ? (rtcp ? RTSP_STREAM_RTCP_DOWN : RTSP_STREAM_RTP_DOWN)
                                        : (rtcp ? RTSP_STREAM_RTCP_UP : RTSP_STREAM_RTP_UP);
    char buf[65536];
    for (int i = 0; i < READ_BATCH; i++) {
        struct sockaddr_storage from;
        socklen_t flen = sizeof(from);
        ssize_t n = recvfrom(io->fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &flen);
        if (n == -1) {
            if (errno == EINTR) {
                continue;
            }
            /* EAGAIN; or an ICMP error for an earlier send from this socket, which says
             * nothing about the next datagram. */
            if (errno != EAGAIN) {
                continue;
            }
            return;
        }
        if (!same_ip(&from, peer) ||
            (k->peer_port != 0 && (inside || k->locked) && addr_port(&from) != k->peer_port)) {
            s->st.dropped_source++;
            continue;
        }
        if (!inside && !k->locked) {
            /* RFC 7604 (RTP and NAT): send back where the client's datagrams come from. */
            k->peer_port = addr_port(&from);
            k->locked = true;
        }
        if (to->peer_port == 0) {
            s->st.dropped_send++; /* the device's ports are not known yet */
            continue;
        }
        struct sockaddr_storage d = *dest;
        addr_set_port(&d, to->peer_port);
        if (sendto(to->io.fd, buf, (size_t)n, MSG_DONTWAIT, (const struct sockaddr *)&d,
                   addr_len(&d)) != n) {
            s->st.dropped_send++;
            continue;
        }
        s->st.pkts[path]++;
        s->st.bytes[path] += (uint64_t)n;
        s->st.last_ms = loop_now(s->ctx->loop);
        if (s->activity != NULL) {
            mapping_stamp(s->activity, s->st.last_ms);
        }
    }
}

/* Binds an even/odd pair on addr's address in [lo, hi], starting from a random pair. Returns 0
 * with fds[0..1] and *port, or -EADDRINUSE when none is free, or another -errno. */
static int bind_pair(const struct sockaddr_storage *addr, uint16_t lo, uint16_t hi, int fds[2],
                     uint16_t *port)
{
    unsigned first = (lo + 1u) & ~1u, npairs = hi > first ? (hi - first + 1u) / 2u : 0;
    if (npairs == 0) {
        return -EADDRINUSE;
    }
    unsigned r;
    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != sizeof(r)) {
        r = (unsigned)getpid();
    }
    for (unsigned i = 0; i < npairs; i++) {
        uint16_t p = (uint16_t)(first + ((r + i) % npairs) * 2u);
        struct sockaddr_storage a = *addr;
        addr_set_port(&a, p);
        int f0 = sock_bind_udp(&a, 0, 0);
        if (f0 == -EADDRINUSE) {
            continue;
        }
        if (f0 < 0) {
            return f0;
        }
        addr_set_port(&a, (uint16_t)(p + 1));
        int f1 = sock_bind_udp(&a, 0, 0);
        if (f1 < 0) {
            close(f0);
            if (f1 == -EADDRINUSE) {
                continue;
            }
            return f1;
        }
        fds[0] = f0;
        fds[1] = f1;
        *port = p;
        return 0;
    }
    return -EADDRINUSE;
}

struct rtsp_stream *rtsp_stream_new(struct relay_ctx *ctx, const struct rtsp_stream_conf *conf,
                                    uint16_t *in_port, uint16_t *out_port, int *err)
{
    struct rtsp_stream *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        *err = -ENOMEM;
        return NULL;
    }
    s->ctx = ctx;
    s->activity = conf->activity;
    s->client = conf->client;
    s->device = conf->device;
    addr_unmap(&s->client);
    addr_unmap(&s->device);
    int fds[4] = {-1, -1, -1, -1};
    int rc = bind_pair(&conf->in_local, conf->port_lo, conf->port_hi, &fds[IN_RTP], in_port);
    if (rc == 0) {
        rc = bind_pair(&conf->out_local, conf->port_lo, conf->port_hi, &fds[OUT_RTP], out_port);
    }
    for (unsigned i = 0; i < 4 && rc == 0; i++) {
        struct rtp_sock *k = &s->sk[i];
        k->idx = i;
        rc = loop_io_add(ctx->loop, &k->io, fds[i], LOOP_IN, on_datagram);
        if (rc == 0) {
            k->s = s; /* registered: rtsp_stream_free() closes it */
            fds[i] = -1;
        }
    }
    if (rc != 0) {
        for (unsigned i = 0; i < 4; i++) {
            if (fds[i] >= 0) {
                close(fds[i]);
            }
        }
        rtsp_stream_free(s);
        *err = rc;
        return NULL;
    }
    s->sk[OUT_RTP].peer_port = conf->client_port[0];
    s->sk[OUT_RTCP].peer_port = conf->client_port[1];
    s->st.last_ms = loop_now(ctx->loop);
    return s;
}

void rtsp_stream_set_server(struct rtsp_stream *s, const uint16_t server_port[2])
{
    s->sk[IN_RTP].peer_port = server_port[0];
    s->sk[IN_RTCP].peer_port = server_port[1];
}

const struct rtsp_stream_stats *rtsp_stream_stats(const struct rtsp_stream *s)
{
    return &s->st;
}

void rtsp_stream_free(struct rtsp_stream *s)
{
    if (s == NULL) {
        return;
    }
    for (unsigned i = 0; i < 4; i++) {
        if (s->sk[i].s != NULL) {
            loop_io_close(s->ctx->loop, &s->sk[i].io);
        }
    }
    free(s);
}
