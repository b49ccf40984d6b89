/*
 * udp: UDP listeners and their sessions.
 *
 * A listener owns one bound UDP socket (one port of a mapping). Each client address and port
 * gets a session with its own socket connect()ed to the target, so the kernel demultiplexes the
 * replies and an ICMP error from the target only ever reaches that session's socket (where it is
 * counted and ignored), never the listener. Replies go back to the client through the listener
 * socket, from the local address the client sent to (IP_PKTINFO / IPV6_PKTINFO on wildcard
 * listeners, so a gateway with several addresses answers from the right one).
 *
 * Sessions end after idle-timeout without a datagram in either direction. The table is bounded
 * by max-sessions: when it is full, the session idle the longest is evicted for the new client.
 * Each ended session logs one line. A session keeps the mapping generation it started with; a
 * listener whose mapping changes keeps its sessions.
 */
#ifndef PORTGATE_UDP_H
#define PORTGATE_UDP_H

#include <stdint.h>

#include "forward/mapping.h"
#include "forward/proto.h"
#include "forward/relay.h"

struct udp_listener;

/* Takes ownership of fd (a bound UDP socket, with pktinfo enabled if the address is a wildcard)
 * and a new reference to m. Returns NULL with errno set when out of memory or when the fd cannot
 * be registered (fd is then closed). */
struct udp_listener *udp_listener_new(struct relay_ctx *ctx, int fd, struct mapping *m,
                                      uint16_t port);
void udp_listener_set_mapping(struct udp_listener *l, struct mapping *m);
/* Calls fn with each of the listener's sessions (kind "udp"), on its worker's thread. */
void udp_listener_sessions(const struct udp_listener *l, proto_session_fn fn, void *arg);
/* Ends every session (logging each with reason) and closes the socket. NULL is a no-op. */
void udp_listener_free(struct udp_listener *l, const char *reason);

#endif
