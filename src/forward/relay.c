#include "forward/relay.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "forward/proto.h"

int relay_ctx_init(struct relay_ctx *ctx, struct loop *loop, unsigned worker)
{
    memset(ctx, 0, sizeof(*ctx));
    ctx->loop = loop;
    ctx->worker = worker;
    if (sodium_init() < 0) {
        return -EIO; /* no source of randomness for the key */
    }
    randombytes_buf(ctx->hash_key, sizeof(ctx->hash_key));
    return 0;
}

void relay_ctx_fini(struct relay_ctx *ctx)
{
    for (size_t i = 0; i < ctx->nprotos; i++) {
        ctx->protos[i].proto->worker_free(ctx->protos[i].state);
    }
    ctx->nprotos = 0;
    for (size_t i = 0; i < ctx->pipe_pool_len; i++) {
        close(ctx->pipe_pool[i].rfd);
        close(ctx->pipe_pool[i].wfd);
    }
    free(ctx->pipe_pool);
    ctx->pipe_pool = NULL;
    free(ctx->dgrams);
    ctx->dgrams = NULL;
    ctx->pipe_pool_len = 0;
    while (ctx->pool != NULL) {
        struct relay_buf *b = ctx->pool;
        ctx->pool = b->next;
        free(b);
    }
    ctx->pool_len = 0;
}

struct relay_buf *relay_buf_get(struct relay_ctx *ctx)
{
    struct relay_buf *b = ctx->pool;
    if (b != NULL) {
        ctx->pool = b->next;
        ctx->pool_len--;
    } else {
        b = malloc(sizeof(*b));
        if (b == NULL) {
            return NULL;
        }
    }
    b->next = NULL;
    b->off = b->len = 0;
    return b;
}

void relay_buf_put(struct relay_ctx *ctx, struct relay_buf *b)
{
    if (b == NULL) {
        return;
    }
    if (ctx->pool_len >= RELAY_POOL_KEEP) {
        free(b);
        return;
    }
    b->next = ctx->pool;
    ctx->pool = b;
    ctx->pool_len++;
}

int relay_pipe_get(struct relay_ctx *ctx, struct relay_pipe *p)
{
    if (ctx->pipes_used >= ctx->max_pipes) {
        ctx->pipe_failures++;
        return -1;
    }
    if (ctx->pipe_pool_len > 0) {
        *p = ctx->pipe_pool[--ctx->pipe_pool_len];
    } else {
        int fds[2];
        if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) == -1) {
            ctx->pipe_failures++;
            return -1;
        }
        /* A larger pipe moves more per splice() call; the kernel may refuse (pipe-max-size,
         * per-user limits), and the default size still works. */
        fcntl(fds[0], F_SETPIPE_SZ, (int)RELAY_PIPE_SIZE);
        p->rfd = fds[0];
        p->wfd = fds[1];
    }
    p->len = 0;
    ctx->pipes_used++;
    return 0;
}

void relay_pipe_put(struct relay_ctx *ctx, struct relay_pipe *p)
{
    if (p->rfd < 0) {
        return;
    }
    ctx->pipes_used--;
    if (p->len == 0 && ctx->pipe_pool_len < RELAY_PIPE_KEEP) {
        if (ctx->pipe_pool == NULL) {
            ctx->pipe_pool = malloc(RELAY_PIPE_KEEP * sizeof(*ctx->pipe_pool));
        }
        if (ctx->pipe_pool != NULL) {
            ctx->pipe_pool[ctx->pipe_pool_len++] = *p;
            p->rfd = p->wfd = -1;
            return;
        }
    }
    close(p->rfd);
    close(p->wfd);
    p->rfd = p->wfd = -1;
    p->len = 0;
}

int relay_set_proto_state(struct relay_ctx *ctx, const struct proto *p, void *state)
{
    if (ctx->nprotos == RELAY_MAX_PROTOS) {
        return -ENOSPC;
    }
    ctx->protos[ctx->nprotos].proto = p;
    ctx->protos[ctx->nprotos].state = state;
    ctx->nprotos++;
    return 0;
}

void *relay_proto_state(const struct relay_ctx *ctx, const struct proto *p)
{
    for (size_t i = 0; i < ctx->nprotos; i++) {
        if (ctx->protos[i].proto == p) {
            return ctx->protos[i].state;
        }
    }
    return NULL;
}

uint64_t relay_addr_hash(const struct relay_ctx *ctx, const struct sockaddr_storage *ss)
{
    /* SipHash of the port and address under the loop's random key: no client can choose
     * addresses or ports that share a bucket of a session table. */
    uint8_t in[19] = {0};
    in[0] = ss->ss_family == AF_INET6 ? 6 : 4;
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
        memcpy(in + 1, &s6->sin6_port, 2);
        memcpy(in + 3, &s6->sin6_addr, 16);
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
        memcpy(in + 1, &s4->sin_port, 2);
        memcpy(in + 3, &s4->sin_addr, 4);
    }
    uint64_t h;
    crypto_shorthash((unsigned char *)&h, in, sizeof(in), ctx->hash_key);
    return h;
}
