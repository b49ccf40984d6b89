/* What the files of tls/ share among themselves; the rest of portgate sees tls/tls.h only. */
#ifndef PORTGATE_TLS_INT_H
#define PORTGATE_TLS_INT_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>

/* OpenSSL's reason for its last error ("no shared cipher"), a static string; empties the
 * thread's error queue. */
const char *tls_err_reason(void);
/* The default context of a run object, which a new connection starts in (SNI may move it). */
SSL_CTX *tls_run_ctx(const void *run);
uint32_t tls_run_handshake_ms(const void *run);
/* Where the layer's counters start among the mapping's (tls/tls.h: TLS_STAT_*). */
unsigned tls_run_stat_base(const void *run);
struct mapping_group;
/* Has the handshake on s choose its certificate among those of every mapping of g (the mappings
 * that share a port: forward/mapping.h) by the client's server name: first the mapping whose
 * host key names it (tls_run_set_hosts), then the first certificate that covers it. g outlives
 * s. A group of one changes nothing. */
void tls_run_use_group(SSL *s, const struct mapping_group *g);
/* True if the connection s may go to the mapping whose run object is run: it asks for no client
 * certificate, or the client showed one that was verified and whose common name is one of its
 * users. Checked again once a shared port's mapping is chosen: the handshake checked the names
 * of the mapping its server name chose, or of the port's first. */
bool tls_run_admits(const void *run, SSL *s);
/* tls_run_admits() for a connection whose SSL is gone (taken over by the layer's record layer):
 * verified says the client showed a certificate that was verified, cn is its common name (as
 * tls_run_client_name() gives it, or ""). */
bool tls_run_admits_peer(const void *run, bool verified, const char *cn);
/* The common name of the client's certificate (auth = client-cert), printable, or "". */
void tls_run_client_name(SSL *s, char *buf, size_t len);
/* True if the kernel offers TLS (the "tls" ULP): connections then use OpenSSL's socket BIO,
 * which hands the records to the kernel, instead of ours. Read once, logged once. */
bool tls_ktls_available(void);
/* The keylog callback every context sets (SSL_CTX_set_keylog_callback): gives the layer a TLS 1.3
 * connection's traffic secrets, for its own record layer (tls_layer.c). Logs nothing. */
void tls_layer_keylog(const SSL *s, const char *line);

#endif
