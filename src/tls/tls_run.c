/*
 * A TLS mapping's run object: an SSL_CTX per certificate, all configured alike, the first one
 * the default. The servername callback moves a handshake to the context whose certificate
 * names the client's SNI; the others (ALPN, OCSP stapling, tickets) read what the context
 * holds. Built on the control thread, then only read by the workers: OpenSSL's contexts are
 * safe to share once configured.
 */
#include <errno.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/file.h"
#include "core/log.h"
#include "core/names.h"
#include "forward/mapping.h"
#include "tls/tls.h"
#include "tls/tls_int.h"

#define FILE_MAX (1u << 20)
#define MAX_NAMES 64 /* names of one certificate kept for SNI */

/* Mozilla's "intermediate" configuration (v5.7), TLS 1.2 part; TLS 1.3's are OpenSSL's. */
static const char default_ciphers[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305";
/* Mozilla's order: AES-128-GCM first, the cheapest with AES-NI; ChaCha20 is moved first for a
 * client that prefers it (SSL_OP_PRIORITIZE_CHACHA: phones without AES instructions). */
static const char tls13_suites[] =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";
static const char groups[] = "X25519:P-256:P-384";

struct tls_cert {
    SSL_CTX *ctx;
    char *names[MAX_NAMES]; /* DNS names as the certificate gives them; "*.example.org" */
    size_t nnames;
    unsigned char *ocsp; /* the DER response stapled, or NULL */
    size_t ocsp_len;
    time_t ocsp_until; /* its nextUpdate: past it, it is no longer stapled (0: none given) */
};

struct tls_run {
    struct tls_cert certs[TLS_MAX_CERTS];
    size_t ncerts;
    char hosts[1024]; /* the names its mapping answers for on a shared port, or "" */
    char users[1024]; /* auth = client-cert: the common names let in, or "": any */
    bool client_cert; /* auth = client-cert */
    uint32_t handshake_ms;
    unsigned stat_base;
    unsigned char alpn[64]; /* wire format: a length byte before each name */
    size_t alpn_len;
};

/* ---- session tickets ---- */

/*
 * Ticket keys are the process's, shared by every mapping (a session is bound to its mapping by
 * the session id context, the digest of the mapping's name): a new key encrypts tickets every
 * TICKET_ROTATE_S, and the two before it still decrypt them, for a ticket's lifetime
 * (TICKET_LIFETIME_S) at most. A ticket under an older key gets a full handshake. The keys are
 * random and never leave memory: a restart ends every ticket.
 */
#define TICKET_ROTATE_S 3600
#define TICKET_KEYS 3
#define TICKET_LIFETIME_S 7200
_Static_assert(TICKET_LIFETIME_S <= (TICKET_KEYS - 1) * TICKET_ROTATE_S,
               "a ticket outlives the keys that decrypt it");

struct ticket_key {
    unsigned char name[16], aes[32], hmac[32];
    time_t born;
    bool set;
};
static pthread_mutex_t ticket_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ticket_key ticket_keys[TICKET_KEYS]; /* [0] encrypts */

static time_t mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec;
}

/* The key that encrypts now, made or rotated if due. Under ticket_lock. */
static int current_key(struct ticket_key *out)
{
    time_t now = mono_s();
    if (!ticket_keys[0].set || now - ticket_keys[0].born >= TICKET_ROTATE_S) {
        struct ticket_key k = {.born = now, .set = true};
        if (RAND_bytes(k.name, sizeof(k.name)) != 1 || RAND_bytes(k.aes, sizeof(k.aes)) != 1 ||
            RAND_bytes(k.hmac, sizeof(k.hmac)) != 1) {
            return -1;
        }
        OPENSSL_cleanse(&ticket_keys[TICKET_KEYS - 1], sizeof(ticket_keys[0]));
        memmove(&ticket_keys[1], &ticket_keys[0], (TICKET_KEYS - 1) * sizeof(ticket_keys[0]));
        ticket_keys[0] = k;
        OPENSSL_cleanse(&k, sizeof(k));
    }
    *out = ticket_keys[0];
    return 0;
}

/* AES-256-CBC for the tickets, fetched once (ticket_setup) and kept for the process's life: a
 * cipher without a provider, such as EVP_aes_256_cbc(), is fetched again by every
 * EVP_EncryptInit_ex(). NULL if the fetch failed: then that one is used. */
static EVP_CIPHER *ticket_cipher;
static pthread_once_t ticket_once = PTHREAD_ONCE_INIT;

static void ticket_setup(void)
{
    ticket_cipher = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
    ERR_clear_error();
}

