#include "forward/udp.h"

#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "core/sock.h"

struct udp_sess {
    struct loop_io io; /* socket connect()ed to the target */
    struct udp_listener *l;
    struct mapping *map;
    struct sockaddr_storage client, local, target;
    int ifindex;
    bool has_local;
    uint64_t start_ms, last_ms;
    uint64_t pkts[2], bytes[2]; /* [0] client -> target, [1] target -> client */
    uint64_t icmp_errors, dropped;
    struct udp_sess *hnext;         /* hash chain */
    struct udp_sess *lprev, *lnext; /* least recently active first */
    struct loop_timer timer;
};

struct udp_listener {
    struct loop_io io;
    struct relay_ctx *ctx;
    struct mapping *map;
    uint16_t port;
    bool pktinfo;
    bool gso; /* UDP segmentation offload works: runs of equal datagrams go in one send */
    struct log_ratelimit gso_log;
    struct udp_sess **buckets;
    size_t nbuckets, nsess;
    struct udp_sess *lru_head, *lru_tail;
};

/* ---- the session table ---- */

static size_t sess_hash(const struct udp_listener *l, const struct sockaddr_storage *ss)
{
    return (size_t)(relay_addr_hash(l->ctx, ss) & (l->nbuckets - 1));
}

static struct udp_sess **sess_find(struct udp_listener *l, const struct sockaddr_storage *ss)
{
    struct udp_sess **pp = &l->buckets[sess_hash(l, ss)];
    while (*pp != NULL && !addr_equal(&(*pp)->client, ss)) {
        pp = &(*pp)->hnext;
    }
    return pp;
}

static void table_grow(struct udp_listener *l)
{
    size_t n = l->nbuckets * 2;
    struct udp_sess **b = calloc(n, sizeof(*b));
    if (b == NULL) {
        return; /* chains get longer; still correct */
    }
    struct udp_sess **old = l->buckets;
    size_t oldn = l->nbuckets;
    l->buckets = b;
    l->nbuckets = n;
    for (size_t i = 0; i < oldn; i++) {
        for (struct udp_sess *s = old[i], *next; s != NULL; s = next) {
            next = s->hnext;
            size_t h = sess_hash(l, &s->client);
            s->hnext = b[h];
            b[h] = s;
        }
    }
    free(old);
}

static void lru_unlink(struct udp_listener *l, struct udp_sess *s)
{
    if (s->lprev) {
        s->lprev->lnext = s->lnext;
    } else {
        l->lru_head = s->lnext;
    }
    if (s->lnext) {
        s->lnext->lprev = s->lprev;
    } else {
        l->lru_tail = s->lprev;
    }
    s->lprev = s->lnext = NULL;
}

static void lru_append(struct udp_listener *l, struct udp_sess *s)
{
    s->lprev = l->lru_tail;
    s->lnext = NULL;
    if (l->lru_tail) {
        l->lru_tail->lnext = s;
    } else {
        l->lru_head = s;
    }
    l->lru_tail = s;
}

static void sess_touch(struct udp_sess *s)
{
    s->last_ms = loop_now(s->l->ctx->loop);
    mapping_touch(s->map, s->l->ctx->worker, s->last_ms);
    if (s->l->lru_tail != s) {
        lru_unlink(s->l, s);
        lru_append(s->l, s);
    }
}

/* ---- session life ---- */

