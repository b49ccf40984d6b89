/* tls: the keys (parsed, refused, formatted back), the run object made from real files (made by
 * tls_cert_make), and the digest that tells a reload whether the files changed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "guard.h"
#include "tls/tls.h"
#include "tls/tls_cert.h"

static int set(struct tls_conf *c, const char *key, const char *val, char *why, size_t len)
{
    struct guarded g = guard_str(val);
    int rc = tls_conf_set(c, key, g.p, why, len);
    guard_free(g);
    return rc;
}

static void test_keys(void **state)
{
    (void)state;
    struct tls_conf c;
    char why[256];
    tls_conf_init(&c, NULL, 0);
    assert_int_equal(c.min_version, TLS1_2_VERSION);
    assert_int_equal(c.handshake_ms, TLS_HANDSHAKE_MS);
    assert_int_equal(set(&c, "cert", "/a.pem,/b.pem", why, sizeof(why)), 0);
    assert_int_equal(set(&c, "key", "/a.key,/b.key", why, sizeof(why)), 0);
    assert_int_equal(set(&c, "ocsp", ",/b.der", why, sizeof(why)), 0);
    assert_int_equal(set(&c, "min-tls", "1.3", why, sizeof(why)), 0);
    assert_int_equal(set(&c, "alpn", "http/1.1,h2", why, sizeof(why)), 0);
    assert_int_equal(set(&c, "handshake-timeout", "3s", why, sizeof(why)), 0);
    assert_int_equal(set(&c, "ciphers", "ECDHE-ECDSA-AES128-GCM-SHA256", why, sizeof(why)), 0);
    char buf[4096];
    tls_conf_format(&c, buf, sizeof(buf));
    assert_string_equal(buf, "cert=/a.pem,/b.pem key=/a.key,/b.key ocsp=,/b.der min-tls=1.3 "
                             "ciphers=ECDHE-ECDSA-AES128-GCM-SHA256 alpn=http/1.1,h2 "
                             "handshake-timeout=3s");
    /* What format wrote, set again, makes the same settings. */
    struct tls_conf d;
    tls_conf_init(&d, NULL, 0);
    char *save = NULL;
    for (char *item = strtok_r(buf, " ", &save); item != NULL; item = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(item, '=');
        *eq = '\0';
        assert_int_equal(tls_conf_set(&d, item, eq + 1, why, sizeof(why)), 0);
    }
    assert_memory_equal(&c, &d, sizeof(c));

    /* A protocol that decides ALPN itself (https) does not show it. */
    tls_conf_init(&d, "http/1.1", 0);
    tls_conf_format(&d, buf, sizeof(buf));
    assert_string_equal(buf, "min-tls=1.2 handshake-timeout=10s");
    assert_true(d.alpn_fixed);
}

