/* admin/mapjson: a mapping as JSON and back, and the errors of each kind of bad member. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/mapjson.h"

/* Adds the mapping text describes (JSON) to a fresh config; returns the config. */
static struct config *add(const char *text, enum mapjson_from from)
{
    json_error_t jerr;
    json_t *j = json_loads(text, 0, &jerr);
    if (j == NULL) {
        fail_msg("bad test JSON: %s: %s", text, jerr.text);
    }
    struct config *c = config_new();
    assert_non_null(c);
    mapjson_add(c, "/s.json", j, from, 1000);
    json_decref(j);
    return c;
}

static void expect(const char *text, const char *field, const char *msg)
{
    struct config *c = add(text, MAPJSON_API);
    bool found = false;
    for (size_t i = 0; i < c->nerrors && !found; i++) {
        if (strstr(c->errors[i], msg) != NULL) {
            found = true;
            if (field == NULL) {
                assert_null(c->fields[i]);
            } else {
                assert_non_null(c->fields[i]);
                assert_string_equal(c->fields[i], field);
            }
        }
    }
    if (!found) {
        fail_msg("%s: no error \"%s\" (%zu errors, first: %s)", text, msg, c->nerrors,
                 c->nerrors ? c->errors[0] : "-");
    }
    config_free(c);
}

#define BASE                                                                                       \
    "\"name\": \"w\", \"proto\": \"tcp\", \"listen\": \"0.0.0.0:80\", \"target\": "                \
    "\"192.0.2.1:80\""

static void test_ok_and_round_trip(void **state)
{
    (void)state;
    static const char *const ok[] = {
        "{" BASE "}",
        "{" BASE ", \"allow\": [\"198.51.100.0/24\", \"2001:db8::/32\"], \"deny\": \"192.0.2.9\", "
        "\"max-conns\": 5, \"enabled\": false, \"idle-timeout\": \"90s\"}",
        "{" BASE ", \"send-proxy\": \"v2\", \"accept-proxy\": \"any\", "
        "\"trusted-proxies\": \"192.0.2.0/24, 2001:db8::1\"}",
        "{\"name\": \"u\", \"proto\": \"udp\", \"listen\": \"[::]:5000-5009\", "
        "\"target\": \"192.0.2.1:6000-6009\", \"max-sessions\": 10}",
        "{\"name\": \"r\", \"proto\": \"rtsp\", \"listen\": \"0.0.0.0:554\", "
        "\"target\": \"cam.example:554\", \"rtp-ports\": \"20000-20099\", \"enabled\": \"yes\"}",
        /* read-only members and nulls are ignored */
        "{" BASE ", \"source\": \"api\", \"status\": {\"state\": \"x\"}, \"stats\": {}, "
        "\"read-only\": false, \"max-conns\": null}",
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        struct config *c = add(ok[i], MAPJSON_API);
        if (c->nerrors != 0) {
            fail_msg("%s: %s", ok[i], c->errors[0]);
        }
        assert_int_equal(c->nmaps, 1);
        assert_int_equal(c->maps[0].origin, MAP_ORIGIN_API);
        json_t *back = mapjson_from_conf(&c->maps[0], 1000);
        char *text = json_dumps(back, 0);
        struct config *d = add(text, MAPJSON_API);
        assert_int_equal(d->nerrors, 0);
        assert_true(map_conf_equal(&c->maps[0], &d->maps[0]));
        /* and it is the same JSON again */
        json_t *again = mapjson_from_conf(&d->maps[0], 1000);
        assert_true(json_equal(back, again));
        json_decref(again);
        free(text);
        json_decref(back);
        config_free(d);
        config_free(c);
    }
}

