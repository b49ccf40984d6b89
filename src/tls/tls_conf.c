/* The TLS keys of a mapping: parsed and formatted; the files they name are read by tls_run.c. */
#include <openssl/ssl.h>
#include <stdio.h>
#include <string.h>

#include "core/duration.h"
#include "core/names.h"
#include "tls/tls.h"

const char *const tls_keys[] = {
    "cert", "key",       "ocsp",       "min-tls", "ciphers", "alpn", "handshake-timeout",
    "auth", "client-ca", "client-crl", "users",   NULL};
const char *const tls_keys_fixed_alpn[] = {
    "cert", "key",       "ocsp",       "min-tls", "ciphers", "handshake-timeout",
    "auth", "client-ca", "client-crl", "users",   NULL};

void tls_conf_init(struct tls_conf *c, const char *alpn, unsigned stat_base)
{
    memset(c, 0, sizeof(*c));
    c->stat_base = (uint8_t)stat_base;
    c->min_version = TLS1_2_VERSION;
    c->handshake_ms = TLS_HANDSHAKE_MS;
    if (alpn != NULL) {
        snprintf(c->alpn, sizeof(c->alpn), "%s", alpn);
        c->alpn_fixed = true;
    }
}

/* Copies val into dst (of size len) or says why it does not fit. */
static int copy_value(char *dst, size_t len, const char *val, char *why, size_t whylen)
{
    size_t n = strlen(val);
    if (n >= len) {
        snprintf(why, whylen, "\"%.40s...\": longer than %zu bytes", val, len - 1);
        return -1;
    }
    memcpy(dst, val, n + 1);
    return 0;
}

/*
 * A list of files, commas between: each an absolute path (a service's working directory is /,
 * so a relative one would name some other file), with no space or comma in it. Empty entries
 * are allowed only where a file is optional (ocsp). At most TLS_MAX_CERTS.
 */
static int check_files(const char *val, bool empty_ok, char *why, size_t whylen)
{
    size_t count = 0;
    const char *p = val;
    for (;;) {
        size_t n = strcspn(p, ",");
        count++;
        if (count > TLS_MAX_CERTS) {
            snprintf(why, whylen, "\"%.60s\": at most %d files", val, TLS_MAX_CERTS);
            return -1;
        }
        if (n == 0 && !empty_ok) {
            snprintf(why, whylen, "\"%.60s\": expected FILE or FILE,FILE,... (an empty entry)",
                     val);
            return -1;
        }
        if (n > 0 && p[0] != '/') {
            snprintf(why, whylen, "\"%.*s\": give an absolute path", (int)(n > 200 ? 200 : n), p);
            return -1;
        }
        for (size_t i = 0; i < n; i++) {
            if (p[i] == ' ' || p[i] == '\t' || (unsigned char)p[i] < 0x20) {
                snprintf(why, whylen, "\"%.*s\": a path with a space or a control character",
                         (int)(n > 200 ? 200 : n), p);
                return -1;
            }
        }
        if (p[n] == '\0') {
            return 0;
        }
        p += n + 1;
    }
}

/* ALPN protocol names as written: "http/1.1,h2", each 1 to 32 printable characters. */
static int check_alpn(const char *val, char *why, size_t whylen)
{
    const char *p = val;
    for (;;) {
        size_t n = strcspn(p, ",");
        if (n == 0 || n > 32) {
            snprintf(why, whylen,
                     "\"%s\": expected protocol names such as http/1.1, commas between", val);
            return -1;
        }
        for (size_t i = 0; i < n; i++) {
            if (p[i] <= ' ' || p[i] > '~') {
                snprintf(why, whylen, "\"%s\": a protocol name is printable, without spaces", val);
                return -1;
            }
        }
        if (p[n] == '\0') {
            return 0;
        }
        p += n + 1;
    }
}

