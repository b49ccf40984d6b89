/*
 * tls: TLS termination, for the protocols that speak TLS to their clients (tls, https, rtsps).
 * Three parts, each for the protocol entries to use (forward/proto.h):
 *   - the keys they share (cert, key, ocsp, min-tls, ciphers, alpn, handshake-timeout, and
 *     auth = client-cert with client-ca, client-crl and users), in a
 *     struct tls_conf: plain data, parsed, formatted and compared like any protocol settings;
 *   - the run object made from them (tls_run_open): an OpenSSL context per certificate, with
 *     its chain and key checked against each other and its dates, the OCSP response to staple,
 *     SNI to choose among them, ALPN, and session tickets under keys that rotate;
 *   - the layer the relay runs on the client's socket (tls_layer, forward/tcp.h).
 * OpenSSL 3. Everything a client controls here is bounded by OpenSSL's own limits; every file
 * is read whole (at most 1 MiB) and checked before a listener ever uses it.
 */
#ifndef PORTGATE_TLS_H
#define PORTGATE_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "forward/tcp.h"

#define TLS_MAX_CERTS 8         /* certificates of one mapping, chosen by SNI */
#define TLS_LIST_LEN 1000       /* a list of files as written, commas between */
#define TLS_HANDSHAKE_MS 10000u /* handshake-timeout's default */

struct tls_conf {
    char cert[TLS_LIST_LEN]; /* PEM files: the certificate, then its chain; comma-separated */
    char key[TLS_LIST_LEN];  /* PEM key files, one per cert; "": each key is in its cert file */
    char ocsp[TLS_LIST_LEN]; /* DER OCSP responses, one per cert ("" entries: none), or "" */
    char ciphers[256];       /* TLS 1.2 cipher list; "": Mozilla's intermediate */
    char alpn[64];           /* protocols offered by ALPN, comma-separated; "": none */
    uint16_t min_version;    /* TLS1_2_VERSION or TLS1_3_VERSION */
    bool alpn_fixed;         /* the protocol sets alpn: not a key of its mappings */
    uint8_t stat_base;       /* where the layer's counters start among the protocol's */
    uint32_t handshake_ms;
    /* auth = client-cert: mutual TLS. Clients must show a certificate that chains to client-ca
     * (PEM CA certificates), is not revoked by client-crl (PEM CRLs of those CAs, or "": no
     * revocation list), and whose subject's common name is one of users (commas between; "":
     * any). */
    bool client_cert;
    char client_ca[256];
    char client_crl[256];
    char users[1024];
};

/* The keys, NULL-terminated: a protocol's keys list starts with them (tls_keys_fixed_alpn for a
 * protocol that decides ALPN itself: https). */
extern const char *const tls_keys[];
extern const char *const tls_keys_fixed_alpn[];

/* Sets the defaults; alpn, if not NULL, is the protocol's own ALPN list (no alpn key then);
 * stat_base is the index of TLS_STAT_HANDSHAKES among the protocol's counters. */
void tls_conf_init(struct tls_conf *c, const char *alpn, unsigned stat_base);
/* Reads one of the keys. Returns 0, or -1 with "\"VALUE\": what is wrong" in why. */
int tls_conf_set(struct tls_conf *c, const char *key, const char *val, char *why, size_t whylen);
/* Writes the settings as "KEY=VALUE KEY=VALUE" (forward/proto.h: conf_format); empty lists are
 * left out. Returns the length written. */
size_t tls_conf_format(const struct tls_conf *c, char *buf, size_t len);

/*
 * Makes the run object (forward/proto.h: run_open): reads and checks every file, builds the
 * contexts, and fills id with a SHA-256 of the settings and of every byte read. Returns NULL
 * with the reason in why, which starts with the key it is about ("cert: /etc/x.pem: expired on
 * 2026-01-01 00:00:00 UTC"). On the control thread.
 */
void *tls_run_open(const struct tls_conf *c, const char *mapname, unsigned char id[32], char *why,
                   size_t whylen);
void tls_run_close(void *run);
/* Tells the run object which host names its mapping answers for (a comma-separated list, lower
 * case; "*.example.org" wildcards), when several mappings share a port (forward/proto.h:
 * router): a handshake whose server name is one of them gets this mapping's certificate. Each
 * name (an address excepted) must be covered by one of its certificates: returns 0, or -1 with
 * "host: NAME: ..." in why. */
int tls_run_set_hosts(void *run, const char *hosts, char *why, size_t whylen);

/* Counters the layer keeps, by index from the protocol's stat_base: a protocol that uses the
 * layer lists these names there in its stat_names. */
enum {
    TLS_STAT_HANDSHAKES, /* handshakes completed, resumed ones included */
    TLS_STAT_RESUMED,    /* of which resumed a session (a ticket) */
    TLS_STAT_FAILED,     /* handshakes that failed or timed out */
    TLS_STAT_TAKEN_OVER, /* TLS 1.3 connections whose records portgate's own layer carries */
    TLS_STAT_COUNT
};
#define TLS_STAT_NAMES                                                                             \
    "tls handshakes", "tls resumed", "tls handshake failures", "tls records taken over"

/* The layer (forward/tcp.h) over a mapping whose run object tls_run_open() made. */
extern const struct tcp_layer tls_layer;

#endif
