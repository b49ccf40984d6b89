/* libFuzzer target: the Cookie and Authorization headers of admin requests. What they return
 * must fit the buffer, be NUL-terminated where they say, and hold only allowed characters. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/authhdr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (s == NULL) {
        return 0;
    }
    memcpy(s, data, size);
    s[size] = '\0';
    char out[48];
    int n = authhdr_cookie(s, "portgate_session", out, sizeof(out));
    if (n >= 0 && ((size_t)n >= sizeof(out) || strlen(out) != (size_t)n ||
                   strpbrk(out, " \t\";,\\") != NULL)) {
        abort();
    }
    n = authhdr_bearer(s, out, sizeof(out));
    if (n >= 0 && ((size_t)n >= sizeof(out) || strlen(out) != (size_t)n || n == 0 ||
                   strpbrk(out, " \t\"") != NULL)) {
        abort();
    }
    free(s);
    return 0;
}
