/* portgate cert: a self-signed certificate for a quick start (tls/tls_cert.h). */
#include "tls/tls_cert.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/addr.h"

static const char usage[] =
    "Usage: portgate cert [--out PREFIX] [--days N] [--force] NAME...\n"
    "\n"
    "Makes a self-signed certificate (ECDSA P-256) for the names (DNS names, a *.wildcard, or IP\n"
    "addresses), for a quick start or a test: PREFIX.crt and PREFIX.key (mode 0600). Prints the\n"
    "SHA-256 fingerprint, to compare with what a browser or `openssl s_client` shows, and the\n"
    "keys for a tls or https mapping. Browsers warn about a self-signed certificate; a real one\n"
    "comes from an ACME client (certbot, lego, uacme): see docs/security.md.\n"
    "\n"
    "Options:\n"
    "  -o, --out PREFIX   where to write (default: the first NAME, in the current directory)\n"
    "  -d, --days N       how long it is valid, 1 to 825 days (default 365)\n"
    "  -f, --force        replace files that exist\n"
    "  -h, --help         show this help\n";

/* A DNS name: labels of letters, digits and hyphens, dots between, at most 253 characters; the
 * first label may be "*". */
static bool dns_name_ok(const char *s)
{
    size_t n = strlen(s), label = 0;
    if (n == 0 || n > 253 || s[n - 1] == '.') {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch == '.') {
            if (label == 0) {
                return false;
            }
            label = 0;
            continue;
        }
        bool star = ch == '*' && i == 0 && s[1] == '.';
        if (!star && !(ch == '-' || (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') ||
                       (ch >= 'A' && ch <= 'Z'))) {
            return false;
        }
        if (++label > 63) {
            return false;
        }
    }
    return true;
}

/* Adds extension nid with value val ("critical,CA:FALSE") to x, issued by itself. */
static int add_ext(X509 *x, int nid, const char *val)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, val);
    int ok = ext != NULL && X509_add_ext(x, ext, -1) == 1;
    X509_EXTENSION_free(ext);
    return ok ? 0 : -1;
}

/* Writes len bytes to path, made new with mode (or replaced if force), never through a link. */
static int write_new(const char *path, const char *data, size_t len, mode_t mode, bool force,
                     char *why, size_t whylen)
{
    if (force && unlink(path) == -1 && errno != ENOENT) {
        snprintf(why, whylen, "%s: %s", path, strerror(errno));
        return -1;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd == -1) {
        snprintf(why, whylen, "%s: %s%s", path, strerror(errno),
                 errno == EEXIST ? " (--force replaces it)" : "");
        return -1;
    }
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(fd, data + off, len - off);
        if (n <= 0) {
            snprintf(why, whylen, "%s: %s", path, n == 0 ? "short write" : strerror(errno));
            close(fd);
            unlink(path);
            return -1;
        }
        off += (size_t)n;
    }
    if (fsync(fd) == -1 || close(fd) == -1) {
        snprintf(why, whylen, "%s: %s", path, strerror(errno));
        unlink(path);
        return -1;
    }
    return 0;
}

/* The PEM text of what write_fn writes, in *out (freed by the caller). */
static size_t pem_of(BIO *b, char **out)
{
    char *p;
    long n = BIO_get_mem_data(b, &p);
    *out = n > 0 ? malloc((size_t)n) : NULL;
    if (*out == NULL) {
        return 0;
    }
    memcpy(*out, p, (size_t)n);
    return (size_t)n;
}

