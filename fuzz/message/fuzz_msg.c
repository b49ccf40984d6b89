/* libFuzzer target: the HTTP/RTSP message parser (message/msg.h) as each kind of sender, then
 * the chunked-body scanner on what follows a head, fed in pieces whose sizes the input chooses.
 * Invariants: a head that parses lies within the input, its slices too, and parsing it again
 * gives the same length; a chunked body takes the same bytes however it is cut. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "message/msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void within(const char *buf, size_t len, struct msg_str s)
{
    if (s.p != NULL && (s.p < buf || s.p + s.n > buf + len)) {
        abort();
    }
}

/* Scans body in pieces of step bytes (at least 1); returns what it took, or -1. */
static ssize_t scan(const char *body, size_t len, size_t step, bool *done)
{
    struct msg_chunked c;
    msg_chunked_init(&c);
    size_t off = 0;
    *done = false;
    while (off < len && !*done) {
        size_t n = len - off < step ? len - off : step;
        const char *why;
        ssize_t r = msg_chunked_scan(&c, body + off, n, done, &why);
        if (r < 0) {
            return -1;
        }
        if ((size_t)r > n || ((size_t)r < n && !*done)) {
            abort();
        }
        off += (size_t)r;
    }
    return (ssize_t)off;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) {
        return 0;
    }
    enum msg_kind kind = (enum msg_kind)(data[0] % 3);
    size_t step = (size_t)data[1] % 17 + 1;
    size -= 2;
    /* A copy of exactly size bytes, so that ASan sees any read past the end. */
    char *buf = malloc(size ? size : 1);
    if (buf == NULL) {
        return 0;
    }
    memcpy(buf, data + 2, size);
    struct msg m;
    const char *why;
    int status;
    ssize_t head = msg_parse(buf, size, kind, &m, &why, &status);
    if (head == MSG_ERROR && (status < 400 || status > 505 || why == NULL)) {
        abort();
    }
    if (head > 0) {
        if ((size_t)head > size || (size_t)head != m.head_len || m.nhdr > MSG_MAX_HEADERS) {
            abort();
        }
        within(buf, size, m.method);
        within(buf, size, m.target);
        within(buf, size, m.reason);
        within(buf, size, m.host);
        for (size_t i = 0; i < m.nhdr; i++) {
            within(buf, size, m.hdr[i].name);
            within(buf, size, m.hdr[i].value);
        }
        struct msg again;
        if (msg_parse(buf, (size_t)head, kind, &again, &why, &status) != head) {
            abort();
        }
        if (m.chunked) {
            bool d1, d2;
            ssize_t a = scan(buf + head, size - (size_t)head, step, &d1);
            ssize_t b = scan(buf + head, size - (size_t)head, size, &d2);
            if (a != b || (a >= 0 && d1 != d2)) {
                abort();
            }
        }
    }
    free(buf);
    return 0;
}
