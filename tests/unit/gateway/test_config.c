#include <fcntl.h>
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

#include "gateway/config.h"
#include "guard.h"
#include "proto/rtsp/rtsp_proto.h"

/* Parses text as portgate.conf (placed against a guard page) and finishes it. */
static struct config *load(const char *text, bool resolve)
{
    struct config *c = config_new();
    assert_non_null(c);
    struct guarded g = guard_bytes(text, strlen(text));
    config_load_buffer(c, "t.conf", g.p, strlen(text));
    guard_free(g);
    config_finish(c, resolve);
    return c;
}

static bool has_error(const struct config *c, const char *want)
{
    for (size_t i = 0; i < c->nerrors; i++) {
        if (strstr(c->errors[i], want) != NULL) {
            return true;
        }
    }
    return false;
}

static void expect_error(const char *text, const char *want)
{
    struct config *c = load(text, false);
    if (!has_error(c, want)) {
        fprintf(stderr, "config:\n%s\nerrors (%zu):\n", text, c->nerrors);
        for (size_t i = 0; i < c->nerrors; i++) {
            fprintf(stderr, "  %s\n", c->errors[i]);
        }
        config_free(c);
        fail_msg("missing error \"%s\"", want);
    }
    config_free(c);
}

#define MAP_OK "[map web]\nproto = tcp\nlisten = 0.0.0.0:8080\ntarget = 192.0.2.10:80\n"

static void test_file_ok(void **state)
{
    (void)state;
    struct config *c = load("; a comment\n# another\n[gateway]\nlog-level = debug\n"
                            "drain-timeout = 5s\nworkers = 3\nbusy-poll = 50us\n\n" MAP_OK
                            "allow = 198.51.100.0/24 ; inline comment\n"
                            "allow = 203.0.113.0/24,\n  2001:db8::/32 ; continued, with a comment\n"
                            "deny = 198.51.100.7\nmax-conns = 100\nmax-conns-per-ip = 4\n"
                            "connect-timeout = 3s\nidle-timeout = 10m\n"
                            "[map rtp]\nproto = udp\nlisten = [::]:5000-5009\n"
                            "target = 192.0.2.10:6000-6009\nmax-sessions = 10\nenabled = no\n",
                            false);
    for (size_t i = 0; i < c->nerrors; i++) {
        fprintf(stderr, "%s\n", c->errors[i]);
    }
    assert_int_equal(c->nerrors, 0);
    assert_int_equal(c->gw.log_level, LOG_LVL_DEBUG);
    assert_int_equal(c->gw.drain_timeout_ms, 5000);
    assert_int_equal(c->gw.workers, 3);
    assert_int_equal(c->gw.busy_poll_us, 50);
    assert_int_equal(c->nmaps, 2);
    const struct map_conf *m = &c->maps[0];
    assert_string_equal(m->name, "web");
    assert_string_equal(m->proto->name, "tcp");
    assert_int_equal(m->listen_lo, 8080);
    assert_int_equal(m->target_lo, 80);
    assert_int_equal(addr_port(&m->target), 80);
    assert_int_equal(m->allow.n, 3);
    assert_int_equal(m->deny.n, 1);
    assert_int_equal(m->max_conns, 100);
    assert_int_equal(m->max_conns_per_ip, 4);
    assert_int_equal(m->connect_timeout_ms, 3000);
    assert_int_equal(m->idle_timeout_ms, 600000);
    assert_int_equal(m->line, 9);
    assert_true(m->enabled);
    m = &c->maps[1];
    assert_string_equal(m->proto->name, "udp");
    assert_int_equal(m->listen.ss_family, AF_INET6);
    assert_int_equal(m->listen_hi, 5009);
    assert_int_equal(m->target_hi, 6009);
    assert_int_equal(m->max_sessions, 10);
    assert_int_equal(m->idle_timeout_ms, MAP_CONF_UDP_IDLE_TIMEOUT_MS);
    assert_false(m->enabled);
    config_free(c);

    /* Defaults. */
    c = load(MAP_OK, false);
    assert_int_equal(c->nerrors, 0);
    assert_int_equal(c->gw.drain_timeout_ms, CONFIG_DRAIN_TIMEOUT_MS);
    assert_int_equal(c->maps[0].idle_timeout_ms, MAP_CONF_TCP_IDLE_TIMEOUT_MS);
    assert_int_equal(c->maps[0].connect_timeout_ms, MAP_CONF_CONNECT_TIMEOUT_MS);
    assert_int_equal(c->maps[0].max_conns, 0);
    config_free(c);

    /* CRLF line ends and a UTF-8 byte order mark. */
    c = load("\xEF\xBB\xBF[map web]\r\nproto = tcp\r\nlisten = 0.0.0.0:8080\r\ntarget = "
             "192.0.2.10:80\r\n",
             false);
    assert_int_equal(c->nerrors, 0);
    assert_int_equal(c->maps[0].target_lo, 80);
    config_free(c);
}

