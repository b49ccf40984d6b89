/* tls_rec: the TLS 1.3 record layer against RFC 8448's traces (keys, protected records), other
 * suites against records sealed here with OpenSSL's EVP directly, KeyUpdate's key schedule,
 * sequence numbers, and every refusal with its alert. Records are read from just before a
 * PROT_NONE page, so that any read past the end faults. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guard.h"
#include "tls/tls_rec.h"

/* Hex with spaces (as the RFC prints it) into out; returns the length. */
static size_t unhex(const char *s, unsigned char *out, size_t cap)
{
    size_t n = 0;
    for (const char *p = s; *p != '\0';) {
        if (*p == ' ' || *p == '\n') {
            p++;
            continue;
        }
        unsigned v;
        assert_int_equal(sscanf(p, "%2x", &v), 1);
        assert_true(n < cap);
        out[n++] = (unsigned char)v;
        p += 2;
    }
    return n;
}

/* RFC 8448 section 3, "Simple 1-RTT Handshake". */
static const char c_secret[] = "9e 40 64 6c e7 9a 7f 9d c0 5a f8 88 9b ce 65 52 87 5a fa 0b 06 df "
                               "00 87 f7 92 eb b7 c1 75 04 a5";
static const char s_secret[] = "a1 1a f9 f0 55 31 f8 56 ad 47 11 6b 45 a9 50 32 82 04 b4 f4 4b fb "
                               "6b 3a 4b 4f 1f 3f cb 63 16 43";
static const char c_app_rec[] =
    "17 03 03 00 43 a2 3f 70 54 b6 2c 94 d0 af fa fe 82 28 ba 55 cb ef ac ea 42 f9 14 aa 66 bc ab "
    "3f 2b 98 19 a8 a5 b4 6b 39 5b d5 4a 9a 20 44 1e 2b 62 97 4e 1f 5a 62 92 a2 97 70 14 bd 1e 3d "
    "ea e6 3a ee bb 21 69 49 15 e4";
static const char s_app_rec[] =
    "17 03 03 00 43 2e 93 7e 11 ef 4a c7 40 e5 38 ad 36 00 5f c4 a4 69 32 fc 32 25 d0 5f 82 aa 1b "
    "36 e3 0e fa f9 7d 90 e6 df fc 60 2d cb 50 1a 59 a8 fc c4 9c 4b f2 e5 f0 a2 1c 00 47 c2 ab f3 "
    "32 54 0d d0 32 e1 67 c2 95 5d";
static const char c_alert_rec[] =
    "17 03 03 00 13 c9 87 27 60 65 56 66 b7 4d 7f f1 15 3e fd 6d b6 d0 b0 e3";
static const char s_alert_rec[] =
    "17 03 03 00 13 b5 8f d6 71 66 eb f5 99 d2 47 20 cf be 7e fa 7a 88 64 a9";
static const char s_nst_rec[] =
    "17 03 03 00 de 3a 6b 8f 90 41 4a 97 d6 95 9c 34 87 68 0d e5 13 4a 2b 24 0e 6c ff ac 11 6e 95 "
    "d4 1d 6a f8 f6 b5 80 dc f3 d1 1d 63 c7 58 db 28 9a 01 59 40 25 2f 55 71 3e 06 1d c1 3e 07 88 "
    "91 a3 8e fb cf 57 53 ad 8e f1 70 ad 3c 73 53 d1 6d 9d a7 73 b9 ca 7f 2b 9f a1 b6 c0 d4 a3 d0 "
    "3f 75 e0 9c 30 ba 1e 62 97 2a c4 6f 75 f7 b9 81 be 63 43 9b 29 99 ce 13 06 46 15 13 98 91 d5 "
    "e4 c5 b4 06 f1 6e 3f c1 81 a7 7c a4 75 84 00 25 db 2f 0a 77 f8 1b 5a b0 5b 94 c0 13 46 75 5f "
    "69 23 2c 86 51 9d 86 cb ee ac 87 aa c3 47 d1 43 f9 60 5d 64 f6 50 db 4d 02 3e 70 e9 52 ca 49 "
    "fe 51 37 12 1c 74 bc 26 97 68 7e 24 87 46 d6 df 35 30 05 f3 bc e1 86 96 12 9c 81 53 55 6b 3b "
    "6c 67 79 b3 7b f1 59 85 68 4f";

static unsigned char cs[32], ss[32];

