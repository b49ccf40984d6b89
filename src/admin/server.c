/* admin/server.c: the HTTP side of admin/admin.h (libmicrohttpd on the control loop). */
#include <errno.h>
#include <grp.h>
#include <microhttpd.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "admin/admin.h"
#include "admin/api.h"
#include "admin/auth.h"
#include "admin/page.h"
#include "admin/state.h"
#include "auth/users.h"
#include "core/log.h"
#include "core/sock.h"

/* Every answer, page or API: nothing inline runs, nothing frames it, nothing is sniffed, and no
 * address leaks to another site. */
static const char *const security_headers[][2] = {
    {"Content-Security-Policy",
     "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
     "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"},
    {"X-Frame-Options", "DENY"},
    {"X-Content-Type-Options", "nosniff"},
    {"Referrer-Policy", "no-referrer"},
    {"Cache-Control", "no-store"},
};

/* A connection: its deadline, in the list the timer walks. */
struct aconn {
    int fd;
    uint64_t deadline_ms;
    struct aconn *prev, *next;
};

struct admin_listener {
    struct admin *a;
    struct MHD_Daemon *d;
    struct loop_io io; /* libmicrohttpd's epoll descriptor */
    bool local;        /* the unix socket: trusted by its peer's credentials */
    char path[108];
    /* The HTTP listener: the Host headers it answers to ("127.0.0.1:8088", "localhost:8088"),
     * so that a web page whose name an attacker points at 127.0.0.1 (DNS rebinding) gets
     * nothing from it. */
    char hosts[2][ADDR_STRLEN + 16];
    /* admin-origins: the https sites (a mapping of the gateway's own) the page may be used from,
     * whose names it answers to as well. */
    char origins[1024];
};

struct admin {
    struct gateway_hooks hooks;
    struct gateway *g; /* once started */
    struct loop *loop;
    struct admin_listener ls[2];
    size_t nls;
    struct loop_timer mhd_timer; /* libmicrohttpd's own timeouts */
    struct loop_timer deadlines; /* requests that take too long */
    struct loop_timer leases;
    struct aconn conns; /* list head */
    struct auth *auth;
    struct api *api;
};

/* A request being read. */
struct req {
    char *body;
    size_t len;
    size_t limit; /* the largest body taken */
    bool too_big;
    bool answered; /* refused before its body: what comes is dropped */
};

/* A login is a user name and a password: a client with no credential sends no more. */
#define LOGIN_MAX_BODY 4096

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char buf[512];
    vsnprintf(buf, sizeof(buf), fmt, ap);
    buf[strcspn(buf, "\n")] = '\0';
    log_debug("admin: %s", buf);
}

/* ---- answers ---- */

static enum MHD_Result send_response(struct MHD_Connection *c, unsigned status,
                                     struct MHD_Response *r)
{
    if (r == NULL) {
        return MHD_NO; /* out of memory: the connection closes */
    }
    for (size_t i = 0; i < sizeof(security_headers) / sizeof(security_headers[0]); i++) {
        MHD_add_response_header(r, security_headers[i][0], security_headers[i][1]);
    }
    enum MHD_Result rc = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return rc;
}

/* Sends text (malloc'd, taken; NULL for a 204) of the type given, with an ETag (0: none), a
 * Location and a Set-Cookie (NULL or empty: none). */
static enum MHD_Result send_text(struct MHD_Connection *c, unsigned status, char *text,
                                 const char *type, unsigned long long etag, const char *location,
                                 const char *set_cookie)
{
    struct MHD_Response *r;
    if (text == NULL) {
        r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    } else {
        r = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
        if (r == NULL) {
            free(text);
        }
    }
    if (r == NULL) {
        return MHD_NO;
    }
    if (text != NULL) {
        MHD_add_response_header(r, "Content-Type", type);
    }
    if (etag != 0) {
        char tag[32];
        snprintf(tag, sizeof(tag), "\"%llu\"", etag);
        MHD_add_response_header(r, "ETag", tag);
    }
    if (location != NULL && location[0] != '\0') {
        MHD_add_response_header(r, "Location", location);
    }
    if (set_cookie != NULL && set_cookie[0] != '\0') {
        MHD_add_response_header(r, "Set-Cookie", set_cookie);
    }
    return send_response(c, status, r);
}

static enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, json_t *j,
                                 unsigned long long etag, const char *location,
                                 const char *set_cookie)
{
    if (status == 204) {
        return send_text(c, status, NULL, NULL, etag, location, set_cookie);
    }
    char *text = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
    if (text == NULL) {
        status = 500;
        text = strdup("{\"error\":\"out of memory\"}");
        if (text == NULL) {
            return MHD_NO;
        }
    }
    return send_text(c, status, text, "application/json", etag, location, set_cookie);
}

static enum MHD_Result send_error(struct MHD_Connection *c, unsigned status, const char *msg)
{
    json_t *j = json_pack("{s:s}", "error", msg);
    enum MHD_Result rc = send_json(c, status, j, 0, NULL, NULL);
    json_decref(j);
    return rc;
}

/* ---- who is asking ---- */

/* The unix socket: root, our own user, and members of the socket's group (mode 0660 already
 * keeps everyone else out; this says so again, in case the mode was changed). */
static bool peer_allowed(struct admin_listener *l, struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    struct ucred cr;
    socklen_t len = sizeof(cr);
    if (ci == NULL || getsockopt(ci->connect_fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) == -1) {
        log_warn("admin: refused a client of %s: its credentials cannot be read: %s", l->path,
                 strerror(errno));
        return false;
    }
    if (cr.uid == 0 || cr.uid == geteuid()) {
        return true;
    }
    struct stat sb;
    if (stat(l->path, &sb) == -1) {
        log_warn("admin: refused uid %u on %s: the socket's group cannot be read: %s",
                 (unsigned)cr.uid, l->path, strerror(errno));
        return false;
    }
    if (cr.gid == sb.st_gid) {
        return true;
    }
    struct passwd pw, *res = NULL;
    char buf[1024];
    gid_t groups[64];
    int n = 64;
    if (getpwuid_r(cr.uid, &pw, buf, sizeof(buf), &res) != 0 || res == NULL) {
        log_warn("admin: refused uid %u on %s: no such user, so no groups", (unsigned)cr.uid,
                 l->path);
        return false;
    }
    if (getgrouplist(pw.pw_name, cr.gid, groups, &n) == -1) {
        log_warn("admin: refused uid %u on %s: in more than 64 groups", (unsigned)cr.uid, l->path);
        return false;
    }
    for (int i = 0; i < n; i++) {
        if (groups[i] == sb.st_gid) {
            return true;
        }
    }
    log_warn("admin: refused uid %u on %s: not root, nor in its group", (unsigned)cr.uid, l->path);
    return false;
}

/* ---- requests ---- */

static bool host_listed(const struct admin_listener *l, const char *host);

/* The last address of an X-Forwarded-For value into buf, if it is one (else false). */
static bool last_forwarded(const char *xff, char *buf, size_t len)
{
    const char *last = strrchr(xff, ',');
    last = last != NULL ? last + 1 : xff;
    while (*last == ' ' || *last == '\t') {
        last++;
    }
    size_t n = strcspn(last, " \t");
    char ip[ADDR_STRLEN];
    struct sockaddr_storage ss;
    if (n == 0 || n >= sizeof(ip) || last[n] != '\0') {
        return false;
    }
    memcpy(ip, last, n);
    ip[n] = '\0';
    if (addr_parse_ip(ip, &ss) != 0) {
        return false;
    }
    addr_format_ip(&ss, buf, len);
    return true;
}

/*
 * The client's address as text ("unix" on the unix socket). A request that came through the
 * gateway's own https mapping (from loopback, its Host one of admin-origins) is the client's
 * that the mapping names last in X-Forwarded-For (the mapping removes what a client sent there
 * itself, and appends the address it saw): so the login's regulation and the log lines are
 * about the remote client, not the gateway's loopback address that all of them share.
 */
