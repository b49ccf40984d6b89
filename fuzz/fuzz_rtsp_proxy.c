/* libFuzzer target: the rtsp proxy filter (the conversation state: pending requests, local
 * answers, streams and their RTP ports) driven by both sides at once. The input is a series of
 * chunks: a byte whose low bit is the direction (0: client -> device, 1: device -> client), a
 * length byte, then that many bytes. Each side's unconsumed bytes are kept and offered again
 * with the next chunk, as the relay does; what the filter writes is checked to fit and then
 * dropped. Streams bind real UDP ports on 127.0.0.1 from a small range. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "loop.h"
#include "mapping.h"
#include "relay.h"
#include "rtsp_proxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct loop *loop;
static struct relay_ctx ctx;
static struct mapping *map;

static void setup(void)
{
    log_set_level(LOG_LVL_ERROR);
    loop = loop_new();
    relay_ctx_init(&ctx, loop, 0);
    struct config *c = config_new();
    config_add_spec(c, "rtsp:127.0.0.1:554=127.0.0.1:8554,rtp-ports=31000-31019,max-sessions=3", 1);
    map = mapping_new(&c->maps[0], NULL, 1);
    config_free(c);
    if (map == NULL) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (loop == NULL) {
        setup();
    }
    struct tcp_filter_conn fc = {.ctx = &ctx, .map = map};
    addr_parse_ip("198.51.100.2", &fc.client);
    addr_set_port(&fc.client, 40000);
    addr_parse_ip("127.0.0.1", &fc.client_local);
    addr_set_port(&fc.client_local, 554);
    addr_parse_ip("127.0.0.1", &fc.target);
    addr_set_port(&fc.target, 8554);
    addr_parse_ip("127.0.0.1", &fc.target_local);
    const struct tcp_filter *f = &rtsp_proxy_filter;
    void *st = f->open(&fc);
    if (st == NULL) {
        return 0;
    }
    static char in[2][1 << 16];
    static char out[RELAY_BUF_SIZE];
    size_t have[2] = {0, 0};
    size_t i = 0;
    while (i + 2 <= size) {
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
        for (int round = 0; round < 4; round++) {
            for (int dir = 0; dir < 2; dir++) {
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
                        abort(); /* a refusal always says why */
                    }
                    goto done;
                }
                if ((size_t)used > have[dir] || produced > sizeof(out)) {
                    abort();
                }
                memmove(in[dir], in[dir] + used, have[dir] - (size_t)used);
                have[dir] -= (size_t)used;
            }
        }
    }
done:
    f->close(st);
    return 0;
}