static int ticket_cb(SSL *s, unsigned char name[16], unsigned char *iv, EVP_CIPHER_CTX *cctx,
                     EVP_MAC_CTX *hctx, int enc)
{
    struct ticket_key k;
    int rc = 1;
    pthread_mutex_lock(&ticket_lock);
    if (enc) {
        if (current_key(&k) != 0) {
            rc = -1;
        }
    } else {
        rc = 0; /* not ours, or too old: a full handshake */
        for (int i = 0; i < TICKET_KEYS; i++) {
            if (ticket_keys[i].set && memcmp(ticket_keys[i].name, name, 16) == 0 &&
                mono_s() - ticket_keys[i].born < TICKET_KEYS * TICKET_ROTATE_S) {
                k = ticket_keys[i];
                /* 2: good, and the client gets a new ticket (under [0]). Always in TLS 1.3:
                 * clients use a ticket once (RFC 8446 C.4; browsers, OpenSSL's with a session
                 * cache), so without a new one every other connection would be a full
                 * handshake (OpenSSL renews the tickets of its own keys alike). In TLS 1.2,
                 * where a ticket is used again, when the key is an older one. */
                rc = i == 0 && SSL_version(s) != TLS1_3_VERSION ? 1 : 2;
                break;
            }
        }
    }
    pthread_mutex_unlock(&ticket_lock);
    if (rc <= 0) {
        return rc;
    }
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string("key", k.hmac, sizeof(k.hmac)),
        OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    const EVP_CIPHER *cipher = ticket_cipher != NULL ? ticket_cipher : EVP_aes_256_cbc();
    if (enc) {
        memcpy(name, k.name, 16);
        if (RAND_bytes(iv, EVP_MAX_IV_LENGTH) != 1 ||
            EVP_EncryptInit_ex(cctx, cipher, NULL, k.aes, iv) != 1) {
            rc = -1;
        }
    } else if (EVP_DecryptInit_ex(cctx, cipher, NULL, k.aes, iv) != 1) {
        rc = -1;
    }
    if (rc > 0 && EVP_MAC_CTX_set_params(hctx, params) != 1) {
        rc = -1;
    }
    OPENSSL_cleanse(&k, sizeof(k));
    return rc;
}

/* ---- handshake callbacks ---- */

/* True if the certificate name pattern (lower case) covers host: equal, or "*.rest" covering
 * exactly one label before rest. */
static bool name_matches(const char *pattern, const char *host)
{
    if (pattern[0] == '*' && pattern[1] == '.') {
        const char *dot = strchr(host, '.');
        return dot != NULL && dot != host && strcasecmp(dot + 1, pattern + 2) == 0;
    }
    return strcasecmp(pattern, host) == 0;
}

/* The certificate of run that covers host, or NULL. */
static struct tls_cert *find_cert(struct tls_run *run, const char *host)
{
    for (size_t i = 0; i < run->ncerts; i++) {
        for (size_t j = 0; j < run->certs[i].nnames; j++) {
            if (name_matches(run->certs[i].names[j], host)) {
                return &run->certs[i];
            }
        }
    }
    return NULL;
}

/* How well a list of names (a host key's) matches host: 2 equal, 1 by a wildcard, 0 not. */
static int hosts_match(const char *hosts, const char *host)
{
    int best = 0;
    for (const char *p = hosts; *p != '\0';) {
        size_t k = strcspn(p, ",");
        char pat[256];
        if (k < sizeof(pat)) {
            memcpy(pat, p, k);
            pat[k] = '\0';
            int m = !name_matches(pat, host) ? 0 : pat[0] == '*' ? 1 : 2;
            best = m > best ? m : best;
        }
        p += k + (p[k] == ',');
    }
    return best;
}

static pthread_once_t group_once = PTHREAD_ONCE_INIT;
/* The SSL ex_data that holds a shared port's mappings: made by the first tls_run_open(), on the
 * control thread, before any worker runs a connection. */
static int group_idx = -1;

static void group_setup(void)
{
    group_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

void tls_run_use_group(SSL *s, const struct mapping_group *g)
{
    if (g != NULL && g->n > 1) {
        pthread_once(&group_once, group_setup);
        SSL_set_ex_data(s, group_idx, (void *)g);
    }
}

/* On a port several mappings share: the certificate for host, by the rules of
 * tls_run_use_group(), or NULL. */
static struct tls_cert *group_cert(const struct mapping_group *g, const char *host)
{
    struct tls_run *best = NULL;
    int how = 0;
    for (size_t i = 0; i < g->n && how < 2; i++) {
        struct tls_run *r = map_conf_run(&g->maps[i]->conf);
        int m = r != NULL ? hosts_match(r->hosts, host) : 0;
        if (m > how) {
            best = r;
            how = m;
        }
    }
    struct tls_cert *c = best != NULL ? find_cert(best, host) : NULL;
    for (size_t i = 0; i < g->n && c == NULL; i++) {
        struct tls_run *r = map_conf_run(&g->maps[i]->conf);
        c = r != NULL ? find_cert(r, host) : NULL;
    }
    return c;
}

/* SNI: moves the handshake to the certificate that names the host (on a port several mappings
 * share, among all of theirs); with no SNI, or a name no certificate has, the first one answers
 * (a client that checks will refuse it). */
static int servername_cb(SSL *s, int *alert, void *arg)
{
    (void)alert;
    struct tls_run *run = arg;
    const char *host = SSL_get_servername(s, TLSEXT_NAMETYPE_host_name);
    const struct mapping_group *g = NULL;
    if (host != NULL && group_idx >= 0) {
        g = SSL_get_ex_data(s, group_idx);
    }
    if (host == NULL || (run->ncerts == 1 && g == NULL)) {
        return SSL_TLSEXT_ERR_OK;
    }
    struct tls_cert *c = g != NULL ? group_cert(g, host) : find_cert(run, host);
    if (c != NULL && c->ctx != SSL_get_SSL_CTX(s)) {
        SSL_set_SSL_CTX(s, c->ctx);
    }
    return SSL_TLSEXT_ERR_OK;
}

static int alpn_cb(SSL *s, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)s;
    struct tls_run *run = arg;
    unsigned char *sel;
    if (run->alpn_len == 0 ||
        SSL_select_next_proto(&sel, outlen, run->alpn, (unsigned)run->alpn_len, in, inlen) !=
            OPENSSL_NPN_NEGOTIATED) {
        return SSL_TLSEXT_ERR_NOACK; /* none in common: the handshake goes on without */
    }
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static int ocsp_cb(SSL *s, void *arg)
{
    struct tls_cert *c = arg;
    if (c->ocsp == NULL || (c->ocsp_until != 0 && time(NULL) > c->ocsp_until)) {
        return SSL_TLSEXT_ERR_NOACK; /* a stale response would make a strict client refuse */
    }
    unsigned char *copy = OPENSSL_memdup(c->ocsp, c->ocsp_len);
    if (copy == NULL || SSL_set_tlsext_status_ocsp_resp(s, copy, (long)c->ocsp_len) != 1) {
        OPENSSL_free(copy);
        return SSL_TLSEXT_ERR_NOACK;
    }
    return SSL_TLSEXT_ERR_OK;
}

/* ---- loading ---- */

/* OpenSSL's reason for the last error, and the queue emptied. */
const char *tls_err_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;
    ERR_clear_error();
    return r != NULL ? r : "unknown error";
}

