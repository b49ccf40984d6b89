/* libFuzzer target: the PROXY protocol header parser (v1 and v2), on what a proxy sends first.
 * The first byte chooses the versions accepted; the rest is the connection's first bytes, in a
 * buffer of their exact size (ASan finds any read past it). A header found must be no longer
 * than the input and PROXYHDR_MAX, be found again in exactly its own bytes (it never depends on
 * what follows it), and, with addresses, be built again and parsed back to the same ones. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/addr.h"
#include "forward/proxyhdr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) {
        return 0;
    }
    enum proxyhdr_version accept = (enum proxyhdr_version)(1 + data[0] % 3);
    size_t len = size - 1;
    char *buf = malloc(len > 0 ? len : 1);
    if (buf == NULL) {
        return 0;
    }
    memcpy(buf, data + 1, len);
    struct proxyhdr h;
    const char *why = NULL;
    int n = proxyhdr_parse(buf, len, accept, &h, &why);
    if (n < -1 || (size_t)(n < 0 ? 0 : n) > len || n > PROXYHDR_MAX || (n == -1 && why == NULL) ||
        (n == 0 && len >= PROXYHDR_MAX)) {
        abort();
    }
    if (n > 0) {
        if (!(h.version & accept)) {
            abort();
        }
        struct proxyhdr again;
        if (proxyhdr_parse(buf, (size_t)n, accept, &again, &why) != n ||
            again.has_addrs != h.has_addrs) {
            abort();
        }
        if (h.has_addrs) {
            char out[PROXYHDR_BUILD_MAX];
            int m = proxyhdr_build(h.version, &h.src, &h.dst, out, sizeof(out));
            if (m <= 0 || proxyhdr_parse(out, (size_t)m, h.version, &again, &why) != m ||
                !again.has_addrs || !addr_equal(&again.src, &h.src) ||
                !addr_equal(&again.dst, &h.dst)) {
                abort();
            }
        }
    }
    free(buf);
    return 0;
}
