/*
 * The TLS layer on a client's socket (forward/tcp.h: struct tcp_layer).
 *
 * OpenSSL does the handshake, reading and writing the socket through a BIO of ours that knows
 * what the relay knows of the socket (struct tcp_ready): it makes no recv() that readiness says
 * would fail, and a recv that comes back short says the socket is empty, as the relay's own
 * reads do; so a request costs the same syscalls over TLS as in the clear. Where the kernel has
 * TLS (kTLS), OpenSSL's own socket BIO is used instead, since only it can hand the records to
 * the kernel, and OpenSSL keeps the connection to its end.
 *
 * Without kTLS, a TLS 1.3 connection is taken over once its handshake is done: the SSL object
 * is freed, with the 14 KiB OpenSSL 3.0 keeps per connection, and our own record layer
 * (tls/tls_rec.h) carries the traffic, under the same keys, with the same syscall discipline.
 *   - The traffic secrets come from the keylog callback (SSL_CTX_set_keylog_callback, set by
 *     tls_run.c on every context): CLIENT_TRAFFIC_SECRET_0 when OpenSSL starts reading the
 *     client's records under the application keys (once the client's Finished is read),
 *     SERVER_TRAFFIC_SECRET_0 when it starts writing ours (once our Finished is written).
 *   - The sequence numbers are counted, not guessed: the message callback reports the header
 *     of every record OpenSSL reads or writes, and each one after a direction's secret came is
 *     a record under that secret (our NewSessionTicket, the client's first data).
 *   - The takeover waits until OpenSSL holds nothing: no byte read from the socket and not
 *     returned (SSL_has_pending: a decrypted record, or records read ahead, whole or not), no
 *     record it has not sent whole, no KeyUpdate seen or owed, no close_notify either way. The
 *     next byte on the socket each way is then the first byte of a record, under the secrets
 *     and at the sequence numbers we hold.
 * Anything else stays on OpenSSL to its end, as before: TLS 1.2, a KeyUpdate before the
 * takeover, a maximum fragment length, a suite the record layer does not know, and kTLS.
 *
 * The record layer reads the client's records into the relay's own buffer, decrypts them in
 * place and moves their content to its start: one recv and no copy of a whole record for a
 * read the buffer has room for. A record the recv cut is kept in a buffer of ours until the
 * rest comes, and the buffer is freed as soon as it is empty: an idle connection holds no
 * record buffer. Writes are sealed into a per-thread buffer and sent with one send(); what the
 * socket does not take is kept, sealed, until it does (a record is never sealed twice).
 */
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "forward/mapping.h"
#include "tls/tls.h"
#include "tls/tls_int.h"
#include "tls/tls_rec.h"

enum { RD, WR }; /* directions, as the record layer sees them: the client's records, ours */

/* What a read learned that it could not return yet, the data before it returned first. */
enum rd_end { RD_OPEN, RD_EOF, RD_ERROR };

struct tls_conn {
    SSL *ssl; /* OpenSSL's connection; NULL once taken over */
    int fd;
    int err; /* errno of the socket call that failed, for read/write/handshake to report */
    struct tcp_ready *ready;
    const struct mapping *map;
    unsigned worker;
    unsigned stat_base; /* TLS_STAT_* are counted from here */
    bool counted;       /* the handshake's outcome is counted: done, or failed */
    bool ktls;          /* on OpenSSL's socket BIO (the kernel may do the records), not ours */

    /* Until the takeover: what the keylog and message callbacks learn. */
    bool stay;     /* on OpenSSL to the end */
    bool wpending; /* OpenSSL holds a record it has not sent whole (SSL_write wants to) */
    bool have[2];  /* the application traffic secret of each direction came */
    uint8_t secret_len;
    uint64_t seq[2]; /* records under it since */
    unsigned char secret[2][TLS_REC_MAX_SECRET];

    /* After: the record layer. */
    struct tls_rec rec;
    unsigned char *rbuf; /* read from the socket, not returned yet; NULL when empty */
    uint32_t roff, rlen; /* records, whole or not, at rbuf + roff */
    uint32_t poff, plen; /* a record's content (decrypted) at rbuf + poff */
    enum rd_end rd_end;
    int rd_errno;        /* RD_ERROR: EPROTO (rec.why says why) or the socket's */
    unsigned char *wbuf; /* sealed, not sent yet; NULL when empty */
    uint32_t woff, wlen; /* at wbuf + woff */
    uint32_t wplain;     /* bytes of the relay's in it that write() has not counted yet */
    int wr_errno;        /* a write failed: every later one does */
    bool sealed_end;     /* close_notify or an error alert is sealed: nothing may follow */
    bool resumed, verified, has_sni;
    char *names; /* the server name, then the client certificate's common name, each
                  * NUL-terminated: what describe(), servername() and admits() need */
};

