/*
 * tls_cert: `portgate cert`, a self-signed certificate (ECDSA P-256) for a quick start or a test.
 * Real certificates come from an ACME client; see docs/security.md.
 */
#ifndef PORTGATE_TLS_CERT_H
#define PORTGATE_TLS_CERT_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Makes a key and a certificate for names (DNS names, "*.example.org", or IP addresses; the
 * first is also the subject's CN), valid from an hour ago for days, and writes them to new
 * files: key_path (0600) and cert_path (0644), PEM; force replaces existing files. No link is
 * followed. fingerprint gets the certificate's SHA-256 as colon-separated hex (96 bytes). Returns
 * 0, or -1 with the reason in why (nothing is left written).
 */
int tls_cert_make(const char *const *names, size_t n, unsigned days, const char *cert_path,
                  const char *key_path, bool force, char *fingerprint, size_t fplen, char *why,
                  size_t whylen);

/* portgate cert [--out PREFIX] [--days N] [--force] NAME...: argv after "portgate". Returns the
 * exit status: 0, 1 on failure, 2 on a usage error. */
int tls_cert_command(int argc, char **argv);

#endif
