/* libFuzzer target: the config file parser (inih plus every key's value parser) and the checks
 * across mappings. Name resolution is off: the fuzzer must not send DNS queries. */
#include <stddef.h>
#include <stdint.h>

#include "gateway/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct config *c = config_new();
    if (c == NULL) {
        return 0;
    }
    config_load_buffer(c, "fuzz.conf", (const char *)data, size);
    config_finish(c, false);
    if (c->nerrors == 0) {
        FILE *devnull = fopen("/dev/null", "w");
        if (devnull != NULL) {
            config_print(c, devnull);
            fclose(devnull);
        }
    }
    config_free(c);
    return 0;
}
