/* libFuzzer target: a login form's body, its fields decoded as the filter reads them, and the
 * page to go back to made of what the client gave: a field must fit and have no control
 * character, the page must be one of this host's paths, and the pages written of them must be
 * whole HTTP answers whose length says their body's. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/http/http_login.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_field(const char *v, int n, size_t len)
{
    if (n < 0) {
        return;
    }
    if ((size_t)n >= len || strlen(v) != (size_t)n) {
        abort();
    }
    for (int i = 0; i < n; i++) {
        if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f) {
            abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *body = (const char *)data;
    char user[64], password[1025], next[HTTP_LOGIN_NEXT_MAX + 1], safe[HTTP_LOGIN_NEXT_MAX + 1];
    check_field(user, http_form_get(body, size, "user", user, sizeof(user)), sizeof(user));
    check_field(password, http_form_get(body, size, "password", password, sizeof(password)),
                sizeof(password));
    int n = http_form_get(body, size, "next", next, sizeof(next));
    check_field(next, n, sizeof(next));
    http_login_next(next, n > 0 ? (size_t)n : 0, safe);
    if (safe[0] != '/' || safe[1] == '/' || safe[1] == '\\' || strchr(safe, '"') ||
        strchr(safe, '<')) {
        abort();
    }
    http_login_query_next(body, size, safe);
    if (safe[0] != '/' || safe[1] == '/' || safe[1] == '\\') {
        abort();
    }
    static char out[HTTP_LOGIN_ANSWER_MAX];
    size_t len =
        http_login_page(out, sizeof(out), 200, "cam", safe, n > 0 ? next : NULL, false, false);
    out[len < sizeof(out) ? len : sizeof(out) - 1] = '\0';
    const char *cl = strstr(out, "Content-Length: "), *end = strstr(out, "\r\n\r\n");
    if (cl == NULL || end == NULL || strtoul(cl + 16, NULL, 10) != strlen(end + 4)) {
        abort();
    }
    return 0;
}
