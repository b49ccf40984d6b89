#include "relay.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

void relay_ctx_init(struct relay_ctx *ctx, struct loop *loop)
{
    memset(ctx, 0, sizeof(*ctx));
    ctx->loop = loop;
    if (getrandom(&ctx->hash_seed, sizeof(ctx->hash_seed), 0) != sizeof(ctx->hash_seed)) {
        ctx->hash_seed = (uint64_t)(uintptr_t)ctx ^ loop_now(loop);
    }
}

void relay_ctx_fini(struct relay_ctx *ctx)
{
    while (ctx->pool != NULL) {
        struct buf *b = ctx->pool;
        ctx->pool = b->next;
        free(b);
    }
    ctx->pool_len = 0;
}

struct buf *relay_buf_get(struct relay_ctx *ctx)
{
    struct buf *b = ctx->pool;
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

void relay_buf_put(struct relay_ctx *ctx, struct buf *b)
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