/* The n-th (from 0) entry of a comma-separated list into buf, "" if there is none. */
static const char *list_item(const char *list, size_t n, char *buf, size_t len)
{
    const char *p = list;
    for (size_t i = 0; i < n && p != NULL; i++) {
        p = strchr(p, ',');
        p = p != NULL ? p + 1 : NULL;
    }
    buf[0] = '\0';
    if (p != NULL && *list != '\0') {
        size_t k = strcspn(p, ",");
        snprintf(buf, len, "%.*s", (int)k, p);
    }
    return buf;
}

static size_t list_count(const char *list)
{
    if (*list == '\0') {
        return 0;
    }
    size_t n = 1;
    for (const char *p = list; *p != '\0'; p++) {
        n += *p == ',';
    }
    return n;
}

/* Reads a file whole into *buf and adds it to the digest. */
static int read_file(EVP_MD_CTX *md, const char *key, const char *path, char **buf, size_t *len,
                     char *why, size_t whylen)
{
    int rc = file_read(path, false, FILE_MAX, buf, len, NULL);
    if (rc != 0) {
        snprintf(why, whylen, "%s: %s: %s", key, path,
                 rc == -EFBIG ? "larger than 1 MiB" : file_strerror(rc));
        return -1;
    }
    EVP_DigestUpdate(md, path, strlen(path) + 1);
    EVP_DigestUpdate(md, *buf, *len);
    return 0;
}

static void format_time(const ASN1_TIME *t, char *buf, size_t len)
{
    struct tm tm;
    if (ASN1_TIME_to_tm(t, &tm) != 1 || strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0) {
        snprintf(buf, len, "(a date OpenSSL cannot read)");
    }
}

/* The names a certificate answers for: its DNS subjectAltNames, or its common name without. */
static void cert_names(struct tls_cert *tc, X509 *x)
{
    GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; sans != NULL && i < sk_GENERAL_NAME_num(sans); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
        if (g->type != GEN_DNS || tc->nnames == MAX_NAMES) {
            continue;
        }
        const unsigned char *d = ASN1_STRING_get0_data(g->d.dNSName);
        int n = ASN1_STRING_length(g->d.dNSName);
        if (n > 0 && n < 256 && memchr(d, '\0', (size_t)n) == NULL) {
            tc->names[tc->nnames] = OPENSSL_strndup((const char *)d, (size_t)n);
            tc->nnames += tc->names[tc->nnames] != NULL;
        }
    }
    bool had_sans = sans != NULL && sk_GENERAL_NAME_num(sans) > 0;
    GENERAL_NAMES_free(sans);
    if (had_sans) {
        return;
    }
    char cn[256];
    if (X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn)) > 0) {
        tc->names[0] = OPENSSL_strdup(cn);
        tc->nnames = tc->names[0] != NULL;
    }
}

/* Checks a certificate's dates. */
static int check_cert(X509 *leaf, const char *path, char *why, size_t whylen)
{
    char when[64];
    if (X509_cmp_current_time(X509_get0_notAfter(leaf)) <= 0) {
        format_time(X509_get0_notAfter(leaf), when, sizeof(when));
        snprintf(why, whylen, "cert: %s: expired on %s: renew it", path, when);
        return -1;
    }
    if (X509_cmp_current_time(X509_get0_notBefore(leaf)) > 0) {
        format_time(X509_get0_notBefore(leaf), when, sizeof(when));
        snprintf(why, whylen, "cert: %s: not valid before %s (is the clock right?)", path, when);
        return -1;
    }
    return 0;
}

/* True if basic is signed by issuer, or by a responder certificate (in the response) that
 * issuer signed for OCSP. */
static bool signed_by(OCSP_BASICRESP *basic, X509 *issuer)
{
    X509_STORE *store = X509_STORE_new();
    STACK_OF(X509) *chain = sk_X509_new_null();
    bool ok = store != NULL && chain != NULL && X509_STORE_add_cert(store, issuer) == 1 &&
              sk_X509_push(chain, issuer) > 0 &&
              OCSP_basic_verify(basic, chain, store, OCSP_TRUSTOTHER) == 1;
    sk_X509_free(chain);
    X509_STORE_free(store);
    ERR_clear_error();
    return ok;
}

/* Reads the OCSP response file for the certificate leaf (issued by issuer) and checks that it
 * is signed by the issuer (or a responder it delegated to), is about it, says good, and is
 * current. */
