/*
 * rtsp_proxy: the stream filter of proto = rtsp mappings. It follows the RTSP conversation on a
 * control connection and makes it work through the gateway:
 *   - requests go to the device with their URLs naming the device; answers come back with the
 *     device's URLs and SDP addresses naming the address the client used (rtsp.c);
 *   - a SETUP for RTP over UDP gets a stream (rtsp_stream.c): the device is told the inside
 *     pair as the client's ports, the client the outside pair as the server's, and the RTP and
 *     RTCP between them are relayed; interleaved TCP passes as it is;
 *   - what the gateway refuses it answers itself, in order with the device's answers: multicast
 *     or unknown transports (461), no RTP ports or max-sessions reached (453), malformed
 *     requests (400, then the connection closes). A device that sends malformed RTSP loses the
 *     connection;
 *   - with device-auth (rtsp_proto.h), the device's login is the gateway's: the client's
 *     Authorization is removed, and the device's 401 is answered by sending the request again
 *     with credentials (message/digest.h), which every later request then carries; a 401 the
 *     gateway cannot answer becomes its own 502, with the reason.
 * Streams belong to the device's session (its Session id), which every control connection of
 * the same client naming the id holds (RFC 2326 lets a session span connections). A session ends
 * with a TEARDOWN's answer on any of them, when the last one holding it closes, or when neither
 * RTSP nor RTP has gone either way for its timeout (the device's Session timeout=, 60 s by
 * default): the device has dropped the session by then. Requests and answers are matched by
 * CSeq (in order when a device leaves it out, as VLC does in errors).
 *
 * The sessions of a worker are listed in a struct rtsp_proxy_worker, the protocol's state on
 * that worker (forward/proto.h), which every connection's filter is opened with.
 */
#ifndef PORTGATE_RTSP_PROXY_H
#define PORTGATE_RTSP_PROXY_H

#include <stdbool.h>

#include "forward/proto.h"
#include "forward/tcp.h"

extern const struct tcp_filter rtsp_proxy_filter;

struct rtsp_proxy_worker;

/* An empty list of sessions, or NULL when out of memory. */
struct rtsp_proxy_worker *rtsp_proxy_worker_new(void);
/* True when no session is left (every connection that held one has closed). */
bool rtsp_proxy_worker_idle(const struct rtsp_proxy_worker *w);
/* Calls fn for each session (forward/proto.h: sessions). */
void rtsp_proxy_worker_sessions(const struct rtsp_proxy_worker *w, proto_session_fn fn, void *arg);
/* Frees the list, which must be idle. NULL is a no-op. */
void rtsp_proxy_worker_free(struct rtsp_proxy_worker *w);

/* The same as a protocol entry's worker_new, worker_free and sessions (forward/proto.h), for
 * rtsp's and rtsps's. */
void *rtsp_proxy_state_new(struct relay_ctx *ctx);
void rtsp_proxy_state_free(void *state);
void rtsp_proxy_state_sessions(void *state, proto_session_fn fn, void *arg);

#endif
