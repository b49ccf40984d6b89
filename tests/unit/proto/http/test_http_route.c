/* proto/http/http_route: the host key's names (what it accepts and refuses), how a Host or a
 * server name matches them, which names two mappings would both answer for, and the router's
 * choice among the mappings of a port (and its refusals, with their statuses). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "forward/mapping.h"
#include "proto/http/http_proto.h"
#include "proto/http/http_route.h"

static void test_hosts_parse(void **state)
{
    (void)state;
    char out[HTTP_HOSTS_LEN], why[256];
    assert_int_equal(http_hosts_parse(" Cam1.Example.ORG. , *.cams.example.org,[2001:DB8::1],"
                                      "192.0.2.10,*.lan",
                                      out, sizeof(out), why, sizeof(why)),
                     0);
    assert_string_equal(out, "cam1.example.org,*.cams.example.org,[2001:db8::1],192.0.2.10,*.lan");
    assert_int_equal(http_hosts_parse("", out, sizeof(out), why, sizeof(why)), 0);
    assert_string_equal(out, "");
    const char *bad[] = {"a b", "a,,b",        "-a.org",  "a-.org",  "a..org", "*.",
                         "*",   "a.*",         "*.*.org", "a_b.org", "[::1",   "[zz]",
                         "a/b", "x.org,X.ORG", ",a.org",  "a.org:80"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why[0] = '\0';
        assert_int_equal(http_hosts_parse(bad[i], out, sizeof(out), why, sizeof(why)), -1);
        assert_true(why[0] == '"');
    }
    /* 17 names: one too many; a label of 64 characters. */
    char many[512] = "";
    for (int i = 0; i < 17; i++) {
        snprintf(many + strlen(many), sizeof(many) - strlen(many), "%sh%d.org", i ? "," : "", i);
    }
    assert_int_equal(http_hosts_parse(many, out, sizeof(out), why, sizeof(why)), -1);
    assert_non_null(strstr(why, "at most 16 names"));
    char label[80];
    memset(label, 'a', 64);
    strcpy(label + 64, ".org");
    assert_int_equal(http_hosts_parse(label, out, sizeof(out), why, sizeof(why)), -1);
    strcpy(label + 63, ".org"); /* 63: as long as a label may be */
    assert_int_equal(http_hosts_parse(label, out, sizeof(out), why, sizeof(why)), 0);
}

static void test_hosts_match_and_overlap(void **state)
{
    (void)state;
    const char *hosts = "cam1.example.org,*.cams.example.org";
    assert_int_equal(http_hosts_match(hosts, "CAM1.example.org", 16), 2);
    assert_int_equal(http_hosts_match(hosts, "cam1.example.org.", 17), 2);
    assert_int_equal(http_hosts_match(hosts, "x.cams.example.org", 18), 1);
    assert_int_equal(http_hosts_match(hosts, "cams.example.org", 16), 0);
    assert_int_equal(http_hosts_match(hosts, "a.b.cams.example.org", 20), 0);
    assert_int_equal(http_hosts_match(hosts, ".cams.example.org", 17), 0);
    assert_int_equal(http_hosts_match(hosts, "cam1.example.or", 15), 0);
    assert_int_equal(http_hosts_match("", "a", 1), 0);
    char name[256];
    assert_true(http_hosts_overlap("a.org,x.example.org", "*.example.org", name, sizeof(name)));
    assert_string_equal(name, "x.example.org");
    assert_true(http_hosts_overlap("*.example.org", "b.org,y.example.org", name, sizeof(name)));
    assert_string_equal(name, "y.example.org");
    assert_true(http_hosts_overlap("*.example.org", "*.example.org", name, sizeof(name)));
    assert_false(http_hosts_overlap("*.example.org", "*.a.example.org", name, sizeof(name)));
    assert_false(http_hosts_overlap("a.org", "b.org", name, sizeof(name)));
}

/* A port's mappings, each with the host key given ("": none). */
struct port {
    struct mapping_group *g;
};

static struct port make_port(const char *const *hosts, size_t n)
{
    struct mapping *maps[8];
    for (size_t i = 0; i < n; i++) {
        struct map_conf mc;
        char name[16], why[256];
        snprintf(name, sizeof(name), "m%zu", i);
        map_conf_init(&mc, MAP_ORIGIN_FILE, name, "test", 1);
        mc.proto = &http_proto;
        mc.pconf = calloc(1, http_proto.conf_size);
        http_proto.conf_init(mc.pconf);
        assert_int_equal(http_proto.conf_set(mc.pconf, "host", hosts[i], why, sizeof(why)), 0);
        assert_int_equal(http_proto.conf_set(mc.pconf, "max-header-size", "1024", why, sizeof(why)),
                         0);
        maps[i] = mapping_new(&mc, NULL, 1);
        assert_non_null(maps[i]);
        map_conf_clear(&mc);
    }
    struct port p = {mapping_group_new(maps, n)};
    for (size_t i = 0; i < n; i++) {
        mapping_unref(maps[i]);
    }
    return p;
}

/* Routes req on p: the index, or the refusal's status (as -status), 0 - TCP_ROUTE_MORE - 1000
 * for more. */