static void client_address(struct admin_listener *l, struct MHD_Connection *c, char *buf,
                           size_t len)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    struct sockaddr_storage ss = {0};
    if (l->local || ci == NULL || ci->client_addr == NULL) {
        snprintf(buf, len, "unix");
        return;
    }
    memcpy(&ss, ci->client_addr,
           ci->client_addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                  : sizeof(struct sockaddr_in));
    addr_format_ip(&ss, buf, len);
    const char *xff = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Forwarded-For");
    addr_unmap(&ss);
    if (xff != NULL && addr_is_loopback(&ss) &&
        host_listed(l, MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host"))) {
        last_forwarded(xff, buf, len);
    }
}

/* Logins and the check of every API request (admin/auth.h). Returns MHD_YES/MHD_NO when it
 * answered, -1 when the request goes on. */
static int auth_request(struct admin_listener *l, struct MHD_Connection *c, const char *path,
                        const char *method, struct req *r)
{
    char client[ADDR_STRLEN], cookie[256];
    client_address(l, c, client, sizeof(client));
    struct auth_request rq = {
        .method = method,
        .path = path,
        .cookie = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Cookie"),
        .authorization = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization"),
        .csrf = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-CSRF-Token"),
        .content_type = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type"),
        .body = r->body,
        .body_len = r->len,
        .client = client,
        .local = l->local,
        .now = loop_now(l->a->loop) / 1000,
    };
    struct api_response rs;
    if (auth_handle(l->a->auth, &rq, &rs, cookie, sizeof(cookie)) == AUTH_PASS) {
        return -1;
    }
    enum MHD_Result rc = send_json(c, rs.status, rs.json, 0, NULL, cookie);
    json_decref(rs.json);
    return rc;
}

static enum MHD_Result api_request(struct admin_listener *l, struct MHD_Connection *c,
                                   const char *path, const char *method, struct req *r)
{
    int verdict = auth_request(l, c, path, method, r);
    if (verdict >= 0) {
        return (enum MHD_Result)verdict;
    }
    struct api_request rq = {
        .method = method,
        .path = path,
        .body = r->body,
        .body_len = r->len,
        .content_type = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type"),
        .if_match = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "If-Match"),
        .mapping = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "mapping"),
    };
    struct api_response rs;
    api_handle(l->a->api, &rq, &rs);
    loop_update_time(l->a->loop); /* a change may have taken a while (binding, fsync) */
    if (rs.text != NULL) {
        json_decref(rs.json);
        return send_text(c, rs.status, rs.text, rs.text_type, rs.etag, rs.location, NULL);
    }
    enum MHD_Result rc = send_json(c, rs.status, rs.json, rs.etag, rs.location, NULL);
    json_decref(rs.json);
    return rc;
}

/* True if the Host header names the HTTP listener (or, with Origin, a page of it). */
static bool host_ok(const struct admin_listener *l, const char *host)
{
    for (size_t i = 0; i < 2; i++) {
        if (host != NULL && strcasecmp(host, l->hosts[i]) == 0) {
            return true;
        }
    }
    return false;
}

/* True if origin (an Origin header, or "https://" and a Host) is one of admin-origins. */
static bool origin_listed(const struct admin_listener *l, const char *origin)
{
    size_t n = strlen(origin);
    for (const char *p = l->origins; *p != '\0';) {
        size_t k = strcspn(p, ",");
        if (k == n && strncasecmp(p, origin, n) == 0) {
            return true;
        }
        p += k + (p[k] == ',');
    }
    return false;
}

/* The Host of a request that came through an https mapping from one of admin-origins: its
 * origin is "https://" and the Host (a Host with the default port may come without it). */
static bool host_listed(const struct admin_listener *l, const char *host)
{
    char o[300];
    if (host == NULL || strlen(host) > 280) {
        return false;
    }
    snprintf(o, sizeof(o), "https://%s", host);
    if (origin_listed(l, o)) {
        return true;
    }
    size_t n = strlen(o);
    return n > 4 && strcmp(o + n - 4, ":443") == 0 && (o[n - 4] = '\0', origin_listed(l, o));
}

/*
 * What is decided when the headers are in, before any body is read: the unix socket's peer,
 * the HTTP listener's Host and Origin, and whether the request carries a credential (a
 * request without one is answered at once, so it gets to make the gateway hold nothing, but
 * for a login's few bytes). Returns -1 to go on, or the result of the answer it queued.
 */
