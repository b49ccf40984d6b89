/* message/digest: challenges read (the best of several, each refusal), and the answers checked
 * against RFC 7616's own examples (3.9.1, MD5 and SHA-256) and RFC 7617's (Basic). */
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

#include "message/digest.h"

static int parse(const char *v, struct digest_challenge *c, const char **why)
{
    return digest_parse(v, strlen(v), c, why);
}

static void test_rfc7616_examples(void **state)
{
    (void)state;
    struct digest_challenge c;
    const char *why;
    /* RFC 7616 3.9.1: the server offers SHA-256 and MD5; SHA-256 is taken. */
    const char *both = "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", "
                       "algorithm=SHA-256, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", "
                       "opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\", "
                       "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", "
                       "algorithm=MD5, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", "
                       "opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"";
    assert_int_equal(parse(both, &c, &why), 0);
    assert_int_equal(c.scheme, DIGEST_SHA256);
    assert_true(c.qop_auth);
    assert_string_equal(c.realm, "http-auth@example.org");
    assert_string_equal(c.opaque, "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS");
    const char *cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
    char out[DIGEST_CRED_MAX];
    size_t n = digest_credentials_cnonce(&c, "Mufasa", "Circle of Life", "GET", 3,
                                         "/dir/index.html", 15, 1, cnonce, out, sizeof(out));
    assert_true(n > 0);
    assert_non_null(strstr(out, "response=\"753927fa0e85d155564e2e272a28d1802ca10daf4496794697c"
                                "f8db5856cb6c1\""));
    assert_non_null(strstr(out, "qop=auth, nc=00000001, cnonce=\"f2/wE4q74E6zIJEtWaHKaf5wv/"));
    assert_non_null(strstr(out, "algorithm=SHA-256"));
    c.scheme = DIGEST_MD5;
    n = digest_credentials_cnonce(&c, "Mufasa", "Circle of Life", "GET", 3, "/dir/index.html", 15,
                                  1, cnonce, out, sizeof(out));
    assert_non_null(strstr(out, "response=\"8ca523f5e9506fed4657c9700eebdbec\""));
    assert_int_equal(n, strlen(out));
}