static void sess_end(struct udp_sess *s, bool say, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Ends s, and logs its one line unless say is false (an eviction among many: they are logged at
 * most once a second). */
static void sess_end(struct udp_sess *s, bool say, const char *fmt, ...)
{
    struct udp_listener *l = s->l;
    struct loop *loop = l->ctx->loop;
    char reason[256], cs[ADDR_STRLEN], ts[ADDR_STRLEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    uint64_t ms = loop_now(loop) - s->start_ms;
    if (say) {
        log_info(
            "map %s: udp %s -> %s ended after %llu.%03llus, %llu datagrams (%llu bytes) to "
            "target, %llu datagrams (%llu bytes) to client, %llu dropped, %llu ICMP errors: %s",
            s->map->conf.name, addr_format(&s->client, cs, sizeof(cs)),
            addr_format(&s->target, ts, sizeof(ts)), (unsigned long long)(ms / 1000),
            (unsigned long long)(ms % 1000), (unsigned long long)s->pkts[0],
            (unsigned long long)s->bytes[0], (unsigned long long)s->pkts[1],
            (unsigned long long)s->bytes[1], (unsigned long long)s->dropped,
            (unsigned long long)s->icmp_errors, reason);
    }
    struct mapping_stats *st = &mapping_shard(s->map, l->ctx->worker)->stats;
    mapping_stat_add(&st->bytes_in, s->bytes[0]);
    mapping_stat_add(&st->bytes_out, s->bytes[1]);
    mapping_stat_add(&st->dgrams_in, s->pkts[0]);
    mapping_stat_add(&st->dgrams_out, s->pkts[1]);
    mapping_stat_add(&st->dgrams_dropped, s->dropped);
    mapping_session_end(s->map);

    struct udp_sess **pp = sess_find(l, &s->client);
    assert(*pp == s); /* a client has one session, and it is in the table */
    *pp = s->hnext;
    lru_unlink(l, s);
    l->nsess--;
    loop_timer_stop(loop, &s->timer);
    loop_io_close(loop, &s->io);
    mapping_unref(s->map);
    free(s);
}

static void sess_timer(struct loop_timer *t)
{
    struct udp_sess *s = container_of(t, struct udp_sess, timer);
    struct loop *loop = s->l->ctx->loop;
    uint64_t deadline = s->last_ms + s->map->conf.idle_timeout_ms;
    if (loop_now(loop) >= deadline) {
        sess_end(s, true, "idle for %ums (idle-timeout)", s->map->conf.idle_timeout_ms);
        return;
    }
    loop_timer_start_at(loop, &s->timer, deadline);
}

/* Fills a control buffer with the IP_PKTINFO / IPV6_PKTINFO that makes a reply leave from the
 * address the client sent to. Returns its length. */
static size_t pktinfo_cmsg(const struct udp_sess *s, char *buf, size_t len)
{
    memset(buf, 0, len);
    struct cmsghdr *cm = (struct cmsghdr *)buf;
    if (s->local.ss_family == AF_INET6) {
        struct in6_pktinfo pi = {.ipi6_addr = ((const struct sockaddr_in6 *)&s->local)->sin6_addr,
                                 .ipi6_ifindex = (unsigned)s->ifindex};
        cm->cmsg_level = IPPROTO_IPV6;
        cm->cmsg_type = IPV6_PKTINFO;
        cm->cmsg_len = CMSG_LEN(sizeof(pi));
        memcpy(CMSG_DATA(cm), &pi, sizeof(pi));
        return CMSG_SPACE(sizeof(pi));
    }
    struct in_pktinfo pi = {.ipi_spec_dst = ((const struct sockaddr_in *)&s->local)->sin_addr};
    cm->cmsg_level = IPPROTO_IP;
    cm->cmsg_type = IP_PKTINFO;
    cm->cmsg_len = CMSG_LEN(sizeof(pi));
    memcpy(CMSG_DATA(cm), &pi, sizeof(pi));
    return CMSG_SPACE(sizeof(pi));
}

/* Points the n messages' buffers at the batch slots, for recvmmsg. */
static void batch_prepare(uint8_t *slots, struct mmsghdr *m, struct iovec *iov, int n)
{
    for (int i = 0; i < n; i++) {
        iov[i].iov_base = slots + (size_t)i * RELAY_DGRAM_MAX;
        iov[i].iov_len = RELAY_DGRAM_MAX;
        memset(&m[i].msg_hdr, 0, sizeof(m[i].msg_hdr));
        m[i].msg_hdr.msg_iov = &iov[i];
        m[i].msg_hdr.msg_iovlen = 1;
    }
}

/* Sends n received messages on fd with sendmmsg, each its received length long, to name (NULL
 * on a connected socket) with the given control data. Returns how many left; errno is set
 * when fewer than n did. */
static int batch_send(int fd, struct mmsghdr *m, int n, struct sockaddr_storage *name,
                      void *control, size_t controllen)
{
    for (int k = 0; k < n; k++) {
        m[k].msg_hdr.msg_iov->iov_len = m[k].msg_len;
        m[k].msg_hdr.msg_name = name;
        m[k].msg_hdr.msg_namelen = name ? addr_len(name) : 0;
        m[k].msg_hdr.msg_control = control;
        m[k].msg_hdr.msg_controllen = controllen;
        m[k].msg_hdr.msg_flags = 0;
    }
    int sent = 0;
    while (sent < n) {
        int r = sendmmsg(fd, m + sent, (unsigned)(n - sent), MSG_DONTWAIT);
        if (r == -1) {
            if (errno == EINTR) {
                continue;
            }
            break;
        }
        sent += r;
    }
    return sent;
}

/* Linux accepts at most 64 segments in one UDP GSO send, and the whole must fit a UDP length. */
#define GSO_MAX_SEGS 64
#define GSO_MAX_BYTES 65000

/* Length of the run of equal-sized datagrams at m[0], as one GSO send may carry. */
static int gso_run(const struct mmsghdr *m, int n)
{
    uint32_t sz = m[0].msg_len;
    int e = 1;
    while (e < n && e < GSO_MAX_SEGS && m[e].msg_len == sz &&
           (uint64_t)(e + 1) * sz <= GSO_MAX_BYTES) {
        e++;
    }
    return sz == 0 ? 1 : e;
}

/* Sends n equal-sized datagrams as one UDP GSO send: one trip through the stack, which the
 * kernel splits into datagrams of m[0].msg_len at the last moment. control holds prefix bytes
 * of ancillary data (pktinfo) to which the segment size is added. Returns 0 or -errno. */
static int gso_send(int fd, struct mmsghdr *m, int n, struct sockaddr_storage *name,
                    const void *prefix, size_t prefix_len)
{
    struct iovec iov[GSO_MAX_SEGS];
    for (int k = 0; k < n; k++) {
        iov[k].iov_base = m[k].msg_hdr.msg_iov->iov_base;
        iov[k].iov_len = m[k].msg_len;
    }
    union {
        char buf[CMSG_SPACE(sizeof(struct in6_pktinfo)) + CMSG_SPACE(sizeof(uint16_t))];
        struct cmsghdr align;
    } cbuf;
    memset(&cbuf, 0, sizeof(cbuf));
    if (prefix_len > 0) {
        memcpy(cbuf.buf, prefix, prefix_len);
    }
    struct cmsghdr *cm = (struct cmsghdr *)(cbuf.buf + prefix_len);
    uint16_t seg = (uint16_t)m[0].msg_len;
    cm->cmsg_level = SOL_UDP;
    cm->cmsg_type = UDP_SEGMENT;
    cm->cmsg_len = CMSG_LEN(sizeof(seg));
    memcpy(CMSG_DATA(cm), &seg, sizeof(seg));
    struct msghdr mh = {.msg_name = name,
                        .msg_namelen = name ? addr_len(name) : 0,
                        .msg_iov = iov,
                        .msg_iovlen = (size_t)n,
                        .msg_control = cbuf.buf,
                        .msg_controllen = prefix_len + CMSG_SPACE(sizeof(seg))};
    for (;;) {
        if (sendmsg(fd, &mh, MSG_DONTWAIT) != -1) {
            return 0;
        }
        if (errno != EINTR) {
            return -errno;
        }
    }
}

/* A GSO send the kernel refused for this run's datagrams only: they are longer than the path
 * to dest carries in one piece (its MTU), which Linux says with EMSGSIZE (older kernels with
 * EINVAL). Sent one by one, they are fragmented instead. */
static bool refused_for_this_run(int err)
{
    return err == EMSGSIZE || err == EINVAL;
}

/* A GSO send this kernel, or the device of the route, cannot do at all. */
static bool refused_for_good(int err)
{
    return err == EIO || err == ENOPROTOOPT || err == EOPNOTSUPP;
}

static void log_gso_refused(struct udp_listener *l, int n, uint32_t size,
                            const struct sockaddr_storage *dest, int err)
{
    uint64_t suppressed;
    if (log_ratelimit_ok(&l->gso_log, loop_now(l->ctx->loop), 1000, &suppressed)) {
        char ds[ADDR_STRLEN];
        log_warn("map %s: udp: segmentation offload refused for a batch of %d datagrams of %u "
                 "bytes to %s (%s); sent them one by one (%llu more batches not logged)",
                 l->map->conf.name, n, size, addr_format(dest, ds, sizeof(ds)), strerror(err),
                 (unsigned long long)suppressed);
    }
}

/*
 * Sends n received datagrams on fd, towards dest (to name, NULL on a connected socket, with the
 * ancillary data in control): runs of equal size as UDP GSO sends while l->gso holds, the others
 * together in sendmmsg calls. A run the kernel cannot send in one piece goes datagram by
 * datagram, and offload stays on; a kernel that cannot do it at all turns l->gso off for good.
 * Returns how many were sent, with errno set when fewer than n.
 */
static int send_datagrams(struct udp_listener *l, int fd, struct mmsghdr *m, int n,
                          struct sockaddr_storage *name, void *control, size_t controllen,
                          const struct sockaddr_storage *dest)
{
    int k = 0;
    while (k < n) {
        int e = l->gso ? gso_run(m + k, n - k) : 1;
        int f = k + e; /* the datagrams that go with plain sends, up to f */
        if (e > 1) {
            int rc = gso_send(fd, m + k, e, name, control, controllen);
            if (rc == 0) {
                k += e;
                continue;
            }
            if (refused_for_this_run(-rc)) {
                log_gso_refused(l, e, m[k].msg_len, dest, -rc);
            } else if (refused_for_good(-rc)) {
                l->gso = false;
                log_warn("map %s: udp: segmentation offload refused (%s); sending datagram by "
                         "datagram from now on",
                         l->map->conf.name, strerror(-rc));
            } else {
                errno = -rc;
                return k;
            }
        } else {
            /* Datagrams up to the next run worth a GSO send go together in one sendmmsg. */
            while (f < n && !(l->gso && gso_run(m + f, n - f) > 1)) {
                f++;
            }
        }
        int sent = batch_send(fd, m + k, f - k, name, control, controllen);
        if (sent < f - k) {
            return k + sent;
        }
        k = f;
    }
    return n;
}

/* Target -> client: a batch from the session's socket goes out of the listener socket. */
static void sess_event(struct loop_io *io, uint32_t ev)
{
    (void)ev;
    struct udp_sess *s = container_of(io, struct udp_sess, io);
    struct udp_listener *l = s->l;
    struct mmsghdr m[RELAY_UDP_BATCH];
    struct iovec iov[RELAY_UDP_BATCH];
    union {
        char buf[CMSG_SPACE(sizeof(struct in6_pktinfo))];
        struct cmsghdr align;
    } cbuf;
    size_t clen = s->has_local ? pktinfo_cmsg(s, cbuf.buf, sizeof(cbuf.buf)) : 0;
    for (int round = 0; round < 4; round++) {
        batch_prepare(l->ctx->dgrams, m, iov, RELAY_UDP_BATCH);
        int n = recvmmsg(io->fd, m, RELAY_UDP_BATCH, MSG_DONTWAIT, NULL);
        if (n == -1) {
            if (errno == EAGAIN) {
                return;
            }
            if (errno != EINTR) {
                /* An ICMP error (port unreachable...) for an earlier datagram: the target is
                 * not there now; it may be later. Count it and keep the session. */
                s->icmp_errors++;
            }
            continue;
        }
        sess_touch(s);
        int sent =
            send_datagrams(l, l->io.fd, m, n, &s->client, clen ? cbuf.buf : NULL, clen, &s->client);
        for (int k = 0; k < sent; k++) {
            s->bytes[1] += m[k].msg_len;
        }
        s->pkts[1] += (uint64_t)sent;
        s->dropped += (uint64_t)(n - sent); /* a full socket buffer: UDP may drop */
        if (n < RELAY_UDP_BATCH) {
            return;
        }
    }
}

static void log_drop(struct udp_listener *l, const struct sockaddr_storage *client,
                     enum mapping_log what, const char *why)
{
    uint64_t suppressed;
    if (mapping_log_ok(l->map, l->ctx->worker, what, loop_now(l->ctx->loop), &suppressed)) {
        char cs[ADDR_STRLEN];
        log_warn("map %s: udp dropped datagram from %s: %s (%llu more not logged)",
                 l->map->conf.name, addr_format(client, cs, sizeof(cs)), why,
                 (unsigned long long)suppressed);
    }
}

/*
 * Admits a new client of l: allow/deny, then a place among max-sessions, which counts the sessions
 * of every worker. When it is reached, the session idle the longest on this listener makes room;
 * a worker with none to evict drops the datagram. Returns true with the place taken, or false
 * (counted and logged).
 */
static bool sess_admit(struct udp_listener *l, const struct sockaddr_storage *client)
{
    struct mapping *m = l->map;
    struct mapping_stats *st = &mapping_shard(m, l->ctx->worker)->stats;
    if (mapping_check_acl(m, client) != MAPPING_ADMIT) {
        mapping_stat_add(&st->refused_acl, 1);
        log_drop(l, client, MAPPING_LOG_DENIED, mapping_verdict_reason(MAPPING_DENIED));
        return false;
    }
    if (mapping_session_begin(m)) {
        return true;
    }
    if (l->lru_head == NULL) {
        mapping_stat_add(&st->refused_limit, 1);
        log_drop(l, client, MAPPING_LOG_LIMIT,
                 "max-sessions reached (the sessions are on other workers)");
        return false;
    }
    mapping_stat_add(&st->evicted, 1);
    uint64_t suppressed = 0;
    bool say =
        mapping_log_ok(m, l->ctx->worker, MAPPING_LOG_EVICTED, loop_now(l->ctx->loop), &suppressed);
    sess_end(l->lru_head, say,
             "evicted: max-sessions (%u) reached and a new client came (%llu more evictions not "
             "logged)",
             m->conf.max_sessions, (unsigned long long)suppressed);
    if (!mapping_session_begin(m)) {
        mapping_stat_add(&st->refused_limit, 1);
        log_drop(l, client, MAPPING_LOG_LIMIT, "max-sessions reached");
        return false;
    }
    return true;
}

static struct udp_sess *sess_new(struct udp_listener *l, const struct sockaddr_storage *client,
                                 const struct sockaddr_storage *local, int ifindex)
{
    struct mapping *m = l->map;
    struct mapping_stats *st = &mapping_shard(m, l->ctx->worker)->stats;
    if (!sess_admit(l, client)) {
        return NULL;
    }
    struct udp_sess *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        mapping_session_end(m);
        log_drop(l, client, MAPPING_LOG_DROPPED, "out of memory");
        return NULL;
    }
    mapping_target(m, l->port, &s->target);
    int in_progress;
    int fd = sock_connect(&s->target, SOCK_DGRAM, 0, &in_progress);
    if (fd < 0) {
        char ts[ADDR_STRLEN], why[128];
        snprintf(why, sizeof(why), "socket to %s: %s", addr_format(&s->target, ts, sizeof(ts)),
                 strerror(-fd));
        log_drop(l, client, MAPPING_LOG_DROPPED, why);
        free(s);
        mapping_session_end(m);
        return NULL;
    }
    if (loop_io_add(l->ctx->loop, &s->io, fd, LOOP_IN, sess_event) < 0) {
        log_drop(l, client, MAPPING_LOG_DROPPED, "epoll registration failed");
        close(fd);
        free(s);
        mapping_session_end(m);
        return NULL;
    }
    s->l = l;
    s->map = mapping_ref(m);
    s->client = *client;
    if (local != NULL) {
        s->local = *local;
        s->has_local = true;
        s->ifindex = ifindex;
    }
    s->start_ms = s->last_ms = loop_now(l->ctx->loop);
    mapping_touch(m, l->ctx->worker, s->start_ms);
    loop_timer_init(&s->timer, sess_timer);
    if (m->conf.idle_timeout_ms != 0) {
        loop_timer_start(l->ctx->loop, &s->timer, m->conf.idle_timeout_ms);
    }
    struct udp_sess **pp = sess_find(l, client);
    s->hnext = *pp;
    *pp = s;
    lru_append(l, s);
    mapping_stat_add(&st->accepted, 1);
    if (++l->nsess > l->nbuckets) {
        table_grow(l);
    }
    if (log_enabled(LOG_LVL_DEBUG)) {
        char cs[ADDR_STRLEN], ts[ADDR_STRLEN];
        log_debug("map %s: udp %s -> %s: new session", m->conf.name,
                  addr_format(client, cs, sizeof(cs)), addr_format(&s->target, ts, sizeof(ts)));
    }
    return s;
}

/* Reads the local address a datagram was sent to from its IP_PKTINFO / IPV6_PKTINFO. */
static bool local_from_cmsg(struct msghdr *mh, uint16_t port, struct sockaddr_storage *local,
                            int *ifindex)
{
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm != NULL; cm = CMSG_NXTHDR(mh, cm)) {
        memset(local, 0, sizeof(*local));
        if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_PKTINFO) {
            struct in_pktinfo pi;
            memcpy(&pi, CMSG_DATA(cm), sizeof(pi));
            struct sockaddr_in *sin = (struct sockaddr_in *)local;
            sin->sin_family = AF_INET;
            sin->sin_addr = pi.ipi_addr;
            sin->sin_port = htons(port);
            *ifindex = pi.ipi_ifindex;
            return true;
        }
        if (cm->cmsg_level == IPPROTO_IPV6 && cm->cmsg_type == IPV6_PKTINFO) {
            struct in6_pktinfo pi;
            memcpy(&pi, CMSG_DATA(cm), sizeof(pi));
            struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)local;
            sin6->sin6_family = AF_INET6;
            sin6->sin6_addr = pi.ipi6_addr;
            sin6->sin6_port = htons(port);
            *ifindex = (int)pi.ipi6_ifindex;
            return true;
        }
    }
    return false;
}