static void test_file_errors(void **state)
{
    (void)state;
    /* Structure. */
    expect_error("[map web\nproto = tcp\n", "t.conf:1: section header without ']'");
    expect_error("[maps web]\n", "t.conf:1: unknown section [maps web]");
    expect_error("[gateway]\n[gateway]\n", "t.conf:2: [gateway] appears twice");
    expect_error("[map we/b]\n", "t.conf:1: [map we/b]: a mapping name is");
    expect_error("[map ]\n", "a mapping name is");
    expect_error(MAP_OK "[map web]\n", "t.conf:5: [map web] is defined twice (first at t.conf:1)");
    expect_error(MAP_OK "just words\n",
                 "t.conf:5: expected KEY = VALUE or [section], got \"just words\"");
    expect_error("proto = tcp\n" MAP_OK, "t.conf:1: key outside any section");
    expect_error(MAP_OK "proto\n", "t.conf:5: expected KEY = VALUE");
    {
        char text[600];
        snprintf(text, sizeof(text), MAP_OK "allow = %0300d\n", 0);
        expect_error(text, "t.conf:5: line longer than 198 characters");
    }
    {
        static const char nul[] = "[map web]\nproto = t\0cp\n";
        struct config *c = config_new();
        config_load_buffer(c, "t.conf", nul, sizeof(nul) - 1);
        assert_true(has_error(c, "t.conf:2: NUL byte in line"));
        config_free(c);
    }
    /* [gateway] keys. */
    expect_error("[gateway]\nlog-level = loud\n" MAP_OK,
                 "t.conf:2: [gateway] log-level: \"loud\": expected error, warn, info or debug");
    expect_error("[gateway]\ndrain-timeout = 30\n" MAP_OK,
                 "t.conf:2: [gateway] drain-timeout: \"30\": missing unit");
    expect_error("[gateway]\nworkers = 0\n" MAP_OK,
                 "t.conf:2: [gateway] workers: \"0\": at least 1 (or auto: one per CPU)");
    expect_error("[gateway]\nworkers = 257\n" MAP_OK,
                 "t.conf:2: [gateway] workers: \"257\": at most 256");
    expect_error(
        "[gateway]\nbusy-poll = 50\n" MAP_OK,
        "t.conf:2: [gateway] busy-poll: \"50\": expected off or microseconds such as 50us");
    expect_error("[gateway]\nbusy-poll = 1001us\n" MAP_OK,
                 "t.conf:2: [gateway] busy-poll: \"1001us\": at most 1000us");
    expect_error("[gateway]\nbusy-poll = 99999999999us\n" MAP_OK,
                 "t.conf:2: [gateway] busy-poll: \"99999999999us\": at most 1000us");
    expect_error("[gateway]\nworkers = many\n" MAP_OK,
                 "t.conf:2: [gateway] workers: \"many\": expected a whole number or auto");
    expect_error("[gateway]\nworkerz = 2\n" MAP_OK, "t.conf:2: [gateway] unknown key \"workerz\"");
    expect_error("[gateway]\nlog-level = info\nlog-level = warn\n" MAP_OK,
                 "t.conf:3: [gateway] log-level: set twice");
    /* Mapping keys. */
    expect_error(MAP_OK "colour = blue\n", "t.conf:5: [map web] unknown key \"colour\"");
    expect_error(MAP_OK "name = other\n", "t.conf:5: [map web] unknown key \"name\"");
    expect_error(MAP_OK "proto = udp\n", "t.conf:5: [map web] proto: set twice in this mapping");
    expect_error(MAP_OK "max-conns = 1\n  2\n",
                 "t.conf:6: [map web] max-conns: only allow and deny may continue");
    expect_error(MAP_OK "max-conns =\n", "t.conf:5: [map web] max-conns: empty value");
    expect_error(
        "[map web]\nproto = sctp\nlisten = 0.0.0.0:1\ntarget = 192.0.2.1:1\n",
        "t.conf:2: [map web] proto: \"sctp\": expected tcp, udp, tls, http, https, rtsp or rtsps");
    expect_error("[map web]\nproto = tcp\nlisten = 0.0.0.0\ntarget = 192.0.2.1:1\n",
                 "t.conf:3: [map web] listen: \"0.0.0.0\": expected HOST:PORT");
    expect_error("[map web]\nproto = tcp\nlisten = gw.example:80\ntarget = 192.0.2.1:1\n",
                 "t.conf:3: [map web] listen: \"gw.example:80\": listen on an IP address");
    expect_error("[map web]\nproto = tcp\nlisten = 0.0.0.0:80\ntarget = 192.0.2.1:99999\n",
                 "t.conf:4: [map web] target: \"192.0.2.1:99999\": port \"99999\" is not a number");
    expect_error("[map web]\nproto = tcp\nlisten = 0.0.0.0:80\ntarget = 0.0.0.0:80\n",
                 "target must be a device's address, not 0.0.0.0");
    expect_error(MAP_OK "allow = 10.0.0.0/33\n",
                 "t.conf:5: [map web] allow: \"10.0.0.0/33\": prefix longer than 32");
    expect_error(MAP_OK "deny = 10.0.0.1/8\n", "t.conf:5: [map web] deny: \"10.0.0.1/8\"");
    expect_error(MAP_OK "max-conns = lots\n",
                 "[map web] max-conns: \"lots\": expected a whole number");
    expect_error(MAP_OK "max-conns = -1\n", "max-conns: \"-1\": expected a whole number");
    expect_error(MAP_OK "max-conns-per-ip = 99999999999\n", "max-conns-per-ip: \"99999999999\"");
    expect_error(MAP_OK "max-conns = 20000000\n", "max-conns: \"20000000\": at most 10000000");
    expect_error(MAP_OK "connect-timeout = 0\n", "connect-timeout: \"0\": must be longer than 0");
    expect_error(MAP_OK "idle-timeout = 5 minutes\n", "idle-timeout: \"5 minutes\": unknown unit");
    expect_error(MAP_OK "enabled = maybe\n", "enabled: \"maybe\": expected yes or no");
    /* A mapping as a whole. */
    expect_error("[map web]\nlisten = 0.0.0.0:80\ntarget = 192.0.2.1:80\n",
                 "t.conf:1: [map web] missing proto");
    expect_error("[map web]\nproto = tcp\ntarget = 192.0.2.1:80\n",
                 "t.conf:1: [map web] missing listen");
    expect_error("[map web]\nproto = tcp\nlisten = 0.0.0.0:80\n",
                 "t.conf:1: [map web] missing target");
    expect_error("[map web]\n", "t.conf:1: [map web] missing proto");
    expect_error(
        "[map rtp]\nproto = udp\nlisten = 0.0.0.0:80\ntarget = 192.0.2.1:80\nmax-conns = 3\n",
        "t.conf:1: [map rtp] max-conns applies to tcp mappings only");
    expect_error("[map rtp]\nproto = udp\nlisten = 0.0.0.0:80\ntarget = 192.0.2.1:80\n"
                 "connect-timeout = 3s\n",
                 "[map rtp] connect-timeout applies to tcp mappings only");
    expect_error(MAP_OK "max-sessions = 3\n", "t.conf:1: [map web] max-sessions applies to udp");
    expect_error(MAP_OK "rtp-ports = 20000-20003\n",
                 "t.conf:5: [map web] rtp-ports applies to rtsp mappings only");
    const char *rtsp = "[map enc]\nproto = rtsp\nlisten = 0.0.0.0:554\ntarget = 192.0.2.10:8554\n";
    char buf[256];
    snprintf(buf, sizeof(buf), "%srtp-ports = 20001-20010\n", rtsp);
    expect_error(buf, "t.conf:5: [map enc] rtp-ports: \"20001-20010\": RTP pairs start at an even "
                      "port: an even start, an odd end");
    snprintf(buf, sizeof(buf), "%srtp-ports = 20000-20001\n", rtsp);
    expect_error(buf, "t.conf:5: [map enc] rtp-ports: \"20000-20001\": a stream takes two pairs");
    snprintf(buf, sizeof(buf), "%srtp-ports = 100-201\n", rtsp);
    expect_error(buf, "t.conf:5: [map enc] rtp-ports: \"100-201\": ports between 1024 and 65535");
    snprintf(buf, sizeof(buf), "%srtp-ports = 20000\n", rtsp);
    expect_error(buf, "t.conf:5: [map enc] rtp-ports: \"20000\": expected a port range");
    snprintf(buf, sizeof(buf),
             "%s[map web]\nproto = tcp\nlisten = 0.0.0.0:554\ntarget = "
             "192.0.2.11:80\n",
             rtsp);
    expect_error(buf, "[map web] listen: tcp ports 554-554 overlap [map enc]");
    expect_error("[map rtp]\nproto = udp\nlisten = 0.0.0.0:80\ntarget = 192.0.2.1:80\n"
                 "max-sessions = 0\n",
                 "max-sessions: \"0\": must be at least 1");
    expect_error(
        "[map r]\nproto = tcp\nlisten = 0.0.0.0:6000-6009\ntarget = 192.0.2.1:7000-7004\n",
        "t.conf:1: [map r] target: 5 ports (7000-7004) for 10 listening ports (6000-6009)");
    /* IPv6 listeners are IPv6-only: an IPv4-mapped address could never be bound. */
    expect_error("[map m]\nproto = tcp\nlisten = [::ffff:127.0.0.1]:18080\ntarget = 192.0.2.1:80\n",
                 "t.conf:3: [map m] listen: \"[::ffff:127.0.0.1]:18080\": an IPv4-mapped address; "
                 "listen on 127.0.0.1:18080");
    /* Across mappings. */
    expect_error(MAP_OK
                 "[map web2]\nproto = tcp\nlisten = 127.0.0.1:8000-8080\ntarget = 192.0.2.1:80\n",
                 "t.conf:5: [map web2] listen: tcp ports 8000-8080 overlap [map web] at t.conf:1");
    /* The UDP ports an rtsp mapping binds for RTP are its own: no other rtsp mapping's, no udp
     * listener's. */
    expect_error("[map a]\nproto = rtsp\nlisten = 0.0.0.0:554\ntarget = 192.0.2.10:554\n"
                 "rtp-ports = 20000-20099\n"
                 "[map b]\nproto = rtsp\nlisten = [::]:554\ntarget = 192.0.2.10:554\n"
                 "rtp-ports = 20090-20199\n",
                 "t.conf:6: [map b] rtp-ports 20090-20199 overlap the rtp-ports of [map a] at "
                 "t.conf:1");
    expect_error("[map a]\nproto = rtsp\nlisten = 0.0.0.0:554\ntarget = 192.0.2.10:554\n"
                 "[map b]\nproto = rtsp\nlisten = [::]:554\ntarget = 192.0.2.10:554\n",
                 "t.conf:5: [map b] rtp-ports 16384-17407 overlap the rtp-ports of [map a]");
    expect_error("[map a]\nproto = rtsp\nlisten = 0.0.0.0:554\ntarget = 192.0.2.10:554\n"
                 "rtp-ports = 20000-20099\n"
                 "[map u]\nproto = udp\nlisten = 192.0.2.1:20050-20051\ntarget = 192.0.2.10:5000\n",
                 "t.conf:6: [map u] listen: udp ports 20050-20051 overlap the rtp-ports of [map a] "
                 "at t.conf:1");
    expect_error("[map u]\nproto = udp\nlisten = [::]:20099\ntarget = 192.0.2.10:5000\n"
                 "[map a]\nproto = rtsp\nlisten = 0.0.0.0:554\ntarget = 192.0.2.10:554\n"
                 "rtp-ports = 20000-20099\n",
                 "t.conf:5: [map a] rtp-ports 20000-20099 overlap udp ports 20099-20099 of [map u] "
                 "at t.conf:1");
    /* A file with no mapping is fine when the admin interface can add some, not otherwise. */
    expect_error("[gateway]\nadmin = off\nadmin-socket = off\n", "no mappings");
    struct config *c = load("[gateway]\nlog-level = info\n", false);
    assert_int_equal(c->nerrors, 0);
    config_free(c);
    expect_error("[gateway]\nadmin = 192.0.2.1:8088\n",
                 "t.conf:2: [gateway] admin: \"192.0.2.1:8088\": the admin interface listens on "
                 "this host only");
    expect_error("[gateway]\nadmin = [::]:8088\n", "listens on this host only");
    expect_error("[gateway]\nadmin = 127.0.0.1:8088-8089\n", "one port, not a range");
    expect_error("[gateway]\nadmin = localhost:8088\n", "listens on this host only");
    expect_error("[gateway]\nadmin-socket = admin.sock\n",
                 "admin-socket: \"admin.sock\": expected an absolute path or off");
    expect_error("[gateway]\nstate = off\n", "state: \"off\": expected an absolute path");
    expect_error("[gateway]\nusers-file = /x\nusers-file = /y\n", "users-file: set twice");
    expect_error("[gateway]\nadmin-socket = /"
                 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
                 "longer than 107 bytes");
}