static int setup(void **state)
{
    (void)state;
    unhex(c_secret, cs, sizeof(cs));
    unhex(s_secret, ss, sizeof(ss));
    return 0;
}

/* Reads the whole record rec (n bytes) from a guarded copy; returns what tls_rec_read does,
 * with the application data copied to out (if not NULL). */
static ssize_t read_one(struct tls_rec *r, const unsigned char *rec, size_t n, unsigned char *out,
                        size_t *outlen)
{
    struct guarded g = guard_bytes(rec, n);
    unsigned char *data;
    size_t dlen;
    ssize_t used = tls_rec_read(r, (unsigned char *)g.p, n, &data, &dlen);
    if (used > 0 && out != NULL) {
        memcpy(out, data, dlen);
    }
    if (outlen != NULL) {
        *outlen = dlen;
    }
    guard_free(g);
    return used;
}

/* A client's sealer, written with EVP here and not with tls_rec: the record of inner plaintext
 * (content, type, padding as given) under secret (suite 0x1301's keys) at seq. */
static size_t seal_inner(uint16_t suite, const unsigned char *secret, uint64_t seq,
                         const unsigned char *inner, size_t n, unsigned char *out)
{
    const EVP_CIPHER *cipher = suite == 0x1301   ? EVP_aes_128_gcm()
                               : suite == 0x1302 ? EVP_aes_256_gcm()
                                                 : EVP_chacha20_poly1305();
    unsigned char key[32], iv[12];
    assert_int_equal(
        tls_rec_expand_label(suite, secret, "key", key, (size_t)EVP_CIPHER_get_key_length(cipher)),
        0);
    assert_int_equal(tls_rec_expand_label(suite, secret, "iv", iv, 12), 0);
    for (int i = 0; i < 8; i++) {
        iv[11 - i] ^= (unsigned char)(seq >> (8 * i));
    }
    size_t clen = n + 16;
    out[0] = 23;
    out[1] = 3;
    out[2] = 3;
    out[3] = (unsigned char)(clen >> 8);
    out[4] = (unsigned char)clen;
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int l1, l2, l3;
    assert_int_equal(EVP_EncryptInit_ex(c, cipher, NULL, key, iv), 1);
    assert_int_equal(EVP_EncryptUpdate(c, NULL, &l1, out, 5), 1);
    assert_int_equal(EVP_EncryptUpdate(c, out + 5, &l2, inner, (int)n), 1);
    assert_int_equal(EVP_EncryptFinal_ex(c, out + 5 + l2, &l3), 1);
    assert_int_equal(EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, 16, out + 5 + n), 1);
    EVP_CIPHER_CTX_free(c);
    return 5 + clen;
}

/* A server's rec reading the RFC client's records from seq 0, writing under the RFC server's. */
static void rfc_rec(struct tls_rec *r, uint64_t rseq, uint64_t wseq)
{
    assert_int_equal(tls_rec_init(r, 0x1301, cs, ss, 32, rseq, wseq), 0);
}

static void test_rfc8448_keys(void **state)
{
    (void)state;
    unsigned char key[16], want[16];
    assert_int_equal(tls_rec_expand_label(0x1301, ss, "key", key, 16), 0);
    unhex("9f 02 28 3b 6c 9c 07 ef c2 6b b9 f2 ac 92 e3 56", want, sizeof(want));
    assert_memory_equal(key, want, 16);
    assert_int_equal(tls_rec_expand_label(0x1301, cs, "key", key, 16), 0);
    unhex("17 42 2d da 59 6e d5 d9 ac d8 90 e3 c6 3f 50 51", want, sizeof(want));
    assert_memory_equal(key, want, 16);
    struct tls_rec r;
    rfc_rec(&r, 0, 0);
    unhex("5b 78 92 3d ee 08 57 90 33 e5 23 d9", want, sizeof(want));
    assert_memory_equal(r.rd.iv, want, 12);
    unhex("cf 78 2b 88 dd 83 54 9a ad f1 e9 84", want, sizeof(want));
    assert_memory_equal(r.wr.iv, want, 12);
    assert_string_equal(tls_rec_suite_name(r.suite), "TLS_AES_128_GCM_SHA256");
    tls_rec_free(&r);
    tls_rec_free(&r); /* idempotent */

    /* Suites it does not know, and secrets of the wrong length for the suite. */
    assert_int_equal(tls_rec_init(&r, 0x1304, cs, ss, 32, 0, 0), -1);
    assert_int_equal(tls_rec_init(&r, 0x1302, cs, ss, 32, 0, 0), -1);
    assert_int_equal(tls_rec_init(&r, 0x1301, cs, ss, 48, 0, 0), -1);
}