/* ---- the BIO ---- */

static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

static int bio_read(BIO *b, char *buf, int len)
{
    struct tls_conn *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (!t->ready->readable) {
        BIO_set_retry_read(b);
        return -1;
    }
    ssize_t n = recv(t->fd, buf, (size_t)len, 0);
    if (n > 0) {
        /* Short: the socket is empty now (edge-triggered, the next bytes bring an event). After
         * a FIN was reported, read on to see it. */
        if (n < len && !t->ready->rdhup) {
            t->ready->readable = false;
        }
        return (int)n;
    }
    if (n == 0) {
        return 0;
    }
    if (errno == EAGAIN || errno == EINTR) {
        if (errno == EAGAIN) {
            t->ready->readable = false;
        }
        BIO_set_retry_read(b);
        return -1;
    }
    t->err = errno;
    return -1;
}

static int bio_write(BIO *b, const char *buf, int len)
{
    struct tls_conn *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (!t->ready->writable) {
        BIO_set_retry_write(b);
        return -1;
    }
    ssize_t n = send(t->fd, buf, (size_t)len, MSG_NOSIGNAL);
    if (n >= 0) {
        if (n < len) {
            t->ready->writable = false; /* a short send filled the socket's buffer */
        }
        return (int)n;
    }
    if (errno == EAGAIN || errno == EINTR) {
        if (errno == EAGAIN) {
            t->ready->writable = false;
        }
        BIO_set_retry_write(b);
        return -1;
    }
    t->err = errno;
    return -1;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b;
    (void)num;
    (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0; /* writes are not buffered here */
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

/* The SSL ex_data that points to the connection, for the callbacks. */
static int conn_idx = -1;

static void bio_setup(void)
{
    conn_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "portgate socket");
    if (m != NULL && conn_idx >= 0 && BIO_meth_set_read(m, bio_read) == 1 &&
        BIO_meth_set_write(m, bio_write) == 1 && BIO_meth_set_ctrl(m, bio_ctrl) == 1 &&
        BIO_meth_set_create(m, bio_create) == 1) {
        bio_method = m;
    } else {
        BIO_meth_free(m);
    }
}

/* ---- what OpenSSL tells of a TLS 1.3 connection, for the takeover ---- */

/* On OpenSSL to the end: the callbacks stop, the secrets are wiped. */
static void stay(struct tls_conn *t)
{
    t->stay = true;
    if (t->ssl != NULL) {
        SSL_set_msg_callback(t->ssl, NULL);
    }
    OPENSSL_cleanse(t->secret, sizeof(t->secret));
}

void tls_layer_keylog(const SSL *s, const char *line)
{
    struct tls_conn *t = conn_idx >= 0 ? SSL_get_ex_data(s, conn_idx) : NULL;
    if (t == NULL || t->ktls || t->stay) {
        return;
    }
    /* "LABEL CLIENT_RANDOM SECRET", in hex (NSS's key log format). The handshake's secrets
     * and TLS 1.2's CLIENT_RANDOM are not ours to take. */
    static const char client[] = "CLIENT_TRAFFIC_SECRET_0 ", server[] = "SERVER_TRAFFIC_SECRET_0 ";
    int dir;
    if (strncmp(line, client, sizeof(client) - 1) == 0) {
        dir = RD;
    } else if (strncmp(line, server, sizeof(server) - 1) == 0) {
        dir = WR;
    } else {
        return;
    }
    const char *random = line + sizeof(client) - 1;
    const char *hex = strchr(random, ' ');
    size_t n = hex != NULL ? strlen(hex + 1) / 2 : 0;
    if (hex == NULL || hex - random != 64 || (n != 32 && n != 48) || hex[1 + 2 * n] != '\0' ||
        (t->secret_len != 0 && n != t->secret_len) || t->have[dir] ||
        tls_rec_unhex(hex + 1, t->secret[dir], n) != 0) {
        stay(t); /* not what OpenSSL 3.0 writes: nothing to trust */
        return;
    }
    t->secret_len = (uint8_t)n;
    t->have[dir] = true;
    t->seq[dir] = 0; /* the next record this way is the first under it */
}

/* SSL_set_msg_callback: counts the records under the application keys, each way; a KeyUpdate
 * either way (OpenSSL's keys then move on without telling us) keeps the connection on
 * OpenSSL. */
static void msg_cb(int write_p, int version, int content_type, const void *buf, size_t len, SSL *s,
                   void *arg)
{
    (void)version;
    (void)s;
    struct tls_conn *t = arg;
    const unsigned char *p = buf;
    int dir = write_p ? WR : RD;
    if (content_type == SSL3_RT_HEADER && len >= 1) {
        if (t->have[dir]) {
            /* Under the application keys every record says application_data outside. */
            if (p[0] != SSL3_RT_APPLICATION_DATA) {
                stay(t);
            }
            t->seq[dir]++;
        }
    } else if (content_type == SSL3_RT_HANDSHAKE && len >= 1 && p[0] == SSL3_MT_KEY_UPDATE) {
        stay(t);
    }
}

/* ---- the layer ---- */

static void count(const struct tls_conn *t, int stat)
{
    mapping_stat_add(&mapping_shard(t->map, t->worker)->stats.proto[t->stat_base + (unsigned)stat],
                     1);
}

static void *layer_open(const struct tcp_layer_conn *lc, uint32_t *timeout_ms)
{
    pthread_once(&bio_once, bio_setup);
    struct tls_conn *t = calloc(1, sizeof(*t));
    if (t == NULL || bio_method == NULL || lc->run == NULL) {
        free(t);
        return NULL;
    }
    t->fd = lc->fd;
    t->ready = lc->ready;
    t->map = lc->map;
    t->worker = lc->worker;
    *timeout_ms = tls_run_handshake_ms(lc->run);
    t->stat_base = tls_run_stat_base(lc->run);
    t->ssl = SSL_new(tls_run_ctx(lc->run));
    if (t->ssl == NULL) {
        ERR_clear_error();
        free(t);
        return NULL;
    }
    if (SSL_set_ex_data(t->ssl, conn_idx, t) != 1) {
        goto fail;
    }
    if (tls_ktls_available()) {
        t->ktls = true;
        errno = 0;
        if (SSL_set_fd(t->ssl, lc->fd) != 1) {
            goto fail;
        }
    } else {
        BIO *b = BIO_new(bio_method);
        if (b == NULL) {
            goto fail;
        }
        BIO_set_data(b, t);
        SSL_set_bio(t->ssl, b, b);
        SSL_set_msg_callback(t->ssl, msg_cb);
        SSL_set_msg_callback_arg(t->ssl, t);
    }
    tls_run_use_group(t->ssl, lc->group);
    SSL_set_accept_state(t->ssl);
    return t;
fail:
    ERR_clear_error();
    SSL_free(t->ssl);
    free(t);
    return NULL;
}

/* Takes the connection over from OpenSSL if it can be now (see the top of the file); leaves it
 * on OpenSSL for good if it never can. */
static void take_over(struct tls_conn *t)
{
    SSL *s = t->ssl;
    if (s == NULL || t->ktls || t->stay || !SSL_is_init_finished(s)) {
        return;
    }
    if (SSL_version(s) != TLS1_3_VERSION || !t->have[RD] || !t->have[WR] ||
        SSL_get_key_update_type(s) != SSL_KEY_UPDATE_NONE || SSL_get_shutdown(s) != 0 ||
        SSL_SESSION_get_max_fragment_length(SSL_get0_session(s)) !=
            TLSEXT_max_fragment_length_DISABLED) {
        stay(t);
        return;
    }
    if (t->wpending || SSL_has_pending(s)) {
        return; /* a later read or write, once OpenSSL has given or sent it all */
    }
    const char *sni = SSL_get_servername(s, TLSEXT_NAMETYPE_host_name);
    char cn[256];
    tls_run_client_name(s, cn, sizeof(cn));
    size_t sl = sni != NULL ? strlen(sni) : 0, cl = strlen(cn);
    char *names = NULL;
    if (sl + cl > 0 && (names = malloc(sl + cl + 2)) == NULL) {
        return; /* out of memory: OpenSSL goes on, and a later call tries again */
    }
    if (tls_rec_init(&t->rec, SSL_CIPHER_get_protocol_id(SSL_get_current_cipher(s)), t->secret[RD],
                     t->secret[WR], t->secret_len, t->seq[RD], t->seq[WR]) != 0) {
        free(names);
        stay(t); /* a suite the record layer does not know; or out of memory */
        return;
    }
    if (names != NULL) {
        memcpy(names, sni != NULL ? sni : "", sl + 1);
        memcpy(names + sl + 1, cn, cl + 1);
    }
    t->names = names;
    t->has_sni = sni != NULL;
    t->resumed = SSL_session_reused(s);
    t->verified = SSL_get0_peer_certificate(s) != NULL && SSL_get_verify_result(s) == X509_V_OK;
    OPENSSL_cleanse(t->secret, sizeof(t->secret));
    SSL_free(s); /* writes nothing: the client sees no difference */
    t->ssl = NULL;
    ERR_clear_error();
    count(t, TLS_STAT_TAKEN_OVER);
}

/* What a failed call on t's SSL means: 0 with *want when it waits; -1 with errno otherwise
 * (EPROTO and *reason for TLS's own errors); eof_ok: a clean end returns 1 (reads). */
static int failed(struct tls_conn *t, int ret, enum tcp_want *want, const char **reason)
{
    switch (SSL_get_error(t->ssl, ret)) {
    case SSL_ERROR_WANT_READ:
        *want = TCP_WANT_READ;
        errno = EAGAIN;
        return 0;
    case SSL_ERROR_WANT_WRITE:
        *want = TCP_WANT_WRITE;
        errno = EAGAIN;
        return 0;
    case SSL_ERROR_ZERO_RETURN:
        return 1;
    case SSL_ERROR_SYSCALL:
        ERR_clear_error();
        if (t->err != 0) {
            errno = t->err;
            return -1;
        }
        if (t->ktls && errno != 0) {
            return -1; /* OpenSSL's socket BIO: errno is the socket call's */
        }
        return 1; /* the end of the stream */
    default:
        *reason = tls_err_reason();
        errno = EPROTO;
        return -1;
    }
}

static int layer_handshake(void *st, enum tcp_want *want, const char **reason)
{
    struct tls_conn *t = st;
    errno = 0; /* what the socket BIO's call sets, and nothing older */
    int r = SSL_do_handshake(t->ssl);
    if (r == 1) {
        t->counted = true;
        count(t, TLS_STAT_HANDSHAKES);
        if (SSL_session_reused(t->ssl)) {
            count(t, TLS_STAT_RESUMED);
        }
        take_over(t);
        return 1;
    }
    int f = failed(t, r, want, reason);
    if (f == 0) {
        return 0;
    }
    t->counted = true;
    count(t, TLS_STAT_FAILED);
    if (f == 1) {
        *reason = "the client closed the connection";
    } else if (errno != EPROTO) {
        *reason = strerror(errno);
    }
    return -1;
}

/* ---- the record layer's socket I/O ---- */

/* recv() by the relay's rules (forward/tcp.h: struct tcp_ready). Returns the bytes read, 0 at
 * the end of the stream, or -1 with errno (EAGAIN: none now). */
static ssize_t sock_recv(struct tls_conn *t, unsigned char *buf, size_t room)
{
    if (!t->ready->readable) {
        errno = EAGAIN;
        return -1;
    }
    for (;;) {
        ssize_t n = recv(t->fd, buf, room, 0);
        if (n > 0) {
            /* Short: the socket is empty now; after a FIN was reported, read on to see it. */
            if ((size_t)n < room && !t->ready->rdhup) {
                t->ready->readable = false;
            }
            return n;
        }
        if (n == 0) {
            return 0;
        }
        if (errno != EINTR) {
            if (errno == EAGAIN) {
                t->ready->readable = false;
            }
            return -1;
        }
    }
}

/* send() by the same rules. Returns the bytes sent, or -1 with errno (EAGAIN: none now). */
static ssize_t sock_send(struct tls_conn *t, const unsigned char *buf, size_t len)
{
    if (!t->ready->writable) {
        errno = EAGAIN;
        return -1;
    }
    for (;;) {
        ssize_t n = send(t->fd, buf, len, MSG_NOSIGNAL);
        if (n >= 0) {
            if ((size_t)n < len) {
                t->ready->writable = false; /* a short send filled the socket's buffer */
            }
            return n;
        }
        if (errno != EINTR) {
            if (errno == EAGAIN) {
                t->ready->writable = false;
            }
            return -1;
        }
    }
}

/* Sends buf (len sealed bytes) now, and keeps what the socket does not take in wbuf, which is
 * empty. Returns the bytes sent, or -1 with errno (not EAGAIN: nothing sent is 0). */
static ssize_t send_or_keep(struct tls_conn *t, const unsigned char *buf, size_t len)
{
    ssize_t n = sock_send(t, buf, len);
    if (n < 0 && errno != EAGAIN) {
        t->wr_errno = errno;
        return -1;
    }
    size_t sent = n > 0 ? (size_t)n : 0;
    if (sent < len) {
        if ((t->wbuf = malloc(len - sent)) == NULL) {
            t->wr_errno = errno = ENOMEM;
            return -1;
        }
        memcpy(t->wbuf, buf + sent, len - sent);
        t->woff = 0;
        t->wlen = (uint32_t)(len - sent);
    }
    return (ssize_t)sent;
}

/* Sends what wbuf holds. Returns 1 when it is all sent (and wbuf freed), 0 when the socket
 * takes no more now, or -1 with errno. */
static int flush_kept(struct tls_conn *t)
{
    while (t->wlen > 0) {
        ssize_t n = sock_send(t, t->wbuf + t->woff, t->wlen);
        if (n < 0) {
            if (errno == EAGAIN) {
                return 0;
            }
            t->wr_errno = errno;
            return -1;
        }
        t->woff += (uint32_t)n;
        t->wlen -= (uint32_t)n;
    }
    free(t->wbuf);
    t->wbuf = NULL;
    t->woff = 0;
    return 1;
}

/* The read side ends with an error: kept until the data read before it is returned. alert, if
 * not 0, goes to the client, if nothing is half sent and the socket takes it now. */
static void read_failed(struct tls_conn *t, int err, uint8_t alert)
{
    t->rd_end = RD_ERROR;
    t->rd_errno = err;
    if (alert == 0 || t->sealed_end || t->wlen > 0) {
        return;
    }
    unsigned char rec[TLS_REC_ALERT_LEN];
    const char *why = t->rec.why;
    ssize_t n = tls_rec_seal_alert(&t->rec, alert, rec);
    t->rec.why = why;
    t->sealed_end = true;
    if (n > 0) {
        (void)sock_send(t, rec, (size_t)n); /* once: the connection ends anyway */
    }
}

/* Our KeyUpdate, if the client asked for it, sent now if the socket takes it: the client may
 * want its read key changed before we have data for it (RFC 8446 4.6.3 asks for it only
 * before our next data, which write() makes sure of). */
static void send_key_update(struct tls_conn *t)
{
    if (!t->rec.reply_owed || t->wlen > 0 || t->sealed_end || !t->ready->writable ||
        t->wr_errno != 0) {
        return;
    }
    unsigned char rec[TLS_REC_KEYUPDATE_LEN];
    ssize_t n = tls_rec_seal_key_update(&t->rec, rec);
    if (n < 0) {
        /* Our next key could not be made: nothing more is sealed, either way. */
        t->wr_errno = EPROTO;
        t->sealed_end = true;
        read_failed(t, EPROTO, 0);
        return;
    }
    (void)send_or_keep(t, rec, (size_t)n); /* a failure is the next write's to report */
}

/* Reads the records in buf[0..have) that are whole, moving their content to buf + *out. Returns
 * how many bytes it used; a refusal or close_notify sets rd_end. */
static size_t open_records(struct tls_conn *t, unsigned char *buf, size_t have, size_t *out)
{
    size_t off = 0;
    while (t->rd_end == RD_OPEN) {
        unsigned char *data;
        size_t dlen;
        ssize_t used = tls_rec_read(&t->rec, buf + off, have - off, &data, &dlen);
        if (used < 0) {
            read_failed(t, EPROTO, t->rec.alert);
            break;
        }
        if (used == 0) {
            break;
        }
        /* The content lies past every byte moved before it: a move down never overwrites a
         * record not read yet. */
        if (dlen > 0) {
            memmove(buf + *out, data, dlen);
            *out += dlen;
        }
        off += (size_t)used;
        if (t->rec.eof) {
            t->rd_end = RD_EOF; /* what follows close_notify is ignored */
        }
    }
    return off;
}

/* The socket said the stream ended (n == 0) or failed (n < 0, with err), with rlen bytes of an
 * unfinished record kept. */
static void socket_ended(struct tls_conn *t, ssize_t n, int err)
{
    if (t->rd_end != RD_OPEN) {
        return;
    }
    if (n < 0) {
        t->rd_end = RD_ERROR;
        t->rd_errno = err;
    } else if (t->rlen > 0) {
        /* A FIN at a record's boundary ends the stream, as OpenSSL ends it here (the client's
         * close_notify is not required: SSL_OP_IGNORE_UNEXPECTED_EOF); inside one, the
         * record cannot be authenticated: a truncation. */
        t->rec.why = "the client's stream ended inside a record";
        read_failed(t, EPROTO, 0);
    } else {
        t->rd_end = RD_EOF;
    }
}

static bool keep_partial(struct tls_conn *t, const unsigned char *p, size_t n)
{
    if (n == 0) {
        return true;
    }
    if (t->rbuf == NULL && (t->rbuf = malloc(TLS_REC_MAX_WIRE)) == NULL) {
        t->rec.why = "out of memory";
        read_failed(t, EPROTO, TLS_REC_INTERNAL_ERROR);
        return false;
    }
    memmove(t->rbuf, p, n);
    t->roff = 0;
    t->rlen = (uint32_t)n;
    return true;
}

static void drop_rbuf(struct tls_conn *t)
{
    if (t->rbuf != NULL && t->rlen == 0 && t->plen == 0) {
        free(t->rbuf);
        t->rbuf = NULL;
        t->roff = t->poff = 0;
    }
}

/* A read into the relay's buffer (len >= TLS_REC_MAX_WIRE, so a whole record fits after what
 * is kept): what is kept first, then one recv, then the records decrypted in place. Returns
 * the content's length at buf; *progress says it used records or bytes. */
static size_t read_direct(struct tls_conn *t, unsigned char *buf, size_t len, bool *progress)
{
    size_t have = t->rlen;
    if (have > 0) {
        memcpy(buf, t->rbuf + t->roff, have);
        t->rlen = 0;
        drop_rbuf(t);
    }
    ssize_t n = 1;
    int err = 0; /* the recv's, before the records' calls change errno */
    if (t->ready->readable) {
        n = sock_recv(t, buf + have, len - have);
        err = errno;
        if (n > 0) {
            have += (size_t)n;
            *progress = true;
        }
    }
    size_t out = 0;
    size_t used = open_records(t, buf, have, &out);
    *progress |= used > 0;
    if (t->rd_end == RD_OPEN && !keep_partial(t, buf + used, have - used)) {
        return out;
    }
    if (n <= 0 && !(n < 0 && err == EAGAIN)) {
        socket_ended(t, n, err);
    }
    return out;
}

/* A read into a buffer of ours (the relay's has little room): a record at a time, its content
 * handed out as room allows. Returns the content's length at buf. */
static size_t read_kept(struct tls_conn *t, unsigned char *buf, size_t len, bool *progress)
{
    while (t->plen == 0 && t->rd_end == RD_OPEN) {
        if (t->rbuf == NULL && (t->rbuf = malloc(TLS_REC_MAX_WIRE)) == NULL) {
            t->rec.why = "out of memory";
            read_failed(t, EPROTO, TLS_REC_INTERNAL_ERROR);
            break;
        }
        unsigned char *data;
        size_t dlen;
        ssize_t used = tls_rec_read(&t->rec, t->rbuf + t->roff, t->rlen, &data, &dlen);
        if (used < 0) {
            read_failed(t, EPROTO, t->rec.alert);
            break;
        }
        if (used > 0) {
            *progress = true;
            t->roff += (uint32_t)used;
            t->rlen -= (uint32_t)used;
            if (dlen > 0) {
                t->poff = (uint32_t)(data - t->rbuf);
                t->plen = (uint32_t)dlen;
            }
            if (t->rec.eof) {
                t->rd_end = RD_EOF;
            }
            continue;
        }
        if (!t->ready->readable) {
            break;
        }
        memmove(t->rbuf, t->rbuf + t->roff, t->rlen);
        t->roff = 0;
        ssize_t n = sock_recv(t, t->rbuf + t->rlen, TLS_REC_MAX_WIRE - t->rlen);
        if (n > 0) {
            *progress = true;
            t->rlen += (uint32_t)n;
        } else if (n == 0 || errno != EAGAIN) {
            socket_ended(t, n, errno);
        }
    }
    size_t k = t->plen < len ? t->plen : len;
    memcpy(buf, t->rbuf != NULL ? t->rbuf + t->poff : buf, k);
    t->poff += (uint32_t)k;
    t->plen -= (uint32_t)k;
    drop_rbuf(t);
    return k;
}

static ssize_t rec_read(struct tls_conn *t, char *out, size_t len, enum tcp_want *want,
                        const char **reason)
{
    unsigned char *buf = (unsigned char *)out;
    for (;;) {
        bool progress = false;
        size_t n = t->plen > 0 || len < TLS_REC_MAX_WIRE ? read_kept(t, buf, len, &progress)
                                                         : read_direct(t, buf, len, &progress);
        send_key_update(t);
        if (n > 0) {
            return (ssize_t)n;
        }
        if (t->rd_end == RD_EOF) {
            return 0;
        }
        if (t->rd_end == RD_ERROR) {
            errno = t->rd_errno;
            if (errno == EPROTO) {
                *reason = t->rec.why;
            }
            return -1;
        }
        if (!progress || !t->ready->readable) {
            *want = TCP_WANT_READ;
            errno = EAGAIN;
            return -1;
        }
        /* Records without content (a KeyUpdate) and more on the socket: read on. */
    }
}

/* Records sealed by one write: at most this many, each of at most 2^14 bytes of the relay's
 * (what the relay hands at once: forward/relay.h RELAY_BUF_SIZE). */
#define WRITE_RECORDS 4
static __thread unsigned char
    seal_buf[TLS_REC_KEYUPDATE_LEN + WRITE_RECORDS * (TLS_REC_MAX_PLAIN + TLS_REC_OVERHEAD)];

static ssize_t write_failed(struct tls_conn *t, const char **reason)
{
    errno = t->wr_errno;
    if (errno == EPROTO) {
        *reason = t->rec.why;
    }
    return -1;
}

static ssize_t rec_write(struct tls_conn *t, const char *in, size_t len, enum tcp_want *want,
                         const char **reason)
{
    if (t->wr_errno != 0) {
        return write_failed(t, reason);
    }
    if (t->sealed_end) {
        if (t->rd_end == RD_ERROR && t->rd_errno == EPROTO) {
            errno = EPROTO; /* our alert for the client's bad record: say which */
            *reason = t->rec.why;
            return -1;
        }
        errno = EPIPE; /* after our close_notify */
        return -1;
    }
    if (t->wlen > 0) {
        int r = flush_kept(t);
        if (r < 0) {
            return write_failed(t, reason);
        }
        if (r == 0) {
            *want = TCP_WANT_WRITE;
            errno = EAGAIN;
            return -1;
        }
        if (t->wplain > 0) {
            /* The relay hands the same bytes again until they are counted: they are sent. */
            size_t n = t->wplain;
            t->wplain = 0;
            if (n > len) {
                t->rec.why = "the relay's bytes to write changed under a sealed record";
                t->wr_errno = EPROTO;
                return write_failed(t, reason);
            }
            return (ssize_t)n;
        }
    }
    if (!t->ready->writable) {
        *want = TCP_WANT_WRITE;
        errno = EAGAIN;
        return -1;
    }
    /* Our KeyUpdate first when owed (RFC 8446 4.6.3), then the records; each record's end and
     * the relay's bytes up to it, to count what a short send sent whole. */
    size_t off = 0, used = 0, nrec = 0, ends[WRITE_RECORDS], plain[WRITE_RECORDS];
    if (tls_rec_key_update_due(&t->rec)) {
        ssize_t n = tls_rec_seal_key_update(&t->rec, seal_buf);
        if (n < 0) {
            t->wr_errno = EPROTO;
            return write_failed(t, reason);
        }
        off = (size_t)n;
    }
    while (used < len && nrec < WRITE_RECORDS) {
        size_t chunk = len - used < TLS_REC_MAX_PLAIN ? len - used : TLS_REC_MAX_PLAIN;
        ssize_t n = tls_rec_seal(&t->rec, TLS_REC_CT_APPDATA, (const unsigned char *)in + used,
                                 chunk, seal_buf + off);
        if (n < 0) {
            t->wr_errno = EPROTO;
            return write_failed(t, reason);
        }
        off += (size_t)n;
        used += chunk;
        ends[nrec] = off;
        plain[nrec++] = used;
    }
    ssize_t sent = send_or_keep(t, seal_buf, off);
    if (sent < 0) {
        return write_failed(t, reason);
    }
    if ((size_t)sent == off) {
        return (ssize_t)used;
    }
    /* The records sent whole are counted now; the rest when the relay hands them again. */
    size_t done = 0;
    for (size_t i = 0; i < nrec && ends[i] <= (size_t)sent; i++) {
        done = plain[i];
    }
    t->wplain = (uint32_t)(used - done);
    if (done == 0) {
        *want = TCP_WANT_WRITE;
        errno = EAGAIN;
        return -1;
    }
    return (ssize_t)done;
}

/* Ends what we write: what is kept first, then close_notify. */
static int rec_shutdown(struct tls_conn *t, enum tcp_want *want)
{
    if (t->wr_errno != 0) {
        errno = t->wr_errno;
        return -1;
    }
    if (t->wlen > 0) {
        int r = flush_kept(t);
        if (r <= 0) {
            *want = TCP_WANT_WRITE;
            return r;
        }
    }
    if (t->sealed_end) {
        return 1;
    }
    if (!t->ready->writable) {
        *want = TCP_WANT_WRITE;
        return 0;
    }
    unsigned char rec[TLS_REC_ALERT_LEN];
    ssize_t n = tls_rec_seal_alert(&t->rec, TLS_REC_CLOSE_NOTIFY, rec);
    if (n < 0) {
        errno = EPROTO;
        return -1;
    }
    t->sealed_end = true;
    if (send_or_keep(t, rec, (size_t)n) < 0) {
        return -1;
    }
    *want = TCP_WANT_WRITE;
    return t->wlen == 0 ? 1 : 0;
}

/* ---- the layer's operations ---- */

static ssize_t layer_read(void *st, char *buf, size_t len, enum tcp_want *want, const char **reason)
{
    struct tls_conn *t = st;
    if (t->ssl == NULL) {
        return rec_read(t, buf, len, want, reason);
    }
    size_t n = 0;
    errno = 0; /* what the socket BIO's call sets, and nothing older */
    int r = SSL_read_ex(t->ssl, buf, len, &n);
    if (r == 1) {
        take_over(t);
        return (ssize_t)n;
    }
    int f = failed(t, r, want, reason);
    return f == 1 ? 0 : -1;
}

static ssize_t layer_write(void *st, const char *buf, size_t len, enum tcp_want *want,
                           const char **reason)
{
    struct tls_conn *t = st;
    if (t->ssl == NULL) {
        return rec_write(t, buf, len, want, reason);
    }
    size_t n = 0;
    errno = 0; /* what the socket BIO's call sets, and nothing older */
    int r = SSL_write_ex(t->ssl, buf, len, &n);
    if (r == 1) {
        t->wpending = false;
        take_over(t);
        return (ssize_t)n;
    }
    int f = failed(t, r, want, reason);
    t->wpending = f == 0;
    if (f == 1) {
        errno = EPIPE; /* the client is gone: a write cannot end cleanly */
    }
    return -1;
}

static bool layer_pending(void *st)
{
    struct tls_conn *t = st;
    if (t->ssl != NULL) {
        return SSL_has_pending(t->ssl) == 1;
    }
    if (t->plen > 0 || t->rd_end != RD_OPEN) {
        return true;
    }
    /* A whole record kept (or one whose header is refused already). */
    const unsigned char *p = t->rbuf != NULL ? t->rbuf + t->roff : NULL;
    return t->rlen >= TLS_REC_HEADER &&
           (p[0] != TLS_REC_CT_APPDATA || t->rlen >= TLS_REC_HEADER + ((size_t)p[3] << 8 | p[4]) ||
            ((size_t)p[3] << 8 | p[4]) > TLS_REC_MAX_CIPHER);
}

static int layer_shutdown(void *st, enum tcp_want *want)
{
    struct tls_conn *t = st;
    if (t->ssl == NULL) {
        return rec_shutdown(t, want);
    }
    int r = SSL_shutdown(t->ssl);
    if (r >= 0) {
        return 1; /* 0: our close_notify is sent, and the client's need not be awaited */
    }
    const char *reason = NULL;
    int f = failed(t, r, want, &reason);
    return f == 0 ? 0 : f == 1 ? 1 : -1;
}

/* The client certificate's common name, once taken over. */
static const char *taken_cn(const struct tls_conn *t)
{
    return t->names != NULL ? t->names + strlen(t->names) + 1 : "";
}

static bool layer_admits(void *st, const struct mapping *m)
{
    const struct tls_conn *t = st;
    if (t->ssl == NULL) {
        return tls_run_admits_peer(map_conf_run(&m->conf), t->verified, taken_cn(t));
    }
    return tls_run_admits(map_conf_run(&m->conf), t->ssl);
}

static const char *layer_servername(void *st)
{
    const struct tls_conn *t = st;
    if (t->ssl == NULL) {
        return t->has_sni ? t->names : NULL;
    }
    return SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name);
}