static void test_refusals(void **state)
{
    (void)state;
    static const struct {
        const char *key, *val, *msg;
    } bad[] = {
        {"cert", "rel.pem", "give an absolute path"},
        {"cert", "/a.pem,", "an empty entry"},
        {"cert", ",/a.pem", "an empty entry"},
        {"key", "/a b.key", "a space"},
        {"cert", "/1,/2,/3,/4,/5,/6,/7,/8,/9", "at most 8 files"},
        {"ocsp", "/a.der,x", "give an absolute path"},
        {"min-tls", "1.1", "1.2 or 1.3"},
        {"min-tls", "", "1.2 or 1.3"},
        {"ciphers", "A B", "no spaces"},
        {"alpn", "h2,,http/1.1", "expected protocol names"},
        {"alpn", "h\x01", "printable"},
        {"alpn", "012345678901234567890123456789012", "expected protocol names"},
        {"handshake-timeout", "0", "1s or more"},
        {"handshake-timeout", "10", "missing unit"},
        {"nope", "x", "not a TLS key"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct tls_conf c;
        tls_conf_init(&c, NULL, 0);
        struct tls_conf before = c;
        char why[256] = "";
        assert_int_equal(set(&c, bad[i].key, bad[i].val, why, sizeof(why)), -1);
        if (strstr(why, bad[i].msg) == NULL) {
            fail_msg("%s=%s: got \"%s\", want \"%s\"", bad[i].key, bad[i].val, why, bad[i].msg);
        }
        assert_memory_equal(&c, &before, sizeof(c)); /* nothing changed */
    }
    char longval[TLS_LIST_LEN + 10];
    memset(longval, 'a', sizeof(longval) - 1);
    longval[0] = '/';
    longval[sizeof(longval) - 1] = '\0';
    struct tls_conf c;
    tls_conf_init(&c, NULL, 0);
    char why[256];
    assert_int_equal(set(&c, "cert", longval, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "longer than"));
}

/* A directory with two certificates made by portgate cert. */
struct files {
    char dir[64], a_crt[128], a_key[128], b_crt[128], b_key[128];
};

static void make_files(struct files *f)
{
    snprintf(f->dir, sizeof(f->dir), "/tmp/portgate-tls-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->a_crt, sizeof(f->a_crt), "%s/a.crt", f->dir);
    snprintf(f->a_key, sizeof(f->a_key), "%s/a.key", f->dir);
    snprintf(f->b_crt, sizeof(f->b_crt), "%s/b.crt", f->dir);
    snprintf(f->b_key, sizeof(f->b_key), "%s/b.key", f->dir);
    const char *an[] = {"a.example.org"}, *bn[] = {"b.example.org", "192.0.2.1"};
    char fp[128], why[256];
    assert_int_equal(
        tls_cert_make(an, 1, 30, f->a_crt, f->a_key, false, fp, sizeof(fp), why, sizeof(why)), 0);
    assert_int_equal(strlen(fp), 95); /* 32 bytes, colons between */
    assert_int_equal(
        tls_cert_make(bn, 2, 30, f->b_crt, f->b_key, false, fp, sizeof(fp), why, sizeof(why)), 0);
    struct stat st;
    assert_int_equal(stat(f->a_key, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* Existing files are kept unless forced. */
    assert_int_equal(
        tls_cert_make(an, 1, 30, f->a_crt, f->a_key, false, fp, sizeof(fp), why, sizeof(why)), -1);
    assert_non_null(strstr(why, "File exists"));
    const char *badname[] = {"a..b"};
    assert_int_equal(
        tls_cert_make(badname, 1, 30, f->a_crt, f->a_key, true, fp, sizeof(fp), why, sizeof(why)),
        -1);
    assert_non_null(strstr(why, "not a DNS name"));
}

static void remove_files(struct files *f)
{
    unlink(f->a_crt);
    unlink(f->a_key);
    unlink(f->b_crt);
    unlink(f->b_key);
    rmdir(f->dir);
}

static void *open_run(struct tls_conf *c, unsigned char id[32], char *why, size_t len)
{
    return tls_run_open(c, "test", id, why, len);
}

static void test_run(void **state)
{
    (void)state;
    struct files f;
    make_files(&f);
    struct tls_conf c;
    char why[512], val[512];
    unsigned char id1[32], id2[32], id3[32];
    tls_conf_init(&c, NULL, 0);
    assert_null(open_run(&c, id1, why, sizeof(why)));
    assert_non_null(strstr(why, "cert: a TLS mapping needs its certificate"));

    snprintf(val, sizeof(val), "%s,%s", f.a_crt, f.b_crt);
    assert_int_equal(tls_conf_set(&c, "cert", val, why, sizeof(why)), 0);
    snprintf(val, sizeof(val), "%s,%s", f.a_key, f.b_key);
    assert_int_equal(tls_conf_set(&c, "key", val, why, sizeof(why)), 0);
    void *run = open_run(&c, id1, why, sizeof(why));
    assert_non_null(run);
    tls_run_close(run);
    /* The same files: the same id. */
    run = open_run(&c, id2, why, sizeof(why));
    assert_non_null(run);
    tls_run_close(run);
    assert_memory_equal(id1, id2, 32);

    /* Keys swapped: each matches the other's certificate. */
    snprintf(val, sizeof(val), "%s,%s", f.b_key, f.a_key);
    assert_int_equal(tls_conf_set(&c, "key", val, why, sizeof(why)), 0);
    assert_null(open_run(&c, id3, why, sizeof(why)));
    snprintf(val, sizeof(val), "key: %s does not match the certificate in %s", f.b_key, f.a_crt);
    assert_string_equal(why, val);

    /* A renewed certificate at the same path: another id. */
    snprintf(val, sizeof(val), "%s,%s", f.a_key, f.b_key);
    assert_int_equal(tls_conf_set(&c, "key", val, why, sizeof(why)), 0);
    const char *an[] = {"a.example.org"};
    char fp[128];
    assert_int_equal(
        tls_cert_make(an, 1, 30, f.a_crt, f.a_key, true, fp, sizeof(fp), why, sizeof(why)), 0);
    run = open_run(&c, id3, why, sizeof(why));
    assert_non_null(run);
    tls_run_close(run);
    assert_memory_not_equal(id1, id3, 32);

    /* Settings count in the id too. */
    assert_int_equal(tls_conf_set(&c, "min-tls", "1.3", why, sizeof(why)), 0);
    run = open_run(&c, id2, why, sizeof(why));
    assert_non_null(run);
    tls_run_close(run);
    assert_memory_not_equal(id2, id3, 32);

    /* A key in the cert file. */
    tls_conf_init(&c, NULL, 0);
    assert_int_equal(tls_conf_set(&c, "cert", f.a_crt, why, sizeof(why)), 0);
    assert_null(open_run(&c, id1, why, sizeof(why)));
    assert_non_null(strstr(why, "no PEM private key in it; give key = FILE"));
    FILE *out = fopen(f.a_crt, "a"), *in = fopen(f.a_key, "r");
    char line[256];
    while (fgets(line, sizeof(line), in) != NULL) {
        fputs(line, out);
    }
    fclose(in);
    fclose(out);
    run = open_run(&c, id1, why, sizeof(why));
    assert_non_null(run);
    tls_run_close(run);

    /* A directory, not a file. */
    assert_int_equal(tls_conf_set(&c, "cert", f.dir, why, sizeof(why)), 0);
    assert_null(open_run(&c, id1, why, sizeof(why)));
    snprintf(val, sizeof(val), "cert: %s: not a regular file", f.dir);
    assert_string_equal(why, val);
    remove_files(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_run),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
