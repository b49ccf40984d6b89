/*
 * sock: the few socket set-ups the relays share. Every function returns a descriptor or 0 on
 * success, and -errno on failure; none logs (the caller knows which mapping it is for).
 */
#ifndef PORTGATE_SOCK_H
#define PORTGATE_SOCK_H

#include <sys/socket.h>

/* A non-blocking listening TCP socket bound to addr. IPv6 sockets are IPv6-only, so that
 * 0.0.0.0:P and [::]:P can be two mappings. With reuseport (SO_REUSEPORT), sockets of this
 * process bound the same way share the port, and the kernel spreads new connections over them.
 * backlog 0 binds without listening: a probe that the port is free, or a socket that
 * sock_listen() starts later (a reload binds everything before any socket listens). TCP_NODELAY
 * is set on the listening socket, and Linux copies it to every accepted one, which saves a
 * setsockopt per connection. Returns the fd or -errno. */
int sock_listen_tcp(const struct sockaddr_storage *addr, int backlog, int reuseport);
/* Puts a TCP socket bound by sock_listen_tcp(addr, 0, ...) in the listening state. Returns 0 or
 * -errno. */
int sock_listen(int fd, int backlog);
/* A non-blocking UDP socket bound to addr; with pktinfo, it reports each datagram's local
 * address (for wildcard listeners, so replies leave from the address the client used). With
 * reuseport, the kernel spreads datagrams over the sockets sharing the port by a hash of the
 * addresses and ports, so one client's datagrams always reach the same socket. */
int sock_bind_udp(const struct sockaddr_storage *addr, int pktinfo, int reuseport);
/* A non-blocking socket of addr's family and type, connect()ed to addr (TCP with TCP_NODELAY).
 * For TCP the connect may still be in progress (*in_progress set). Returns the fd or -errno.
 * SOCK_SEND_FIRST (TCP): the caller has bytes to send as soon as the connection is up, so the
 * handshake's last ACK is held back (TCP_QUICKACK off) to travel with them: one segment less,
 * and the peer accepts the connection and reads its first bytes in one wake-up. Without bytes
 * to send the kernel would hold that ACK for up to 200ms, so only say it when they are there. */
#define SOCK_SEND_FIRST 1
int sock_connect(const struct sockaddr_storage *addr, int type, int flags, int *in_progress);
/* Receive buffer asked for on UDP sockets. */
#define SOCK_UDP_BUF (2 * 1024 * 1024)
void sock_set_udp_buffers(int fd);
/* Makes the next close() send a reset instead of a FIN. */
void sock_set_linger0(int fd);
void sock_set_nodelay(int fd);
/* The pending error of a socket (SO_ERROR), as a positive errno or 0. */
int sock_error(int fd);

#endif
