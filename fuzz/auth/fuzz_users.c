/* libFuzzer target: the users file parser, and a token, password and second-factor check on what
 * it read. */
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
        users_totp_enabled(u, "alice");
        users_recovery_left(u, "alice");
        /* A code that matched would be used up in the file at this path: a directory that
         * cannot exist (nor be made), so that nothing is ever written. */
        char err[256];
        users_second_factor("/proc/portgate-fuzz/users", u, "alice", "287082", 59, err,
                            sizeof(err));
        users_second_factor("/proc/portgate-fuzz/users", u, "alice", "ABCDE-FGHIJ", 59, err,
                            sizeof(err));
    }
    users_free(u);
    return 0;
}