int tls_cert_make(const char *const *names, size_t n, unsigned days, const char *cert_path,
                  const char *key_path, bool force, char *fingerprint, size_t fplen, char *why,
                  size_t whylen)
{
    int rc = -1;
    char san[4096] = "";
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        struct sockaddr_storage ss;
        bool ip = addr_parse_ip(names[i], &ss) == 0;
        if (!ip && !dns_name_ok(names[i])) {
            snprintf(why, whylen, "\"%s\": not a DNS name or an IP address", names[i]);
            return -1;
        }
        int w = snprintf(san + off, sizeof(san) - off, "%s%s:%s", i ? "," : "", ip ? "IP" : "DNS",
                         names[i]);
        if (w < 0 || (size_t)w >= sizeof(san) - off) {
            snprintf(why, whylen, "too many names");
            return -1;
        }
        off += (size_t)w;
    }
    EVP_PKEY *pkey = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    BIO *cb = BIO_new(BIO_s_mem()), *kb = BIO_new(BIO_s_mem());
    BIGNUM *bn = NULL;
    char *cpem = NULL, *kpem = NULL;
    size_t clen = 0, klen = 0;
    unsigned char serial[16];
    if (pkey == NULL || x == NULL || cb == NULL || kb == NULL ||
        RAND_bytes(serial, sizeof(serial)) != 1) {
        snprintf(why, whylen, "OpenSSL: %s", ERR_reason_error_string(ERR_get_error()));
        goto out;
    }
    serial[0] &= 0x7f; /* a positive serial number */
    bn = BN_bin2bn(serial, sizeof(serial), NULL);
    X509_NAME *subj = X509_get_subject_name(x);
    char cn[65];
    snprintf(cn, sizeof(cn), "%s", names[0]);
    /* Valid from an hour ago: a client whose clock is a little behind still accepts it. */
    if (bn == NULL || X509_set_version(x, 2) != 1 ||
        BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL ||
        X509_gmtime_adj(X509_getm_notBefore(x), -3600) == NULL ||
        X509_gmtime_adj(X509_getm_notAfter(x), (long)days * 86400) == NULL ||
        X509_NAME_add_entry_by_txt(subj, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1,
                                   0) != 1 ||
        X509_set_issuer_name(x, subj) != 1 || X509_set_pubkey(x, pkey) != 1 ||
        add_ext(x, NID_basic_constraints, "critical,CA:FALSE") != 0 ||
        add_ext(x, NID_key_usage, "critical,digitalSignature") != 0 ||
        add_ext(x, NID_ext_key_usage, "serverAuth") != 0 ||
        add_ext(x, NID_subject_key_identifier, "hash") != 0 ||
        add_ext(x, NID_subject_alt_name, san) != 0 || X509_sign(x, pkey, EVP_sha256()) == 0 ||
        PEM_write_bio_X509(cb, x) != 1 ||
        PEM_write_bio_PrivateKey(kb, pkey, NULL, NULL, 0, NULL, NULL) != 1) {
        snprintf(why, whylen, "OpenSSL: %s", ERR_reason_error_string(ERR_get_error()));
        goto out;
    }
    clen = pem_of(cb, &cpem);
    klen = pem_of(kb, &kpem);
    if (cpem == NULL || kpem == NULL) {
        snprintf(why, whylen, "out of memory");
        goto out;
    }
    if (write_new(key_path, kpem, klen, 0600, force, why, whylen) != 0) {
        goto out;
    }
    if (write_new(cert_path, cpem, clen, 0644, force, why, whylen) != 0) {
        unlink(key_path);
        goto out;
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    X509_digest(x, EVP_sha256(), md, &mdlen);
    fingerprint[0] = '\0';
    for (size_t i = 0, o = 0; i < mdlen && o + 4 <= fplen; i++) {
        o += (size_t)snprintf(fingerprint + o, fplen - o, "%s%02X", i ? ":" : "", md[i]);
    }
    rc = 0;
out:
    ERR_clear_error();
    if (kpem != NULL) {
        OPENSSL_cleanse(kpem, klen);
    }
    free(kpem);
    free(cpem);
    BN_free(bn);
    BIO_free(cb);
    BIO_free(kb);
    X509_free(x);
    EVP_PKEY_free(pkey);
    return rc;
}

int tls_cert_command(int argc, char **argv)
{
    static const struct option opts[] = {{"out", required_argument, NULL, 'o'},
                                         {"days", required_argument, NULL, 'd'},
                                         {"force", no_argument, NULL, 'f'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *out = NULL;
    unsigned long days = 365;
    bool force = false;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "o:d:fh", opts, NULL)) != -1) {
        char *end;
        switch (ch) {
        case 'o':
            out = optarg;
            break;
        case 'd':
            errno = 0;
            days = strtoul(optarg, &end, 10);
            if (errno != 0 || *end != '\0' || optarg[0] == '-' || days < 1 || days > 825) {
                fprintf(stderr,
                        "portgate cert: --days \"%s\": a number of days, 1 to 825 "
                        "(browsers refuse longer)\n",
                        optarg);
                return 2;
            }
            break;
        case 'f':
            force = true;
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            fputs(usage, stderr);
            return 2;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "portgate cert: give the names the certificate is for\n%s", usage);
        return 2;
    }
    if (out == NULL) {
        out = strncmp(argv[optind], "*.", 2) == 0 && argv[optind][2] != '\0' ? argv[optind] + 2
                                                                             : argv[optind];
    }
    char cert[4096], key[4096], fp[128], why[512];
    if ((size_t)snprintf(cert, sizeof(cert), "%s.crt", out) >= sizeof(cert) ||
        (size_t)snprintf(key, sizeof(key), "%s.key", out) >= sizeof(key)) {
        fprintf(stderr, "portgate cert: --out: too long\n");
        return 2;
    }
    if (tls_cert_make((const char *const *)argv + optind, (size_t)(argc - optind), (unsigned)days,
                      cert, key, force, fp, sizeof(fp), why, sizeof(why)) != 0) {
        fprintf(stderr, "portgate cert: %s\n", why);
        return 1;
    }
    char *acert = realpath(cert, NULL), *akey = realpath(key, NULL);
    printf("certificate %s\nkey         %s (keep it private)\nSHA-256     %s\nvalid for   "
           "%lu days\n\nIn a [map NAME] section:\n    cert = %s\n    key = %s\n",
           acert ? acert : cert, akey ? akey : key, fp, days, acert ? acert : cert,
           akey ? akey : key);
    free(acert);
    free(akey);
    return 0;
}