static void test_basic_and_rfc2069(void **state)
{
    (void)state;
    struct digest_challenge c;
    const char *why;
    assert_int_equal(parse("Basic realm=\"WallyWorld\"", &c, &why), 0);
    assert_int_equal(c.scheme, DIGEST_BASIC);
    char out[DIGEST_CRED_MAX];
    /* RFC 7617 2: Aladdin / open sesame. */
    assert_int_equal(
        digest_credentials(&c, "Aladdin", "open sesame", "GET", 3, "/", 1, 1, out, sizeof(out)),
        strlen("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="));
    assert_string_equal(out, "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
    assert_int_equal(digest_credentials(&c, "a:b", "x", "GET", 3, "/", 1, 1, out, sizeof(out)), 0);
    /* Basic and Digest offered: Digest. No qop (RFC 2069, as RTSP cameras do): no nc. An
     * escaped quote in the realm comes back escaped. */
    assert_int_equal(
        parse("Basic realm=\"x\", Digest realm=\"a\\\"b\", nonce=abc, stale=TRUE", &c, &why), 0);
    assert_int_equal(c.scheme, DIGEST_MD5);
    assert_false(c.qop_auth);
    assert_true(c.stale);
    assert_string_equal(c.realm, "a\"b");
    size_t n = digest_credentials(&c, "u\"1", "p", "DESCRIBE", 8, "rtsp://192.0.2.10/s", 19, 1, out,
                                  sizeof(out));
    assert_true(n > 0);
    assert_non_null(strstr(out, "username=\"u\\\"1\", realm=\"a\\\"b\", nonce=\"abc\", "
                                "uri=\"rtsp://192.0.2.10/s\", algorithm=MD5, response=\""));
    assert_null(strstr(out, "nc="));
    /* Too small a buffer: nothing. */
    assert_int_equal(digest_credentials(&c, "u", "p", "GET", 3, "/", 1, 1, out, 40), 0);
}

static void test_refusals(void **state)
{
    (void)state;
    struct digest_challenge c;
    const char *why;
    const char *bad[][2] = {
        {"", "no challenge"},
        {"Bearer realm=x", "no Basic or Digest challenge"},
        {"Digest nonce=abc", "without a realm"},
        {"Digest realm=x", "without a nonce"},
        {"Digest realm=x, nonce=a, qop=auth-int", "qop=auth-int only"},
        {"Digest realm=x, nonce=a, algorithm=SHA-512-256", "an algorithm other than"},
        {"Digest realm=x, nonce=a, algorithm=MD5-sess", "a -sess algorithm"},
        {"Digest realm=x, nonce=a, userhash=true", "userhash"},
        {"Digest realm=x, realm=y, nonce=a", "given twice"},
        {"Digest realm=\"x, nonce=a", "without its end"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(parse(bad[i][0], &c, &why), -1);
        assert_non_null(strstr(why, bad[i][1]));
    }
    char longv[600] = "Digest realm=x, nonce=\"";
    memset(longv + strlen(longv), 'a', 300);
    strcat(longv, "\"");
    assert_int_equal(parse(longv, &c, &why), -1);
    assert_non_null(strstr(why, "too long"));
    /* A refused challenge beside a good one: the good one. */
    assert_int_equal(parse("Digest realm=x, nonce=a, algorithm=foo, Basic realm=y", &c, &why), 0);
    assert_int_equal(c.scheme, DIGEST_BASIC);
}

static void test_login(void **state)
{
    (void)state;
    struct digest_login l;
    char why[512], buf[600];
    assert_int_equal(digest_login_set(&l, "admin:se:cret", why, sizeof(why)), 0);
    assert_string_equal(l.user, "admin");
    assert_string_equal(l.password, "se:cret");
    digest_login_format(&l, buf, sizeof(buf));
    assert_string_equal(buf, "admin:se:cret");
    assert_int_equal(digest_login_set(&l, "off", why, sizeof(why)), 0);
    assert_string_equal(l.user, "");
    const char *bad[] = {"secret", ":secret", "a:b\tc"};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(digest_login_set(&l, bad[i], why, sizeof(why)), -1);
        assert_null(strstr(why, "secret")); /* never the password */
        assert_non_null(strstr(why, "(not shown)"));
    }
    char path[] = "/tmp/portgate-test-login-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "cam:pw1\n", 8), 8);
    close(fd);
    char val[300];
    snprintf(val, sizeof(val), "file:%s", path);
    assert_int_equal(digest_login_set(&l, val, why, sizeof(why)), 0);
    assert_string_equal(l.user, "cam");
    assert_string_equal(l.password, "pw1");
    digest_login_format(&l, buf, sizeof(buf));
    assert_string_equal(buf, val);
    chmod(path, 0644);
    assert_int_equal(digest_login_set(&l, val, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "readable by every user"));
    unlink(path);
    assert_int_equal(digest_login_set(&l, val, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "No such file"));
    assert_int_equal(digest_login_set(&l, "file:relative", why, sizeof(why)), -1);
    assert_non_null(strstr(why, "an absolute path"));
}

/* ---- the server side ---- */

static int answer(const char *v, struct digest_answer *a, const char **why)
{
    return digest_answer_parse(v, strlen(v), a, why);
}

static void test_answers(void **state)
{
    (void)state;
    struct digest_answer a;
    const char *why = NULL;
    /* RFC 7617 2: Aladdin's. */
    assert_int_equal(answer("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==", &a, &why), 0);
    assert_int_equal(a.scheme, DIGEST_BASIC);
    assert_string_equal(a.user, "Aladdin");
    assert_string_equal(a.password, "open sesame");
    /* RFC 7616 3.9.1, SHA-256 then MD5 (the same request, its own response). */
    const char *sha =
        "Digest username=\"Mufasa\", realm=\"http-auth@example.org\", uri=\"/dir/index.html\", "
        "algorithm=SHA-256, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", "
        "nc=00000001, cnonce=\"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ\", qop=auth, "
        "response=\"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1\", "
        "opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"";
    assert_int_equal(answer(sha, &a, &why), 0);
    assert_int_equal(a.scheme, DIGEST_SHA256);
    assert_string_equal(a.user, "Mufasa");
    assert_string_equal(a.uri, "/dir/index.html");
    assert_true(a.qop_auth);
    char ha1[65];
    digest_ha1(DIGEST_SHA256, "Mufasa", "http-auth@example.org", "Circle of Life", ha1);
    assert_true(digest_answer_ok(&a, ha1, "GET", 3));
    assert_false(digest_answer_ok(&a, ha1, "PUT", 3));
    digest_ha1(DIGEST_SHA256, "Mufasa", "http-auth@example.org", "Circle of life", ha1);
    assert_false(digest_answer_ok(&a, ha1, "GET", 3));
    const char *md5 =
        "Digest username=\"Mufasa\", realm=\"http-auth@example.org\", uri=\"/dir/index.html\", "
        "algorithm=MD5, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", "
        "nc=00000001, cnonce=\"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ\", qop=auth, "
        "response=\"8CA523F5E9506FED4657C9700EEBDBEC\"";
    assert_int_equal(answer(md5, &a, &why), 0);
    digest_ha1(DIGEST_MD5, "Mufasa", "http-auth@example.org", "Circle of Life", ha1);
    assert_true(digest_answer_ok(&a, ha1, "GET", 3));
    /* The RFC 2069 form (no qop), as live555 answers: MD5 without algorithm=. */
    struct digest_challenge c = {.scheme = DIGEST_MD5};
    strcpy(c.realm, "portgate");
    strcpy(c.nonce, "abc");
    char cred[DIGEST_CRED_MAX];
    assert_true(digest_credentials_cnonce(&c, "alice", "pw", "DESCRIBE", 8, "rtsps://h/s", 11, 1,
                                          "x", cred, sizeof(cred)) > 0);
    assert_int_equal(answer(cred, &a, &why), 0);
    assert_false(a.qop_auth);
    digest_ha1(DIGEST_MD5, "alice", "portgate", "pw", ha1);
    assert_true(digest_answer_ok(&a, ha1, "DESCRIBE", 8));
    assert_false(digest_answer_ok(&a, ha1, "DESCRIBE", 7));
    /* What a server offers: three lines, each a challenge this parser reads back. */
    char ch[DIGEST_CHALLENGES_MAX];
    size_t n = digest_challenges_write(ch, sizeof(ch), "portgate", "nonce1", true);
    assert_true(n > 0 && n == strlen(ch));
    assert_non_null(
        strstr(ch, "algorithm=MD5, qop=\"auth\", stale=true\r\nWWW-Authenticate: Basic"));
    assert_int_equal(digest_challenges_write(ch, 40, "portgate", "nonce1", false), 0);
}

static void test_answer_refusals(void **state)
{
    (void)state;
    static const struct {
        const char *value, *why;
    } cases[] = {
        {"Bearer abc", "no Basic or Digest"},
        {"Basic", "not base64"},
        {"Basic QWxhZGRpbg==", "without a ':'"}, /* "Aladdin" */
        {"Basic OnB3", "empty"},                 /* ":pw" */
        {"Basic YQFiOnB3", "control character"}, /* "a\x01b:pw" */
        {"Basic QWxh ZGRp", "not base64"},
        {"Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"/\"", "without its username"},
        {"Digest username=\"a\", username=\"b\"", "twice"},
        {"Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"/\", response=\"00\"",
         "malformed"},
        {"Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"/\", algorithm=MD5-sess, "
         "response=\"0123456789abcdef0123456789abcdef\"",
         "algorithm"},
        {"Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"/\", qop=auth-int, "
         "response=\"0123456789abcdef0123456789abcdef\"",
         "qop"},
        {"Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"/\", qop=auth, "
         "response=\"0123456789abcdef0123456789abcdef\"",
         "no nc or cnonce"},
        {"Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"/\", userhash=true, "
         "response=\"0123456789abcdef0123456789abcdef\"",
         "userhash"},
        {"Digest username*=UTF-8''a, realm=\"r\"", "username*"},
        {"Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"/\", algorithm=SHA-256, "
         "response=\"0123456789abcdef0123456789abcdef\"",
         "wrong length"},
        {"Digest username=\"a\nb\", realm=\"r\"", "control character"},
        {"Digest username=\"a", "without its end"},
        {"Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"/\", "
         "response=\"0123456789abcdef0123456789abcdef\" junk",
         "junk"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct digest_answer a;
        const char *why = NULL;
        if (answer(cases[i].value, &a, &why) != -1 || why == NULL ||
            strstr(why, cases[i].why) == NULL) {
            fail_msg("case %zu: %s: got %s", i, cases[i].value, why ? why : "(accepted)");
        }
        assert_string_equal(a.password, "");
    }
    /* A uri of DIGEST_URI_MAX bytes is too long; one byte less fits. */
    char v[DIGEST_URI_MAX + 200];
    char uri[DIGEST_URI_MAX + 1];
    memset(uri, 'u', DIGEST_URI_MAX);
    uri[DIGEST_URI_MAX] = '\0';
    snprintf(v, sizeof(v),
             "Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"%s\", "
             "response=\"0123456789abcdef0123456789abcdef\"",
             uri);
    struct digest_answer a;
    const char *why;
    assert_int_equal(answer(v, &a, &why), -1);
    uri[DIGEST_URI_MAX - 1] = '\0';
    snprintf(v, sizeof(v),
             "Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"%s\", "
             "response=\"0123456789abcdef0123456789abcdef\"",
             uri);
    assert_int_equal(answer(v, &a, &why), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc7616_examples), cmocka_unit_test(test_basic_and_rfc2069),
        cmocka_unit_test(test_refusals),         cmocka_unit_test(test_login),
        cmocka_unit_test(test_answers),          cmocka_unit_test(test_answer_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
