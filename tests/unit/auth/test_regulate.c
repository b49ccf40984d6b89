/* auth/regulate: failures per key, bans, their end, and a full table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>

#include "auth/regulate.h"

static void test_ban_and_expiry(void **state)
{
    (void)state;
    struct regulate *r = regulate_new();
    uint64_t left;
    for (int i = 1; i < REGULATE_MAX_FAILURES; i++) {
        assert_false(regulate_fail(r, "addr 1", 100 + i));
        assert_false(regulate_banned(r, "addr 1", 100 + i, &left));
    }
    assert_true(regulate_fail(r, "addr 1", 110)); /* the fifth: a ban, reported once */
    assert_true(regulate_banned(r, "addr 1", 110, &left));
    assert_int_equal(left, REGULATE_BAN_S);
    assert_false(regulate_fail(r, "addr 1", 111)); /* counted in the ban, not reported again */
    assert_false(regulate_banned(r, "addr 2", 111, &left));
    assert_true(regulate_banned(r, "addr 1", 110 + REGULATE_BAN_S - 1, &left));
    assert_int_equal(left, 1);
    assert_false(regulate_banned(r, "addr 1", 110 + REGULATE_BAN_S, &left));
    regulate_free(r);
}

static void test_window(void **state)
{
    (void)state;
    struct regulate *r = regulate_new();
    uint64_t left, t = 1000;
    /* Failures spread wider than the window never add up to a ban. */
    for (int i = 0; i < 20; i++) {
        assert_false(regulate_fail(r, "user a", t));
        t += REGULATE_WINDOW_S / (REGULATE_MAX_FAILURES - 1) + 1;
    }
    assert_false(regulate_banned(r, "user a", t, &left));
    /* A success forgets them. */
    for (int i = 1; i < REGULATE_MAX_FAILURES; i++) {
        regulate_fail(r, "user b", t);
    }
    regulate_success(r, "user b");
    assert_false(regulate_fail(r, "user b", t));
    regulate_free(r);
}

static void test_full_table(void **state)
{
    (void)state;
    struct regulate *r = regulate_new();
    uint64_t left;
    for (int i = 0; i < REGULATE_MAX_FAILURES; i++) {
        regulate_fail(r, "addr banned", 10);
    }
    char key[32];
    for (int i = 0; i < 2 * REGULATE_MAX_KEYS; i++) {
        snprintf(key, sizeof(key), "user %d", i);
        regulate_fail(r, key, 20 + (uint64_t)i / 1000);
    }
    /* A banned key is the last to make room: flooding the table does not lift a ban. */
    assert_true(regulate_banned(r, "addr banned", 30, &left));
    regulate_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ban_and_expiry),
        cmocka_unit_test(test_window),
        cmocka_unit_test(test_full_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
