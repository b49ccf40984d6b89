/* core/names: lists of names read (blanks dropped, each name checked, out untouched on an
 * error) and looked up exactly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <string.h>

#include "core/names.h"

static void test_parse(void **state)
{
    (void)state;
    char out[64] = "kept", why[160];
    assert_int_equal(
        names_parse(" alice , bob,x@y.z ", "a name", 16, out, sizeof(out), why, sizeof(why)), 0);
    assert_string_equal(out, "alice,bob,x@y.z");
    assert_int_equal(names_parse("", "a name", 16, out, sizeof(out), why, sizeof(why)), 0);
    assert_string_equal(out, "");
    strcpy(out, "kept");
    const char *bad[][2] = {{"Alice Smith", "a common name with a space"},
                            {"a,,b", "an empty name"},
                            {"a\tb", "a common name with a space"},
                            {"\x7f", "a common name with a space"},
                            {"0123456789abcdefg", "a common name too long"}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(
            names_parse(bad[i][0], "a common name", 16, out, sizeof(out), why, sizeof(why)), -1);
        assert_non_null(strstr(why, bad[i][1]));
        assert_string_equal(out, "kept");
    }
    assert_int_equal(names_parse("aaaaaaaa,bbbbbbbb", "a name", 16, out, 12, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "too many in all"));
}

static void test_has(void **state)
{
    (void)state;
    assert_true(names_has("alice,bob", "bob"));
    assert_true(names_has("alice,bob", "alice"));
    assert_false(names_has("alice,bob", "ali"));
    assert_false(names_has("alice,bob", "Bob"));
    assert_false(names_has("alice,bob", ""));
    assert_false(names_has("", "alice"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_has),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