static void test_rfc8448_records(void **state)
{
    (void)state;
    unsigned char rec[300], out[300], payload[50];
    for (size_t i = 0; i < sizeof(payload); i++) {
        payload[i] = (unsigned char)i;
    }
    /* The server has sent its NewSessionTicket (its seq 0): its data is seq 1. */
    struct tls_rec r;
    rfc_rec(&r, 0, 1);
    size_t n = unhex(c_app_rec, rec, sizeof(rec)), dlen;
    /* Byte by byte: nothing is done until the record is whole. */
    for (size_t k = 0; k < n; k++) {
        assert_int_equal(read_one(&r, rec, k, NULL, NULL), 0);
    }
    assert_int_equal(r.rd.seq, 0);
    assert_int_equal(read_one(&r, rec, n, out, &dlen), (ssize_t)n);
    assert_int_equal(dlen, 50);
    assert_memory_equal(out, payload, 50);
    assert_int_equal(r.rd.seq, 1);

    /* Our answer, sealed, is the RFC's record byte for byte; then our close_notify. */
    unsigned char want[300];
    size_t wn = unhex(s_app_rec, want, sizeof(want));
    assert_int_equal(tls_rec_seal(&r, 23, payload, 50, out), (ssize_t)wn);
    assert_memory_equal(out, want, wn);
    wn = unhex(s_alert_rec, want, sizeof(want));
    assert_int_equal(tls_rec_seal_alert(&r, TLS_REC_CLOSE_NOTIFY, out), (ssize_t)wn);
    assert_memory_equal(out, want, wn);
    assert_int_equal(r.wr.seq, 3);

    /* The client's close_notify: the end of its stream. */
    n = unhex(c_alert_rec, rec, sizeof(rec));
    assert_false(r.eof);
    assert_int_equal(read_one(&r, rec, n, NULL, &dlen), (ssize_t)n);
    assert_int_equal(dlen, 0);
    assert_true(r.eof);
    tls_rec_free(&r);

    /* A record under the wrong sequence number does not authenticate. */
    rfc_rec(&r, 1, 0);
    n = unhex(c_app_rec, rec, sizeof(rec));
    assert_int_equal(read_one(&r, rec, n, NULL, NULL), -1);
    assert_int_equal(r.alert, TLS_REC_BAD_RECORD_MAC);
    tls_rec_free(&r);

    /* The server's NewSessionTicket, as if a client sent it: refused. */
    assert_int_equal(tls_rec_init(&r, 0x1301, ss, cs, 32, 0, 0), 0);
    n = unhex(s_nst_rec, rec, sizeof(rec));
    assert_int_equal(n, 227);
    assert_int_equal(read_one(&r, rec, n, NULL, NULL), -1);
    assert_int_equal(r.alert, TLS_REC_UNEXPECTED_MESSAGE);
    assert_non_null(strstr(r.why, "NewSessionTicket"));
    tls_rec_free(&r);
}

/* AES-256-GCM and ChaCha20-Poly1305: records sealed by Python's cryptography (an implementation
 * other than OpenSSL's record layer), with keys from secrets made up for the test. */