/* Client -> target: a batch from the listener is dispatched to sessions, and each run of
 * datagrams from one client goes to its target in one sendmmsg. */
static void listener_event(struct loop_io *io, uint32_t ev)
{
    (void)ev;
    struct udp_listener *l = container_of(io, struct udp_listener, io);
    struct mmsghdr m[RELAY_UDP_BATCH];
    struct iovec iov[RELAY_UDP_BATCH];
    struct sockaddr_storage peer[RELAY_UDP_BATCH];
    union {
        char buf[CMSG_SPACE(sizeof(struct in6_pktinfo)) + CMSG_SPACE(sizeof(struct in_pktinfo))];
        struct cmsghdr align;
    } cbuf[RELAY_UDP_BATCH];
    for (int round = 0; round < 4; round++) {
        batch_prepare(l->ctx->dgrams, m, iov, RELAY_UDP_BATCH);
        for (int i = 0; i < RELAY_UDP_BATCH; i++) {
            m[i].msg_hdr.msg_name = &peer[i];
            m[i].msg_hdr.msg_namelen = sizeof(peer[i]);
            if (l->pktinfo) {
                m[i].msg_hdr.msg_control = cbuf[i].buf;
                m[i].msg_hdr.msg_controllen = sizeof(cbuf[i].buf);
            }
        }
        int n = recvmmsg(io->fd, m, RELAY_UDP_BATCH, MSG_DONTWAIT, NULL);
        if (n == -1) {
            if (errno == EINTR) {
                continue;
            }
            return; /* EAGAIN, or an error queued on the socket: the listener lives on */
        }
        for (int i = 0; i < n;) {
            struct udp_sess *s = *sess_find(l, &peer[i]);
            if (s == NULL) {
                struct sockaddr_storage local;
                int ifindex = 0;
                bool has_local =
                    l->pktinfo && local_from_cmsg(&m[i].msg_hdr, l->port, &local, &ifindex);
                s = sess_new(l, &peer[i], has_local ? &local : NULL, ifindex);
                if (s == NULL) {
                    i++;
                    continue;
                }
            }
            int j = i + 1;
            while (j < n && addr_equal(&peer[j], &s->client)) {
                j++;
            }
            sess_touch(s);
            int sent = send_datagrams(l, s->io.fd, m + i, j - i, NULL, NULL, 0, &s->target);
            if (sent < j - i && errno == ECONNREFUSED) {
                s->icmp_errors++; /* reported for an earlier datagram; the rest is lost */
            }
            for (int k = i; k < i + sent; k++) {
                s->bytes[0] += m[k].msg_len;
            }
            s->pkts[0] += (uint64_t)sent;
            s->dropped += (uint64_t)(j - i - sent);
            i = j;
        }
        if (n < RELAY_UDP_BATCH) {
            return;
        }
    }
}

