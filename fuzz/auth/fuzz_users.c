/* libFuzzer target: the users file parser, and a token and password check on what it read. */
#include <stddef.h>
#include <stdint.h>

#include "auth/users.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct users *u = users_parse("users", (const char *)data, size);
    if (u != NULL) {
        users_check_token(u, "pgt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
        users_any(u);
    }
    users_free(u);
    return 0;
}