static void layer_describe(void *st, char *buf, size_t len)
{
    struct tls_conn *t = st;
    const char *sni = layer_servername(t);
    char name[80] = "";
    if (sni != NULL) {
        /* A client's name: printable characters only, in a log line. */
        size_t i = 0;
        for (; sni[i] != '\0' && i + 1 < sizeof(name); i++) {
            name[i] = sni[i] > ' ' && sni[i] <= '~' ? sni[i] : '?';
        }
        name[i] = '\0';
    }
    if (t->ssl != NULL && !SSL_is_init_finished(t->ssl)) {
        snprintf(buf, len, "%s%s", sni != NULL ? "sni=" : "", name);
        return;
    }
    char client[96];
    if (t->ssl != NULL) {
        tls_run_client_name(t->ssl, client, sizeof(client));
    } else {
        snprintf(client, sizeof(client), "%s", taken_cn(t));
    }
    bool resumed = t->ssl != NULL ? SSL_session_reused(t->ssl) : t->resumed;
    snprintf(buf, len, "%s %s%s%s%s%s%s", t->ssl != NULL ? SSL_get_version(t->ssl) : "TLSv1.3",
             t->ssl != NULL ? SSL_get_cipher_name(t->ssl) : tls_rec_suite_name(t->rec.suite),
             sni != NULL ? " sni=" : "", name, client[0] ? " client=" : "", client,
             resumed ? " resumed" : "");
}

static void layer_close(void *st)
{
    struct tls_conn *t = st;
    if (!t->counted) {
        count(t, TLS_STAT_FAILED); /* closed mid-handshake: its timeout, or the gateway's end */
    }
    if (t->ssl != NULL) {
        SSL_free(t->ssl);
    } else {
        tls_rec_free(&t->rec);
    }
    ERR_clear_error();
    free(t->rbuf);
    free(t->wbuf);
    free(t->names);
    OPENSSL_cleanse(t, sizeof(*t));
    free(t);
}

const struct tcp_layer tls_layer = {
    .name = "tls",
    .open = layer_open,
    .handshake = layer_handshake,
    .read = layer_read,
    .write = layer_write,
    .pending = layer_pending,
    .shutdown = layer_shutdown,
    .describe = layer_describe,
    .servername = layer_servername,
    .admits = layer_admits,
    .close = layer_close,
};