static int refuse_early(struct admin_listener *l, struct MHD_Connection *c, const char *url,
                        const char *method, struct req *r)
{
    r->limit = API_MAX_BODY;
    if (l->local) {
        if (peer_allowed(l, c)) {
            return -1;
        }
        return send_error(c, 403, "only root and the socket's group may use this socket");
    }
    const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host");
    if (!host_ok(l, host) && !host_listed(l, host)) {
        return send_error(c, 421,
                          "this listener answers to the names of this host only "
                          "(127.0.0.1 or localhost, with its port), and of admin-origins");
    }
    const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
    if (origin != NULL && (strncmp(origin, "http://", 7) != 0 || !host_ok(l, origin + 7)) &&
        !origin_listed(l, origin)) {
        return send_error(c, 403, "a request from another site's page");
    }
    if (strncmp(url, "/api/", 5) != 0 && strcmp(url, "/metrics") != 0) {
        return -1; /* the page's files are public */
    }
    if (strcmp(url, "/api/v1/session") == 0 && strcmp(method, "POST") == 0) {
        r->limit = LOGIN_MAX_BODY;
        return -1;
    }
    if (auth_credentials(l->a->auth, MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Cookie"),
                         MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization"),
                         loop_now(l->a->loop) / 1000)) {
        return -1;
    }
    /* No credential: the login check answers (401, with how to make a first user). */
    return auth_request(l, c, strncmp(url, "/api/v1", 7) == 0 ? url + 7 : url, method, r);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_size, void **ctx)
{
    (void)version;
    struct admin_listener *l = cls;
    struct req *r = *ctx;
    if (r == NULL) {
        r = calloc(1, sizeof(*r));
        if (r == NULL) {
            return MHD_NO;
        }
        *ctx = r;
        int early = refuse_early(l, c, url, method, r);
        if (early >= 0) {
            r->answered = true; /* the body, if any, is never read */
            return (enum MHD_Result)early;
        }
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (cl != NULL && strtoull(cl, NULL, 10) > r->limit) {
            r->answered = true;
            return send_error(c, 413,
                              r->limit == API_MAX_BODY
                                  ? "request body larger than 1 MiB"
                                  : "a login is {\"user\": ..., \"password\": ...}, "
                                    "no more than 4 KiB");
        }
        return MHD_YES;
    }
    if (r->answered) {
        *upload_size = 0;
        return MHD_YES;
    }
    if (*upload_size > 0) {
        if (!r->too_big && r->len + *upload_size <= r->limit) {
            char *b = realloc(r->body, r->len + *upload_size + 1);
            if (b == NULL) {
                return MHD_NO;
            }
            memcpy(b + r->len, upload_data, *upload_size);
            r->body = b;
            r->len += *upload_size;
            r->body[r->len] = '\0';
        } else {
            r->too_big = true; /* chunked, no Content-Length: read and dropped */
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (r->too_big) {
        return send_error(c, 413,
                          r->limit == API_MAX_BODY ? "request body larger than 1 MiB"
                                                   : "a login of more than 4 KiB");
    }
    if (strncmp(url, "/api/v1/", 8) == 0) {
        return api_request(l, c, url + 7, method, r);
    }
    if (strcmp(url, "/metrics") == 0) {
        return api_request(l, c, "/metrics", method, r);
    }
    const struct page_asset *asset = page_find(url);
    if (asset == NULL) {
        return send_error(c, 404, "not found");
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        return send_error(c, 405, "method not allowed");
    }
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(asset->len, (void *)asset->data, MHD_RESPMEM_PERSISTENT);
    if (resp != NULL) {
        MHD_add_response_header(resp, "Content-Type", asset->type);
    }
    return send_response(c, 200, resp);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **ctx,
                         enum MHD_RequestTerminationCode why)
{
    (void)why;
    struct admin_listener *l = cls;
    struct req *r = *ctx;
    if (r != NULL) {
        free(r->body);
        free(r);
        *ctx = NULL;
    }
    /* The next request on this connection has a deadline of its own. */
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    if (ci != NULL && ci->socket_context != NULL) {
        struct aconn *ac = ci->socket_context;
        ac->deadline_ms = loop_now(l->a->loop) + ADMIN_REQUEST_TIMEOUT_S * 1000u;
    }
}

/* ---- deadlines ---- */

static void arm_deadlines(struct admin *a)
{
    if (a->conns.next != &a->conns && !loop_timer_armed(&a->deadlines)) {
        loop_timer_start(a->loop, &a->deadlines, 1000);
    }
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    struct admin_listener *l = cls;
    struct admin *a = l->a;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        struct aconn *ac = calloc(1, sizeof(*ac));
        if (ac == NULL || ci == NULL) {
            free(ac);
            return; /* no deadline for it: libmicrohttpd's idle timeout still applies */
        }
        ac->fd = ci->connect_fd;
        ac->deadline_ms = loop_now(a->loop) + ADMIN_REQUEST_TIMEOUT_S * 1000u;
        ac->next = a->conns.next;
        ac->prev = &a->conns;
        a->conns.next->prev = ac;
        a->conns.next = ac;
        *socket_context = ac;
        arm_deadlines(a);
    } else if (*socket_context != NULL) {
        struct aconn *ac = *socket_context;
        ac->prev->next = ac->next;
        ac->next->prev = ac->prev;
        free(ac);
        *socket_context = NULL;
    }
}

static void run_daemons(struct admin *a);

/* Every second while connections are open: one past its deadline is shut down, which
 * libmicrohttpd sees as the end of the connection and cleans up after. */
static void on_deadlines(struct loop_timer *t)
{
    struct admin *a = container_of(t, struct admin, deadlines);
    uint64_t now = loop_now(a->loop);
    bool cut = false;
    for (struct aconn *ac = a->conns.next; ac != &a->conns; ac = ac->next) {
        if (ac->deadline_ms <= now && ac->fd >= 0) {
            log_debug("admin: a request took longer than %ds; closing its connection",
                      ADMIN_REQUEST_TIMEOUT_S);
            shutdown(ac->fd, SHUT_RDWR);
            ac->fd = -1;
            cut = true;
        }
    }
    if (cut) {
        run_daemons(a);
    }
    arm_deadlines(a);
}

/* ---- the loop ---- */

static void run_daemons(struct admin *a)
{
    MHD_UNSIGNED_LONG_LONG min = 0;
    bool any = false;
    for (size_t i = 0; i < a->nls; i++) {
        MHD_run(a->ls[i].d);
        MHD_UNSIGNED_LONG_LONG ms;
        if (MHD_get_timeout(a->ls[i].d, &ms) == MHD_YES && (!any || ms < min)) {
            min = ms;
            any = true;
        }
    }
    if (any) {
        loop_timer_start(a->loop, &a->mhd_timer, min);
    } else {
        loop_timer_stop(a->loop, &a->mhd_timer);
    }
}

static void on_mhd_io(struct loop_io *io, uint32_t ev)
{
    (void)ev;
    struct admin_listener *l = container_of(io, struct admin_listener, io);
    run_daemons(l->a);
}

static void on_mhd_timer(struct loop_timer *t)
{
    run_daemons(container_of(t, struct admin, mhd_timer));
}

/* ---- leases ---- */

static void arm_leases(struct admin *a)
{
    const struct config *run = gateway_config(a->g);
    int64_t next = 0;
    for (size_t i = 0; i < run->nmaps; i++) {
        int64_t e = run->maps[i].expires;
        if (e != 0 && (next == 0 || e < next)) {
            next = e;
        }
    }
    if (next == 0) {
        loop_timer_stop(a->loop, &a->leases);
        return;
    }
    int64_t now = (int64_t)time(NULL);
    loop_timer_start(a->loop, &a->leases, next > now ? (uint64_t)(next - now) * 1000u : 0);
}

static void on_leases(struct loop_timer *t)
{
    struct admin *a = container_of(t, struct admin, leases);
    const struct config *run = gateway_config(a->g);
    int64_t now = (int64_t)time(NULL);
    struct config *cand = config_copy(run);
    size_t ended = 0;
    for (size_t i = cand != NULL ? cand->nmaps : 0; i-- > 0;) {
        if (cand->maps[i].expires != 0 && cand->maps[i].expires <= now) {
            log_info("map %s: its lease ended; removing it", cand->maps[i].name);
            config_remove_map(cand, i);
            ended++;
        }
    }
    char why[512];
    if (cand == NULL) {
        log_error("admin: out of memory ending leases; trying again in a second");
        loop_timer_start(a->loop, &a->leases, 1000);
        return;
    }
    if (ended > 0 &&
        (config_finish(cand, false) != 0 || gateway_apply(a->g, cand, why, sizeof(why)) != 0)) {
        log_error("admin: ending leases failed: %s; trying again in a second",
                  cand->nerrors > 0 ? cand->errors[0] : why);
        config_free(cand);
        loop_timer_start(a->loop, &a->leases, 1000);
        return;
    }
    if (ended == 0) {
        config_free(cand);
    }
    arm_leases(a);
}

static int persist(void *arg, const struct config *cfg, char *err, size_t errlen)
{
    (void)arg;
    return config_admin_on(&cfg->gw) ? state_save(cfg, err, errlen) : 0;
}

static void applied(void *arg)
{
    struct admin *a = arg;
    if (a->g != NULL) {
        arm_leases(a);
    }
}

struct admin *admin_new(void)
{
    struct admin *a = calloc(1, sizeof(*a));
    if (a == NULL) {
        return NULL;
    }
    a->hooks = (struct gateway_hooks){
        .load = state_load, .persist = persist, .applied = applied, .arg = a};
    a->conns.next = a->conns.prev = &a->conns;
    loop_timer_init(&a->mhd_timer, on_mhd_timer);
    loop_timer_init(&a->deadlines, on_deadlines);
    loop_timer_init(&a->leases, on_leases);
    return a;
}

const struct gateway_hooks *admin_hooks(struct admin *a)
{
    return &a->hooks;
}

/* ---- set-up ---- */

/* Creates the directory a socket or file goes in, if missing (one level, as systemd's
 * RuntimeDirectory and StateDirectory would). */
static int make_parent_dir(const char *path, mode_t mode)
{
    char dir[CONFIG_PATHLEN];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == NULL || slash == dir) {
        return 0;
    }
    *slash = '\0';
    if (mkdir(dir, mode) == -1 && errno != EEXIST) {
        return -errno;
    }
    return 0;
}