static void test_other_suites(void **state)
{
    (void)state;
    unsigned char s384[48], s256[32], rec[64], out[64];
    for (int i = 0; i < 48; i++) {
        s384[i] = (unsigned char)i;
    }
    for (int i = 0; i < 32; i++) {
        s256[i] = (unsigned char)(100 + i);
    }
    unsigned char key[32], want[48];
    assert_int_equal(tls_rec_expand_label(0x1302, s384, "key", key, 32), 0);
    unhex("6877d022f1c61d24ebb7487c16752d9a4798e40431c75b39320e537c90e23225", want, sizeof(want));
    assert_memory_equal(key, want, 32);
    struct tls_rec r;
    size_t dlen;
    /* "hello" with three bytes of padding, at seq 5. */
    size_t n =
        unhex("1703030019aa1637dcd49a19a422ec8c0274f726f823d4c1e23e6f897e2a", rec, sizeof(rec));
    assert_int_equal(tls_rec_init(&r, 0x1302, s384, s384, 48, 5, 0), 0);
    assert_int_equal(read_one(&r, rec, n, out, &dlen), (ssize_t)n);
    assert_int_equal(dlen, 5);
    assert_memory_equal(out, "hello", 5);
    assert_string_equal(tls_rec_suite_name(r.suite), "TLS_AES_256_GCM_SHA384");
    /* Its next generation of keys (RFC 8446 7.2). */
    unsigned char upd[48];
    assert_int_equal(tls_rec_expand_label(0x1302, s384, "traffic upd", upd, 48), 0);
    unhex("401331b63e9d59f202e8f041042d9516f4cd7fa2e2ee14631d3b49fc340d7af37fc2c0c9f252d8036f81ec5b"
          "85cbe5db",
          want, sizeof(want));
    assert_memory_equal(upd, want, 48);
    tls_rec_free(&r);

    n = unhex("1703030016095ad7506ea69ea15f90598b3972a2e8b4b8c4ebcdad", rec, sizeof(rec));
    assert_int_equal(tls_rec_init(&r, 0x1303, s256, s256, 32, 7, 0), 0);
    assert_int_equal(read_one(&r, rec, n, out, &dlen), (ssize_t)n);
    assert_int_equal(dlen, 5);
    assert_memory_equal(out, "hello", 5);
    assert_string_equal(tls_rec_suite_name(r.suite), "TLS_CHACHA20_POLY1305_SHA256");
    tls_rec_free(&r);

    /* What each suite seals, it reads back (a server's rec and a client's mirror of it). */
    for (uint16_t suite = 0x1301; suite <= 0x1303; suite++) {
        const unsigned char *s = suite == 0x1302 ? s384 : s256;
        size_t len = suite == 0x1302 ? 48 : 32;
        struct tls_rec srv, cli;
        assert_int_equal(tls_rec_init(&srv, suite, s, s, len, 0, 0), 0);
        assert_int_equal(tls_rec_init(&cli, suite, s, s, len, 0, 0), 0);
        for (int i = 0; i < 3; i++) {
            n = (size_t)tls_rec_seal(&cli, 23, (const unsigned char *)"ping", 4, rec);
            assert_int_equal(n, 4 + TLS_REC_OVERHEAD);
            assert_int_equal(read_one(&srv, rec, n, out, &dlen), (ssize_t)n);
            assert_int_equal(dlen, 4);
            assert_memory_equal(out, "ping", 4);
        }
        tls_rec_free(&srv);
        tls_rec_free(&cli);
    }
}

/* KeyUpdate (RFC 8446 4.6.3, 7.2): the client's moves our read key on, with the schedule's
 * "traffic upd"; update_requested makes ours owed, which moves our write key on. */
