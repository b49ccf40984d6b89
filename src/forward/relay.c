#include "forward/relay.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "forward/proto.h"

void relay_ctx_init(struct relay_ctx *ctx, struct loop *loop, unsigned worker)
{
    memset(ctx, 0, sizeof(*ctx));
    ctx->loop = loop;
    ctx->worker = worker;
    if (getrandom(&ctx->hash_seed, sizeof(ctx->hash_seed), 0) != sizeof(ctx->hash_seed)) {
        ctx->hash_seed = (uint64_t)(uintptr_t)ctx ^ loop_now(loop);
    }
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