/* The unix socket, made afresh: a socket file left by a gateway that died is replaced, but not
 * one that a running gateway answers on. Returns the listening fd or -errno (logged). */
static int unix_listen(const char *path)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
    int rc = make_parent_dir(path, 0755);
    if (rc < 0) {
        log_error("admin-socket %s: cannot create its directory: %s", path, strerror(-rc));
        return rc;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        rc = -errno;
        log_error("admin-socket %s: socket: %s", path, strerror(errno));
        return rc;
    }
    struct stat sb;
    if (lstat(path, &sb) == 0) {
        if (!S_ISSOCK(sb.st_mode)) {
            log_error("admin-socket %s: exists and is not a socket; remove it or choose another "
                      "path",
                      path);
            close(fd);
            return -EEXIST;
        }
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe >= 0 && connect(probe, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
            log_error("admin-socket %s: another gateway is answering on it", path);
            close(probe);
            close(fd);
            return -EADDRINUSE;
        }
        if (probe >= 0) {
            close(probe);
        }
        unlink(path); /* left by a gateway that is gone */
    }
    /* Created with no permission for others from the start, then opened to the group. */
    mode_t old = umask(0117);
    rc = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
    umask(old);
    if (rc == -1 || listen(fd, 128) == -1) {
        rc = -errno;
        log_error("admin-socket %s: %s", path, strerror(errno));
        close(fd);
        return rc;
    }
    struct group gr, *res = NULL;
    char buf[1024];
    if (getgrnam_r("portgate", &gr, buf, sizeof(buf), &res) == 0 && res != NULL &&
        chown(path, (uid_t)-1, gr.gr_gid) == -1) {
        log_warn("admin-socket %s: cannot give it to group portgate: %s", path, strerror(errno));
    }
    if (chmod(path, 0660) == -1) {
        log_warn("admin-socket %s: chmod 0660: %s", path, strerror(errno));
    }
    return fd;
}