static void test_key_update(void **state)
{
    (void)state;
    unsigned char c1[32], c2[32], want[32], rec[64], out[64];
    unhex("fcdfcc72725aaee48bf64e4fd8b749cdbdbab39d90da0b26e2245ca6ea167207", c1, sizeof(c1));
    unhex("68474fe58c172143d0a009a76edd231b0d934f3058588ea0852662279e54a573", c2, sizeof(c2));
    struct tls_rec r;
    rfc_rec(&r, 3, 9);
    size_t dlen;
    const unsigned char ku_no[] = {24, 0, 0, 1, 0, 22}, ku_yes[] = {24, 0, 0, 1, 1, 22};
    size_t n = seal_inner(0x1301, cs, 3, ku_no, sizeof(ku_no), rec);
    assert_int_equal(read_one(&r, rec, n, NULL, &dlen), (ssize_t)n);
    assert_int_equal(dlen, 0);
    assert_memory_equal(r.rd.secret, c1, 32);
    assert_int_equal(r.rd.seq, 0);
    unhex("5dfb2c5938c3379b6cc5d1f2", want, sizeof(want));
    assert_memory_equal(r.rd.iv, want, 12);
    assert_false(r.reply_owed);
    assert_false(tls_rec_key_update_due(&r));
    /* The old key reads no more; the new one does, from seq 0. */
    n = seal_inner(0x1301, cs, 4, (const unsigned char *)"x\x17", 2, rec);
    assert_int_equal(read_one(&r, rec, n, NULL, NULL), -1);
    assert_int_equal(r.alert, TLS_REC_BAD_RECORD_MAC);
    r.alert = 0;
    n = seal_inner(0x1301, c1, 0, (const unsigned char *)"x\x17", 2, rec);
    assert_int_equal(read_one(&r, rec, n, out, &dlen), (ssize_t)n);
    assert_int_equal(dlen, 1);

    /* update_requested: the next KeyUpdate goes under the key it replaces, and the client then
     * reads ours with the next generation of the server's secret. */
    n = seal_inner(0x1301, c1, 1, ku_yes, sizeof(ku_yes), rec);
    assert_int_equal(read_one(&r, rec, n, NULL, &dlen), (ssize_t)n);
    assert_memory_equal(r.rd.secret, c2, 32);
    assert_true(r.reply_owed);
    assert_true(tls_rec_key_update_due(&r));
    struct tls_rec cli; /* the client's view: it reads under the server's secret, seq 9 */
    assert_int_equal(tls_rec_init(&cli, 0x1301, ss, ss, 32, 9, 0), 0);
    n = (size_t)tls_rec_seal_key_update(&r, rec);
    assert_int_equal(n, TLS_REC_KEYUPDATE_LEN);
    assert_false(r.reply_owed);
    assert_int_equal(r.wr.seq, 0);
    assert_int_equal(read_one(&cli, rec, n, NULL, &dlen), (ssize_t)n);
    assert_memory_equal(cli.rd.secret, r.wr.secret, 32);
    n = (size_t)tls_rec_seal(&r, 23, (const unsigned char *)"pong", 4, rec);
    assert_int_equal(read_one(&cli, rec, n, out, &dlen), (ssize_t)n);
    assert_memory_equal(out, "pong", 4);
    tls_rec_free(&cli);

    /* A KeyUpdate split over two records is one message (RFC 8446 5.1). */
    const unsigned char head[] = {24, 0, 22}, tail[] = {0, 1, 0, 22};
    n = seal_inner(0x1301, c2, 0, head, sizeof(head), rec);
    assert_int_equal(read_one(&r, rec, n, NULL, &dlen), (ssize_t)n);
    assert_memory_equal(r.rd.secret, c2, 32); /* not yet */
    n = seal_inner(0x1301, c2, 1, tail, sizeof(tail), rec);
    assert_int_equal(read_one(&r, rec, n, NULL, &dlen), (ssize_t)n);
    assert_int_equal(r.rd.seq, 0);
    assert_memory_not_equal(r.rd.secret, c2, 32);
    tls_rec_free(&r);

    /* Our own, once the write key has sealed its share of records. */
    rfc_rec(&r, 0, TLS_REC_REKEY_RECORDS - 1);
    assert_false(tls_rec_key_update_due(&r));
    assert_true(tls_rec_seal(&r, 23, (const unsigned char *)"a", 1, rec) > 0);
    assert_true(tls_rec_key_update_due(&r));
    assert_int_equal(tls_rec_seal_key_update(&r, rec), TLS_REC_KEYUPDATE_LEN);
    assert_false(tls_rec_key_update_due(&r));
    tls_rec_free(&r);
}

/* Records without application data in a row, KeyUpdates in a row: each within its limit, and
 * application data starts both counts again. */