/* Brute force: do two listeners clash (what config_finish finds by sorting)? */
static bool overlap(const struct map_conf *a, const struct map_conf *b)
{
    if (a->proto->transport != b->proto->transport || a->listen.ss_family != b->listen.ss_family ||
        a->listen_hi < b->listen_lo || b->listen_hi < a->listen_lo) {
        return false;
    }
    return addr_is_any(&a->listen) || addr_is_any(&b->listen) ||
           addr_ip_equal(&a->listen, &b->listen);
}

/* Random sets of listeners, crowded into few addresses and ports: config_finish reports
 * exactly the clashing pairs that comparing every pair finds. */
/* device-auth (rtsp, rtsps): the inline and the file forms, listed back as given; its errors
 * never repeat a password. */
static void test_device_auth(void **state)
{
    (void)state;
    const char *rtsp = "[map enc]\nproto = rtsp\nlisten = 0.0.0.0:554\ntarget = 192.0.2.10:8554\n";
    char buf[512], own[PROTO_CONF_FORMAT_MAX];
    snprintf(buf, sizeof(buf), "%sdevice-auth = admin:s3:cr\"et\n", rtsp);
    struct config *c = load(buf, false);
    assert_int_equal(c->nerrors, 0);
    const struct rtsp_proto_conf *rc = c->maps[0].pconf;
    assert_string_equal(rc->auth.user, "admin");
    assert_string_equal(rc->auth.password, "s3:cr\"et");
    rtsp_proto.conf_format(rc, own, sizeof(own));
    assert_string_equal(own, "rtp-ports=16384-17407 device-auth=admin:s3:cr\"et");
    config_free(c);
    /* Off, and by default: nothing listed. */
    snprintf(buf, sizeof(buf), "%sdevice-auth = off\n", rtsp);
    c = load(buf, false);
    assert_int_equal(c->nerrors, 0);
    rtsp_proto.conf_format(c->maps[0].pconf, own, sizeof(own));
    assert_string_equal(own, "rtp-ports=16384-17407");
    config_free(c);

    char path[] = "/tmp/portgate-test-login-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "cam:pass word\n", 14), 14);
    close(fd);
    snprintf(buf, sizeof(buf),
             "[map tls]\nproto = rtsps\nlisten = 0.0.0.0:322\ntarget = 192.0.2.10:554\n"
             "cert = /nonexistent.crt\ndevice-auth = file:%s\n",
             path);
    c = config_new();
    config_load_buffer(c, "t.conf", buf, strlen(buf));
    assert_int_equal(c->nerrors, 0);
    rc = c->maps[0].pconf;
    assert_string_equal(rc->auth.user, "cam");
    assert_string_equal(rc->auth.password, "pass word");
    c->maps[0].proto->conf_format(c->maps[0].pconf, own, sizeof(own));
    char want[128];
    snprintf(want, sizeof(want),
             "cert=/nonexistent.crt min-tls=1.2 handshake-timeout=10s "
             "device-auth=file:%s",
             path);
    assert_string_equal(own, want);
    config_free(c);

    chmod(path, 0644);
    static const char *const bad[][2] = {
        {"s3cret", "t.conf:5: [map enc] device-auth: \"(not shown)\": USER:PASSWORD, or "
                   "file:/PATH of a file that holds it"},
        {":s3cret", "t.conf:5: [map enc] device-auth: \"(not shown)\": USER:PASSWORD"},
        {"admin:s3 cret", "t.conf:5: [map enc] device-auth: \"(not shown)\": a blank in it, "
                          "which check cannot list"},
        {"file:relative", "t.conf:5: [map enc] device-auth: \"file:relative\": an absolute path"},
        {"file:/a b", "t.conf:5: [map enc] device-auth: \"file:/a b\": a path with a blank"},
        {NULL, "readable by every user; chmod o-r it (the device's password)"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char val[128];
        snprintf(val, sizeof(val), "file:%s", path);
        snprintf(buf, sizeof(buf), "%sdevice-auth = %s\n", rtsp, bad[i][0] ? bad[i][0] : val);
        expect_error(buf, bad[i][1]);
        c = load(buf, false);
        for (size_t k = 0; k < c->nerrors; k++) {
            assert_null(strstr(c->errors[k], "cret"));
            assert_null(strstr(c->errors[k], "pass word"));
        }
        config_free(c);
    }
    unlink(path);
    expect_error(
        MAP_OK "device-auth = admin:s3cret\n",
        "t.conf:5: [map web] device-auth applies to http, https, rtsp and rtsps mappings only");
}

static void test_clashes_match_brute_force(void **state)
{
    (void)state;
    static const char *const addrs[] = {"0.0.0.0", "192.0.2.1", "192.0.2.2", "[::]",
                                        "[2001:db8::1]"};
    static const char *const protos[] = {"tcp", "udp"};
    /* A specific address across two wildcards, one of them long: both are found. */
    struct config *w = config_new();
    assert_int_equal(config_add_spec(w, "tcp:0.0.0.0:1-2=192.0.2.9:7,name=w1", 1), 0);
    assert_int_equal(config_add_spec(w, "tcp:0.0.0.0:3-4=192.0.2.9:7,name=w2", 2), 0);
    assert_int_equal(config_add_spec(w, "tcp:192.0.2.1:2-3=192.0.2.9:7,name=s", 3), 0);
    assert_int_equal(config_finish(w, false), -1);
    assert_int_equal(w->nerrors, 2);
    config_free(w);
    w = config_new();
    assert_int_equal(config_add_spec(w, "udp:[::]:1-9=192.0.2.9:7,name=w1", 1), 0);
    assert_int_equal(config_add_spec(w, "udp:[::]:20-21=192.0.2.9:7,name=w2", 2), 0);
    assert_int_equal(config_add_spec(w, "udp:[2001:db8::1]:5=192.0.2.9:7,name=s", 3), 0);
    assert_int_equal(config_finish(w, false), -1);
    assert_int_equal(w->nerrors, 1);
    assert_non_null(strstr(w->errors[0], "[map s] listen: udp ports 5-5 overlap [map w1]"));
    config_free(w);
    unsigned seed = 12345;
    for (int round = 0; round < 2000; round++) {
        struct config *c = config_new();
        int n = 2 + (int)(rand_r(&seed) % 12);
        for (int i = 0; i < n; i++) {
            char spec[128];
            unsigned lo = 1 + rand_r(&seed) % 20, len = rand_r(&seed) % 4;
            snprintf(spec, sizeof(spec), "%s:%s:%u-%u=192.0.2.9:7,name=m%d%s",
                     protos[rand_r(&seed) % 2], addrs[rand_r(&seed) % 5], lo, lo + len, i,
                     rand_r(&seed) % 8 == 0 ? ",enabled=no" : "");
            assert_int_equal(config_add_spec(c, spec, i + 1), 0);
        }
        config_finish(c, false);
        int want = 0;
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < i; j++) {
                const struct map_conf *a = &c->maps[i], *b = &c->maps[j];
                if (!a->enabled || !b->enabled || !overlap(a, b)) {
                    continue;
                }
                want++;
                char msg[64];
                snprintf(msg, sizeof(msg), "[map m%d] listen:", i);
                char other[64];
                snprintf(other, sizeof(other), "overlap [map m%d] at", j);
                bool found = false;
                for (size_t e = 0; e < c->nerrors && !found; e++) {
                    found = strstr(c->errors[e], msg) && strstr(c->errors[e], other);
                }
                if (!found) {
                    fail_msg("round %d: m%d and m%d clash, not reported", round, i, j);
                }
            }
        }
        assert_int_equal((int)c->nerrors, want);
        config_free(c);
    }
}

