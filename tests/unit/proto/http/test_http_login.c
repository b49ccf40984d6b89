/* proto/http/http_login: the login form's fields (what is decoded, what is refused), where a
 * login may send the browser back to (only this host's paths), and the answers' heads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "proto/http/http_login.h"

static int get(const char *body, const char *key, char *out, size_t len)
{
    return http_form_get(body, strlen(body), key, out, len);
}

static void test_form(void **state)
{
    (void)state;
    char v[64];
    const char *b = "next=%2Fecho%3Fx%3D1&user=al+ice&password=p%40ss%26w%3Dord&user=second";
    assert_int_equal(get(b, "user", v, sizeof(v)), 6);
    assert_string_equal(v, "al ice");
    assert_int_equal(get(b, "password", v, sizeof(v)), 10);
    assert_string_equal(v, "p@ss&w=ord");
    assert_int_equal(get(b, "next", v, sizeof(v)), 9);
    assert_string_equal(v, "/echo?x=1");
    assert_int_equal(get(b, "pass", v, sizeof(v)), -1); /* a prefix is no name */
    assert_int_equal(get("user", "user", v, sizeof(v)), 0);
    assert_int_equal(get("user=", "user", v, sizeof(v)), 0);
    /* Malformed: a bad or cut %, a NUL, a control character; too long. */
    const char *bad[] = {"user=%zz", "user=%4", "user=%", "user=a%00b", "user=a%0Ab", "user=%7F"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(get(bad[i], "user", v, sizeof(v)), -1);
    }
    assert_int_equal(get("user=abcdef", "user", v, 6), -1);
    assert_int_equal(get("user=abcde", "user", v, 6), 5);
    /* Bounded by n, not by a NUL. */
    assert_int_equal(http_form_get("user=abc&x", 7, "user", v, sizeof(v)), 2);
}

static void test_next(void **state)
{
    (void)state;
    char out[HTTP_LOGIN_NEXT_MAX + 1];
    const char *good[] = {"/", "/echo?x=1", "/a/b#c", "/%2F"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        http_login_next(good[i], strlen(good[i]), out);
        assert_string_equal(out, good[i]);
    }
    /* Another host (//, /\), a scheme, a relative path, spaces, quotes, control characters:
     * back to "/". */
    const char *bad[] = {"//evil.example/",
                         "/\\evil.example",
                         "https://evil.example/",
                         "x",
                         "",
                         "/a b",
                         "/a\"b",
                         "/a<b",
                         "/a\rb"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        http_login_next(bad[i], strlen(bad[i]), out);
        assert_string_equal(out, "/");
    }
    char longp[HTTP_LOGIN_NEXT_MAX + 2];
    memset(longp, 'a', sizeof(longp));
    longp[0] = '/';
    http_login_next(longp, sizeof(longp), out);
    assert_string_equal(out, "/");
    http_login_query_next("/.portgate/login?next=%2F%2Fevil", 32, out);
    assert_string_equal(out, "/");
    http_login_query_next("/.portgate/login?a=1&next=%2Fcam", 32, out);
    assert_string_equal(out, "/cam");
}

static void test_answers(void **state)
{
    (void)state;
    char out[HTTP_LOGIN_ANSWER_MAX];
    size_t n =
        http_login_page(out, sizeof(out), 200, "cam<1>", "/a\"b", "Wrong \"x\" <y>", false, false);
    out[n] = '\0';
    assert_non_null(strstr(out, "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(out, "Log in to cam&lt;1&gt;"));
    assert_non_null(strstr(out, "value=\"/a&quot;b\""));
    assert_non_null(strstr(out, "Wrong &quot;x&quot; &lt;y&gt;"));
    assert_null(strstr(out, "Connection: close"));
    /* Content-Length is the body's. */
    const char *cl = strstr(out, "Content-Length: ");
    const char *body = strstr(out, "\r\n\r\n") + 4;
    assert_int_equal(strtoul(cl + 16, NULL, 10), strlen(body));
    n = http_login_needed(out, sizeof(out), true, false, "/echo?x=1&y", 11, true);
    out[n] = '\0';
    assert_non_null(strstr(out, "HTTP/1.1 303 See Other\r\n"));
    assert_non_null(strstr(out, "Location: /.portgate/login?next=/echo%3Fx%3D1%26y\r\n"));
    assert_non_null(strstr(out, "Connection: close\r\n"));
    n = http_login_needed(out, sizeof(out), false, false, "/x", 2, false);
    out[n] = '\0';
    assert_non_null(strstr(out, "HTTP/1.1 401 Unauthorized\r\n"));
    n = http_login_done(out, sizeof(out), "cam", "IDIDID", "/cam", true, false);
    out[n] = '\0';
    assert_non_null(strstr(out, "Set-Cookie: portgate_login_cam=IDIDID; Path=/; HttpOnly; "
                                "SameSite=Lax; Max-Age=43200; Secure\r\n"));
    assert_non_null(strstr(out, "Location: /cam\r\n"));
    n = http_logout_page(out, sizeof(out), "cam", true, "", false, false, false);
    out[n] = '\0';
    assert_non_null(strstr(out, "Set-Cookie: portgate_login_cam=; Path=/; HttpOnly; SameSite=Lax; "
                                "Max-Age=0\r\n"));
    /* HEAD: the head only, its Content-Length the GET's. */
    n = http_login_page(out, sizeof(out), 200, "cam", "/", NULL, true, false);
    out[n] = '\0';
    assert_true(strstr(out, "\r\n\r\n")[4] == '\0');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_form),
        cmocka_unit_test(test_next),
        cmocka_unit_test(test_answers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
