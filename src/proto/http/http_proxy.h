/*
 * http_proxy: the stream filter of proto = http and https mappings. It reads each request and
 * each answer on a client's connection (message/msg.h), one device connection per client
 * connection, keep-alive on both sides, bodies streamed (Content-Length, chunked, or to the end
 * of the connection for an answer), and:
 *   - refuses, answering itself and then closing, what a weak device should never see: a request
 *     two parsers could read differently (message/msg.h: MSG_HTTP_REQUEST), a head larger than
 *     max-header-size (431) or not complete within header-timeout (408), an absolute-form or
 *     authority-form target, CONNECT and TRACE (405), a Host that changes on one connection (421);
 *   - sends the device the Host it expects (target-host), and X-Forwarded-For, -Proto, -Host and
 *     Forwarded (RFC 7239) of its own, after stripping any the client sent, unless the client is
 *     one of the trusted-proxies (then theirs are kept and ours appended);
 *   - rewrites, in the device's answers, what names the device's own address back to the name
 *     the client used: Location, Content-Location, Refresh, and Set-Cookie's Domain; adds
 *     Strict-Transport-Security on https; passes 1xx answers (100-continue) on;
 *   - passes a websocket (Upgrade, then 101) through both ways as bytes;
 *   - on an http mapping with redirect-https, answers every request with a redirect to its https
 *     twin;
 *   - with acme-webroot, answers GET and HEAD under /.well-known/acme-challenge/ itself from
 *     that directory (http_acme.h), ahead of redirect-https, and keeps the connection.
 * A request the client pipelines waits while 16 await their answers (or while a challenge's
 * answer waits its turn); the gateway's own answer comes after the device's answers to the
 * requests before it.
 */
#ifndef PORTGATE_HTTP_PROXY_H
#define PORTGATE_HTTP_PROXY_H

#include "forward/tcp.h"

extern const struct tcp_filter http_proxy_filter;

#endif