static int load_ocsp(struct tls_cert *tc, EVP_MD_CTX *md, const char *path, X509 *leaf,
                     X509 *issuer, const char *cert_path, char *why, size_t whylen)
{
    char *buf;
    size_t len;
    if (read_file(md, "ocsp", path, &buf, &len, why, whylen) != 0) {
        return -1;
    }
    const unsigned char *p = (const unsigned char *)buf;
    OCSP_RESPONSE *resp = d2i_OCSP_RESPONSE(NULL, &p, (long)len);
    OCSP_BASICRESP *basic = resp != NULL ? OCSP_response_get1_basic(resp) : NULL;
    OCSP_CERTID *id = NULL;
    int rc = -1, status, reason;
    ASN1_GENERALIZEDTIME *rev, *thisupd, *nextupd;
    if (resp == NULL || OCSP_response_status(resp) != OCSP_RESPONSE_STATUS_SUCCESSFUL ||
        basic == NULL) {
        snprintf(why, whylen, "ocsp: %s: not a successful DER OCSP response", path);
    } else if (issuer == NULL) {
        snprintf(why, whylen,
                 "ocsp: %s: the issuer's certificate must follow the certificate in %s", path,
                 cert_path);
    } else if ((id = OCSP_cert_to_id(NULL, leaf, issuer)) == NULL ||
               OCSP_resp_find_status(basic, id, &status, &reason, &rev, &thisupd, &nextupd) != 1) {
        snprintf(why, whylen, "ocsp: %s: not about the certificate in %s", path, cert_path);
    } else if (status != V_OCSP_CERTSTATUS_GOOD) {
        snprintf(why, whylen, "ocsp: %s: the certificate in %s is %s", path, cert_path,
                 status == V_OCSP_CERTSTATUS_REVOKED ? "revoked" : "unknown to its issuer");
    } else if (OCSP_check_validity(thisupd, nextupd, 300, -1) != 1) {
        snprintf(why, whylen, "ocsp: %s: out of date: fetch a new response", path);
    } else if (!signed_by(basic, issuer)) {
        snprintf(why, whylen, "ocsp: %s: not signed by the issuer of the certificate in %s", path,
                 cert_path);
    } else {
        struct tm tm;
        if (nextupd != NULL && ASN1_TIME_to_tm(nextupd, &tm) == 1) {
            tc->ocsp_until = timegm(&tm);
        }
        tc->ocsp = (unsigned char *)buf;
        tc->ocsp_len = len;
        buf = NULL;
        rc = 0;
    }
    ERR_clear_error();
    OCSP_CERTID_free(id);
    OCSP_BASICRESP_free(basic);
    OCSP_RESPONSE_free(resp);
    free(buf);
    return rc;
}

/* Settings every context of the run gets alike. */
static int setup_ctx(SSL_CTX *ctx, const struct tls_conf *c, struct tls_run *run,
                     const unsigned char sid[32], char *why, size_t whylen)
{
    SSL_CTX_set_min_proto_version(ctx, c->min_version);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_PRIORITIZE_CHACHA |
                                 SSL_OP_NO_SESSION_RESUMPTION_ON_RENEGOTIATION);
    if (tls_ktls_available()) {
        SSL_CTX_set_options(ctx, SSL_OP_ENABLE_KTLS);
    }
    /* Idle connections give their buffers back; writes may end between records, from a buffer
     * the relay moves on. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_read_ahead(ctx, 1);
    if (SSL_CTX_set_cipher_list(ctx, c->ciphers[0] ? c->ciphers : default_ciphers) != 1) {
        snprintf(why, whylen, "ciphers: \"%s\": no cipher OpenSSL knows", c->ciphers);
        ERR_clear_error();
        return -1;
    }
    if (SSL_CTX_set_ciphersuites(ctx, tls13_suites) != 1) {
        snprintf(why, whylen, "cert: OpenSSL lacks the TLS 1.3 suites %s", tls13_suites);
        ERR_clear_error();
        return -1;
    }
    if (SSL_CTX_set1_groups_list(ctx, groups) != 1) {
        snprintf(why, whylen, "cert: OpenSSL lacks the groups %s", groups);
        return -1;
    }
    SSL_CTX_set_dh_auto(ctx, 1);
    /* Tickets only: no server-side cache, which the workers would share under a lock. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_session_id_context(ctx, sid, 32);
    SSL_CTX_set_timeout(ctx, TICKET_LIFETIME_S);
    SSL_CTX_set_num_tickets(ctx, 1);
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb);
    SSL_CTX_set_tlsext_servername_callback(ctx, servername_cb);
    SSL_CTX_set_tlsext_servername_arg(ctx, run);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, run);
    /* The layer takes TLS 1.3 connections over with these secrets (tls_layer.c). */
    SSL_CTX_set_keylog_callback(ctx, tls_layer_keylog);
    return 0;
}

/* Loads certificate i of the run: its chain, its key (from key_path, or from the cert file),
 * and its OCSP response if any. */
