/* admin/state: the state file, loaded (good, bad, leases) and saved atomically. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "admin/state.h"
#include "guard.h"

static struct config *load(const char *text, int64_t now)
{
    struct config *c = config_new();
    assert_non_null(c);
    struct guarded g = guard_bytes(text, strlen(text));
    state_load_buffer(c, "/s.json", g.p, strlen(text), now);
    guard_free(g);
    return c;
}

static void expect_error(const char *text, const char *msg)
{
    struct config *c = load(text, 0);
    for (size_t i = 0; i < c->nerrors; i++) {
        if (strstr(c->errors[i], msg) != NULL) {
            config_free(c);
            return;
        }
    }
    fail_msg("%s: no error \"%s\" (first: %s)", text, msg, c->nerrors ? c->errors[0] : "-");
}

#define M1                                                                                         \
    "{\"name\": \"a\", \"proto\": \"tcp\", \"listen\": \"0.0.0.0:80\", \"target\": "               \
    "\"192.0.2.1:80\"}"
#define M2                                                                                         \
    "{\"name\": \"b\", \"proto\": \"udp\", \"listen\": \"0.0.0.0:81\", \"target\": "               \
    "\"192.0.2.1:81\", "                                                                           \
    "\"expires\": 4000000000}"

static void test_load(void **state)
{
    (void)state;
    struct config *c =
        load("{\"portgate-state\": 1, \"revision\": 42, \"mappings\": [" M1 ", " M2 "]}", 100);
    assert_int_equal(c->nerrors, 0);
    assert_int_equal(c->revision, 42);
    assert_int_equal(c->nmaps, 2);
    assert_int_equal(c->maps[1].expires, 4000000000);
    config_free(c);
    /* A lease that ended while the gateway was down is left out. */
    c = load("{\"portgate-state\": 1, \"revision\": 1, \"mappings\": [" M1 ", " M2 "]}",
             4000000001);
    assert_int_equal(c->nerrors, 0);
    assert_int_equal(c->nmaps, 1);
    config_free(c);
    expect_error("", "/s.json:1:0: not valid JSON");
    expect_error("{", "not valid JSON");
    expect_error("[]", "not a portgate state file");
    expect_error("{\"portgate-state\": 1}", "not a portgate state file");
    expect_error("{\"portgate-state\": 1, \"revision\": -1, \"mappings\": []}",
                 "not a portgate state file");
    expect_error("{\"portgate-state\": 2, \"mappings\": []}", "state format 2 is not one");
    expect_error("{\"portgate-state\": 1, \"mappings\": [{\"name\": \"x\"}]}",
                 "/s.json: [map x] missing proto");
    expect_error("{\"portgate-state\": 1, \"mappings\": [], \"mappings\": []}", "duplicate");
}

static void test_save_and_load_back(void **state)
{
    (void)state;
    char dir[] = "/tmp/portgate-state-XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct config *c =
        load("{\"portgate-state\": 1, \"revision\": 7, \"mappings\": [" M1 ", " M2 "]}", 100);
    assert_int_equal(c->nerrors, 0);
    /* A mapping of the config file is not the state file's to keep. */
    c->maps[0].origin = MAP_ORIGIN_FILE;
    /* The directory is made when missing. */
    snprintf(c->gw.state, sizeof(c->gw.state), "%s/sub/state.json", dir);
    char err[512] = "";
    assert_int_equal(state_save(c, err, sizeof(err)), 0);
    struct stat sb;
    assert_int_equal(stat(c->gw.state, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0640);
    struct config *d = config_new();
    d->gw = c->gw;
    snprintf(d->gw.admin_socket, sizeof(d->gw.admin_socket), "/x.sock"); /* admin on */
    state_load(NULL, d);
    assert_int_equal(d->nerrors, 0);
    assert_int_equal(d->revision, 7);
    assert_int_equal(d->nmaps, 1);
    assert_string_equal(d->maps[0].name, "b");
    assert_int_equal(d->maps[0].expires, 4000000000);
    assert_true(map_conf_equal(&c->maps[1], &d->maps[0]));
    config_free(d);
    /* No temporary file is left behind. */
    char tmp[600];
    snprintf(tmp, sizeof(tmp), "%s.tmp", c->gw.state);
    assert_int_equal(access(tmp, F_OK), -1);
    /* A state file where one cannot be written is an error that names it. */
    snprintf(c->gw.state, sizeof(c->gw.state), "/proc/portgate-no/state.json");
    assert_int_equal(state_save(c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "/proc/portgate-no/state.json"));
    config_free(c);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_missing_file_is_empty(void **state)
{
    (void)state;
    struct config *c = config_new();
    snprintf(c->gw.admin_socket, sizeof(c->gw.admin_socket), "/x.sock");
    snprintf(c->gw.state, sizeof(c->gw.state), "/tmp/portgate-no-such-dir/state.json");
    state_load(NULL, c);
    assert_int_equal(c->nerrors, 0);
    assert_int_equal(c->nmaps, 0);
    /* A directory where the file should be is an error, never an empty table. */
    snprintf(c->gw.state, sizeof(c->gw.state), "/tmp");
    state_load(NULL, c);
    assert_int_equal(c->nerrors, 1);
    assert_non_null(strstr(c->errors[0], "/tmp: the state file is not a regular file"));
    config_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load),
        cmocka_unit_test(test_save_and_load_back),
        cmocka_unit_test(test_missing_file_is_empty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
