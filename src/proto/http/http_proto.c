#include "proto/http/http_proto.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "auth/users.h"
#include "core/duration.h"
#include "core/names.h"
#include "proto/http/http_proxy.h"

static const char *const stat_names[] = {
    [HTTP_STAT_REQUESTS] = "http requests",
    [HTTP_STAT_REFUSED] = "http requests answered by the gateway",
    [HTTP_STAT_UPGRADES] = "http upgrades",
    [HTTP_STAT_ACME] = "http acme challenges answered",
    [HTTP_STAT_DEVICE_AUTH] = "http device logins answered",
    [HTTP_STAT_LOGINS] = "http logins",
    [HTTP_STAT_LOGIN_FAILED] = "http failed logins",
    NULL,
};
static const char *const https_stat_names[] = {
    [HTTP_STAT_REQUESTS] = "http requests",
    [HTTP_STAT_REFUSED] = "http requests answered by the gateway",
    [HTTP_STAT_UPGRADES] = "http upgrades",
    [HTTP_STAT_ACME] = "http acme challenges answered",
    [HTTP_STAT_DEVICE_AUTH] = "http device logins answered",
    [HTTP_STAT_LOGINS] = "http logins",
    [HTTP_STAT_LOGIN_FAILED] = "http failed logins",
    [HTTP_STAT_COUNT] = TLS_STAT_NAMES,
    NULL,
};
_Static_assert(HTTP_STAT_COUNT + TLS_STAT_COUNT <= PROTO_MAX_STATS, "https: too many counters");

static const char *const http_keys[] = {
    "host",  "target-host",    "redirect-https",     "acme-webroot",    "device-auth", "auth",
    "users", "header-timeout", "keep-alive-timeout", "max-header-size", NULL};
/* https: TLS's keys (ALPN is http/1.1), then the filter's. */
static const char *const https_keys[] = {"cert",
                                         "key",
                                         "ocsp",
                                         "min-tls",
                                         "ciphers",
                                         "handshake-timeout",
                                         "auth",
                                         "client-ca",
                                         "client-crl",
                                         "users",
                                         "host",
                                         "target-host",
                                         "hsts",
                                         "acme-webroot",
                                         "device-auth",
                                         "header-timeout",
                                         "keep-alive-timeout",
                                         "max-header-size",
                                         NULL};

static void http_conf_init(struct http_conf *c, bool tls)
{
    memset(c, 0, sizeof(*c));
    c->header_timeout_ms = HTTP_HEADER_TIMEOUT_MS;
    c->keepalive_timeout_ms = HTTP_KEEPALIVE_TIMEOUT_MS;
    c->max_header = HTTP_MAX_HEADER;
    c->tls = tls;
    if (tls) {
        snprintf(c->hsts, sizeof(c->hsts), "%s", HTTP_HSTS_DEFAULT);
    }
}

/* A host and an optional port, as a Host header carries them: "cam1", "192.0.2.10:8080",
 * "[2001:db8::1]:80". */
static bool host_ok(const char *v)
{
    if (*v == '\0' || strlen(v) > 255) {
        return false;
    }
    for (const char *p = v; *p != '\0'; p++) {
        char ch = *p;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              strchr("-._:[]", ch) != NULL)) {
            return false;
        }
    }
    return true;
}