struct udp_listener *udp_listener_new(struct relay_ctx *ctx, int fd, struct mapping *m,
                                      uint16_t port)
{
    struct udp_listener *l = calloc(1, sizeof(*l));
    if (l == NULL || (l->buckets = calloc(64, sizeof(*l->buckets))) == NULL) {
        free(l);
        close(fd);
        errno = ENOMEM;
        return NULL;
    }
    if (ctx->dgrams == NULL &&
        (ctx->dgrams = malloc((size_t)RELAY_UDP_BATCH * RELAY_DGRAM_MAX)) == NULL) {
        free(l->buckets);
        free(l);
        close(fd);
        errno = ENOMEM;
        return NULL;
    }
    l->nbuckets = 64;
    l->ctx = ctx;
    l->map = mapping_ref(m);
    l->port = port;
    l->pktinfo = addr_is_any(&m->conf.listen);
    l->gso = true;
    int rc = loop_io_add(ctx->loop, &l->io, fd, LOOP_IN, listener_event);
    if (rc < 0) {
        close(fd);
        mapping_unref(l->map);
        free(l->buckets);
        free(l);
        errno = -rc;
        return NULL;
    }
    return l;
}

void udp_listener_set_mapping(struct udp_listener *l, struct mapping *m)
{
    struct mapping *old = l->map;
    l->map = mapping_ref(m);
    mapping_unref(old);
}

void udp_listener_free(struct udp_listener *l, const char *reason)
{
    if (l == NULL) {
        return;
    }
    while (l->lru_head != NULL) {
        sess_end(l->lru_head, true, "%s", reason);
    }
    loop_io_del(l->ctx->loop, &l->io);
    close(l->io.fd);
    mapping_unref(l->map);
    free(l->buckets);
    free(l);
}

void udp_listener_sessions(const struct udp_listener *l, proto_session_fn fn, void *arg)
{
    for (const struct udp_sess *s = l->lru_head; s != NULL; s = s->lnext) {
        struct proto_session_info si = {.kind = "udp",
                                        .map = s->map,
                                        .client = s->client,
                                        .target = s->target,
                                        .start_ms = s->start_ms,
                                        .last_ms = s->last_ms,
                                        .pkts = {s->pkts[0], s->pkts[1]},
                                        .bytes = {s->bytes[0], s->bytes[1]}};
        if (s->icmp_errors != 0 || s->dropped != 0) {
            snprintf(si.detail, sizeof(si.detail), "%llu ICMP errors, %llu datagrams dropped",
                     (unsigned long long)s->icmp_errors, (unsigned long long)s->dropped);
        }
        fn(arg, &si);
    }
}
