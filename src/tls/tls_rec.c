/*
 * The TLS 1.3 record layer (tls/tls_rec.h). RFC 8446 section 5 for the records, 7.1 and 7.3 for
 * the keys, 4.6.3 for KeyUpdate, 6 for the alerts.
 */
#include "tls/tls_rec.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/kdf.h>
#include <pthread.h>
#include <string.h>

/* What each suite needs (RFC 8446 B.4): its AEAD's name, key length and hash. */
struct suite {
    uint16_t id;
    const char *name, *cipher, *digest;
    uint8_t key_len, hash_len;
};
static const struct suite suites[] = {
    {0x1301, "TLS_AES_128_GCM_SHA256", "AES-128-GCM", "SHA256", 16, 32},
    {0x1302, "TLS_AES_256_GCM_SHA384", "AES-256-GCM", "SHA384", 32, 48},
    {0x1303, "TLS_CHACHA20_POLY1305_SHA256", "ChaCha20-Poly1305", "SHA256", 32, 32},
};
#define NSUITES (sizeof(suites) / sizeof(suites[0]))

/* Fetched once: an implicit fetch on every EVP_CipherInit_ex would cost a lookup each. They
 * live as long as the process. */
static EVP_CIPHER *ciphers[NSUITES];
static EVP_KDF *hkdf;
static pthread_once_t fetch_once = PTHREAD_ONCE_INIT;

static void fetch(void)
{
    for (size_t i = 0; i < NSUITES; i++) {
        ciphers[i] = EVP_CIPHER_fetch(NULL, suites[i].cipher, NULL);
    }
    hkdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    ERR_clear_error();
}

static const struct suite *find_suite(uint16_t id, EVP_CIPHER **cipher)
{
    pthread_once(&fetch_once, fetch);
    for (size_t i = 0; i < NSUITES; i++) {
        if (suites[i].id == id) {
            *cipher = ciphers[i];
            return ciphers[i] != NULL && hkdf != NULL ? &suites[i] : NULL;
        }
    }
    return NULL;
}

const char *tls_rec_suite_name(uint16_t id)
{
    for (size_t i = 0; i < NSUITES; i++) {
        if (suites[i].id == id) {
            return suites[i].name;
        }
    }
    return "unknown";
}

/* ---- keys ---- */

int tls_rec_expand_label(uint16_t id, const unsigned char *secret, const char *label,
                         unsigned char *out, size_t outlen)
{
    EVP_CIPHER *cipher;
    const struct suite *s = find_suite(id, &cipher);
    size_t llen = strlen(label);
    if (s == NULL || llen > 255 - 6 || outlen > 255) {
        return -1;
    }
    /* struct { uint16 length; opaque label<7..255> = "tls13 " + Label; opaque context<0..255>; }
     * HkdfLabel, with an empty context (RFC 8446 7.1, 7.3). */
    unsigned char info[2 + 1 + 255 + 1];
    size_t n = 0;
    info[n++] = (unsigned char)(outlen >> 8);
    info[n++] = (unsigned char)outlen;
    info[n++] = (unsigned char)(6 + llen);
    memcpy(info + n, "tls13 ", 6);
    n += 6;
    memcpy(info + n, label, llen);
    n += llen;
    info[n++] = 0;
    int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode),
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)s->digest, 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)secret, s->hash_len),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, n),
        OSSL_PARAM_construct_end(),
    };
    EVP_KDF_CTX *k = EVP_KDF_CTX_new(hkdf);
    int ok = k != NULL && EVP_KDF_derive(k, out, outlen, params) == 1;
    EVP_KDF_CTX_free(k);
    if (!ok) {
        ERR_clear_error();
    }
    return ok ? 0 : -1;
}

/* Keys d's cipher context from its traffic secret (RFC 8446 7.3): "key" and "iv". */
static int set_keys(const struct tls_rec *r, struct tls_rec_dir *d, bool enc)
{
    EVP_CIPHER *cipher;
    const struct suite *s = find_suite(r->suite, &cipher);
    unsigned char key[32];
    int rc = -1;
    if (s != NULL && tls_rec_expand_label(r->suite, d->secret, "key", key, s->key_len) == 0 &&
        tls_rec_expand_label(r->suite, d->secret, "iv", d->iv, sizeof(d->iv)) == 0 &&
        EVP_CipherInit_ex(d->ctx, cipher, NULL, key, NULL, enc ? 1 : 0) == 1) {
        rc = 0;
    }
    OPENSSL_cleanse(key, sizeof(key));
    ERR_clear_error();
    return rc;
}

