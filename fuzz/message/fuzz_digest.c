/* libFuzzer target: a device's WWW-Authenticate value read as a challenge, and when it parses,
 * the Authorization written for it, which must fit and be NUL-terminated at its length; and the
 * same bytes read as a player's Authorization (the gateway as the server), checked when they
 * parse. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "message/digest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct digest_answer a;
    const char *awhy = NULL;
    if (digest_answer_parse((const char *)data, size, &a, &awhy) == 0) {
        if (strlen(a.user) >= sizeof(a.user) || a.user[0] == '\0' ||
            (a.scheme == DIGEST_BASIC) == (a.response[0] != '\0')) {
            abort();
        }
        if (a.scheme != DIGEST_BASIC) {
            (void)digest_answer_ok(&a, "0123", "PLAY", 4); /* reads only within its fields */
        }
    } else if (awhy == NULL) {
        abort();
    }
    struct digest_challenge c;
    const char *why = NULL;
    if (digest_parse((const char *)data, size, &c, &why) != 0) {
        if (why == NULL) {
            abort();
        }
        return 0;
    }
    if (c.scheme == DIGEST_NONE || strlen(c.realm) >= DIGEST_FIELD_MAX) {
        abort();
    }
    char out[DIGEST_CRED_MAX];
    size_t n = digest_credentials_cnonce(&c, "user\"x", "pass", "GET", 3, "/a\"b", 4, 7, "cn", out,
                                         sizeof(out));
    if (n > 0 && (n >= sizeof(out) || strlen(out) != n)) {
        abort();
    }
    return 0;
}