int tls_conf_set(struct tls_conf *c, const char *key, const char *val, char *why, size_t whylen)
{
    if (strcmp(key, "cert") == 0 || strcmp(key, "key") == 0 || strcmp(key, "ocsp") == 0) {
        bool ocsp = key[0] == 'o';
        if (val[0] != '\0' && check_files(val, ocsp, why, whylen) != 0) {
            return -1;
        }
        char *dst = key[0] == 'c' ? c->cert : key[0] == 'k' ? c->key : c->ocsp;
        return copy_value(dst, TLS_LIST_LEN, val, why, whylen);
    }
    if (strcmp(key, "min-tls") == 0) {
        if (strcmp(val, "1.2") == 0) {
            c->min_version = TLS1_2_VERSION;
        } else if (strcmp(val, "1.3") == 0) {
            c->min_version = TLS1_3_VERSION;
        } else {
            snprintf(why, whylen, "\"%s\": 1.2 or 1.3 (older versions are broken)", val);
            return -1;
        }
        return 0;
    }
    if (strcmp(key, "ciphers") == 0) {
        if (strpbrk(val, " \t") != NULL) {
            snprintf(why, whylen, "\"%s\": an OpenSSL cipher list has no spaces (use :)", val);
            return -1;
        }
        return copy_value(c->ciphers, sizeof(c->ciphers), val, why, whylen);
    }
    if (strcmp(key, "alpn") == 0) {
        if (val[0] != '\0' && check_alpn(val, why, whylen) != 0) {
            return -1;
        }
        return copy_value(c->alpn, sizeof(c->alpn), val, why, whylen);
    }
    if (strcmp(key, "handshake-timeout") == 0) {
        uint32_t ms;
        if (duration_parse(val, &ms, why, whylen) != 0) {
            return -1;
        }
        if (ms == 0) {
            snprintf(why, whylen, "\"%s\": a handshake needs some time: 1s or more", val);
            return -1;
        }
        c->handshake_ms = ms;
        return 0;
    }
    if (strcmp(key, "auth") == 0) {
        if (strcmp(val, "client-cert") != 0 && strcmp(val, "none") != 0) {
            snprintf(why, whylen,
                     "\"%s\": client-cert (clients show a certificate of client-ca), or none", val);
            return -1;
        }
        c->client_cert = val[0] == 'c';
        return 0;
    }
    if (strcmp(key, "client-ca") == 0 || strcmp(key, "client-crl") == 0) {
        if (val[0] != '\0' && (check_files(val, false, why, whylen) != 0 || strchr(val, ','))) {
            if (strchr(val, ',') != NULL) {
                snprintf(why, whylen,
                         "\"%.60s\": one file (it may hold several, one after "
                         "the other)",
                         val);
            }
            return -1;
        }
        return copy_value(strcmp(key, "client-ca") == 0 ? c->client_ca : c->client_crl,
                          sizeof(c->client_ca), val, why, whylen);
    }
    if (strcmp(key, "users") == 0) {
        return names_parse(val, "a common name", 256, c->users, sizeof(c->users), why, whylen);
    }
    snprintf(why, whylen, "\"%s\": not a TLS key", key);
    return -1;
}

size_t tls_conf_format(const struct tls_conf *c, char *buf, size_t len)
{
    char d[32];
    size_t off = 0;
    const struct {
        const char *key, *val;
    } items[] = {
        {"cert", c->cert},
        {"key", c->key},
        {"ocsp", c->ocsp},
        {"min-tls", c->min_version == TLS1_3_VERSION ? "1.3" : "1.2"},
        {"ciphers", c->ciphers},
        {"alpn", c->alpn_fixed ? "" : c->alpn},
        {"handshake-timeout", duration_format(c->handshake_ms, d, sizeof(d))},
        {"auth", c->client_cert ? "client-cert" : ""},
        {"client-ca", c->client_ca},
        {"client-crl", c->client_crl},
        {"users", c->users},
    };
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof(items) / sizeof(items[0]) && off < len; i++) {
        if (items[i].val[0] == '\0') {
            continue;
        }
        int w = snprintf(buf + off, len - off, "%s%s=%s", off > 0 ? " " : "", items[i].key,
                         items[i].val);
        off += w > 0 ? (size_t)w : 0;
    }
    return off < len ? off : len - 1;
}