/* The next generation of d's keys (RFC 8446 7.2): application_traffic_secret_N+1 =
 * HKDF-Expand-Label(application_traffic_secret_N, "traffic upd", "", Hash.length). */
static int update_keys(struct tls_rec *r, struct tls_rec_dir *d, bool enc)
{
    unsigned char next[TLS_REC_MAX_SECRET];
    int rc = tls_rec_expand_label(r->suite, d->secret, "traffic upd", next, r->secret_len);
    if (rc == 0) {
        memcpy(d->secret, next, r->secret_len);
        rc = set_keys(r, d, enc);
    }
    OPENSSL_cleanse(next, sizeof(next));
    /* A direction whose new keys could not be made is done for: its context may still hold the
     * old key, and a sequence number back at 0 would use a nonce again. UINT64_MAX: every later
     * seal or open is refused. */
    d->seq = rc == 0 ? 0 : UINT64_MAX;
    return rc;
}

int tls_rec_init(struct tls_rec *r, uint16_t id, const unsigned char *rsecret,
                 const unsigned char *wsecret, size_t len, uint64_t rseq, uint64_t wseq)
{
    memset(r, 0, sizeof(*r));
    EVP_CIPHER *cipher;
    const struct suite *s = find_suite(id, &cipher);
    if (s == NULL || len != s->hash_len) {
        return -1;
    }
    r->suite = id;
    r->secret_len = s->hash_len;
    memcpy(r->rd.secret, rsecret, len);
    memcpy(r->wr.secret, wsecret, len);
    r->rd.seq = rseq;
    r->wr.seq = wseq;
    r->rd.ctx = EVP_CIPHER_CTX_new();
    r->wr.ctx = EVP_CIPHER_CTX_new();
    if (r->rd.ctx == NULL || r->wr.ctx == NULL || set_keys(r, &r->rd, false) != 0 ||
        set_keys(r, &r->wr, true) != 0) {
        tls_rec_free(r);
        return -1;
    }
    return 0;
}

void tls_rec_free(struct tls_rec *r)
{
    EVP_CIPHER_CTX_free(r->rd.ctx); /* clears the key schedule it holds */
    EVP_CIPHER_CTX_free(r->wr.ctx);
    OPENSSL_cleanse(r, sizeof(*r));
}

/* RFC 8446 5.3: the per-record nonce, the IV XOR the sequence number (big-endian, left-padded
 * to the IV's length). */
static void nonce(const struct tls_rec_dir *d, unsigned char out[12])
{
    memcpy(out, d->iv, 12);
    for (int i = 0; i < 8; i++) {
        out[11 - i] ^= (unsigned char)(d->seq >> (8 * i));
    }
}

/* ---- reading ---- */

static ssize_t refuse(struct tls_rec *r, uint8_t alert, const char *why)
{
    r->alert = alert;
    r->why = why;
    return -1;
}

/* A client's alert, by its description (RFC 8446 6), for the log line. */
static const char *alert_reason(uint8_t desc)
{
    switch (desc) {
    case 10:
        return "the client sent an alert: unexpected_message";
    case 20:
        return "the client sent an alert: bad_record_mac";
    case 22:
        return "the client sent an alert: record_overflow";
    case 40:
        return "the client sent an alert: handshake_failure";
    case 42:
        return "the client sent an alert: bad_certificate";
    case 46:
        return "the client sent an alert: certificate_unknown";
    case 47:
        return "the client sent an alert: illegal_parameter";
    case 48:
        return "the client sent an alert: unknown_ca";
    case 50:
        return "the client sent an alert: decode_error";
    case 51:
        return "the client sent an alert: decrypt_error";
    case 70:
        return "the client sent an alert: protocol_version";
    case 80:
        return "the client sent an alert: internal_error";
    case 109:
        return "the client sent an alert: missing_extension";
    case 110:
        return "the client sent an alert: unsupported_extension";
    case 112:
        return "the client sent an alert: unrecognized_name";
    case 116:
        return "the client sent an alert: certificate_required";
    case 120:
        return "the client sent an alert: no_application_protocol";
    default:
        return "the client sent an alert";
    }
}

