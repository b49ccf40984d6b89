/* libFuzzer target: the http filter driven by both sides of a connection, as the relay drives
 * it. The input is a series of chunks: a byte whose bit 0 is the direction (0: client ->
 * device, 1: device -> client) and bits 1-2 pick one of three mappings (first chunk only: one
 * with the https settings, trusted proxies and target-host; one that redirects and answers ACME
 * challenges; one that answers the device's own login), a length byte, then that many bytes.
 * Each side's unconsumed bytes are kept and offered again with the next chunk.
 * What the filter writes must fit its room; every end says why. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/loop.h"
#include "forward/mapping.h"
#include "forward/relay.h"
#include "gateway/config.h"
#include "proto/http/http_proxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct loop *loop;
static struct relay_ctx ctx;
static struct mapping *maps[3];

static struct mapping *make(const char *spec)
{
    struct config *c = config_new();
    config_add_spec(c, spec, 1);
    /* The settings only: no config_finish(), so no certificate is read. */
    struct mapping *m = c->nerrors == 0 ? mapping_new(&c->maps[0], NULL, 1) : NULL;
    config_free(c);
    if (m == NULL) {
        abort();
    }
    return m;
}

static void setup(void)
{
    log_set_level(LOG_LVL_ERROR);
    loop = loop_new();
    if (relay_ctx_init(&ctx, loop, 0) != 0) {
        abort();
    }
    /* https's filter settings are read the same way; its TLS is not the filter's. */
    maps[0] = make("https:127.0.0.1:443=192.0.2.10:8080,trusted-proxies=198.51.100.0/24,"
                   "target-host=cam.local:8080,max-header-size=2048,hsts=max-age=60,"
                   "cert=/nonexistent.pem");
    /* Challenges answered ahead of the redirect, from a webroot that has none of them: each is
     * a 404 of the gateway's, on a connection that goes on. */
    maps[1] = make("http:127.0.0.1:80=192.0.2.10:80,redirect-https=8443,acme-webroot=/");
    /* The device's own login answered (device-auth): its 401s are read and requests resent. */
    maps[2] = make("http:127.0.0.1:80=192.0.2.10:80,device-auth=cam:s3cret");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (loop == NULL) {
        setup();
    }
    if (size < 1) {
        return 0;
    }
    const struct tcp_filter *f = &http_proxy_filter;
    struct tcp_filter_conn fc = {.ctx = &ctx, .map = maps[((data[0] >> 1) & 3) % 3]};
    addr_parse_ip("198.51.100.2", &fc.client);
    addr_set_port(&fc.client, 40000);
    addr_parse_ip("127.0.0.1", &fc.client_local);
    addr_set_port(&fc.client_local, 80);
    addr_parse_ip("192.0.2.10", &fc.target);
    addr_set_port(&fc.target, 8080);
    void *st = f->open(&fc);
    static char in[2][1 << 16];
    static char out[RELAY_BUF_SIZE];
    size_t have[2] = {0, 0};
    size_t i = 0;
    while (st != NULL && i + 2 <= size) {
        enum tcp_dir d = (data[i] & 1) ? TCP_DOWN : TCP_UP;
        size_t n = data[i + 1];
        i += 2;
        if (n > size - i) {
            n = size - i;
        }
        if (n > sizeof(in[d]) - have[d]) {
            break;
        }
        memcpy(in[d] + have[d], data + i, n);
        have[d] += n;
        i += n;
        for (int round = 0; round < 4 && st != NULL; round++) {
            for (int dir = 0; dir < 2 && st != NULL; dir++) {
                bool pend = f->pending(st, (enum tcp_dir)dir);
                if (have[dir] == 0 && !pend) {
                    continue;
                }
                size_t produced = 0;
                const char *reason = NULL;
                ssize_t used = f->data(st, (enum tcp_dir)dir, have[dir] ? in[dir] : NULL, have[dir],
                                       false, out, sizeof(out), &produced, &reason);
                if (used < 0) {
                    if (reason == NULL) {
                        abort(); /* an end always says why */
                    }
                    f->close(st);
                    st = NULL;
                    break;
                }
                if ((size_t)used > have[dir] || produced > sizeof(out)) {
                    abort();
                }
                memmove(in[dir], in[dir] + used, have[dir] - (size_t)used);
                have[dir] -= (size_t)used;
            }
        }
    }
    if (st != NULL) {
        f->close(st);
    }
    return 0;
}
