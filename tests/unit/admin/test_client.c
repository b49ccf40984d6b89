/* admin/client: URLs and HTTP answers as the portgate commands read them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/client.h"
#include "guard.h"

static void test_url(void **state)
{
    (void)state;
    struct client_target t;
    char err[256];
    assert_int_equal(client_parse_url("http://127.0.0.1:8088", &t, err, sizeof(err)), 0);
    assert_string_equal(t.host, "127.0.0.1");
    assert_string_equal(t.port, "8088");
    assert_int_equal(client_parse_url("http://[::1]:9000/", &t, err, sizeof(err)), 0);
    assert_string_equal(t.host, "::1");
    assert_string_equal(t.port, "9000");
    assert_int_equal(client_parse_url("http://localhost", &t, err, sizeof(err)), 0);
    assert_string_equal(t.port, "80");
    static const char *const bad[] = {"https://127.0.0.1:8088", "127.0.0.1:8088", "http://",
                                      "http://[::1:80",         "http://h:x",     "http://h:80/api",
                                      "http://h:1234567"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (client_parse_url(bad[i], &t, err, sizeof(err)) != -1) {
            fail_msg("%s accepted", bad[i]);
        }
    }
}

static int parse(const char *text, struct client_response *r)
{
    struct guarded g = guard_bytes(text, strlen(text));
    int rc = client_parse_response(g.p, strlen(text), r);
    guard_free(g);
    return rc;
}

static void test_response(void **state)
{
    (void)state;
    struct client_response r;
    assert_int_equal(
        parse("HTTP/1.1 201 Created\r\nETag: \"7\"\r\nContent-Length: 2\r\n\r\n{}", &r), 0);
    assert_int_equal(r.status, 201);
    assert_string_equal(r.etag, "\"7\"");
    assert_string_equal(r.body, "{}");
    free(r.body);
    /* no length: the body runs to the end (the connection closed) */
    assert_int_equal(parse("HTTP/1.1 200 OK\r\n\r\nabc", &r), 0);
    assert_string_equal(r.body, "abc");
    free(r.body);
    assert_int_equal(parse("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", &r), 0);
    assert_int_equal(r.len, 0);
    free(r.body);
    static const char *const bad[] = {"",
                                      "HTTP/1.1 200 OK\r\n",
                                      "HTTP/1.1 2x0 OK\r\n\r\n",
                                      "SIP/2.0 200 OK\r\n\r\n",
                                      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc",
                                      "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (parse(bad[i], &r) != -1) {
            fail_msg("accepted: %s", bad[i]);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url),
        cmocka_unit_test(test_response),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