static int load_cert(struct tls_run *run, struct tls_cert *tc, EVP_MD_CTX *md,
                     const struct tls_conf *c, const char *cert_path, const char *key_path,
                     const char *ocsp_path, const unsigned char sid[32], char *why, size_t whylen)
{
    char *pem = NULL, *kpem = NULL;
    size_t len, klen;
    int rc = -1;
    X509 *leaf = NULL, *issuer = NULL;
    EVP_PKEY *pkey = NULL;
    BIO *b = NULL;
    if (read_file(md, "cert", cert_path, &pem, &len, why, whylen) != 0) {
        return -1;
    }
    if ((tc->ctx = SSL_CTX_new(TLS_server_method())) == NULL) {
        snprintf(why, whylen, "cert: %s", tls_err_reason());
        goto out;
    }
    if (setup_ctx(tc->ctx, c, run, sid, why, whylen) != 0) {
        goto out;
    }
    b = BIO_new_mem_buf(pem, (int)len);
    leaf = b != NULL ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    if (leaf == NULL) {
        snprintf(why, whylen, "cert: %s: no PEM certificate in it (%s)", cert_path,
                 tls_err_reason());
        goto out;
    }
    /* Before OpenSSL's own check of the key, which says only "ee key too small". */
    EVP_PKEY *pub = X509_get0_pubkey(leaf);
    if (pub != NULL && EVP_PKEY_get_base_id(pub) == EVP_PKEY_RSA && EVP_PKEY_get_bits(pub) < 2048) {
        snprintf(why, whylen, "cert: %s: an RSA key of %d bits is too weak: 2048 or more",
                 cert_path, EVP_PKEY_get_bits(pub));
        goto out;
    }
    if (SSL_CTX_use_certificate(tc->ctx, leaf) != 1) {
        snprintf(why, whylen, "cert: %s: %s", cert_path, tls_err_reason());
        goto out;
    }
    /* The chain: every further certificate in the file, in order. */
    for (X509 *x; (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL;) {
        if (issuer == NULL && X509_check_issued(x, leaf) == X509_V_OK) {
            issuer = x;
            X509_up_ref(issuer);
        }
        if (SSL_CTX_add0_chain_cert(tc->ctx, x) != 1) {
            X509_free(x);
            snprintf(why, whylen, "cert: %s: its chain: %s", cert_path, tls_err_reason());
            goto out;
        }
    }
    ERR_clear_error(); /* the end of the file */
    const char *kfrom = cert_path;
    BIO *kb = b;
    if (key_path[0] != '\0') {
        if (read_file(md, "key", key_path, &kpem, &klen, why, whylen) != 0) {
            goto out;
        }
        kfrom = key_path;
        BIO_free(b);
        kb = b = BIO_new_mem_buf(kpem, (int)klen);
    } else {
        BIO_reset(b);
    }
    pkey = kb != NULL ? PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL) : NULL;
    if (pkey == NULL) {
        ERR_clear_error();
        snprintf(why, whylen, "key: %s: no PEM private key in it%s", kfrom,
                 key_path[0] == '\0' ? "; give key = FILE if the key is in a file of its own" : "");
        goto out;
    }
    if (SSL_CTX_use_PrivateKey(tc->ctx, pkey) != 1 || SSL_CTX_check_private_key(tc->ctx) != 1) {
        ERR_clear_error();
        snprintf(why, whylen, "key: %s does not match the certificate in %s", kfrom, cert_path);
        goto out;
    }
    if (check_cert(leaf, cert_path, why, whylen) != 0) {
        goto out;
    }
    cert_names(tc, leaf);
    if (ocsp_path[0] != '\0') {
        if (load_ocsp(tc, md, ocsp_path, leaf, issuer, cert_path, why, whylen) != 0) {
            goto out;
        }
        SSL_CTX_set_tlsext_status_cb(tc->ctx, ocsp_cb);
        SSL_CTX_set_tlsext_status_arg(tc->ctx, tc);
    }
    rc = 0;
out:
    ERR_clear_error();
    BIO_free(b);
    X509_free(leaf);
    X509_free(issuer);
    EVP_PKEY_free(pkey);
    if (kpem != NULL) {
        OPENSSL_cleanse(kpem, klen);
    }
    OPENSSL_cleanse(pem, len); /* it may hold the key */
    free(kpem);
    free(pem);
    return rc;
}

void tls_run_close(void *obj)
{
    struct tls_run *run = obj;
    if (run == NULL) {
        return;
    }
    for (size_t i = 0; i < run->ncerts; i++) {
        SSL_CTX_free(run->certs[i].ctx);
        for (size_t j = 0; j < run->certs[i].nnames; j++) {
            OPENSSL_free(run->certs[i].names[j]);
        }
        free(run->certs[i].ocsp);
    }
    free(run);
}

/* ALPN's wire format: each name after its length. */
static size_t alpn_wire(const char *list, unsigned char *out, size_t cap)
{
    size_t off = 0;
    for (const char *p = list; *p != '\0';) {
        size_t n = strcspn(p, ",");
        if (n == 0 || n > 255 || off + 1 + n > cap) {
            break;
        }
        out[off++] = (unsigned char)n;
        memcpy(out + off, p, n);
        off += n;
        p += n + (p[n] == ',');
    }
    return off;
}

/* ---- client certificates (auth = client-cert) ---- */

/* What client-ca and client-crl hold, read and checked once for all the run's contexts. */
struct clients {
    bool on;
    STACK_OF(X509) * cas;
    STACK_OF(X509_CRL) * crls;
    unsigned char digest[32]; /* of the settings and both files: the session id context */
};

static void clients_free(struct clients *cl)
{
    sk_X509_pop_free(cl->cas, X509_free);
    sk_X509_CRL_pop_free(cl->crls, X509_CRL_free);
    cl->cas = NULL;
    cl->crls = NULL;
}

/* The common name of x's subject, printable, or "" (for the log and for users). */
/* The common name of x's subject (users, the log), or "" when it has none, more than one, or
 * one that is not printable ASCII (a NUL inside, a control character: nothing to compare). */
