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
#include "message/msg.h"
#include "proto/http/http_acme.h"

struct http_conf;

extern const struct tcp_filter http_proxy_filter;

/* Writes the gateway's own answer to a request, after which the connection closes: status, a
 * one-line body saying why, and extra header lines ("Location: ...\r\n", or ""). Returns its
 * length (cut to len - 1 if it does not fit). */
size_t http_answer_text(char *buf, size_t len, int status, const char *why, const char *extra);

/* The answer to an ACME challenge for token ("" when the target held none: 404) from conf's
 * acme-webroot (http_acme.h): the file, 200, text/plain; or 404 or 500 with *why for the log.
 * No body for a HEAD; Connection: close when close, keep-alive said to HTTP/1.0; HSTS on https.
 * Writes at most HTTP_CHALLENGE_ANSWER_MAX bytes to out (room at least that), returns how many,
 * and the status in *status. */
#define HTTP_CHALLENGE_ANSWER_MAX (512 + HTTP_ACME_FILE_MAX)
size_t http_challenge_answer(const struct http_conf *conf, const char *token, bool head, bool close,
                             bool http10, char *out, size_t room, int *status, char *why,
                             size_t whylen);
/* What the gateway refuses of a parsed request whatever the connection (a GET with a body,
 * CONNECT and TRACE, a target that is no path, a Host of 256 bytes or more): the status to
 * answer, with *why and extra header lines in *extra ("" or "Allow: ...\r\n"), or 0. */
int http_request_refused(const struct msg *m, const char **why, const char **extra);

/* redirect-https: the status and the header lines of the answer to a request for target with
 * Host host ("" without one): 308 with "Location: https://...\r\n" in loc (the same host, the
 * twin's port, the same target), or 400 (no Host) or 414 (a target too long) with loc "".
 * *why: a few words for the answer's body. loc needs HTTP_REDIRECT_LOC_MAX bytes. */
#define HTTP_REDIRECT_LOC_MAX 2400
int http_redirect(const struct http_conf *c, const char *host, struct msg_str target, char *loc,
                  size_t len, const char **why);
/* auth = login: true if m carries the cookie of a live session for mapname of a user c lets in
 * (users), whose name is then in user (USERS_NAMELEN bytes). */
bool http_login_user(const struct http_conf *c, const char *mapname, const struct msg *m,
                     char *user);
struct mapping;
/* Counts an answered challenge in m's counters (200: http acme challenges answered; else
 * answered by the gateway, and logged, at most a line a second). */
void http_challenge_count(const struct mapping *m, unsigned worker, uint64_t now_ms,
                          const struct sockaddr_storage *client, int status, const char *why);

#endif
