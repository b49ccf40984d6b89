/* libFuzzer target: --map SPEC parsing (endpoints, ranges, CIDR lists, durations). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (s == NULL) {
        return 0;
    }
    memcpy(s, data, size);
    s[size] = '\0';
    struct config *c = config_new();
    if (c != NULL) {
        config_add_spec(c, s, 1);
        config_add_spec(c, s, 2); /* the same twice: name and overlap checks */
        config_finish(c, false);
        config_free(c);
    }
    free(s);
    return 0;
}