static void common_name(X509 *x, char *buf, size_t len)
{
    buf[0] = '\0';
    const X509_NAME *name = X509_get_subject_name(x);
    int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
    if (i < 0 || X509_NAME_get_index_by_NID(name, NID_commonName, i) >= 0) {
        return;
    }
    unsigned char *utf8 = NULL;
    int n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i)));
    bool ok = n > 0 && (size_t)n < len;
    for (int k = 0; ok && k < n; k++) {
        ok = utf8[k] > ' ' && utf8[k] <= '~';
    }
    if (ok) {
        memcpy(buf, utf8, (size_t)n);
        buf[n] = '\0';
    }
    OPENSSL_free(utf8);
    ERR_clear_error();
}

/* Mutual TLS: a client's certificate, once it chains to client-ca (and is not revoked), must
 * name one of users, if any. */
static int verify_cb(int ok, X509_STORE_CTX *x)
{
    if (!ok || X509_STORE_CTX_get_error_depth(x) != 0) {
        return ok;
    }
    SSL *s = X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx());
    const struct tls_run *run = s != NULL ? SSL_CTX_get_app_data(SSL_get_SSL_CTX(s)) : NULL;
    if (run == NULL || run->users[0] == '\0') {
        return 1;
    }
    char cn[256];
    common_name(X509_STORE_CTX_get_current_cert(x), cn, sizeof(cn));
    if (cn[0] != '\0' && names_has(run->users, cn)) {
        return 1;
    }
    X509_STORE_CTX_set_error(x, X509_V_ERR_APPLICATION_VERIFICATION);
    return 0;
}

/* Reads client-ca and client-crl for auth = client-cert, and checks them: at least one CA
 * certificate; each CRL issued and signed by one of them, and current. */
static int load_clients(struct clients *cl, const struct tls_conf *c, EVP_MD_CTX *md, char *why,
                        size_t whylen)
{
    EVP_Digest(c->users, strlen(c->users), cl->digest, NULL, EVP_sha256(), NULL);
    if (!c->client_cert) {
        if (c->client_ca[0] != '\0' || c->client_crl[0] != '\0' || c->users[0] != '\0') {
            snprintf(why, whylen, "%s: applies with auth = client-cert only",
                     c->client_ca[0]    ? "client-ca"
                     : c->client_crl[0] ? "client-crl"
                                        : "users");
            return -1;
        }
        return 0;
    }
    if (c->client_ca[0] == '\0') {
        snprintf(why, whylen,
                 "client-ca: auth = client-cert needs the CA that issues the clients' "
                 "certificates: client-ca = FILE (PEM)");
        return -1;
    }
    cl->on = true;
    char *buf = NULL;
    size_t len = 0;
    EVP_MD_CTX *d = EVP_MD_CTX_new();
    int rc = -1;
    if (d == NULL || EVP_DigestInit_ex(d, EVP_sha256(), NULL) != 1 ||
        (cl->cas = sk_X509_new_null()) == NULL || (cl->crls = sk_X509_CRL_new_null()) == NULL) {
        snprintf(why, whylen, "out of memory");
        goto out;
    }
    EVP_DigestUpdate(d, cl->digest, sizeof(cl->digest));
    if (read_file(md, "client-ca", c->client_ca, &buf, &len, why, whylen) != 0) {
        goto out;
    }
    EVP_DigestUpdate(d, buf, len);
    BIO *b = BIO_new_mem_buf(buf, (int)len);
    X509 *x;
    while (b != NULL && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        sk_X509_push(cl->cas, x);
    }
    BIO_free(b);
    ERR_clear_error();
    free(buf);
    buf = NULL;
    if (sk_X509_num(cl->cas) == 0) {
        snprintf(why, whylen, "client-ca: %s: no PEM certificate in it", c->client_ca);
        goto out;
    }
    if (c->client_crl[0] != '\0') {
        if (read_file(md, "client-crl", c->client_crl, &buf, &len, why, whylen) != 0) {
            goto out;
        }
        EVP_DigestUpdate(d, buf, len);
        b = BIO_new_mem_buf(buf, (int)len);
        X509_CRL *crl;
        while (b != NULL && (crl = PEM_read_bio_X509_CRL(b, NULL, NULL, NULL)) != NULL) {
            sk_X509_CRL_push(cl->crls, crl);
        }
        BIO_free(b);
        ERR_clear_error();
        if (sk_X509_CRL_num(cl->crls) == 0) {
            snprintf(why, whylen, "client-crl: %s: no PEM CRL in it", c->client_crl);
            goto out;
        }
        for (int i = 0; i < sk_X509_CRL_num(cl->crls); i++) {
            X509_CRL *r = sk_X509_CRL_value(cl->crls, i);
            bool signed_ok = false;
            for (int j = 0; j < sk_X509_num(cl->cas) && !signed_ok; j++) {
                X509 *ca = sk_X509_value(cl->cas, j);
                signed_ok = X509_NAME_cmp(X509_CRL_get_issuer(r), X509_get_subject_name(ca)) == 0 &&
                            X509_CRL_verify(r, X509_get0_pubkey(ca)) == 1;
            }
            ERR_clear_error();
            const ASN1_TIME *next = X509_CRL_get0_nextUpdate(r);
            char when[64];
            if (!signed_ok) {
                snprintf(why, whylen, "client-crl: %s: a CRL not signed by a CA of client-ca %s",
                         c->client_crl, c->client_ca);
                goto out;
            }
            if (next != NULL && X509_cmp_current_time(next) < 0) {
                format_time(next, when, sizeof(when));
                snprintf(why, whylen,
                         "client-crl: %s: out of date since %s: every client would be refused "
                         "until a new one is fetched",
                         c->client_crl, when);
                goto out;
            }
        }
    }
    EVP_DigestFinal_ex(d, cl->digest, NULL);
    rc = 0;
out:
    if (buf != NULL) {
        free(buf);
    }
    EVP_MD_CTX_free(d);
    return rc;
}

