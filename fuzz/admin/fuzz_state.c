/* libFuzzer target: the state file loader, then the checks across its mappings. */
#include <stddef.h>
#include <stdint.h>

#include "admin/state.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct config *c = config_new();
    if (c == NULL) {
        return 0;
    }
    state_load_buffer(c, "/s.json", (const char *)data, size, 1000);
    config_finish(c, false);
    config_free(c);
    return 0;
}
