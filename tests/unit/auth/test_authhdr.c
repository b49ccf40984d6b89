/* auth/authhdr: Cookie and Authorization headers, inputs against a guard page. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "auth/authhdr.h"
#include "guard.h"

static int cookie(const char *header, char *out, size_t len)
{
    struct guarded g = guard_str(header);
    int n = authhdr_cookie(g.p, "sid", out, len);
    guard_free(g);
    return n;
}

static void test_cookie(void **state)
{
    (void)state;
    static const struct {
        const char *header, *want;
    } cases[] = {
        {"sid=abc", "abc"},
        {"a=1; sid=abc", "abc"},
        {"a=1;sid=abc;b=2", "abc"},
        {"sid=\"abc\"", "abc"},
        {"xsid=1; sid=abc", "abc"},
        {"sid=abc; sid=def", "abc"},
        {"  sid=abc  ", "abc"},
        {"a=1", NULL},
        {"sid=", NULL},
        {"sid=\"\"", NULL},
        {"sid=a b", NULL},
        {"sid=a\\b", NULL},
        {"sid=\"abc", NULL},
        {"sid", NULL},
        {"", NULL},
        {"SID=abc", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[16] = "";
        int n = cookie(cases[i].header, out, sizeof(out));
        if (cases[i].want == NULL) {
            if (n != -1) {
                fail_msg("%s: got \"%s\"", cases[i].header, out);
            }
        } else {
            assert_int_equal(n, (int)strlen(cases[i].want));
            assert_string_equal(out, cases[i].want);
        }
    }
    char small[4];
    assert_int_equal(cookie("sid=abcd", small, sizeof(small)), -1); /* never cut */
    assert_int_equal(cookie("sid=abc", small, sizeof(small)), 3);
}

static void test_bearer(void **state)
{
    (void)state;
    static const struct {
        const char *header, *want;
    } cases[] = {
        {"Bearer pgt_abc", "pgt_abc"},
        {"bearer pgt_abc", "pgt_abc"},
        {"Bearer   pgt_a-b.c~d+e/f==", "pgt_a-b.c~d+e/f=="},
        {"Bearer pgt_abc ", "pgt_abc"},
        {"Bearer", NULL},
        {"Bearer ", NULL},
        {"Basic YWxhZGRpbjpvcGVuc2VzYW1l", NULL},
        {"Bearerpgt_abc", NULL},
        {"Bearer pgt abc", NULL},
        {"Bearer =abc", NULL},
        {"Bearer a=b", NULL},
        {"Bearer pgt_\x01", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[64] = "";
        struct guarded g = guard_str(cases[i].header);
        int n = authhdr_bearer(g.p, out, sizeof(out));
        guard_free(g);
        if (cases[i].want == NULL) {
            if (n != -1) {
                fail_msg("%s: got \"%s\"", cases[i].header, out);
            }
        } else {
            assert_int_equal(n, (int)strlen(cases[i].want));
            assert_string_equal(out, cases[i].want);
        }
    }
    char small[4];
    struct guarded g = guard_str("Bearer abcd");
    assert_int_equal(authhdr_bearer(g.p, small, sizeof(small)), -1);
    guard_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cookie),
        cmocka_unit_test(test_bearer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