static void test_limits(void **state)
{
    (void)state;
    struct tls_rec r;
    unsigned char rec[64], secret[32];
    size_t dlen;
    const unsigned char empty[] = {23}, padded[] = {23, 0, 0}, cancel[] = {1, 90, 21};
    rfc_rec(&r, 0, 0);
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < TLS_REC_EMPTY_MAX; i++) {
            const unsigned char *in = i % 3 == 0 ? empty : i % 3 == 1 ? padded : cancel;
            size_t len = i % 3 == 0 ? sizeof(empty) : 3;
            size_t n = seal_inner(0x1301, cs, r.rd.seq, in, len, rec);
            assert_int_equal(read_one(&r, rec, n, NULL, &dlen), (ssize_t)n);
            assert_int_equal(dlen, 0);
        }
        if (round == 0) {
            size_t n = seal_inner(0x1301, cs, r.rd.seq, (const unsigned char *)"d\x17", 2, rec);
            assert_int_equal(read_one(&r, rec, n, NULL, &dlen), (ssize_t)n);
            assert_int_equal(dlen, 1);
        }
    }
    size_t n = seal_inner(0x1301, cs, r.rd.seq, empty, 1, rec);
    assert_int_equal(read_one(&r, rec, n, NULL, NULL), -1);
    assert_int_equal(r.alert, TLS_REC_UNEXPECTED_MESSAGE);
    assert_non_null(strstr(r.why, "without application data"));
    tls_rec_free(&r);

    rfc_rec(&r, 0, 0);
    memcpy(secret, cs, 32);
    const unsigned char ku[] = {24, 0, 0, 1, 1, 22};
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < TLS_REC_KEYUPDATES_MAX; i++) {
            n = seal_inner(0x1301, secret, 0, ku, sizeof(ku), rec);
            assert_int_equal(read_one(&r, rec, n, NULL, NULL), (ssize_t)n);
            memcpy(secret, r.rd.secret, 32);
        }
        if (round == 0) {
            n = seal_inner(0x1301, secret, 0, (const unsigned char *)"d\x17", 2, rec);
            assert_int_equal(read_one(&r, rec, n, NULL, &dlen), (ssize_t)n);
            assert_int_equal(dlen, 1);
            /* The next KeyUpdate is read at seq 1 of this key; the rest from 0 of theirs. */
            n = seal_inner(0x1301, secret, 1, ku, sizeof(ku), rec);
            assert_int_equal(read_one(&r, rec, n, NULL, NULL), (ssize_t)n);
            memcpy(secret, r.rd.secret, 32);
            r.keyupdates--; /* counted again in the next round's first */
        }
    }
    n = seal_inner(0x1301, secret, 0, ku, sizeof(ku), rec);
    assert_int_equal(read_one(&r, rec, n, NULL, NULL), -1);
    assert_int_equal(r.alert, TLS_REC_UNEXPECTED_MESSAGE);
    assert_non_null(strstr(r.why, "too many KeyUpdates"));
    tls_rec_free(&r);
}