/* Decrypts the record at buf (clen bytes after its header) in place. Returns the length of its
 * TLSInnerPlaintext (content, type, padding), or -1. */
static ssize_t open_record(struct tls_rec *r, unsigned char *buf, size_t clen)
{
    if (clen < TLS_REC_TAG + 1) {
        return refuse(r, TLS_REC_BAD_RECORD_MAC, "a record too short to hold its tag");
    }
    if (r->rd.seq == UINT64_MAX) {
        /* RFC 8446 5.3: a sequence number never wraps. */
        return refuse(r, TLS_REC_INTERNAL_ERROR, "the client's sequence numbers are used up");
    }
    size_t plen = clen - TLS_REC_TAG;
    unsigned char iv[12];
    nonce(&r->rd, iv);
    EVP_CIPHER_CTX *c = r->rd.ctx;
    unsigned char *p = buf + TLS_REC_HEADER;
    int n1 = 0, n2 = 0, n3 = 0;
    /* RFC 8446 5.2: the additional data is the record's header. */
    bool ok = EVP_CipherInit_ex(c, NULL, NULL, NULL, iv, 0) == 1 &&
              EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, TLS_REC_TAG, p + plen) == 1 &&
              EVP_CipherUpdate(c, NULL, &n1, buf, TLS_REC_HEADER) == 1 &&
              EVP_CipherUpdate(c, p, &n2, p, (int)plen) == 1 &&
              EVP_CipherFinal_ex(c, p + n2, &n3) == 1 && (size_t)n2 + (size_t)n3 == plen;
    if (!ok) {
        ERR_clear_error();
        return refuse(r, TLS_REC_BAD_RECORD_MAC,
                      "a record that does not authenticate (bad_record_mac)");
    }
    r->rd.seq++;
    return (ssize_t)plen;
}

/* The handshake bytes of a record (n > 0): only KeyUpdate may come after the handshake. Returns
 * 0, or -1. */
static int read_handshake(struct tls_rec *r, const unsigned char *p, size_t n)
{
    /* RFC 8446 5.1: a handshake message may span records; a KeyUpdate (4 + 1 bytes) may too,
     * but must end its record, since the key changes after it. */
    while (n > 0) {
        unsigned char msg[5];
        size_t have = r->hs_len;
        memcpy(msg, r->hs, have);
        size_t take = sizeof(msg) - have < n ? sizeof(msg) - have : n;
        memcpy(msg + have, p, take);
        have += take;
        p += take;
        n -= take;
        switch (msg[0]) {
        case 24: /* key_update */
            break;
        case 4:
            return (int)refuse(r, TLS_REC_UNEXPECTED_MESSAGE,
                               "a NewSessionTicket from the client (only servers send them)");
        case 13:
            return (int)refuse(r, TLS_REC_UNEXPECTED_MESSAGE,
                               "a CertificateRequest from the client (only servers send them)");
        case 1:
            return (int)refuse(r, TLS_REC_UNEXPECTED_MESSAGE,
                               "a ClientHello after the handshake (TLS 1.3 has no "
                               "renegotiation)");
        default:
            return (int)refuse(r, TLS_REC_UNEXPECTED_MESSAGE,
                               "a handshake message after the handshake other than KeyUpdate");
        }
        /* struct { KeyUpdateRequest request_update; } KeyUpdate: a body of one byte. */
        if ((have >= 2 && msg[1] != 0) || (have >= 3 && msg[2] != 0) ||
            (have >= 4 && msg[3] != 1)) {
            return (int)refuse(r, TLS_REC_DECODE_ERROR, "a KeyUpdate whose length is not 1");
        }
        if (have < sizeof(msg)) {
            memcpy(r->hs, msg, have);
            r->hs_len = (uint8_t)have;
            return 0; /* the rest comes in the next record */
        }
        r->hs_len = 0;
        if (msg[4] > 1) {
            return (int)refuse(r, TLS_REC_ILLEGAL_PARAMETER,
                               "a KeyUpdate that neither requests an update nor declines one");
        }
        if (n > 0) {
            return (int)refuse(r, TLS_REC_UNEXPECTED_MESSAGE,
                               "a KeyUpdate not at the end of its record");
        }
        if (++r->keyupdates > TLS_REC_KEYUPDATES_MAX) {
            return (int)refuse(r, TLS_REC_UNEXPECTED_MESSAGE,
                               "too many KeyUpdates without application data");
        }
        if (update_keys(r, &r->rd, false) != 0) {
            return (int)refuse(r, TLS_REC_INTERNAL_ERROR, "the client's next key: OpenSSL failed");
        }
        /* RFC 8446 4.6.3: update_requested asks for ours before our next application data;
         * several asked while we were silent get one. */
        if (msg[4] == 1) {
            r->reply_owed = true;
        }
    }
    return 0;
}

