#include "core/sock.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include "core/addr.h"

static int set_v6only(int fd, const struct sockaddr_storage *addr)
{
    int one = 1;
    if (addr->ss_family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) == -1) {
        return -errno;
    }
    return 0;
}

static int set_reuseport(int fd, int reuseport)
{
    int one = 1;
    return reuseport ? setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) : 0;
}

int sock_listen_tcp(const struct sockaddr_storage *addr, int backlog, int reuseport)
{
    int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        return -errno;
    }
    int one = 1, rc;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
        set_reuseport(fd, reuseport) == -1 || (rc = set_v6only(fd, addr)) < 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == -1 ||
        bind(fd, (const struct sockaddr *)addr, addr_len(addr)) == -1 ||
        (backlog > 0 && listen(fd, backlog) == -1)) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

int sock_listen(int fd, int backlog)
{
    return listen(fd, backlog) == -1 ? -errno : 0;
}

void sock_set_udp_buffers(int fd)
{
    /* Bursts (a video frame is dozens of datagrams) overflow the default ~208 KiB before the
     * loop runs; the kernel caps this at net.core.rmem_max, and global UDP memory limits apply. */
    int size = SOCK_UDP_BUF;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
}

int sock_bind_udp(const struct sockaddr_storage *addr, int pktinfo, int reuseport)
{
    int fd = socket(addr->ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        return -errno;
    }
    sock_set_udp_buffers(fd);
    int one = 1;
    int rc = set_v6only(fd, addr);
    if (rc == 0 && set_reuseport(fd, reuseport) == -1) {
        rc = -errno;
    }
    if (rc == 0 && pktinfo) {
        rc = addr->ss_family == AF_INET6
                 ? setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one))
                 : setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one));
        rc = rc == -1 ? -errno : 0;
    }
    if (rc == 0 && bind(fd, (const struct sockaddr *)addr, addr_len(addr)) == -1) {
        rc = -errno;
    }
    if (rc < 0) {
        close(fd);
        return rc;
    }
    return fd;
}

int sock_connect(const struct sockaddr_storage *addr, int type, int flags, int *in_progress)
{
    int fd = socket(addr->ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        return -errno;
    }
    *in_progress = 0;
    if (type == SOCK_STREAM) {
        sock_set_nodelay(fd);
        if (flags & SOCK_SEND_FIRST) {
            int zero = 0;
            setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &zero, sizeof(zero));
        }
    } else {
        sock_set_udp_buffers(fd);
    }
    if (connect(fd, (const struct sockaddr *)addr, addr_len(addr)) == -1) {
        if (errno != EINPROGRESS) {
            int e = errno;
            close(fd);
            return -e;
        }
        *in_progress = 1;
    }
    return fd;
}

void sock_set_linger0(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}

void sock_set_nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

int sock_error(int fd)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1) {
        return errno;
    }
    return err;
}