/* Each record a server must refuse after its handshake, with RFC 8446's alert. */
static void test_refusals(void **state)
{
    (void)state;
    static const struct {
        const char *inner; /* hex of the TLSInnerPlaintext, sealed properly; or NULL */
        const char *raw;   /* hex of the wire bytes, sent as they are */
        uint8_t alert;
        const char *why;
    } cases[] = {
        {NULL, "16 03 03 00 05 18 00 00 01 00", TLS_REC_UNEXPECTED_MESSAGE, "in the clear"},
        {NULL, "14 03 03 00 01 01", TLS_REC_UNEXPECTED_MESSAGE, "in the clear"},
        {NULL, "15 03 03 00 02 01 00", TLS_REC_UNEXPECTED_MESSAGE, "in the clear"},
        {NULL, "17 03 03 41 01", TLS_REC_RECORD_OVERFLOW, "longer than 2^14 + 256"},
        {NULL, "17 03 03 ff ff", TLS_REC_RECORD_OVERFLOW, "longer than 2^14 + 256"},
        {NULL, "17 03 03 00 10 00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f",
         TLS_REC_BAD_RECORD_MAC, "too short"},
        {NULL, "17 03 03 00 00", TLS_REC_BAD_RECORD_MAC, "too short"},
        {"00 00 00", NULL, TLS_REC_UNEXPECTED_MESSAGE, "without a content type"},
        {"", NULL, TLS_REC_BAD_RECORD_MAC, "too short"}, /* 16 bytes: a tag alone */
        {"01 00 00 15", NULL, TLS_REC_DECODE_ERROR, "not 2 bytes"},
        {"02 15", NULL, TLS_REC_DECODE_ERROR, "not 2 bytes"},
        {"02 28 15", NULL, 0, "handshake_failure"},
        {"02 50 15 00 00", NULL, 0, "internal_error"},
        {"02 99 15", NULL, 0, "the client sent an alert"},
        {"16", NULL, TLS_REC_UNEXPECTED_MESSAGE, "empty handshake record"},
        {"16 00 00", NULL, TLS_REC_UNEXPECTED_MESSAGE, "empty handshake record"},
        {"04 00 00 00 16", NULL, TLS_REC_UNEXPECTED_MESSAGE, "NewSessionTicket"},
        {"0d 00 00 05 00 00 02 00 00 16", NULL, TLS_REC_UNEXPECTED_MESSAGE, "CertificateRequest"},
        {"01 00 00 00 16", NULL, TLS_REC_UNEXPECTED_MESSAGE, "ClientHello"},
        {"0b 00 00 00 16", NULL, TLS_REC_UNEXPECTED_MESSAGE, "other than KeyUpdate"},
        {"14 00 00 00 16", NULL, TLS_REC_UNEXPECTED_MESSAGE, "other than KeyUpdate"},
        {"18 00 00 02 00 00 16", NULL, TLS_REC_DECODE_ERROR, "length is not 1"},
        {"18 01 16", NULL, TLS_REC_DECODE_ERROR, "length is not 1"},
        {"18 00 00 01 02 16", NULL, TLS_REC_ILLEGAL_PARAMETER, "neither requests"},
        {"18 00 00 01 00 18 16", NULL, TLS_REC_UNEXPECTED_MESSAGE, "not at the end"},
        {"18 00 00 01 00 18 00 00 01 00 16", NULL, TLS_REC_UNEXPECTED_MESSAGE, "not at the end"},
        {"01 14", NULL, TLS_REC_UNEXPECTED_MESSAGE, "content type TLS 1.3 does not allow"},
        {"01 18", NULL, TLS_REC_UNEXPECTED_MESSAGE, "content type TLS 1.3 does not allow"},
        {"61 62 63 ff", NULL, TLS_REC_UNEXPECTED_MESSAGE, "content type TLS 1.3 does not allow"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct tls_rec r;
        rfc_rec(&r, 0, 0);
        unsigned char inner[64], rec[128];
        size_t n;
        if (cases[i].inner != NULL) {
            size_t k = unhex(cases[i].inner, inner, sizeof(inner));
            n = seal_inner(0x1301, cs, 0, inner, k, rec);
        } else {
            n = unhex(cases[i].raw, rec, sizeof(rec));
        }
        ssize_t got = read_one(&r, rec, n, NULL, NULL);
        if (got != -1 || r.alert != cases[i].alert || strstr(r.why, cases[i].why) == NULL) {
            fail_msg("case %zu: returned %zd, alert %u, \"%s\"", i, got, r.alert,
                     r.why ? r.why : "");
        }
        tls_rec_free(&r);
    }

    /* A bad tag: each byte of the RFC record flipped in turn, header included (it is the
     * additional data). */
    unsigned char rec[128];
    size_t n = unhex(c_app_rec, rec, sizeof(rec));
    for (size_t i = 1; i < n; i++) {
        if (i == 3 || i == 4) {
            continue; /* the length: another record, partial or refused */
        }
        struct tls_rec r;
        rfc_rec(&r, 0, 0);
        rec[i] ^= 0x01;
        assert_int_equal(read_one(&r, rec, n, NULL, NULL), -1);
        assert_int_equal(r.alert, TLS_REC_BAD_RECORD_MAC);
        rec[i] ^= 0x01;
        assert_int_equal(r.rd.seq, 0);
        tls_rec_free(&r);
    }

    /* Content of more than 2^14 bytes, inside a record the header allows. */
    size_t big = TLS_REC_MAX_PLAIN + 2;
    unsigned char *inner = calloc(1, big), *out = malloc(TLS_REC_MAX_WIRE + 64);
    inner[big - 1] = 23;
    struct tls_rec r;
    rfc_rec(&r, 0, 0);
    n = seal_inner(0x1301, cs, 0, inner, big, out);
    assert_int_equal(read_one(&r, out, n, NULL, NULL), -1);
    assert_int_equal(r.alert, TLS_REC_RECORD_OVERFLOW);
    tls_rec_free(&r);
    /* 2^14 exactly, with 239 bytes of padding: the most a record may hold. */
    memset(inner, 'a', TLS_REC_MAX_PLAIN);
    inner[TLS_REC_MAX_PLAIN] = 23;
    rfc_rec(&r, 0, 0);
    unsigned char *pad = calloc(1, TLS_REC_MAX_PLAIN + 240);
    memcpy(pad, inner, TLS_REC_MAX_PLAIN + 1);
    n = seal_inner(0x1301, cs, 0, pad, TLS_REC_MAX_PLAIN + 240, out);
    assert_int_equal(n, TLS_REC_MAX_WIRE);
    size_t dlen;
    assert_int_equal(read_one(&r, out, n, NULL, &dlen), (ssize_t)n);
    assert_int_equal(dlen, TLS_REC_MAX_PLAIN);
    tls_rec_free(&r);
    free(pad);
    free(inner);
    free(out);

    /* A handshake message cut short, then application data. */
    rfc_rec(&r, 0, 0);
    const unsigned char head[] = {24, 0, 22};
    n = seal_inner(0x1301, cs, 0, head, sizeof(head), rec);
    assert_int_equal(read_one(&r, rec, n, NULL, NULL), (ssize_t)n);
    n = seal_inner(0x1301, cs, 1, (const unsigned char *)"x\x17", 2, rec);
    assert_int_equal(read_one(&r, rec, n, NULL, NULL), -1);
    assert_int_equal(r.alert, TLS_REC_UNEXPECTED_MESSAGE);
    assert_non_null(strstr(r.why, "inside a handshake message"));
    tls_rec_free(&r);

    /* Sequence numbers never wrap. */
    rfc_rec(&r, UINT64_MAX, UINT64_MAX);
    n = seal_inner(0x1301, cs, UINT64_MAX, (const unsigned char *)"x\x17", 2, rec);
    assert_int_equal(read_one(&r, rec, n, NULL, NULL), -1);
    assert_int_equal(r.alert, TLS_REC_INTERNAL_ERROR);
    assert_int_equal(tls_rec_seal(&r, 23, (const unsigned char *)"x", 1, rec), -1);
    assert_int_equal(tls_rec_seal(&r, 23, rec, TLS_REC_MAX_PLAIN + 1, rec), -1);
    tls_rec_free(&r);
}

static void test_unhex(void **state)
{
    (void)state;
    unsigned char out[4];
    assert_int_equal(tls_rec_unhex("09afAF10", out, 4), 0);
    assert_memory_equal(out, "\x09\xaf\xaf\x10", 4);
    const char *bad[] = {"0g00", "/000", ":000", "@000", "`000", "G000", " 000", "000\xff"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(tls_rec_unhex(bad[i], out, 2), -1);
    }
}

/* OpenSSL's allocations, made to fail on demand: budget allocations more succeed, then none
 * (-1: all succeed). */
static long budget = -1, allocs;

static void *hook_malloc(size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    allocs++;
    if (budget == 0) {
        return NULL;
    }
    budget -= budget > 0;
    return malloc(n);
}

static void *hook_realloc(void *p, size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    allocs++;
    if (budget == 0) {
        return NULL;
    }
    budget -= budget > 0;
    return realloc(p, n);
}

static void hook_free(void *p, const char *file, int line)
{
    (void)file;
    (void)line;
    free(p);
}

/* Our KeyUpdate whose new keys cannot be made (OpenSSL short of memory at each step of the
 * derivation in turn): the KeyUpdate is refused, and nothing is sealed after it, which would
 * otherwise go under the old key with its sequence number back at 0 (a nonce used twice). */
static void test_key_update_failure(void **state)
{
    (void)state;
    unsigned char rs[32], ws[32], probe[32];
    memset(rs, 1, sizeof(rs));
    memset(ws, 2, sizeof(ws));
    allocs = 0;
    assert_int_equal(tls_rec_expand_label(0x1301, ws, "key", probe, 16), 0);
    long per = allocs; /* what one HKDF-Expand-Label allocates */
    for (long fail_at = 0; fail_at < 3 * per + 4; fail_at++) {
        struct tls_rec r;
        assert_int_equal(tls_rec_init(&r, 0x1301, rs, ws, 32, 0, 0), 0);
        unsigned char rec[64], ku[TLS_REC_KEYUPDATE_LEN];
        assert_true(tls_rec_seal(&r, TLS_REC_CT_APPDATA, (const unsigned char *)"data", 4, rec) >
                    0);
        budget = fail_at;
        ssize_t k = tls_rec_seal_key_update(&r, ku);
        budget = -1;
        if (k < 0) {
            assert_int_equal(
                tls_rec_seal(&r, TLS_REC_CT_APPDATA, (const unsigned char *)"more", 4, rec), -1);
            assert_int_equal(tls_rec_seal_alert(&r, TLS_REC_CLOSE_NOTIFY, rec), -1);
        } else {
            assert_int_equal(r.wr.seq, 0); /* the new key's first record is next */
        }
        tls_rec_free(&r);
    }
}

int main(void)
{
    /* Before OpenSSL allocates anything. */
    if (CRYPTO_set_mem_functions(hook_malloc, hook_realloc, hook_free) != 1) {
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_update_failure), cmocka_unit_test(test_rfc8448_keys),
        cmocka_unit_test(test_rfc8448_records),    cmocka_unit_test(test_other_suites),
        cmocka_unit_test(test_key_update),         cmocka_unit_test(test_limits),
        cmocka_unit_test(test_refusals),           cmocka_unit_test(test_unhex),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