ssize_t tls_rec_read(struct tls_rec *r, unsigned char *buf, size_t len, unsigned char **data,
                     size_t *dlen)
{
    *data = NULL;
    *dlen = 0;
    if (len < TLS_REC_HEADER) {
        return 0;
    }
    /* RFC 8446 5.1: after the handshake every record is protected: its outer type says
     * application_data. A change_cipher_spec is dropped only before the peer's Finished. The
     * legacy version "MUST be ignored"; it is authenticated as part of the header anyway. */
    if (buf[0] != TLS_REC_CT_APPDATA) {
        return refuse(r, TLS_REC_UNEXPECTED_MESSAGE,
                      "a record in the clear after the handshake (unexpected_message)");
    }
    size_t clen = (size_t)buf[3] << 8 | buf[4];
    if (clen > TLS_REC_MAX_CIPHER) {
        return refuse(r, TLS_REC_RECORD_OVERFLOW, "a record longer than 2^14 + 256 bytes");
    }
    if (len < TLS_REC_HEADER + clen) {
        return 0;
    }
    ssize_t plen = open_record(r, buf, clen);
    if (plen < 0) {
        return -1;
    }
    /* RFC 8446 5.4: the content type is the last non-zero byte; zeros after it are padding. */
    unsigned char *p = buf + TLS_REC_HEADER;
    size_t i = (size_t)plen;
    while (i > 0 && p[i - 1] == 0) {
        i--;
    }
    if (i == 0) {
        return refuse(r, TLS_REC_UNEXPECTED_MESSAGE, "a record without a content type");
    }
    uint8_t type = p[i - 1];
    size_t n = i - 1;
    if (n > TLS_REC_MAX_PLAIN) {
        return refuse(r, TLS_REC_RECORD_OVERFLOW, "a record with more than 2^14 bytes of content");
    }
    /* RFC 8446 5.1: handshake messages are not interleaved with other record types. */
    if (r->hs_len > 0 && type != TLS_REC_CT_HANDSHAKE) {
        return refuse(r, TLS_REC_UNEXPECTED_MESSAGE,
                      "a record of another type inside a handshake message");
    }
    ssize_t used = (ssize_t)(TLS_REC_HEADER + clen);
    switch (type) {
    case TLS_REC_CT_APPDATA:
        if (n > 0) {
            r->empty = 0;
            r->keyupdates = 0;
            *data = p;
            *dlen = n;
            return used;
        }
        /* RFC 8446 5.1: zero-length application data may be sent (against traffic analysis);
         * a run of them that never carries data is not. */
        break;
    case TLS_REC_CT_ALERT:
        /* RFC 8446 6: an alert is two bytes, and all but the closure alerts are errors. */
        if (n != 2) {
            return refuse(r, TLS_REC_DECODE_ERROR, "an alert record that is not 2 bytes long");
        }
        if (p[1] == TLS_REC_CLOSE_NOTIFY) {
            r->eof = true;
            return used;
        }
        if (p[1] != TLS_REC_USER_CANCELED) { /* 6.1: a warning; close_notify should follow */
            return refuse(r, 0, alert_reason(p[1]));
        }
        break;
    case TLS_REC_CT_HANDSHAKE:
        /* RFC 8446 5.1: no zero-length fragments of handshake messages. */
        if (n == 0) {
            return refuse(r, TLS_REC_UNEXPECTED_MESSAGE, "an empty handshake record");
        }
        if (read_handshake(r, p, n) != 0) {
            return -1;
        }
        break;
    default:
        return refuse(r, TLS_REC_UNEXPECTED_MESSAGE,
                      "a record of a content type TLS 1.3 does not allow after the handshake");
    }
    if (++r->empty > TLS_REC_EMPTY_MAX) {
        return refuse(r, TLS_REC_UNEXPECTED_MESSAGE,
                      "too many records without application data in a row");
    }
    return used;
}

/* ---- writing ---- */

