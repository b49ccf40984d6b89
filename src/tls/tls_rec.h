/*
 * tls_rec: a TLS 1.3 record layer (RFC 8446 section 5) for connections whose handshake OpenSSL
 * did, once the layer has taken over their traffic secrets (tls_layer.c): records protected by
 * AES-128-GCM, AES-256-GCM or ChaCha20-Poly1305, keys and IVs by HKDF-Expand-Label, and the
 * messages that may come after a handshake: application data, alerts, KeyUpdate.
 *
 * No I/O here: the reader and the sealers work on buffers the caller gives, so the unit tests
 * and the fuzzer drive them as the layer does. One direction's cipher context is kept per
 * connection (a few hundred bytes each); nothing else is allocated.
 *
 * What a server must refuse after its handshake, it refuses, with the alert RFC 8446 names:
 * a record longer than 2^14 + 256 (record_overflow), one that does not authenticate
 * (bad_record_mac), one in the clear (unexpected_message), a handshake message other than
 * KeyUpdate, KeyUpdate not at the end of its record, more than TLS_REC_KEYUPDATES_MAX
 * KeyUpdates or TLS_REC_EMPTY_MAX records without application data in a row.
 */
#ifndef PORTGATE_TLS_REC_H
#define PORTGATE_TLS_REC_H

#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define TLS_REC_HEADER 5                             /* type, legacy version, length */
#define TLS_REC_TAG 16                               /* every suite's AEAD tag */
#define TLS_REC_MAX_PLAIN 16384                      /* 2^14: content of one record */
#define TLS_REC_MAX_CIPHER (TLS_REC_MAX_PLAIN + 256) /* RFC 8446 5.2 */
#define TLS_REC_MAX_WIRE (TLS_REC_HEADER + TLS_REC_MAX_CIPHER)
#define TLS_REC_OVERHEAD (TLS_REC_HEADER + 1 + TLS_REC_TAG) /* what sealing adds, no padding */
#define TLS_REC_MAX_SECRET 48                               /* SHA-384's */
#define TLS_REC_KEYUPDATES_MAX 16 /* KeyUpdates accepted in a row without application data */
#define TLS_REC_EMPTY_MAX 32      /* records accepted in a row without application data */
/* Our write key is changed (a KeyUpdate of our own) after this many records: RFC 8446 5.5
 * allows 2^24.5 full records under one AES-GCM key. */
#define TLS_REC_REKEY_RECORDS (1ull << 24)

/* RFC 8446 B.1 and 6: the content types and alerts the layer sends or names. */
enum {
    TLS_REC_CT_ALERT = 21,
    TLS_REC_CT_HANDSHAKE = 22,
    TLS_REC_CT_APPDATA = 23,
};
enum {
    TLS_REC_CLOSE_NOTIFY = 0,
    TLS_REC_UNEXPECTED_MESSAGE = 10,
    TLS_REC_BAD_RECORD_MAC = 20,
    TLS_REC_RECORD_OVERFLOW = 22,
    TLS_REC_ILLEGAL_PARAMETER = 47,
    TLS_REC_DECODE_ERROR = 50,
    TLS_REC_INTERNAL_ERROR = 80,
    TLS_REC_USER_CANCELED = 90,
};

/* One direction: its cipher context (keyed), its traffic secret (for the next KeyUpdate), its
 * IV and the sequence number of its next record. */
struct tls_rec_dir {
    EVP_CIPHER_CTX *ctx;
    uint64_t seq;
    unsigned char iv[12];
    unsigned char secret[TLS_REC_MAX_SECRET];
};

/* The record layer of one connection, the server's side: rd reads the client's records, wr
 * seals ours. Public for the layer; changed only through the functions below. */
