/* libFuzzer target: the TLS 1.3 record reader (tls/tls_rec.h) on what a client sends after its
 * handshake. The first byte chooses the suite and how many bytes reach the reader at a time;
 * the rest is a list of operations, each a byte and a 2-byte length: bytes put on the wire as
 * they are; or sealed by a client that shares the reader's keys (content and type, or content
 * then padding; so that what follows the AEAD is reached too); or the client's KeyUpdate. The
 * reader sees the wire from a buffer of its exact size (ASan finds any read past it). What it
 * returns must be a whole record of what it was given, and the application data it finds is
 * sealed back and must be read by the client as it was; so must our KeyUpdate when owed. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tls/tls_rec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define WIRE_MAX (4 * TLS_REC_MAX_WIRE)

struct fz {
    struct tls_rec srv, cli; /* the reader, and the client that shares its keys */
    uint16_t suite;
    size_t step; /* bytes the reader is given at a time */
    unsigned char wire[WIRE_MAX];
    size_t pend; /* wire bytes not read yet */
    bool dead;
};

/* The client reads what the server sealed: it must read it whole, as it was. */
static void client_reads(struct fz *f, const unsigned char *rec, size_t n,
                         const unsigned char *want, size_t wlen)
{
    unsigned char *copy = malloc(n);
    memcpy(copy, rec, n);
    unsigned char *data;
    size_t dlen;
    if (tls_rec_read(&f->cli, copy, n, &data, &dlen) != (ssize_t)n || dlen != wlen ||
        (wlen > 0 && memcmp(data, want, wlen) != 0)) {
        abort();
    }
    free(copy);
}

/* After the server read a KeyUpdate, the client writes under the key the server reads with. */
static void follow(struct fz *f)
{
    size_t len = f->srv.secret_len;
    if (memcmp(f->srv.rd.secret, f->cli.wr.secret, len) == 0 || f->srv.hs_len > 0) {
        return;
    }
    unsigned char rsec[TLS_REC_MAX_SECRET];
    memcpy(rsec, f->cli.rd.secret, len);
    uint64_t rseq = f->cli.rd.seq;
    tls_rec_free(&f->cli);
    if (tls_rec_init(&f->cli, f->suite, rsec, f->srv.rd.secret, len, rseq, f->srv.rd.seq) != 0) {
        abort();
    }
}

/* Gives the reader what the wire holds, step bytes more each time it asks for more. */
static void feed(struct fz *f)
{
    size_t avail = f->pend < f->step ? f->pend : f->step;
    while (!f->dead && f->pend > 0) {
        unsigned char *buf = malloc(avail);
        memcpy(buf, f->wire, avail);
        unsigned char *out;
        size_t dlen;
        ssize_t used = tls_rec_read(&f->srv, buf, avail, &out, &dlen);
        if (used < 0 || used > (ssize_t)avail || (used == 0 && dlen != 0) ||
            (dlen > 0 && (out < buf + TLS_REC_HEADER || out + dlen > buf + used))) {
            if (used >= 0) {
                abort(); /* more than it was given, or data outside its record */
            }
            f->dead = true; /* refused: the connection ends */
            free(buf);
            return;
        }
        if (used == 0) {
            free(buf);
            if (avail == f->pend) {
                return; /* a partial record: more comes with the next operation */
            }
            avail = avail + f->step < f->pend ? avail + f->step : f->pend;
            continue;
        }
        unsigned char rec[TLS_REC_MAX_PLAIN + TLS_REC_OVERHEAD];
        if (f->srv.reply_owed) {
            ssize_t n = tls_rec_seal_key_update(&f->srv, rec);
            if (n != TLS_REC_KEYUPDATE_LEN) {
                abort();
            }
            client_reads(f, rec, (size_t)n, NULL, 0);
        }
        if (dlen > 0) {
            ssize_t n = tls_rec_seal(&f->srv, TLS_REC_CT_APPDATA, out, dlen, rec);
            if (n != (ssize_t)(dlen + TLS_REC_OVERHEAD)) {
                abort();
            }
            client_reads(f, rec, (size_t)n, out, dlen);
        }
        free(buf);
        memmove(f->wire, f->wire + used, f->pend - (size_t)used);
        f->pend -= (size_t)used;
        avail = f->pend < f->step ? f->pend : f->step;
        if (f->srv.eof) {
            f->dead = true;
            return;
        }
        follow(f);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) {
        return 0;
    }
    static const uint16_t suites[] = {0x1301, 0x1302, 0x1303};
    static struct fz f;
    memset(&f, 0, sizeof(f));
    f.suite = suites[data[0] % 3];
    f.step = 1 + (size_t)(data[0] / 3) * 211; /* 1 to 17,936 */
    size_t len = f.suite == 0x1302 ? 48 : 32;
    unsigned char a[TLS_REC_MAX_SECRET], b[TLS_REC_MAX_SECRET];
    memset(a, 0xa5, sizeof(a));
    memset(b, 0x5a, sizeof(b));
    if (tls_rec_init(&f.srv, f.suite, a, b, len, 0, 0) != 0 ||
        tls_rec_init(&f.cli, f.suite, b, a, len, 0, 0) != 0) {
        abort();
    }
    const uint8_t *p = data + 1, *end = data + size;
    static unsigned char rec[TLS_REC_MAX_PLAIN + 1 + TLS_REC_OVERHEAD];
    while (!f.dead && end - p >= 3) {
        uint8_t op = p[0];
        size_t n = (size_t)p[1] << 8 | p[2];
        p += 3;
        n = n < (size_t)(end - p) ? n : (size_t)(end - p);
        const uint8_t *in = p;
        p += n;
        ssize_t m = 0;
        switch (op % 4) {
        case 0: /* raw bytes */
            m = (ssize_t)n;
            break;
        case 1: /* content, then its type (the last byte) */
            if (n > 0 && n - 1 <= TLS_REC_MAX_PLAIN) {
                m = tls_rec_seal(&f.cli, in[n - 1], in, n - 1, rec);
            }
            in = rec;
            break;
        case 2: /* content, its type, padding: as given, one zero after */
            if (n <= TLS_REC_MAX_PLAIN) {
                m = tls_rec_seal(&f.cli, 0, in, n, rec);
            }
            in = rec;
            break;
        default: /* the client's KeyUpdate (update_not_requested) */
            m = tls_rec_seal_key_update(&f.cli, rec);
            in = rec;
            break;
        }
        if (m <= 0 || f.pend + (size_t)m > WIRE_MAX) {
            continue;
        }
        memcpy(f.wire + f.pend, in, (size_t)m);
        f.pend += (size_t)m;
        feed(&f);
    }
    tls_rec_free(&f.srv);
    tls_rec_free(&f.cli);
    return 0;
}