/* The admin interface's keys: a file gets the documented defaults, which it may change; a
 * config made without a file (--map only) has no admin interface. */
static void test_admin_keys(void **state)
{
    (void)state;
    struct config *c = load(MAP_OK, false);
    assert_int_equal(c->nerrors, 0);
    char as[ADDR_STRLEN];
    assert_string_equal(addr_format(&c->gw.admin, as, sizeof(as)), CONFIG_ADMIN);
    assert_string_equal(c->gw.admin_socket, CONFIG_ADMIN_SOCKET);
    assert_string_equal(c->gw.state, CONFIG_STATE);
    assert_string_equal(c->gw.users_file, CONFIG_USERS_FILE);
    config_free(c);
    c = load("[gateway]\nadmin = [::1]:9000\nadmin-socket = off\nstate = /tmp/s.json\n" MAP_OK,
             false);
    assert_int_equal(c->nerrors, 0);
    assert_string_equal(addr_format(&c->gw.admin, as, sizeof(as)), "[::1]:9000");
    assert_string_equal(c->gw.admin_socket, "");
    assert_string_equal(c->gw.state, "/tmp/s.json");
    assert_true(config_admin_on(&c->gw));
    config_free(c);
    c = load("[gateway]\nadmin = off\nadmin-socket = off\n" MAP_OK, false);
    assert_false(config_admin_on(&c->gw));
    config_free(c);
    c = config_new();
    assert_int_equal(config_add_spec(c, "tcp:0.0.0.0:80=192.0.2.1:80", 1), 0);
    assert_false(config_admin_on(&c->gw));
    config_free(c);
}

