/*
 * tlsload: the TLS client of bench/tls. Not part of portgate; bench/tls compiles it.
 *
 *   tlsload full   HOST PORT THREADS SECONDS   new connections, a full handshake each
 *   tlsload resume HOST PORT THREADS SECONDS   new connections resuming a session (a ticket)
 *   tlsload idle   HOST PORT COUNT             COUNT connections, then waits for stdin to close
 *
 * Every connection sends one byte and reads it back (the target is an echo server), so that a
 * TLS 1.3 ticket is read and the connection has carried data; then closes. full and resume
 * print the number of connections completed, failed, and of the completed ones how many resumed
 * a session (all but the first of each thread in resume mode, if the server resumes; none in
 * full mode); idle prints "ready" once all are open.
 * Certificates are not verified: the bench measures the server's side.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static struct sockaddr_in addr;
static SSL_CTX *ctx;
static atomic_long done, failed, reused;
static atomic_int stop;
static int resume;

static SSL *open_one(SSL_SESSION *sess, int *fdp)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        close(fd);
        return NULL;
    }
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    SSL_set_tlsext_host_name(ssl, "localhost");
    if (sess != NULL) {
        SSL_set_session(ssl, sess);
    }
    char c = 'x';
    if (SSL_connect(ssl) != 1 || SSL_write(ssl, &c, 1) != 1 || SSL_read(ssl, &c, 1) != 1) {
        ERR_clear_error();
        SSL_free(ssl);
        close(fd);
        return NULL;
    }
    *fdp = fd;
    return ssl;
}

static void *worker(void *arg)
{
    (void)arg;
    SSL_SESSION *sess = NULL;
    while (!atomic_load(&stop)) {
        int fd;
        SSL *ssl = open_one(resume ? sess : NULL, &fd);
        if (ssl == NULL) {
            atomic_fetch_add(&failed, 1);
            continue;
        }
        if (SSL_session_reused(ssl)) {
            atomic_fetch_add(&reused, 1);
        }
        /* The ticket this connection brought resumes the next one: a TLS 1.3 client uses each
         * ticket once (RFC 8446, C.4), and OpenSSL's offers a used one no more. */
        if (resume) {
            SSL_SESSION_free(sess);
            sess = SSL_get1_session(ssl);
        }
        SSL_shutdown(ssl);
        SSL_free(ssl);
        close(fd);
        atomic_fetch_add(&done, 1);
    }
    SSL_SESSION_free(sess);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: tlsload full|resume|idle HOST PORT N [SECONDS]\n");
        return 2;
    }
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)atoi(argv[3]));
    inet_pton(AF_INET, argv[2], &addr.sin_addr);
    ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT);
    int n = atoi(argv[4]);
    if (strcmp(argv[1], "idle") == 0) {
        SSL **v = calloc((size_t)n, sizeof(*v));
        for (int i = 0; i < n; i++) {
            int fd;
            if ((v[i] = open_one(NULL, &fd)) == NULL) {
                fprintf(stderr, "connection %d failed\n", i);
                return 1;
            }
        }
        printf("ready\n");
        fflush(stdout);
        char buf[64];
        while (fread(buf, 1, sizeof(buf), stdin) > 0) {
        }
        return 0;
    }
    resume = strcmp(argv[1], "resume") == 0;
    int seconds = argc > 5 ? atoi(argv[5]) : 5;
    pthread_t t[64];
    n = n > 64 ? 64 : n;
    for (int i = 0; i < n; i++) {
        pthread_create(&t[i], NULL, worker, NULL);
    }
    sleep((unsigned)seconds);
    atomic_store(&stop, 1);
    for (int i = 0; i < n; i++) {
        pthread_join(t[i], NULL);
    }
    printf("%ld %ld %ld\n", atomic_load(&done), atomic_load(&failed), atomic_load(&reused));
    return 0;
}