ssize_t tls_rec_seal(struct tls_rec *r, uint8_t type, const unsigned char *in, size_t len,
                     unsigned char *out)
{
    if (len > TLS_REC_MAX_PLAIN) {
        return refuse(r, TLS_REC_INTERNAL_ERROR, "a record too long to seal");
    }
    if (r->wr.seq == UINT64_MAX) {
        return refuse(r, TLS_REC_INTERNAL_ERROR, "our sequence numbers are used up");
    }
    size_t clen = len + 1 + TLS_REC_TAG;
    out[0] = TLS_REC_CT_APPDATA;
    out[1] = 3;
    out[2] = 3;
    out[3] = (unsigned char)(clen >> 8);
    out[4] = (unsigned char)clen;
    unsigned char iv[12];
    nonce(&r->wr, iv);
    EVP_CIPHER_CTX *c = r->wr.ctx;
    unsigned char *p = out + TLS_REC_HEADER;
    int n0 = 0, n1 = 0, n2 = 0, n3 = 0;
    /* The content, then its type (no padding): two updates, so that the content is not copied
     * first. */
    bool ok = EVP_CipherInit_ex(c, NULL, NULL, NULL, iv, 1) == 1 &&
              EVP_CipherUpdate(c, NULL, &n0, out, TLS_REC_HEADER) == 1 &&
              (len == 0 || EVP_CipherUpdate(c, p, &n1, in, (int)len) == 1) &&
              EVP_CipherUpdate(c, p + n1, &n2, &type, 1) == 1 &&
              EVP_CipherFinal_ex(c, p + n1 + n2, &n3) == 1 &&
              (size_t)n1 + (size_t)n2 + (size_t)n3 == len + 1 &&
              EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, TLS_REC_TAG, p + len + 1) == 1;
    if (!ok) {
        ERR_clear_error();
        return refuse(r, TLS_REC_INTERNAL_ERROR, "sealing a record: OpenSSL failed");
    }
    r->wr.seq++;
    return (ssize_t)(TLS_REC_HEADER + clen);
}

bool tls_rec_key_update_due(const struct tls_rec *r)
{
    return r->reply_owed || r->wr.seq >= TLS_REC_REKEY_RECORDS;
}

ssize_t tls_rec_seal_key_update(struct tls_rec *r, unsigned char *out)
{
    static const unsigned char msg[5] = {24, 0, 0, 1, 0}; /* update_not_requested */
    ssize_t n = tls_rec_seal(r, TLS_REC_CT_HANDSHAKE, msg, sizeof(msg), out);
    if (n < 0) {
        return -1;
    }
    /* RFC 8446 4.6.3: the KeyUpdate goes under the old key; what follows under the new. */
    if (update_keys(r, &r->wr, true) != 0) {
        return refuse(r, TLS_REC_INTERNAL_ERROR, "our next key: OpenSSL failed");
    }
    r->reply_owed = false;
    return n;
}

ssize_t tls_rec_seal_alert(struct tls_rec *r, uint8_t desc, unsigned char *out)
{
    const unsigned char msg[2] = {desc == TLS_REC_CLOSE_NOTIFY ? 1 : 2, desc};
    return tls_rec_seal(r, TLS_REC_CT_ALERT, msg, sizeof(msg), out);
}

int tls_rec_unhex(const char *hex, unsigned char *out, size_t len)
{
    /* Branch-free by digit value: masks pick the digit's value among '0'-'9', 'a'-'f', 'A'-'F';
     * only the final verdict (some character was not a digit) is a branch. */
    unsigned bad = 0;
    for (size_t i = 0; i < 2 * len; i++) {
        int c = (unsigned char)hex[i];
        int lc = c | 0x20;
        /* (lo - 1 - c) & (c - hi - 1) is negative exactly when lo <= c <= hi (c < 256). */
        unsigned is_d = (unsigned)((('0' - 1 - c) & (c - '9' - 1)) >> 8) & 1;
        unsigned is_a = (unsigned)((('a' - 1 - lc) & (lc - 'f' - 1)) >> 8) & 1;
        unsigned v =
            ((unsigned)(c - '0') & (0u - is_d)) | ((unsigned)(lc - 'a' + 10) & (0u - is_a));
        bad |= ~(is_d | is_a) & 1;
        if (i % 2 == 0) {
            out[i / 2] = (unsigned char)(v << 4);
        } else {
            out[i / 2] |= (unsigned char)v;
        }
    }
    return bad ? -1 : 0;
}