/* Makes a context ask for and check clients' certificates (cl->on). */
static int clients_apply(const struct clients *cl, struct tls_run *run, SSL_CTX *ctx, char *why,
                         size_t whylen)
{
    SSL_CTX_set_app_data(ctx, run);
    if (!cl->on) {
        return 0;
    }
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    STACK_OF(X509_NAME) *names = sk_X509_NAME_new_null();
    bool ok = store != NULL && names != NULL;
    for (int i = 0; ok && i < sk_X509_num(cl->cas); i++) {
        X509 *ca = sk_X509_value(cl->cas, i);
        X509_NAME *nm = X509_NAME_dup(X509_get_subject_name(ca));
        ok = X509_STORE_add_cert(store, ca) == 1 && nm != NULL && sk_X509_NAME_push(names, nm) > 0;
        if (!ok) {
            X509_NAME_free(nm);
        }
    }
    for (int i = 0; ok && i < sk_X509_CRL_num(cl->crls); i++) {
        ok = X509_STORE_add_crl(store, sk_X509_CRL_value(cl->crls, i)) == 1;
    }
    if (!ok) {
        sk_X509_NAME_pop_free(names, X509_NAME_free);
        snprintf(why, whylen, "client-ca: %s", tls_err_reason());
        return -1;
    }
    if (sk_X509_CRL_num(cl->crls) > 0) {
        X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
    }
    SSL_CTX_set_client_CA_list(ctx, names); /* takes names */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, verify_cb);
    SSL_CTX_set_verify_depth(ctx, 4);
    return 0;
}

/*
 * The chain a handshake sends: the certificates after the leaf in its file; with none there,
 * OpenSSL would build one from the context's store (client-ca's certificates) in every
 * handshake, a certificate verification each time. It is built here once instead, as it would
 * be then: whatever the store has of the leaf's issuers (usually nothing), errors ignored.
 */
static int fix_chain(SSL_CTX *ctx, const char *cert_path, char *why, size_t whylen)
{
    STACK_OF(X509) *chain = NULL;
    if (SSL_CTX_get0_chain_certs(ctx, &chain) == 1 && chain != NULL) {
        return 0;
    }
    if (SSL_CTX_build_cert_chain(ctx, SSL_BUILD_CHAIN_FLAG_IGNORE_ERROR |
                                          SSL_BUILD_CHAIN_FLAG_CLEAR_ERROR) <= 0) {
        snprintf(why, whylen, "cert: %s: its chain: %s", cert_path, tls_err_reason());
        return -1;
    }
    return 0;
}

bool tls_run_admits(const void *obj, SSL *s)
{
    const struct tls_run *run = obj;
    if (run == NULL || !run->client_cert) {
        return true;
    }
    X509 *peer = SSL_get0_peer_certificate(s);
    char cn[256] = "";
    if (peer != NULL) {
        common_name(peer, cn, sizeof(cn));
    }
    return tls_run_admits_peer(obj, peer != NULL && SSL_get_verify_result(s) == X509_V_OK, cn);
}

bool tls_run_admits_peer(const void *obj, bool verified, const char *cn)
{
    const struct tls_run *run = obj;
    if (run == NULL || !run->client_cert) {
        return true;
    }
    /* The chain was checked in the handshake against the port's CA and CRL, which every
     * mapping sharing the port has the same (proto->can_share); the names may differ. */
    if (!verified) {
        return false;
    }
    if (run->users[0] == '\0') {
        return true;
    }
    return cn[0] != '\0' && names_has(run->users, cn);
}

void tls_run_client_name(SSL *s, char *buf, size_t len)
{
    X509 *peer = SSL_get0_peer_certificate(s);
    buf[0] = '\0';
    if (peer != NULL) {
        common_name(peer, buf, len);
    }
}

