/* libFuzzer target: the RTSP parser and rewriter over a stream of messages and interleaved
 * frames, as the relay will feed them. A message that parses must rewrite (given room) into a
 * message that parses again with a Content-Length that matches its body. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/rtsp/rtsp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct rtsp_rewrite rws[2] = {
    {{"192.0.2.10", 8554}, {"2001:db8::1", 554}, "", NULL},
    {{"2001:db8::1", 554}, {"192.0.2.10", 8554}, "", NULL},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A copy of exactly size bytes, so that ASan sees any read past the end. */
    char *buf = malloc(size ? size : 1);
    if (buf == NULL) {
        return 0;
    }
    memcpy(buf, data, size);
    static char out[1 << 17];
    size_t off = 0;
    while (off < size) {
        const char *p = buf + off;
        size_t len = size - off;
        if (p[0] == '$') {
            ssize_t n = rtsp_frame_len(p, len);
            if (n < 0 || (size_t)n > len) {
                break;
            }
            off += (size_t)n;
            continue;
        }
        struct msg m;
        const char *why;
        ssize_t head = rtsp_parse(p, len, &m, &why);
        if (head < 0 || (size_t)head + m.length > len) {
            break;
        }
        const struct msg_str *tr = msg_header(&m, "Transport");
        if (tr != NULL) {
            size_t pos = 0;
            struct rtsp_transport t;
            while (rtsp_transport_next(*tr, &pos, &t, &why) == 1) {
            }
        }
        for (int i = 0; i < 2; i++) {
            ssize_t n =
                rtsp_rewrite(p, &m, &rws[i], i ? "RTP/AVP;unicast;client_port=40000-40001" : NULL,
                             out, sizeof(out), &why);
            if (n < 0) {
                continue; /* too large for out */
            }
            struct msg m2;
            ssize_t h2 = rtsp_parse(out, (size_t)n, &m2, &why);
            if (h2 < 0 || (size_t)h2 + m2.length != (size_t)n) {
                abort(); /* the rewrite produced something the parser rejects */
            }
        }
        off += (size_t)head + m.length;
    }
    free(buf);
    return 0;
}
