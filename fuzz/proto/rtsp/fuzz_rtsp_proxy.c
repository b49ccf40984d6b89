/* libFuzzer target: the rtsp proxy filter (the conversation state: pending requests, local
 * answers, sessions, streams and their RTP ports, device-auth's challenges, requests kept and
 * sent again) driven by both sides of two control connections of one client at once, so that
 * sessions held by both are exercised too, on each of three mappings: one plain, one with
 * device-auth, one with auth = login (the players' login: its 401s, the Authorization parsed,
 * the nonce checked; the login service is not started, so a login ends busy, 503). The input is
 * a series of chunks: a byte whose bit 0 is the direction (0: client -> device, 1: device ->
 * client) and bits 1-3 the connection (modulo 6: connection c % 2 of mapping c / 2), a length
 * byte, then that many bytes. Each side's unconsumed bytes are kept and offered again with
 * the next chunk, as the relay does; what the filter writes is checked to fit and then dropped.
 * A connection the filter ends is closed and its chunks are skipped. Streams bind real UDP ports
 * on 127.0.0.1 from a small range. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/loop.h"
#include "forward/mapping.h"
#include "forward/relay.h"
#include "gateway/config.h"
#include "proto/rtsp/rtsp_proto.h"
#include "proto/rtsp/rtsp_proxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct loop *loop;
static struct relay_ctx ctx;
static struct rtsp_proxy_worker *sessions;
static struct mapping *maps[3]; /* plain, with device-auth, with auth = login */

static void setup(void)
{
    log_set_level(LOG_LVL_ERROR);
    loop = loop_new();
    if (relay_ctx_init(&ctx, loop, 0) != 0) {
        abort();
    }
    sessions = rtsp_proxy_worker_new();
    struct config *c = config_new();
    config_add_spec(c, "rtsp:127.0.0.1:554=127.0.0.1:8554,rtp-ports=31000-31019,max-sessions=3", 1);
    config_add_spec(c,
                    "rtsp:127.0.0.1:1554=127.0.0.1:8554,rtp-ports=31020-31039,max-sessions=3,"
                    "device-auth=admin:s3cret",
                    2);
    config_add_spec(c, "rtsp:127.0.0.1:2554=127.0.0.1:8554,rtp-ports=31040-31059,max-sessions=3",
                    3);
    if (c->nmaps != 3 || c->nerrors != 0) {
        abort();
    }
    /* auth = login is an rtsps key (TLS, which the filter does not see): set on the filter's
     * settings directly. */
    ((struct rtsp_proto_conf *)c->maps[2].pconf)->login = true;
    for (int m = 0; m < 3; m++) {
        if ((maps[m] = mapping_new(&c->maps[m], NULL, 1)) == NULL) {
            abort();
        }
    }
    config_free(c);
    if (sessions == NULL) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (loop == NULL) {
        setup();
    }
    const struct tcp_filter *f = &rtsp_proxy_filter;
    void *st[6]; /* connection c of mapping m: st[m * 2 + c] */
    static char in[6][2][1 << 16];
    static char out[RELAY_BUF_SIZE];
    size_t have[6][2] = {{0, 0}, {0, 0}, {0, 0}, {0, 0}, {0, 0}, {0, 0}};
    static const uint16_t listen[3] = {554, 1554, 2554};
    for (int c = 0; c < 6; c++) {
        struct tcp_filter_conn fc = {.ctx = &ctx, .state = sessions, .map = maps[c / 2]};
        addr_parse_ip("198.51.100.2", &fc.client);
        addr_set_port(&fc.client, (uint16_t)(40000 + c));
        addr_parse_ip("127.0.0.1", &fc.client_local);
        addr_set_port(&fc.client_local, listen[c / 2]);
        addr_parse_ip("127.0.0.1", &fc.target);
        addr_set_port(&fc.target, 8554);
        addr_parse_ip("127.0.0.1", &fc.target_local);
        st[c] = f->open(&fc);
    }
    size_t i = 0;
    while (i + 2 <= size) {
        int c = ((data[i] >> 1) & 7) % 6;
        enum tcp_dir d = (data[i] & 1) ? TCP_DOWN : TCP_UP;
        size_t n = data[i + 1];
        i += 2;
        if (n > size - i) {
            n = size - i;
        }
        if (st[c] == NULL || n > sizeof(in[c][d]) - have[c][d]) {
            i += n;
            continue;
        }
        memcpy(in[c][d] + have[c][d], data + i, n);
        have[c][d] += n;
        i += n;
        for (int round = 0; round < 4 && st[c] != NULL; round++) {
            for (int dir = 0; dir < 2; dir++) {
                bool pend = f->pending(st[c], (enum tcp_dir)dir);
                if (have[c][dir] == 0 && !pend) {
                    continue;
                }
                size_t produced = 0;
                const char *reason = NULL;
                ssize_t used = f->data(st[c], (enum tcp_dir)dir, have[c][dir] ? in[c][dir] : NULL,
                                       have[c][dir], false, out, sizeof(out), &produced, &reason);
                if (used < 0) {
                    if (reason == NULL) {
                        abort(); /* a refusal always says why */
                    }
                    f->close(st[c]);
                    st[c] = NULL;
                    break;
                }
                if ((size_t)used > have[c][dir] || produced > sizeof(out)) {
                    abort();
                }
                memmove(in[c][dir], in[c][dir] + used, have[c][dir] - (size_t)used);
                have[c][dir] -= (size_t)used;
            }
        }
    }
    for (int c = 0; c < 6; c++) {
        if (st[c] != NULL) {
            f->close(st[c]);
        }
    }
    if (!rtsp_proxy_worker_idle(sessions)) {
        abort(); /* a session outlived every connection that held it */
    }
    return 0;
}
