/* libFuzzer target: the API's mapping object (JSON -> a checked mapping). What it accepts must
 * come back the same through mapjson_from_conf(): the API's reads can be written back. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "admin/mapjson.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *j = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    if (j == NULL) {
        return 0;
    }
    struct config *c = config_new();
    if (c != NULL && mapjson_add(c, "/s.json", j, MAPJSON_API, 1000) == 0 &&
        config_finish(c, false) == 0) {
        json_t *back = mapjson_from_conf(&c->maps[0], 1000);
        struct config *d = config_new();
        if (back == NULL || d == NULL || mapjson_add(d, "/s.json", back, MAPJSON_API, 1000) != 0 ||
            !map_conf_equal(&c->maps[0], &d->maps[0])) {
            abort(); /* a mapping the API shows could not be written back */
        }
        config_free(d);
        json_decref(back);
    }
    config_free(c);
    json_decref(j);
    return 0;
}