struct tls_rec {
    struct tls_rec_dir rd, wr;
    uint16_t suite;     /* 0x1301, 0x1302 or 0x1303 (RFC 8446 B.4) */
    uint8_t secret_len; /* 32 or 48: the suite's hash */
    uint8_t hs_len;     /* bytes of a KeyUpdate whose record ended inside it, in hs */
    unsigned char hs[4];
    uint8_t keyupdates; /* KeyUpdates read since the last application data */
    uint8_t empty;      /* records read since the last application data */
    bool reply_owed;    /* the client asked for our KeyUpdate: sealed before our next data */
    bool eof;           /* the client's close_notify was read: it sends nothing more */
    /* The last error: the alert owed to the client (0 when none is: the client sent an alert,
     * or a socket error) and why, in words for the log. */
    uint8_t alert;
    const char *why;
};

/* Sets r up for suite (its IANA number) with the current traffic secrets of the client
 * (rsecret) and ours (wsecret), len bytes each, and the sequence numbers of the next record
 * each way. Returns 0, or -1 (a suite it does not know, a secret of the wrong length, out of
 * memory) with r left freed. */
int tls_rec_init(struct tls_rec *r, uint16_t suite, const unsigned char *rsecret,
                 const unsigned char *wsecret, size_t len, uint64_t rseq, uint64_t wseq);
/* Frees the cipher contexts and wipes the secrets. Idempotent. */
void tls_rec_free(struct tls_rec *r);
/* The suite's name as OpenSSL gives it ("TLS_AES_128_GCM_SHA256"). */
const char *tls_rec_suite_name(uint16_t suite);

/*
 * Reads the record at the start of buf (len bytes from a record boundary): a whole one is
 * decrypted in place and acted on. Returns the record's length, with *data and *dlen the
 * application data it held (inside buf; *dlen 0 for a record that held none: a KeyUpdate, an
 * empty record, close_notify, which sets r->eof); 0 when buf holds less than a whole record
 * (nothing changed, unless its header is refused); -1 when the connection must end: r->alert
 * and r->why say why. A record is refused by its header as soon as its 5 bytes are there.
 */
ssize_t tls_rec_read(struct tls_rec *r, unsigned char *buf, size_t len, unsigned char **data,
                     size_t *dlen);

/* Seals len bytes (at most TLS_REC_MAX_PLAIN) of content type into one record at out, which
 * has room for len + TLS_REC_OVERHEAD. Returns the record's length, or -1 (r->why). */
ssize_t tls_rec_seal(struct tls_rec *r, uint8_t type, const unsigned char *in, size_t len,
                     unsigned char *out);
/* Seals a KeyUpdate (update_not_requested) under the current write key at out (room for
 * TLS_REC_KEYUPDATE_LEN), then moves the write key on, and clears reply_owed. Returns the
 * record's length, or -1. */
#define TLS_REC_KEYUPDATE_LEN (4 + 1 + TLS_REC_OVERHEAD)
ssize_t tls_rec_seal_key_update(struct tls_rec *r, unsigned char *out);
/* True if a KeyUpdate of ours must precede our next record: the client asked, or the write
 * key has sealed TLS_REC_REKEY_RECORDS records. */
bool tls_rec_key_update_due(const struct tls_rec *r);
/* Seals the alert (close_notify: warning level; the others fatal) at out (room for
 * TLS_REC_ALERT_LEN). Returns the record's length, or -1. */
#define TLS_REC_ALERT_LEN (2 + TLS_REC_OVERHEAD)
ssize_t tls_rec_seal_alert(struct tls_rec *r, uint8_t desc, unsigned char *out);

/* HKDF-Expand-Label (RFC 8446 7.1) with an empty context, by the suite's hash. For the tests
 * and the layer. Returns 0 or -1. */
int tls_rec_expand_label(uint16_t suite, const unsigned char *secret, const char *label,
                         unsigned char *out, size_t outlen);

/* Decodes 2 * len hex digits (either case) into out, in time that does not depend on their
 * value (they are secrets). Returns 0, or -1 if one is not a hex digit. */
int tls_rec_unhex(const char *hex, unsigned char *out, size_t len);

#endif