static void collect_key(void *arg, const char *key, enum config_kind kind, const char *val)
{
    /* Rebuilds the pairs config_add_map() takes; values are copied, lists one pair each. */
    struct {
        struct config_kv kv[32];
        char keys[32][32], vals[32][64];
        size_t n;
    } *out = arg;
    if (kind == CONFIG_LIST && val == NULL) {
        return; /* an empty list: no pair */
    }
    assert_true(out->n < 32);
    snprintf(out->vals[out->n], sizeof(out->vals[0]), "%s", val);
    snprintf(out->keys[out->n], sizeof(out->keys[0]), "%s", key);
    out->kv[out->n].key = out->keys[out->n];
    out->kv[out->n].val = out->vals[out->n];
    out->n++;
}

/* A mapping as keys (the API's JSON) and back is the same mapping; bad keys get the file's
 * messages, with the key they are about. */
static void test_map_keys_round_trip(void **state)
{
    (void)state;
    struct config *c = load(MAP_OK "allow = 198.51.100.0/24, 2001:db8::/32\nmax-conns = 7\n"
                                   "idle-timeout = 90s\nenabled = no\nsend-proxy = v1\n"
                                   "accept-proxy = any\n"
                                   "trusted-proxies = 198.51.100.0/24, 2001:db8::1\n"
                                   "[map enc]\nproto = rtsp\nlisten = [::]:554\n"
                                   "target = 192.0.2.10:8554\nrtp-ports = 20000-20099\n"
                                   "device-auth = admin:s3cret\n"
                                   "[map u]\nproto = udp\nlisten = 0.0.0.0:5000-5009\n"
                                   "target = 192.0.2.10:6000-6009\nmax-sessions = 9\n",
                            false);
    assert_int_equal(c->nerrors, 0);
    struct config *d = config_new();
    for (size_t i = 0; i < c->nmaps; i++) {
        struct {
            struct config_kv kv[32];
            char keys[32][32], vals[32][64];
            size_t n;
        } keys = {.n = 0};
        config_map_keys(&c->maps[i], collect_key, &keys);
        assert_string_equal(keys.kv[0].key, "name");
        if (config_add_map(d, "/state.json", keys.kv, keys.n) != 0) {
            fail_msg("%s", d->errors[0]);
        }
        assert_true(map_conf_equal(&c->maps[i], &d->maps[i]));
        assert_int_equal(d->maps[i].origin, MAP_ORIGIN_API);
        assert_string_equal(d->maps[i].name, c->maps[i].name);
    }
    assert_int_equal(config_finish(d, false), 0);
    config_free(d);
    config_free(c);

    static const struct {
        struct config_kv kv[4];
        size_t n;
        const char *field, *msg;
    } bad[] = {
        {{{"proto", "tcp"}}, 1, "name", "/s.json: a mapping without a name"},
        {{{"name", "a/b"}}, 1, "name", "name: \"a/b\": use 1 to 63 letters"},
        {{{"name", "x"}, {"proto", "tcp"}, {"listen", "0.0.0.0:80"}},
         3,
         "target",
         "/s.json: [map x] missing target"},
        {{{"name", "x"}, {"proto", "tcp"}, {"listen", "0.0.0.0:80"}, {"colour", "red"}},
         4,
         "colour",
         "/s.json: [map x] unknown key \"colour\""},
        {{{"name", "x"}, {"proto", "udp"}, {"listen", "0.0.0.0:80"}, {"max-conns", "4"}},
         4,
         "max-conns",
         "max-conns applies to tcp mappings only"},
        {{{"name", "x"}, {"proto", "tcp"}, {"listen", "0.0.0.0:80"}, {"rtp-ports", "2-9"}},
         4,
         "rtp-ports",
         "rtp-ports applies to rtsp mappings only"},
        {{{"name", "x"}, {"proto", "tcp"}, {"listen", ""}}, 3, "listen", "listen: empty value"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        c = config_new();
        assert_int_equal(config_add_map(c, "/s.json", bad[i].kv, bad[i].n), -1);
        assert_true(c->nerrors > 0);
        bool found = false;
        for (size_t e = 0; e < c->nerrors; e++) {
            if (strstr(c->errors[e], bad[i].msg) != NULL) {
                found = true;
                assert_non_null(c->fields[e]);
                assert_string_equal(c->fields[e], bad[i].field);
            }
        }
        if (!found) {
            fail_msg("case %zu: no error \"%s\" (first: %s)", i, bad[i].msg, c->errors[0]);
        }
        config_free(c);
    }
}

static void test_file_no_false_errors(void **state)
{
    (void)state;
    /* Same port on different protocols, families, or distinct addresses is fine; so is overlap
     * with a disabled mapping. */
    struct config *c =
        load(MAP_OK "[map u]\nproto = udp\nlisten = 0.0.0.0:8080\ntarget = 192.0.2.1:80\n"
                    "[map v6]\nproto = tcp\nlisten = [::]:8080\ntarget = 192.0.2.1:80\n"
                    "[map off]\nproto = tcp\nlisten = 0.0.0.0:8080\ntarget = "
                    "192.0.2.1:80\nenabled = no\n"
                    "[map a]\nproto = tcp\nlisten = 127.0.0.1:9000\ntarget = 192.0.2.1:80\n"
                    "[map b]\nproto = tcp\nlisten = 127.0.0.2:9000\ntarget = 192.0.2.1:80\n",
             false);
    for (size_t i = 0; i < c->nerrors; i++) {
        fprintf(stderr, "%s\n", c->errors[i]);
    }
    assert_int_equal(c->nerrors, 0);
    config_free(c);
    /* RTP ranges side by side, and one of a disabled mapping, are fine. */
    c = load("[map a]\nproto = rtsp\nlisten = 0.0.0.0:554\ntarget = 192.0.2.10:554\n"
             "rtp-ports = 20000-20099\n"
             "[map b]\nproto = rtsp\nlisten = [::]:554\ntarget = 192.0.2.10:554\n"
             "rtp-ports = 20100-20199\n"
             "[map c]\nproto = rtsp\nlisten = 0.0.0.0:555\ntarget = 192.0.2.10:554\n"
             "enabled = no\nrtp-ports = 20000-20199\n"
             "[map u]\nproto = udp\nlisten = 0.0.0.0:20200\ntarget = 192.0.2.10:5000\n",
             false);
    for (size_t i = 0; i < c->nerrors; i++) {
        fprintf(stderr, "%s\n", c->errors[i]);
    }
    assert_int_equal(c->nerrors, 0);
    config_free(c);
}

static void test_file_io_errors(void **state)
{
    (void)state;
    struct config *c = config_new();
    assert_int_equal(config_load_file(c, "/nonexistent/portgate.conf"), -1);
    assert_true(has_error(c, "/nonexistent/portgate.conf: cannot open: No such file or directory"));
    assert_int_equal(config_load_file(c, "/"), -1);
    assert_true(has_error(c, "/: not a regular file"));
    char path[] = "/tmp/portgate-test-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 5 << 20), 0);
    close(fd);
    assert_int_equal(config_load_file(c, path), -1);
    assert_true(has_error(c, "larger than"));
    fd = open(path, O_WRONLY | O_TRUNC);
    assert_true(write(fd, MAP_OK, strlen(MAP_OK)) == (ssize_t)strlen(MAP_OK));
    close(fd);
    config_free(c);
    c = config_new();
    assert_int_equal(config_load_file(c, path), 0);
    assert_int_equal(c->nmaps, 1);
    config_free(c);
    unlink(path);
}

static struct config *spec(const char *s)
{
    struct config *c = config_new();
    struct guarded g = guard_str(s);
    config_add_spec(c, g.p, 1);
    guard_free(g);
    return c;
}

static void test_rtsp_ok(void **state)
{
    (void)state;
    struct config *c = config_new();
    assert_int_equal(config_add_spec(c, "rtsp:0.0.0.0:554=192.0.2.10:8554", 1), 0);
    assert_int_equal(config_add_spec(c,
                                     "rtsp:[::]:8554=192.0.2.11:554,rtp-ports=20000-20099,"
                                     "max-sessions=5,max-conns=10",
                                     2),
                     0);
    assert_int_equal(config_finish(c, false), 0);
    assert_ptr_equal(c->maps[0].proto, &rtsp_proto);
    const struct rtsp_proto_conf *rtp0 = c->maps[0].pconf, *rtp1 = c->maps[1].pconf;
    assert_int_equal(c->maps[0].max_sessions, RTSP_PROTO_MAX_SESSIONS);
    assert_int_equal(rtp0->rtp_lo, RTSP_PROTO_RTP_LO);
    assert_int_equal(rtp0->rtp_hi, RTSP_PROTO_RTP_HI);
    assert_int_equal(c->maps[0].idle_timeout_ms, MAP_CONF_TCP_IDLE_TIMEOUT_MS);
    assert_int_equal(rtp1->rtp_lo, 20000);
    assert_int_equal(rtp1->rtp_hi, 20099);
    assert_int_equal(c->maps[1].max_sessions, 5);
    assert_int_equal(c->maps[1].max_conns, 10);
    struct map_conf copy;
    assert_int_equal(map_conf_copy(&copy, &c->maps[1]), 0);
    assert_true(map_conf_equal(&copy, &c->maps[1]));
    ((struct rtsp_proto_conf *)copy.pconf)->rtp_hi = 20101;
    assert_false(map_conf_equal(&copy, &c->maps[1]));
    map_conf_clear(&copy);
    config_free(c);
}

static void test_spec_ok(void **state)
{
    (void)state;
    struct config *c = spec("tcp:0.0.0.0:8080=192.0.2.10:80");
    assert_int_equal(c->nerrors, 0);
    assert_string_equal(c->maps[0].name, "cli-1");
    assert_int_equal(c->maps[0].listen_lo, 8080);
    assert_string_equal(c->maps[0].source, "--map 1");
    config_free(c);

    c = spec("udp:[::]:5000=192.0.2.10:5000");
    assert_int_equal(c->nerrors, 0);
    assert_string_equal(c->maps[0].proto->name, "udp");
    assert_int_equal(c->maps[0].listen.ss_family, AF_INET6);
    assert_int_equal(c->maps[0].idle_timeout_ms, MAP_CONF_UDP_IDLE_TIMEOUT_MS);
    config_free(c);

    c = spec("tcp:0.0.0.0:6000-6009=192.0.2.10:7000-7009");
    assert_int_equal(c->nerrors, 0);
    assert_int_equal(c->maps[0].listen_hi, 6009);
    assert_int_equal(c->maps[0].target_hi, 7009);
    config_free(c);

    c = spec("tcp:[2001:db8::1]:80=192.0.2.10:80,allow=198.51.100.0/24,203.0.113.0/24,"
             "max-conns=100,name=encoder-web,idle-timeout=5m,deny=198.51.100.9");
    for (size_t i = 0; i < c->nerrors; i++) {
        fprintf(stderr, "%s\n", c->errors[i]);
    }
    assert_int_equal(c->nerrors, 0);
    const struct map_conf *m = &c->maps[0];
    assert_string_equal(m->name, "encoder-web");
    assert_int_equal(m->allow.n, 2);
    assert_int_equal(m->deny.n, 1);
    assert_int_equal(m->max_conns, 100);
    assert_int_equal(m->idle_timeout_ms, 300000);
    config_free(c);

    c = spec("tcp:0.0.0.0:554=encoder.example:554");
    assert_int_equal(c->nerrors, 0);
    assert_string_equal(c->maps[0].target_host, "encoder.example");
    config_free(c);
}

/* A SPEC has no cap on its items or their length: a list of 100 addresses, then more keys, and a
 * list longer than any buffer (3,000 bytes), all arrive whole. */
static void test_spec_long(void **state)
{
    (void)state;
    static char text[16384];
    size_t off = (size_t)snprintf(text, sizeof(text), "tcp:0.0.0.0:80=192.0.2.1:80,allow=");
    for (int i = 0; i < 100; i++) {
        off += (size_t)snprintf(text + off, sizeof(text) - off, "%s198.51.100.%d", i ? "," : "", i);
    }
    off += (size_t)snprintf(text + off, sizeof(text) - off, ",deny=198.51.100.7,max-conns=3,deny=");
    for (int i = 0; i < 200; i++) {
        off += (size_t)snprintf(text + off, sizeof(text) - off, "%s2001:db8::%x/128", i ? "," : "",
                                0x1000 + i);
    }
    assert_true(off < sizeof(text) - 1);
    struct config *c = spec(text);
    for (size_t i = 0; i < c->nerrors; i++) {
        fprintf(stderr, "%s\n", c->errors[i]);
    }
    assert_int_equal(c->nerrors, 0);
    assert_int_equal(c->maps[0].allow.n, 100);
    assert_int_equal(c->maps[0].deny.n, 201);
    assert_int_equal(c->maps[0].max_conns, 3);
    /* check shows every rule of it, and the keys after the lists. */
    char *shown = NULL;
    size_t shown_len = 0;
    FILE *f = open_memstream(&shown, &shown_len);
    config_print(c, f);
    fclose(f);
    assert_non_null(strstr(shown, ",198.51.100.99/32 deny=198.51.100.7/32,2001:db8::1000/128,"));
    assert_non_null(strstr(shown, ",2001:db8::10c7/128 max-conns=3 connect-timeout=10s"));
    free(shown);
    config_free(c);
}

static void test_spec_errors(void **state)
{
    (void)state;
    static const struct {
        const char *in, *msg;
    } bad[] = {
        {"", "--map 1: \"\": expected PROTO:LISTEN=TARGET"},
        {"tcp", "expected PROTO:LISTEN=TARGET"},
        {"tcp:0.0.0.0:80", "expected PROTO:LISTEN=TARGET"},
        {"=tcp:0.0.0.0:80", "expected PROTO:LISTEN=TARGET"},
        {"sctp:0.0.0.0:80=192.0.2.1:80",
         "--map 1: proto: \"sctp\": expected tcp, udp, tls, http, https, rtsp or rtsps"},
        {"tcp:0.0.0.0=192.0.2.1:80", "--map 1: listen: \"0.0.0.0\": expected HOST:PORT"},
        {"tcp:0.0.0.0:80=192.0.2.1", "--map 1: target: \"192.0.2.1\": expected HOST:PORT"},
        {"tcp:0.0.0.0:80=", "target: \"\": expected HOST:PORT"},
        {"tcp:0.0.0.0:80=192.0.2.1:80,max-conns", "--map 1: \"max-conns\": expected KEY=VALUE"},
        {"tcp:0.0.0.0:80=192.0.2.1:80,max-conns=", "--map 1: max-conns: empty value"},
        {"tcp:0.0.0.0:80=192.0.2.1:80,colour=red", "--map 1: unknown key \"colour\""},
        {"tcp:0.0.0.0:80=192.0.2.1:80,name=a b", "--map 1: name: \"a b\": use 1 to 63"},
        {"tcp:0.0.0.0:80=192.0.2.1:80,allow=192.0.2.0/24,nope", "allow: \"nope\": \"nope\" is not"},
        {"tcp:0.0.0.0:80=192.0.2.1:80,max-conns=1,max-conns=2", "max-conns: set twice"},
        {"udp:0.0.0.0:80=192.0.2.1:80,max-conns=1", "[map cli-1] max-conns applies to tcp"},
        {"tcp:0.0.0.0:80-81=192.0.2.1:80-82", "target: 3 ports (80-82) for 2 listening ports"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct config *c = spec(bad[i].in);
        if (!has_error(c, bad[i].msg)) {
            fprintf(stderr, "spec \"%s\" errors:\n", bad[i].in);
            for (size_t j = 0; j < c->nerrors; j++) {
                fprintf(stderr, "  %s\n", c->errors[j]);
            }
            config_free(c);
            fail_msg("missing \"%s\"", bad[i].msg);
        }
        config_free(c);
    }
    /* A --map may not reuse a name from the file or another --map. */
    struct config *c = config_new();
    config_load_buffer(c, "t.conf", MAP_OK, strlen(MAP_OK));
    config_add_spec(c, "tcp:0.0.0.0:81=192.0.2.1:80,name=web", 1);
    config_finish(c, false);
    assert_true(has_error(c, "name \"web\" is already used by [map web] at t.conf:1"));
    config_free(c);
}

static void test_resolve(void **state)
{
    (void)state;
    struct config *c = config_new();
    config_add_spec(c, "tcp:0.0.0.0:80=localhost:8080", 1);
    config_add_spec(c, "tcp:0.0.0.0:81=no-such-host.invalid:80", 2);
    assert_int_equal(config_finish(c, true), -1);
    assert_true(
        has_error(c, "--map 2: [map cli-2] target: cannot resolve \"no-such-host.invalid\""));
    assert_true(c->maps[0].target.ss_family == AF_INET || c->maps[0].target.ss_family == AF_INET6);
    assert_int_equal(addr_port(&c->maps[0].target), 8080);
    config_free(c);
}

/* send-proxy, accept-proxy and trusted-proxies: every TCP-based mapping's, checked together. */
static void test_proxy_keys(void **state)
{
    (void)state;
    struct config *c = load(MAP_OK "send-proxy = v2\naccept-proxy = any\n"
                                   "trusted-proxies = 192.0.2.0/24, 2001:db8::1\n"
                                   "[map w]\nproto = http\nlisten = 0.0.0.0:8081\n"
                                   "target = 192.0.2.10:80\nsend-proxy = v1\n",
                            false);
    for (size_t i = 0; i < c->nerrors; i++) {
        fprintf(stderr, "%s\n", c->errors[i]);
    }
    assert_int_equal(c->nerrors, 0);
    assert_int_equal(c->maps[0].send_proxy, PROXYHDR_V2);
    assert_int_equal(c->maps[0].accept_proxy, PROXYHDR_ANY);
    assert_int_equal(c->maps[0].trusted.n, 2);
    assert_int_equal(c->maps[1].send_proxy, PROXYHDR_V1);
    assert_int_equal(c->maps[1].accept_proxy, PROXYHDR_OFF);
    config_free(c);
    c = load(MAP_OK "send-proxy = off\naccept-proxy = off\n", false);
    assert_int_equal(c->nerrors, 0);
    assert_int_equal(c->maps[0].send_proxy, PROXYHDR_OFF);
    config_free(c);

    expect_error(MAP_OK "send-proxy = v3\n",
                 "t.conf:5: [map web] send-proxy: \"v3\": expected v1, v2 or off");
    expect_error(MAP_OK "send-proxy = any\n", "send-proxy: \"any\": expected v1, v2 or off");
    expect_error(MAP_OK "accept-proxy = V1\ntrusted-proxies = 192.0.2.1\n",
                 "accept-proxy: \"V1\": expected v1, v2, any or off");
    expect_error(MAP_OK "accept-proxy = v1\n",
                 "t.conf:1: [map web] accept-proxy: set trusted-proxies to the addresses of the "
                 "proxies");
    expect_error(MAP_OK "trusted-proxies = 192.0.2.1/8\n",
                 "t.conf:5: [map web] trusted-proxies: \"192.0.2.1/8\"");
    expect_error(MAP_OK "trusted-proxies = 192.0.2.1\ntrusted-proxies = 192.0.2.2\n",
                 "t.conf:6: [map web] trusted-proxies: set twice in this mapping");
    expect_error(MAP_OK "trusted-proxies = 192.0.2.1,\n  192.0.2.2\n",
                 "only allow and deny may continue on a following line");
    char many[1024] = MAP_OK "trusted-proxies = 10.0.0.1";
    for (int i = 2; i <= 17; i++) {
        snprintf(many + strlen(many), sizeof(many) - strlen(many), ",10.0.0.%d", i);
    }
    strcat(many, "\n");
    expect_error(many, "trusted-proxies: \"10.0.0.1,10.0.0.2");
    expect_error(many, "at most 16 entries");
    const char *udp = "[map u]\nproto = udp\nlisten = 0.0.0.0:5000\ntarget = 192.0.2.1:5000\n";
    const char *keys[] = {"send-proxy = v1", "accept-proxy = v2", "trusted-proxies = 192.0.2.1"};
    for (size_t i = 0; i < 3; i++) {
        char text[256], want[128];
        snprintf(text, sizeof(text), "%s%s\n", udp, keys[i]);
        snprintf(want, sizeof(want), "t.conf:1: [map u] %.*s applies to tcp mappings only",
                 (int)strcspn(keys[i], " "), keys[i]);
        expect_error(text, want);
    }

    /* What check shows, and what makes two mappings differ. */
    c = load(MAP_OK "send-proxy = v1\naccept-proxy = v2\ntrusted-proxies = 192.0.2.0/24\n", false);
    struct config *d = load(MAP_OK "send-proxy = v2\naccept-proxy = v2\n"
                                   "trusted-proxies = 192.0.2.0/24\n",
                            false);
    struct config *e = load(MAP_OK "send-proxy = v1\naccept-proxy = v2\n"
                                   "trusted-proxies = 192.0.3.0/24\n",
                            false);
    struct config *f = load(MAP_OK "send-proxy = v1\naccept-proxy = any\n"
                                   "trusted-proxies = 192.0.2.0/24\n",
                            false);
    assert_false(map_conf_equal(&c->maps[0], &d->maps[0]));
    assert_false(map_conf_equal(&c->maps[0], &e->maps[0]));
    assert_false(map_conf_equal(&c->maps[0], &f->maps[0]));
    struct map_conf copy;
    assert_int_equal(map_conf_copy(&copy, &c->maps[0]), 0);
    assert_true(map_conf_equal(&copy, &c->maps[0]));
    map_conf_clear(&copy);
    char *shown = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&shown, &len);
    config_print(c, out);
    fclose(out);
    assert_non_null(strstr(shown, " connect-timeout=10s send-proxy=v1 accept-proxy=v2 "
                                  "trusted-proxies=192.0.2.0/24 idle-timeout=1h"));
    free(shown);
    config_free(c);
    config_free(d);
    config_free(e);
    config_free(f);
}

static void test_equal_and_copy(void **state)
{
    (void)state;
    struct config *a = load(MAP_OK "allow = 192.0.2.0/24\n", false);
    struct config *b = load(MAP_OK "allow = 192.0.2.0/24\n", false);
    struct config *d = load(MAP_OK "allow = 192.0.3.0/24\n", false);
    struct config *e =
        load("[map web]\nproto = tcp\nlisten = 0.0.0.0:8080\ntarget = 192.0.2.11:80\n", false);
    assert_true(map_conf_equal(&a->maps[0], &b->maps[0]));
    assert_false(map_conf_equal(&a->maps[0], &d->maps[0]));
    assert_true(map_conf_same_listen(&a->maps[0], &d->maps[0]));
    assert_false(map_conf_equal(&a->maps[0], &e->maps[0]));
    struct map_conf copy;
    assert_int_equal(map_conf_copy(&copy, &a->maps[0]), 0);
    assert_true(map_conf_equal(&copy, &a->maps[0]));
    map_conf_clear(&copy);
    config_free(a);
    config_free(b);
    config_free(d);
    config_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_file_ok),
        cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_file_no_false_errors),
        cmocka_unit_test(test_file_io_errors),
        cmocka_unit_test(test_spec_ok),
        cmocka_unit_test(test_spec_long),
        cmocka_unit_test(test_rtsp_ok),
        cmocka_unit_test(test_spec_errors),
        cmocka_unit_test(test_resolve),
        cmocka_unit_test(test_equal_and_copy),
        cmocka_unit_test(test_proxy_keys),
        cmocka_unit_test(test_admin_keys),
        cmocka_unit_test(test_map_keys_round_trip),
        cmocka_unit_test(test_device_auth),
        cmocka_unit_test(test_clashes_match_brute_force),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