static int http_conf_set(struct http_conf *c, const char *key, const char *val, char *why,
                         size_t len)
{
    if (strcmp(key, "host") == 0) {
        return http_hosts_parse(val, c->hosts, sizeof(c->hosts), why, len);
    }
    if (strcmp(key, "target-host") == 0) {
        if (val[0] != '\0' && !host_ok(val)) {
            snprintf(why, len, "\"%s\": a host name or address, and a port if any", val);
            return -1;
        }
        snprintf(c->target_host, sizeof(c->target_host), "%s", val);
        return 0;
    }
    if (strcmp(key, "redirect-https") == 0) {
        size_t digits = strspn(val, "0123456789");
        bool port = digits == strlen(val) && digits > 0 && digits <= 5 && atoi(val) > 0 &&
                    atoi(val) <= 65535;
        if (val[0] != '\0' && !port && !host_ok(val)) {
            snprintf(why, len, "\"%s\": the https twin's PORT, or HOST:PORT", val);
            return -1;
        }
        if (strlen(val) >= sizeof(c->redirect_https)) {
            snprintf(why, len, "\"%s\": too long", val);
            return -1;
        }
        snprintf(c->redirect_https, sizeof(c->redirect_https), "%s", val);
        return 0;
    }
    if (strcmp(key, "device-auth") == 0) {
        return digest_login_set(&c->device_auth, val, why, len);
    }
    if (strcmp(key, "auth") == 0) {
        if (strcmp(val, "login") != 0 && strcmp(val, "none") != 0) {
            snprintf(why, len,
                     "\"%s\": login (the gateway's login page before the device), or "
                     "none%s",
                     val, c->tls ? "; or client-cert" : "");
            return -1;
        }
        c->login = val[0] == 'l';
        return 0;
    }
    if (strcmp(key, "users") == 0) {
        /* With auth = login, the users file's names; on https with client-cert, the
         * certificates' common names, which may be any printable name. */
        if (names_parse(val, c->tls ? "a common name" : "a user name", USERS_NAMELEN, c->users,
                        sizeof(c->users), why, len) != 0) {
            return -1;
        }
        for (const char *p = c->users; !c->tls && *p != '\0';) {
            size_t n = strcspn(p, ",");
            char name[USERS_NAMELEN];
            snprintf(name, sizeof(name), "%.*s", (int)n, p);
            if (!users_valid_name(name)) {
                snprintf(why, len, "\"%s\": a user name is letters, digits, '.', '_', '-' or '@'",
                         name);
                return -1;
            }
            p += n + (p[n] == ',');
        }
        return 0;
    }
    if (strcmp(key, "acme-webroot") == 0) {
        /* Checked now, so that check, start, reload and the API say so; answered from at each
         * challenge (http_acme.h), so that the directory may also be made again later. */
        if (val[0] == '\0') {
            c->acme_webroot[0] = '\0';
            return 0;
        }
        if (val[0] != '/') {
            snprintf(why, len, "\"%s\": an absolute path", val);
            return -1;
        }
        if (strlen(val) >= sizeof(c->acme_webroot)) {
            snprintf(why, len, "\"%.60s...\": at most %zu bytes", val, sizeof(c->acme_webroot) - 1);
            return -1;
        }
        for (const char *p = val; *p != '\0'; p++) {
            if ((unsigned char)*p <= ' ' || *p == 0x7f) {
                snprintf(why, len, "\"%s\": no spaces or control characters", val);
                return -1;
            }
        }
        struct stat st;
        if (stat(val, &st) == -1) {
            snprintf(why, len, "\"%s\": %s", val, strerror(errno));
            return -1;
        }
        if (!S_ISDIR(st.st_mode)) {
            snprintf(why, len, "\"%s\": not a directory", val);
            return -1;
        }
        snprintf(c->acme_webroot, sizeof(c->acme_webroot), "%s", val);
        return 0;
    }
    if (strcmp(key, "hsts") == 0) {
        if (strcmp(val, "off") == 0) {
            c->hsts[0] = '\0';
            return 0;
        }
        /* Kept without spaces (directives may have none around ';'), so that check shows it
         * as one value. */
        char v[sizeof(c->hsts)];
        size_t n = 0;
        for (const char *p = val; *p != '\0'; p++) {
            if (*p == ' ' || *p == '\t') {
                continue;
            }
            if (*p < 0x21 || *p > 0x7e || n + 1 >= sizeof(v)) {
                snprintf(why, len, "\"%.60s\": printable characters, at most %zu", val,
                         sizeof(v) - 1);
                return -1;
            }
            v[n++] = *p;
        }
        v[n] = '\0';
        if (strncmp(v, "max-age=", 8) != 0 || strspn(v + 8, "0123456789") == 0) {
            snprintf(why, len, "\"%s\": max-age=SECONDS[; includeSubDomains], or off", val);
            return -1;
        }
        memcpy(c->hsts, v, n + 1);
        return 0;
    }
    if (strcmp(key, "header-timeout") == 0 || strcmp(key, "keep-alive-timeout") == 0) {
        uint32_t ms;
        if (duration_parse(val, &ms, why, len) != 0) {
            return -1;
        }
        if (ms < 1000) {
            snprintf(why, len, "\"%s\": 1s or more", val);
            return -1;
        }
        *(key[0] == 'h' ? &c->header_timeout_ms : &c->keepalive_timeout_ms) = ms;
        return 0;
    }
    /* max-header-size */
    size_t digits = strspn(val, "0123456789");
    long v = digits == strlen(val) && digits > 0 && digits <= 6 ? atol(val) : -1;
    if (v < 1024 || v > 61440) {
        snprintf(why, len, "\"%s\": bytes, from 1024 to 61440", val);
        return -1;
    }
    c->max_header = (uint32_t)v;
    return 0;
}