void *tls_run_open(const struct tls_conf *c, const char *mapname, unsigned char id[32], char *why,
                   size_t whylen)
{
    size_t n = list_count(c->cert), nkeys = list_count(c->key), nocsp = list_count(c->ocsp);
    if (n == 0) {
        snprintf(why, whylen,
                 "cert: a TLS mapping needs its certificate: cert = FILE (PEM; "
                 "`portgate cert NAME` makes a self-signed one)");
        return NULL;
    }
    if (nkeys != 0 && nkeys != n) {
        snprintf(why, whylen,
                 "key: %zu files for %zu certificates: one key per cert, in order, "
                 "or none when each cert file holds its key",
                 nkeys, n);
        return NULL;
    }
    if (nocsp > n) {
        snprintf(why, whylen, "ocsp: %zu files for %zu certificates", nocsp, n);
        return NULL;
    }
    struct tls_run *run = calloc(1, sizeof(*run));
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (run == NULL || md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        snprintf(why, whylen, "out of memory");
        free(run);
        EVP_MD_CTX_free(md);
        return NULL;
    }
    pthread_once(&group_once, group_setup);   /* before any worker reads group_idx */
    pthread_once(&ticket_once, ticket_setup); /* and ticket_cipher */
    run->handshake_ms = c->handshake_ms;
    run->stat_base = c->stat_base;
    run->alpn_len = alpn_wire(c->alpn, run->alpn, sizeof(run->alpn));
    struct clients cl = {0};
    if (load_clients(&cl, c, md, why, whylen) != 0) {
        clients_free(&cl);
        EVP_MD_CTX_free(md);
        free(run);
        return NULL;
    }
    snprintf(run->users, sizeof(run->users), "%s", c->users);
    run->client_cert = c->client_cert;
    /* The session id context: a session resumes only on the mapping that made it, and, with
     * client certificates, under the same CA, revocation list and users (so that a revoked
     * client resumes nothing). */
    unsigned char sid[32];
    unsigned int sidlen = 0;
    EVP_MD_CTX *sm = EVP_MD_CTX_new();
    if (sm == NULL || EVP_DigestInit_ex(sm, EVP_sha256(), NULL) != 1) {
        snprintf(why, whylen, "out of memory");
        EVP_MD_CTX_free(sm);
        clients_free(&cl);
        EVP_MD_CTX_free(md);
        free(run);
        return NULL;
    }
    EVP_DigestUpdate(sm, mapname, strlen(mapname));
    EVP_DigestUpdate(sm, cl.digest, sizeof(cl.digest));
    EVP_DigestFinal_ex(sm, sid, &sidlen);
    EVP_MD_CTX_free(sm);
    EVP_DigestUpdate(md, c, sizeof(*c));
    for (size_t i = 0; i < n; i++) {
        char cp[TLS_LIST_LEN], kp[TLS_LIST_LEN], op[TLS_LIST_LEN];
        list_item(c->cert, i, cp, sizeof(cp));
        list_item(c->key, i, kp, sizeof(kp));
        list_item(c->ocsp, i, op, sizeof(op));
        run->ncerts++;
        if (load_cert(run, &run->certs[i], md, c, cp, kp, op, sid, why, whylen) != 0 ||
            clients_apply(&cl, run, run->certs[i].ctx, why, whylen) != 0 ||
            fix_chain(run->certs[i].ctx, cp, why, whylen) != 0) {
            clients_free(&cl);
            EVP_MD_CTX_free(md);
            tls_run_close(run);
            return NULL;
        }
    }
    clients_free(&cl);
    unsigned int idlen = 0;
    EVP_DigestFinal_ex(md, id, &idlen);
    EVP_MD_CTX_free(md);
    return run;
}

int tls_run_set_hosts(void *obj, const char *hosts, char *why, size_t whylen)
{
    struct tls_run *run = obj;
    if (strlen(hosts) >= sizeof(run->hosts)) {
        snprintf(why, whylen, "host: too many names");
        return -1;
    }
    for (const char *p = hosts; *p != '\0';) {
        size_t k = strcspn(p, ",");
        char name[256];
        snprintf(name, sizeof(name), "%.*s", (int)k, p);
        p += k + (p[k] == ',');
        /* Addresses: a certificate names them as IP addresses, which SNI never carries. */
        if (name[0] == '[' || strspn(name, "0123456789.") == strlen(name)) {
            continue;
        }
        if (find_cert(run, name) == NULL) {
            char names[400] = "";
            size_t off = 0;
            for (size_t i = 0; i < run->ncerts; i++) {
                for (size_t j = 0; j < run->certs[i].nnames && off < sizeof(names); j++) {
                    int n = snprintf(names + off, sizeof(names) - off, "%s%s", off ? ", " : "",
                                     run->certs[i].names[j]);
                    off += n > 0 ? (size_t)n : 0;
                }
            }
            snprintf(why, whylen,
                     "host: %s is not a name of any certificate of the mapping, so clients "
                     "asking for it would refuse the handshake (the certificates name: %s)",
                     name, names[0] ? names : "nothing");
            return -1;
        }
    }
    snprintf(run->hosts, sizeof(run->hosts), "%s", hosts);
    return 0;
}

SSL_CTX *tls_run_ctx(const void *run)
{
    return ((const struct tls_run *)run)->certs[0].ctx;
}

uint32_t tls_run_handshake_ms(const void *run)
{
    return ((const struct tls_run *)run)->handshake_ms;
}

unsigned tls_run_stat_base(const void *run)
{
    return ((const struct tls_run *)run)->stat_base;
}

bool tls_ktls_available(void)
{
    static int avail = -1; /* read once; the control thread asks first */
    if (__atomic_load_n(&avail, __ATOMIC_ACQUIRE) < 0) {
        /* A /proc file says it is empty to fstat: read it as a stream. */
        char line[256] = "";
        int yes = 0;
        FILE *f = fopen("/proc/sys/net/ipv4/tcp_available_ulp", "re");
        if (f != NULL && fgets(line, sizeof(line), f) != NULL) {
            for (char *save = NULL, *w = strtok_r(line, " \n", &save); w != NULL;
                 w = strtok_r(NULL, " \n", &save)) {
                yes |= strcmp(w, "tls") == 0;
            }
        }
        if (f != NULL) {
            fclose(f);
        }
        log_debug("tls: %s", yes ? "the kernel's TLS (kTLS) is available: OpenSSL hands it the "
                                   "records of the ciphers it supports"
                                 : "this kernel has no TLS offload (no \"tls\" in "
                                   "net.ipv4.tcp_available_ulp): records are encrypted in user "
                                   "space");
        __atomic_store_n(&avail, yes, __ATOMIC_RELEASE);
    }
    return __atomic_load_n(&avail, __ATOMIC_ACQUIRE) == 1;
}
