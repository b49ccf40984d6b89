/*
 * The TLS layer on a client's socket (forward/tcp.h: struct tcp_layer).
 *
 * OpenSSL reads and writes the socket through a BIO of ours that knows what the relay knows of
 * the socket (struct tcp_ready): it makes no recv() that readiness says would fail, and a recv
 * that comes back short says the socket is empty, as the relay's own reads do; so a request
 * costs the same syscalls over TLS as in the clear. Where the kernel has TLS (kTLS), OpenSSL's
 * own socket BIO is used instead, since only it can hand the records to the kernel.
 */
#include <errno.h>
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

struct tls_conn {
    SSL *ssl;
    int fd;
    int err; /* errno of the socket call that failed, for read/write/handshake to report */
    struct tcp_ready *ready;
    const struct mapping *map;
    unsigned worker;
    unsigned stat_base; /* TLS_STAT_* are counted from here */
    bool counted;       /* the handshake's outcome is counted: done, or failed */
    bool ktls;          /* on OpenSSL's socket BIO (the kernel may do the records), not ours */
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

static void bio_setup(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "portgate socket");
    if (m != NULL && BIO_meth_set_read(m, bio_read) == 1 && BIO_meth_set_write(m, bio_write) == 1 &&
        BIO_meth_set_ctrl(m, bio_ctrl) == 1 && BIO_meth_set_create(m, bio_create) == 1) {
        bio_method = m;
    } else {
        BIO_meth_free(m);
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

static ssize_t layer_read(void *st, char *buf, size_t len, enum tcp_want *want, const char **reason)
{
    struct tls_conn *t = st;
    size_t n = 0;
    errno = 0; /* what the socket BIO's call sets, and nothing older */
    int r = SSL_read_ex(t->ssl, buf, len, &n);
    if (r == 1) {
        return (ssize_t)n;
    }
    int f = failed(t, r, want, reason);
    return f == 1 ? 0 : -1;
}

static ssize_t layer_write(void *st, const char *buf, size_t len, enum tcp_want *want,
                           const char **reason)
{
    struct tls_conn *t = st;
    size_t n = 0;
    errno = 0; /* what the socket BIO's call sets, and nothing older */
    int r = SSL_write_ex(t->ssl, buf, len, &n);
    if (r == 1) {
        return (ssize_t)n;
    }
    int f = failed(t, r, want, reason);
    if (f == 1) {
        errno = EPIPE; /* the client is gone: a write cannot end cleanly */
    }
    return -1;
}

static bool layer_pending(void *st)
{
    return SSL_has_pending(((struct tls_conn *)st)->ssl) == 1;
}

static int layer_shutdown(void *st, enum tcp_want *want)
{
    struct tls_conn *t = st;
    int r = SSL_shutdown(t->ssl);
    if (r >= 0) {
        return 1; /* 0: our close_notify is sent, and the client's need not be awaited */
    }
    const char *reason = NULL;
    int f = failed(t, r, want, &reason);
    return f == 0 ? 0 : f == 1 ? 1 : -1;
}

static bool layer_admits(void *st, const struct mapping *m)
{
    const struct tls_conn *t = st;
    return tls_run_admits(map_conf_run(&m->conf), t->ssl);
}

static const char *layer_servername(void *st)
{
    const struct tls_conn *t = st;
    return SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name);
}

static void layer_describe(void *st, char *buf, size_t len)
{
    struct tls_conn *t = st;
    const char *sni = SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name);
    char name[80] = "";
    if (sni != NULL) {
        /* A client's name: printable characters only, in a log line. */
        size_t i = 0;
        for (; sni[i] != '\0' && i + 1 < sizeof(name); i++) {
            name[i] = sni[i] > ' ' && sni[i] <= '~' ? sni[i] : '?';
        }
        name[i] = '\0';
    }
    if (!SSL_is_init_finished(t->ssl)) {
        snprintf(buf, len, "%s%s", sni != NULL ? "sni=" : "", name);
        return;
    }
    char client[96];
    tls_run_client_name(t->ssl, client, sizeof(client));
    snprintf(buf, len, "%s %s%s%s%s%s%s", SSL_get_version(t->ssl), SSL_get_cipher_name(t->ssl),
             sni != NULL ? " sni=" : "", name, client[0] ? " client=" : "", client,
             SSL_session_reused(t->ssl) ? " resumed" : "");
}

static void layer_close(void *st)
{
    struct tls_conn *t = st;
    if (!t->counted) {
        count(t, TLS_STAT_FAILED); /* closed mid-handshake: its timeout, or the gateway's end */
    }
    SSL_free(t->ssl);
    ERR_clear_error();
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