/* Appends " KEY=VALUE" (no space before the first) to buf. */
static void item(char *buf, size_t len, size_t *off, const char *key, const char *val)
{
    if (*off < len) {
        int n = snprintf(buf + *off, len - *off, "%s%s=%s", *off ? " " : "", key, val);
        *off += n > 0 ? (size_t)n : 0;
    }
}

static size_t http_conf_format(const struct http_conf *c, char *buf, size_t len)
{
    char d[32], size[16];
    size_t off = 0;
    buf[0] = '\0';
    if (c->hosts[0]) {
        item(buf, len, &off, "host", c->hosts);
    }
    if (c->target_host[0]) {
        item(buf, len, &off, "target-host", c->target_host);
    }
    if (c->redirect_https[0]) {
        item(buf, len, &off, "redirect-https", c->redirect_https);
    }
    if (c->tls) {
        item(buf, len, &off, "hsts", c->hsts[0] ? c->hsts : "off");
    }
    if (c->acme_webroot[0]) {
        item(buf, len, &off, "acme-webroot", c->acme_webroot);
    }
    if (c->device_auth.user[0]) {
        char v[sizeof(c->device_auth)];
        digest_login_format(&c->device_auth, v, sizeof(v));
        item(buf, len, &off, "device-auth", v);
        OPENSSL_cleanse(v, sizeof(v));
    }
    if (c->login) {
        item(buf, len, &off, "auth", "login");
    }
    if (c->users[0]) {
        item(buf, len, &off, "users", c->users);
    }
    item(buf, len, &off, "header-timeout", duration_format(c->header_timeout_ms, d, sizeof(d)));
    item(buf, len, &off, "keep-alive-timeout",
         duration_format(c->keepalive_timeout_ms, d, sizeof(d)));
    snprintf(size, sizeof(size), "%u", c->max_header);
    item(buf, len, &off, "max-header-size", size);
    return off < len ? off : len - 1;
}

/* ---- http ---- */

static void http_init(void *pconf)
{
    http_conf_init(pconf, false);
}

static int http_set(void *pconf, const char *key, const char *val, char *why, size_t len)
{
    return http_conf_set(pconf, key, val, why, len);
}

static void http_format(const void *pconf, char *buf, size_t len)
{
    http_conf_format(pconf, buf, len);
}

/* An http mapping that only redirects to https never shows the device. */
static bool http_cleartext(const void *pconf)
{
    return ((const struct http_conf *)pconf)->redirect_https[0] == '\0';
}

/* Two mappings share a port when each request can go to one of them only: no name of one is
 * another's, and at most one answers for every name. */
static bool http_can_share(const void *a, const void *b, char *why, size_t len)
{
    const struct http_conf *x = a, *y = b;
    char name[256];
    if (x->hosts[0] == '\0' && y->hosts[0] == '\0') {
        snprintf(why, len,
                 "neither has a host key, so both would answer for every host; give each its "
                 "names (host = cam1.example.org)");
        return false;
    }
    if (http_hosts_overlap(x->hosts, y->hosts, name, sizeof(name))) {
        snprintf(why, len, "both answer for host %s", name);
        return false;
    }
    return true;
}

/* device-auth without the gateway's login: every client is the device's user. */
static bool http_opens_device(const void *pconf)
{
    const struct http_conf *c = pconf;
    return c->device_auth.user[0] != '\0' && !c->login;
}

/* Client certificates, too, say who may come. */
static bool https_opens_device(const void *pconf)
{
    const struct https_conf *c = pconf;
    return http_opens_device(&c->http) && !c->tls.client_cert;
}

/* users says who may log in: it needs auth. */
static int http_check(const void *pconf, char *why, size_t len)
{
    const struct http_conf *c = pconf;
    if (c->users[0] != '\0' && !c->login) {
        snprintf(why, len, "users: applies with auth = login");
        return -1;
    }
    return 0;
}

static int https_check(const void *pconf, char *why, size_t len)
{
    const struct https_conf *c = pconf;
    if (c->http.users[0] != '\0' && !c->http.login && !c->tls.client_cert) {
        snprintf(why, len, "users: applies with auth = login or auth = client-cert");
        return -1;
    }
    return 0;
}