static int route(struct port p, const char *req, const char *sni, bool eof, bool timeout)
{
    struct sockaddr_storage client = {.ss_family = AF_INET};
    struct tcp_route_conn rc = {.group = p.g, .servername = sni, .client = &client};
    char out[TCP_ROUTE_ANSWER_MAX];
    size_t out_len = 99;
    const char *reason = NULL;
    ssize_t r =
        http_router.route(&rc, req, strlen(req), eof, timeout, out, sizeof(out), &out_len, &reason);
    if (r == TCP_ROUTE_MORE) {
        assert_int_equal(out_len, 0);
        return -1000;
    }
    if (r == TCP_ROUTE_REFUSE) {
        assert_non_null(reason);
        if (out_len == 0) {
            return -1; /* nothing to answer */
        }
        int status = 0;
        assert_int_equal(sscanf(out, "HTTP/1.1 %d ", &status), 1);
        assert_non_null(strstr(out, "Connection: close\r\n"));
        return -status;
    }
    return (int)r;
}

static void test_router_choice(void **state)
{
    (void)state;
    const char *hosts[] = {"cam1.example.org", "*.example.org", "cam2.example.org"};
    struct port p = make_port(hosts, 3);
    assert_int_equal(route(p, "GET / HTTP/1.1\r\nHost: cam1.example.org\r\n\r\n", NULL, 0, 0), 0);
    /* An equal name wins over an earlier wildcard; the port is not part of the name. */
    assert_int_equal(route(p, "GET / HTTP/1.1\r\nHost: Cam2.example.org:8080\r\n\r\n", NULL, 0, 0),
                     2);
    assert_int_equal(route(p, "GET / HTTP/1.1\r\nHost: x.example.org\r\n\r\n", NULL, 0, 0), 1);
    assert_int_equal(route(p, "\r\n\r\nGET / HTTP/1.1\r\nHost: x.example.org\r\n\r\n", NULL, 0, 0),
                     1);
    assert_int_equal(route(p, "GET / HTTP/1.1\r\nHost: example.org\r\n\r\n", NULL, 0, 0), -404);
    assert_int_equal(route(p, "GET / HTTP/1.0\r\n\r\n", NULL, 0, 0), -400);
    /* The server name chooses when there is no Host; a Host for another mapping: 421. */
    assert_int_equal(route(p, "GET / HTTP/1.0\r\n\r\n", "cam2.example.org", 0, 0), 2);
    assert_int_equal(
        route(p, "GET / HTTP/1.1\r\nHost: cam1.example.org\r\n\r\n", "cam2.example.org", 0, 0),
        -421);
    /* A server name that is no DNS name (control characters) counts as none. */
    assert_int_equal(route(p, "GET / HTTP/1.1\r\nHost: cam1.example.org\r\n\r\n",
                           "cam2.example.org\nforged", 0, 0),
                     0);
    /* What the filter refuses of a parsed request, refused before any device. */
    assert_int_equal(route(p, "TRACE / HTTP/1.1\r\nHost: cam1.example.org\r\n\r\n", NULL, 0, 0),
                     -405);
    assert_int_equal(
        route(p, "GET http://x/ HTTP/1.1\r\nHost: cam1.example.org\r\n\r\n", NULL, 0, 0), -400);
    assert_int_equal(route(p,
                           "GET / HTTP/1.1\r\nHost: cam1.example.org\r\nContent-Length: 1\r\n"
                           "\r\nx",
                           NULL, 0, 0),
                     -400);
    /* A server name no mapping has: the Host decides. */
    assert_int_equal(
        route(p, "GET / HTTP/1.1\r\nHost: cam1.example.org\r\n\r\n", "other.net", 0, 0), 0);
    /* Incomplete: more, unless the client closed or the time is up. */
    assert_int_equal(route(p, "GET / HTTP/1.1\r\nHost: cam1", NULL, 0, 0), -1000);
    assert_int_equal(route(p, "GET / HTTP/1.1\r\nHost: cam1", NULL, 1, 0), -1);
    assert_int_equal(route(p, "", NULL, 1, 0), -1);
    assert_int_equal(route(p, "GET / HT", NULL, 0, 1), -408);
    /* What the parser refuses, with its status; a head over max-header-size. */
    assert_int_equal(route(p, "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", NULL, 0, 0), -400);
    assert_int_equal(route(p, "GET / HTTP/2.0\r\nHost: a\r\n\r\n", NULL, 0, 0), -505);
    assert_int_equal(route(p, "\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n", NULL, 0, 0), -400);
    char big[1200];
    snprintf(big, sizeof(big), "GET /%01100d HTTP/1.1\r\n", 0);
    assert_int_equal(route(p, big, NULL, 0, 0), -431);
    mapping_group_unref(p.g);

    /* A mapping without names answers for the others. */
    const char *two[] = {"cam1.example.org", ""};
    p = make_port(two, 2);
    assert_int_equal(route(p, "GET / HTTP/1.1\r\nHost: cam1.example.org\r\n\r\n", NULL, 0, 0), 0);
    assert_int_equal(route(p, "GET / HTTP/1.1\r\nHost: 192.0.2.1\r\n\r\n", NULL, 0, 0), 1);
    assert_int_equal(route(p, "GET / HTTP/1.0\r\n\r\n", NULL, 0, 0), 1);
    mapping_group_unref(p.g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hosts_parse),
        cmocka_unit_test(test_hosts_match_and_overlap),
        cmocka_unit_test(test_router_choice),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