static int start_listener(struct admin *a, int fd, bool local, const char *path)
{
    struct admin_listener *l = &a->ls[a->nls];
    l->a = a;
    l->local = local;
    l->io.fd = -1;
    snprintf(l->path, sizeof(l->path), "%s", path != NULL ? path : "");
    l->d = MHD_start_daemon(MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request, l,
                            MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_TIMEOUT,
                            (unsigned)ADMIN_REQUEST_TIMEOUT_S, MHD_OPTION_CONNECTION_LIMIT,
                            (unsigned)ADMIN_MAX_CONNECTIONS, MHD_OPTION_NOTIFY_COMPLETED,
                            on_completed, l, MHD_OPTION_NOTIFY_CONNECTION, on_connection, l,
                            MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_END);
    if (l->d == NULL) {
        log_error("admin: cannot start the HTTP server on %s", local ? path : "its address");
        close(fd);
        return -1;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(l->d, MHD_DAEMON_INFO_EPOLL_FD);
    int rc = di != NULL ? loop_io_add(a->loop, &l->io, di->epoll_fd, LOOP_IN, on_mhd_io) : -EINVAL;
    if (rc < 0) {
        log_error("admin: cannot poll the HTTP server: %s", strerror(-rc));
        MHD_stop_daemon(l->d);
        l->d = NULL;
        return -1;
    }
    a->nls++;
    return 0;
}

int admin_start(struct admin *a, struct gateway *g)
{
    a->g = g;
    a->loop = gateway_loop(g);
    const struct config_gateway *gw = &gateway_config(g)->gw;
    if (!config_admin_on(gw)) {
        return 0;
    }
    a->auth = auth_new(gw->users_file);
    a->api = api_new(g);
    if (a->auth == NULL || a->api == NULL) {
        log_error("admin: out of memory");
        return -1;
    }
    api_set_auth_stats(a->api, auth_stats(a->auth));
    if (gw->admin_socket[0] != '\0') {
        int fd = unix_listen(gw->admin_socket);
        if (fd < 0 || start_listener(a, fd, true, gw->admin_socket) != 0) {
            return -1;
        }
        log_info("admin: API on unix socket %s", gw->admin_socket);
    }
    if (gw->admin.ss_family != 0) {
        char as[ADDR_STRLEN];
        addr_format(&gw->admin, as, sizeof(as));
        int fd = sock_listen_tcp(&gw->admin, 128, 0);
        if (fd < 0) {
            log_error("admin: cannot listen on %s: %s%s", as, strerror(-fd),
                      fd == -EADDRINUSE ? " (another program uses it: set admin = in [gateway])"
                                        : "");
            return -1;
        }
        if (start_listener(a, fd, false, NULL) != 0) {
            return -1;
        }
        struct admin_listener *l = &a->ls[a->nls - 1];
        snprintf(l->hosts[0], sizeof(l->hosts[0]), "%s", as);
        snprintf(l->hosts[1], sizeof(l->hosts[1]), "localhost:%u", addr_port(&gw->admin));
        snprintf(l->origins, sizeof(l->origins), "%s", gw->admin_origins);
        log_info("admin: web page and API on http://%s/", as);
    }
    /* Before the first login can arrive (the loop has not run yet), and once the sockets are
     * open (it takes as long as a password check). */
    users_prepare();
    arm_leases(a);
    return 0;
}

void admin_free(struct admin *a)
{
    if (a == NULL) {
        return;
    }
    for (size_t i = 0; i < a->nls; i++) {
        loop_io_del(a->loop, &a->ls[i].io);
        a->ls[i].io.fd = -1;
        MHD_stop_daemon(a->ls[i].d); /* closes the connections: on_connection frees theirs */
        if (a->ls[i].local) {
            unlink(a->ls[i].path);
        }
    }
    auth_free(a->auth);
    api_free(a->api);
    if (a->loop != NULL) {
        loop_timer_stop(a->loop, &a->mhd_timer);
        loop_timer_stop(a->loop, &a->deadlines);
        loop_timer_stop(a->loop, &a->leases);
    }
    free(a);
}