const struct proto http_proto = {
    .name = "http",
    .transport = SOCK_STREAM,
    .filter = &http_proxy_filter,
    .router = &http_router,
    .can_share = http_can_share,
    .placement = PROTO_EVERY_WORKER,
    .cleartext_logins = http_cleartext,
    .opens_device = http_opens_device,
    .keys = http_keys,
    .conf_size = sizeof(struct http_conf),
    .conf_init = http_init,
    .conf_set = http_set,
    .conf_format = http_format,
    .conf_check = http_check,
    .stat_names = stat_names,
};

/* ---- https ---- */

static bool is_tls_key(const char *key)
{
    for (const char *const *k = tls_keys_fixed_alpn; *k != NULL; k++) {
        if (strcmp(*k, key) == 0) {
            return true;
        }
    }
    return false;
}

static void https_init(void *pconf)
{
    struct https_conf *c = pconf;
    http_conf_init(&c->http, true);
    tls_conf_init(&c->tls, "http/1.1", HTTP_STAT_COUNT);
}

static int https_set(void *pconf, const char *key, const char *val, char *why, size_t len)
{
    struct https_conf *c = pconf;
    /* auth is TLS's (client-cert) or the filter's (login); users is either's list, kept here
     * and given to TLS at run_open() when client certificates are asked for. */
    if (strcmp(key, "auth") == 0) {
        c->http.login = false;
        c->tls.client_cert = false;
        return strcmp(val, "client-cert") == 0 ? tls_conf_set(&c->tls, key, val, why, len)
                                               : http_conf_set(&c->http, key, val, why, len);
    }
    if (strcmp(key, "users") == 0) {
        return http_conf_set(&c->http, key, val, why, len);
    }
    return is_tls_key(key) ? tls_conf_set(&c->tls, key, val, why, len)
                           : http_conf_set(&c->http, key, val, why, len);
}

static void https_format(const void *pconf, char *buf, size_t len)
{
    const struct https_conf *c = pconf;
    size_t n = tls_conf_format(&c->tls, buf, len);
    if (n + 1 < len) {
        buf[n++] = ' ';
        http_conf_format(&c->http, buf + n, len - n);
    }
}

static void *https_run_open(const void *pconf, const char *mapname, unsigned char id[32], char *why,
                            size_t len)
{
    const struct https_conf *c = pconf;
    struct tls_conf tls = c->tls;
    if (tls.client_cert) {
        snprintf(tls.users, sizeof(tls.users), "%s", c->http.users);
    }
    void *run = tls_run_open(&tls, mapname, id, why, len);
    if (run != NULL && tls_run_set_hosts(run, c->http.hosts, why, len) != 0) {
        tls_run_close(run);
        return NULL;
    }
    return run;
}

/* As http's, and what a handshake does before it knows the mapping must be the same for both:
 * the versions, ciphers and time it is given. */
static bool https_can_share(const void *a, const void *b, char *why, size_t len)
{
    const struct https_conf *x = a, *y = b;
    const char *key = x->tls.min_version != y->tls.min_version            ? "min-tls"
                      : strcmp(x->tls.ciphers, y->tls.ciphers) != 0       ? "ciphers"
                      : x->tls.handshake_ms != y->tls.handshake_ms        ? "handshake-timeout"
                      : x->tls.client_cert != y->tls.client_cert          ? "auth"
                      : strcmp(x->tls.client_ca, y->tls.client_ca) != 0   ? "client-ca"
                      : strcmp(x->tls.client_crl, y->tls.client_crl) != 0 ? "client-crl"
                                                                          : NULL;
    if (key != NULL) {
        snprintf(why, len, "mappings that share a port must have the same %s", key);
        return false;
    }
    return http_can_share(&x->http, &y->http, why, len);
}

const struct proto https_proto = {
    .name = "https",
    .transport = SOCK_STREAM,
    .filter = &http_proxy_filter,
    .layer = &tls_layer,
    .router = &http_router,
    .opens_device = https_opens_device,
    .can_share = https_can_share,
    .placement = PROTO_EVERY_WORKER,
    .keys = https_keys,
    .conf_size = sizeof(struct https_conf),
    .conf_init = https_init,
    .conf_set = https_set,
    .conf_format = https_format,
    .conf_check = https_check,
    .run_open = https_run_open,
    .run_close = tls_run_close,
    .stat_names = https_stat_names,
};
