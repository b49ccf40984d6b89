/* core/duration: what the config's durations accept, refuse and print. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <string.h>

#include "core/duration.h"
#include "guard.h"

static void test_duration(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        uint32_t ms;
    } ok[] = {
        {"0", 0},        {"500ms", 500},    {"30s", 30000},       {"5m", 300000},
        {"1h", 3600000}, {"2d", 172800000}, {"49d", 4233600000u}, {"4294967295ms", 4294967295u}};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        uint32_t ms = 1;
        char err[128];
        struct guarded g = guard_str(ok[i].in);
        assert_int_equal(duration_parse(g.p, &ms, err, sizeof(err)), 0);
        guard_free(g);
        assert_int_equal(ms, ok[i].ms);
    }
    static const struct {
        const char *in, *msg;
    } bad[] = {{"", "expected a duration"},
               {"s", "expected a duration"},
               {"-1s", "expected a duration"},
               {"30", "missing unit"},
               {"30x", "unknown unit \"x\""},
               {"1.5s", "unknown unit \".5s\""},
               {"50d", "too long"},
               {"99999999999s", "too long"},
               {"30 s", "unknown unit"}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint32_t ms;
        char err[128] = "";
        struct guarded g = guard_str(bad[i].in);
        assert_int_equal(duration_parse(g.p, &ms, err, sizeof(err)), -1);
        guard_free(g);
        if (strstr(err, bad[i].msg) == NULL) {
            fail_msg("%s: got \"%s\", want \"%s\"", bad[i].in, err, bad[i].msg);
        }
    }
    char buf[32];
    assert_string_equal(duration_format(90000, buf, sizeof(buf)), "90s");
    assert_string_equal(duration_format(120000, buf, sizeof(buf)), "2m");
    assert_string_equal(duration_format(1500, buf, sizeof(buf)), "1500ms");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_duration),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