static void test_lease(void **state)
{
    (void)state;
    struct config *c = add("{" BASE ", \"lease\": 60}", MAPJSON_API);
    assert_int_equal(c->nerrors, 0);
    assert_int_equal(c->maps[0].expires, 1060);
    json_t *j = mapjson_from_conf(&c->maps[0], 1030);
    assert_int_equal(json_integer_value(json_object_get(j, "lease")), 30);
    assert_int_equal(json_integer_value(json_object_get(j, "expires")), 1060);
    json_decref(j);
    config_free(c);
    /* The API's expires is read-only; the state file's lease is not its key. */
    c = add("{" BASE ", \"expires\": 5}", MAPJSON_API);
    assert_int_equal(c->nerrors, 0);
    assert_int_equal(c->maps[0].expires, 0);
    config_free(c);
    c = add("{" BASE ", \"expires\": 2000}", MAPJSON_STATE);
    assert_int_equal(c->nerrors, 0);
    assert_int_equal(c->maps[0].expires, 2000);
    config_free(c);
    expect("{" BASE ", \"lease\": 0}", "lease", "lease: expected seconds, 1 to 31536000");
    expect("{" BASE ", \"lease\": 31536001}", "lease", "expected seconds");
    expect("{" BASE ", \"lease\": \"1h\"}", "lease", "expected seconds");
}

static void test_errors(void **state)
{
    (void)state;
    expect("[]", NULL, "a mapping is a JSON object");
    expect("{\"proto\": \"tcp\"}", "name", "a mapping without a name");
    expect("{\"name\": 5}", "name", "name: expected a string");
    expect("{\"name\": \"a/b\"}", "name", "\"a/b\": use 1 to 63 letters");
    expect("{" BASE ", \"colour\": \"red\"}", "colour", "[map w] unknown key \"colour\"");
    expect("{" BASE ", \"max-conns\": [1]}", "max-conns", "expected a string, a whole number");
    expect("{" BASE ", \"max-conns\": 1.5}", "max-conns", "expected a string, a whole number");
    expect("{" BASE ", \"max-conns\": -1}", "max-conns", "\"-1\": expected a whole number");
    expect("{" BASE ", \"max-conns\": {}}", "max-conns", "expected");
    expect("{" BASE ", \"allow\": {}}", "allow", "expected an array of addresses or CIDRs");
    expect("{" BASE ", \"allow\": [\"10.0.0.0/33\"]}", "allow", "prefix longer than 32");
    expect("{" BASE ", \"allow\": [7]}", "allow", "entry 1: expected a string");
    expect("{" BASE ", \"allow\": \"\"}", "allow", "allow: empty value");
    expect("{" BASE ", \"enabled\": \"maybe\"}", "enabled", "expected yes or no");
    expect("{\"name\": \"w\", \"listen\": \"0.0.0.0:80\"}", "proto", "missing proto");
    /* jansson refuses \u0000 when it parses (no JSON_ALLOW_NUL), but a mapping made in memory
     * may hold one: it is refused all the same. */
    json_t *j = json_pack("{s:s,s:s,s:s}", "name", "w", "proto", "tcp", "listen", "0.0.0.0:80");
    json_object_set_new(j, "target", json_stringn("a\0b:80", 6));
    struct config *c = config_new();
    assert_int_equal(mapjson_add(c, "/s.json", j, MAPJSON_API, 0), -1);
    assert_non_null(strstr(c->errors[0], "target: a NUL character"));
    config_free(c);
    json_object_set_new(j, "target", json_string("192.0.2.1:80"));
    json_object_setn_new(j, "a\0b", 3, json_integer(1));
    c = config_new();
    assert_int_equal(mapjson_add(c, "/s.json", j, MAPJSON_API, 0), -1);
    assert_non_null(strstr(c->errors[0], "a key with a NUL character"));
    config_free(c);
    json_decref(j);
    expect("{\"name\": \"w\", \"proto\": \"udp\", \"listen\": \"0.0.0.0:80\", "
           "\"target\": \"192.0.2.1:80\", \"connect-timeout\": \"1s\"}",
           "connect-timeout", "applies to tcp mappings only");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ok_and_round_trip),
        cmocka_unit_test(test_lease),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
