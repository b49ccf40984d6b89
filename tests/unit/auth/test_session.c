/* auth/session: sessions made, found, expired, ended, and the CSRF check. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "auth/session.h"

static const unsigned char stamp0[USERS_STAMP_LEN];

static void test_life(void **state)
{
    (void)state;
    struct sessions *s = sessions_new();
    const struct session *se = sessions_create(s, "alice", stamp0, 100);
    char id[SESSION_IDLEN + 1], csrf[SESSION_IDLEN + 1];
    snprintf(id, sizeof(id), "%s", se->id);
    snprintf(csrf, sizeof(csrf), "%s", se->csrf);
    assert_int_equal(strlen(id), SESSION_IDLEN);
    assert_string_not_equal(id, csrf);
    assert_non_null(sessions_find(s, id, 100 + SESSION_IDLE_S - 1));
    /* Idle too long: gone (the find above used it at 100 + IDLE - 1). */
    assert_null(sessions_find(s, id, 100 + 2 * SESSION_IDLE_S));
    se = sessions_create(s, "alice", stamp0, 1000);
    snprintf(id, sizeof(id), "%s", se->id);
    /* Used all the time, it still ends SESSION_MAX_AGE_S after the login. */
    uint64_t t = 1000;
    while (t < 1000 + SESSION_MAX_AGE_S - 60) {
        t += 60;
        assert_non_null(sessions_find(s, id, t));
    }
    assert_null(sessions_find(s, id, 1000 + SESSION_MAX_AGE_S));
    /* A wrong id, a cut one, an empty one. */
    se = sessions_create(s, "bob", stamp0, 5000);
    snprintf(id, sizeof(id), "%s", se->id);
    char wrong[SESSION_IDLEN + 1];
    snprintf(wrong, sizeof(wrong), "%s", id);
    wrong[0] = wrong[0] == 'A' ? 'B' : 'A';
    assert_null(sessions_find(s, wrong, 5000));
    assert_null(sessions_find(s, "", 5000));
    wrong[10] = '\0';
    assert_null(sessions_find(s, wrong, 5000));
    se = sessions_find(s, id, 5000);
    assert_true(session_csrf_ok(se, se->csrf));
    assert_false(session_csrf_ok(se, NULL));
    assert_false(session_csrf_ok(se, ""));
    assert_false(session_csrf_ok(se, se->id));
    sessions_end(s, id);
    assert_null(sessions_find(s, id, 5000));
    sessions_free(s);
}

static void test_end_user_and_full(void **state)
{
    (void)state;
    struct sessions *s = sessions_new();
    char keep[SESSION_IDLEN + 1], other[SESSION_IDLEN + 1], bob[SESSION_IDLEN + 1];
    snprintf(keep, sizeof(keep), "%s", sessions_create(s, "alice", stamp0, 10)->id);
    snprintf(other, sizeof(other), "%s", sessions_create(s, "alice", stamp0, 10)->id);
    snprintf(bob, sizeof(bob), "%s", sessions_create(s, "bob", stamp0, 10)->id);
    sessions_end_user(s, "alice", sessions_find(s, keep, 10));
    assert_non_null(sessions_find(s, keep, 10));
    assert_null(sessions_find(s, other, 10));
    assert_non_null(sessions_find(s, bob, 10));
    /* Full: the one unused the longest makes room. */
    for (int i = 0; i < SESSION_MAX; i++) {
        sessions_create(s, "many", stamp0, 20 + (uint64_t)i / 100);
        sessions_find(s, bob, 20 + (uint64_t)i / 100);
    }
    assert_non_null(sessions_find(s, bob, 40));
    assert_null(sessions_find(s, keep, 40));
    sessions_free(s);
}

int main(void)
{
    assert_true(sodium_init() >= 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_life),
        cmocka_unit_test(test_end_user_and_full),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
