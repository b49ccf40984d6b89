/* The tls protocol: TLS outside, any protocol inside. The client's TLS ends at the gateway and
 * the bytes inside it go to the target unchanged, over plain TCP: tls/ does the rest. */
#include "proto/tls/tls_proto.h"

#include <sys/socket.h>

#include "tls/tls.h"

static const char *const stat_names[] = {TLS_STAT_NAMES, NULL};
_Static_assert(TLS_STAT_COUNT <= PROTO_MAX_STATS, "tls: too many counters");

static void conf_init(void *pconf)
{
    tls_conf_init(pconf, NULL, 0);
}

static int conf_set(void *pconf, const char *key, const char *val, char *why, size_t len)
{
    return tls_conf_set(pconf, key, val, why, len);
}

static void conf_format(const void *pconf, char *buf, size_t len)
{
    tls_conf_format(pconf, buf, len);
}

static void *run_open(const void *pconf, const char *mapname, unsigned char id[32], char *why,
                      size_t len)
{
    return tls_run_open(pconf, mapname, id, why, len);
}

const struct proto tls_proto = {
    .name = "tls",
    .transport = SOCK_STREAM,
    .layer = &tls_layer,
    .placement = PROTO_EVERY_WORKER,
    .keys = tls_keys,
    .conf_size = sizeof(struct tls_conf),
    .conf_init = conf_init,
    .conf_set = conf_set,
    .conf_format = conf_format,
    .run_open = run_open,
    .run_close = tls_run_close,
    .stat_names = stat_names,
};
