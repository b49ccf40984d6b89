/* proto/http/http_acme: which targets are challenges, which tokens are taken, and every way
 * reading a token's file from a webroot answers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "guard.h"
#include "proto/http/http_acme.h"

/* The target's bytes without their NUL, right before a PROT_NONE page: a read past them faults.
 * Checks that http_acme_target() agrees that a token is a challenge. */
static bool token_of(const char *target, char *token)
{
    size_t n = strlen(target);
    struct guarded g = guard_bytes(target, n);
    bool ok = http_acme_token(g.p, n, token);
    assert_true(!ok || http_acme_target(g.p, n));
    guard_free(g);
    return ok;
}

static bool target(const char *t, size_t n)
{
    struct guarded g = guard_bytes(t, n);
    bool ok = http_acme_target(g.p, n);
    guard_free(g);
    return ok;
}

static void test_target_and_token(void **state)
{
    (void)state;
    char tok[HTTP_ACME_TOKEN_MAX + 1];
    const char *t = "/.well-known/acme-challenge/LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0";
    assert_true(target(t, strlen(t)));
    assert_true(token_of(t, tok));
    assert_string_equal(tok, "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0");
    assert_true(token_of("/.well-known/acme-challenge/a-b_C9", tok));
    assert_string_equal(tok, "a-b_C9");

    /* Not under the prefix: the device's, as any request. The target is not NUL-terminated. */
    assert_false(target("/.well-known/acme-challenge", 27));
    assert_false(target("/.well-known/acme-challengeX/a", 30));
    assert_false(target("/.Well-Known/acme-challenge/a", 29));
    assert_false(target("/x/.well-known/acme-challenge/a", 31));
    assert_false(target("/.well-known/acme-challenge/a", 20));
    assert_false(target("", 0));
    assert_false(token_of("/index.html", tok));

    /* Under it, but no token: the gateway answers 404. */
    const char *bad[] = {
        "/.well-known/acme-challenge/",      "/.well-known/acme-challenge/a.b",
        "/.well-known/acme-challenge/..",    "/.well-known/acme-challenge/a/b",
        "/.well-known/acme-challenge/a%2Fb", "/.well-known/acme-challenge/a?x=1",
        "/.well-known/acme-challenge/a=",    "/.well-known/acme-challenge/a+b",
        "/.well-known/acme-challenge/a b",   "/.well-known/acme-challenge/\xc3\xa9",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        tok[0] = 'x';
        assert_true(target(bad[i], strlen(bad[i])));
        assert_false(token_of(bad[i], tok));
        assert_string_equal(tok, "");
    }
    /* 128 characters at most. */
    char t128[200], t129[200];
    snprintf(t128, sizeof(t128), "%s%0128d", HTTP_ACME_PREFIX, 0);
    snprintf(t129, sizeof(t129), "%s%0129d", HTTP_ACME_PREFIX, 0);
    assert_true(token_of(t128, tok));
    assert_int_equal(strlen(tok), 128);
    assert_false(token_of(t129, tok));
    /* A NUL inside the target is no base64url character either. */
    struct guarded g = guard_bytes("/.well-known/acme-challenge/a\0b", 31);
    assert_false(http_acme_token(g.p, 31, tok));
    guard_free(g);
}

static char root[64];

static void path(char *buf, size_t len, const char *rel)
{
    snprintf(buf, len, "%s/%s", root, rel);
}

static void write_file(const char *rel, const char *text, size_t n)
{
    char p[256];
    path(p, sizeof(p), rel);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, n, f), n);
    fclose(f);
}

static int setup_root(void **state)
{
    (void)state;
    snprintf(root, sizeof(root), "/tmp/portgate-acme-XXXXXX");
    assert_non_null(mkdtemp(root));
    char p[256];
    path(p, sizeof(p), ".well-known");
    assert_int_equal(mkdir(p, 0755), 0);
    path(p, sizeof(p), ".well-known/acme-challenge");
    assert_int_equal(mkdir(p, 0755), 0);
    return 0;
}

static int teardown_root(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
    assert_int_equal(system(cmd), 0);
    return 0;
}

/* Reads token; returns the status, with body and why for the caller to check. */
static int read_token(const char *webroot, const char *token, char **body, size_t *len, char *why)
{
    why[0] = '\0';
    return http_acme_read(webroot, token, body, len, why, 256);
}

static void test_read(void **state)
{
    (void)state;
    char *body, why[256], p[256], p2[256];
    size_t len;
    const char *ka = "tok1.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI";
    write_file(".well-known/acme-challenge/tok1", ka, strlen(ka));

    assert_int_equal(read_token(root, "tok1", &body, &len, why), 200);
    assert_int_equal(len, strlen(ka));
    assert_memory_equal(body, ka, len);
    free(body);

    /* Missing. */
    assert_int_equal(read_token(root, "nope", &body, &len, why), 404);
    assert_null(body);
    assert_string_equal(why, "no such token");

    /* A symbolic link, even to a good file. */
    path(p, sizeof(p), ".well-known/acme-challenge/tok1");
    path(p2, sizeof(p2), ".well-known/acme-challenge/link");
    assert_int_equal(symlink(p, p2), 0);
    assert_int_equal(read_token(root, "link", &body, &len, why), 404);
    assert_string_equal(why, "the token's file is a symbolic link");

    /* A directory; a FIFO (whose open must not wait for a writer). */
    path(p, sizeof(p), ".well-known/acme-challenge/dir");
    assert_int_equal(mkdir(p, 0755), 0);
    assert_int_equal(read_token(root, "dir", &body, &len, why), 404);
    assert_string_equal(why, "the token's file is not a regular file");
    path(p, sizeof(p), ".well-known/acme-challenge/fifo");
    assert_int_equal(mkfifo(p, 0644), 0);
    assert_int_equal(read_token(root, "fifo", &body, &len, why), 404);
    assert_string_equal(why, "the token's file is not a regular file");

    /* 4096 bytes at most: a larger file is the operator's mistake (500). */
    static char big[HTTP_ACME_FILE_MAX + 1];
    memset(big, 'a', sizeof(big));
    write_file(".well-known/acme-challenge/max", big, HTTP_ACME_FILE_MAX);
    assert_int_equal(read_token(root, "max", &body, &len, why), 200);
    assert_int_equal(len, HTTP_ACME_FILE_MAX);
    free(body);
    write_file(".well-known/acme-challenge/big", big, sizeof(big));
    assert_int_equal(read_token(root, "big", &body, &len, why), 500);
    assert_null(body);
    assert_string_equal(why, "the token's file is larger than 4096 bytes");
    /* An empty file is answered as it is. */
    write_file(".well-known/acme-challenge/empty", "", 0);
    assert_int_equal(read_token(root, "empty", &body, &len, why), 200);
    assert_int_equal(len, 0);
    free(body);
}

static void test_read_directories(void **state)
{
    (void)state;
    char *body, why[256], p[256], other[256], cmd[600];
    size_t len;
    /* A webroot with no .well-known yet (the ACME client makes it): no such token. */
    char empty[] = "/tmp/portgate-acme-empty-XXXXXX";
    assert_non_null(mkdtemp(empty));
    assert_int_equal(read_token(empty, "tok", &body, &len, why), 404);
    assert_non_null(strstr(why, "no such token (no "));
    assert_non_null(strstr(why, "/.well-known)"));
    snprintf(p, sizeof(p), "%s/.well-known", empty);
    assert_int_equal(mkdir(p, 0755), 0);
    assert_int_equal(read_token(empty, "tok", &body, &len, why), 404);
    assert_non_null(strstr(why, "/.well-known/acme-challenge)"));

    /* A link in place of acme-challenge, to a directory holding the token: not followed. */
    snprintf(other, sizeof(other), "%s/elsewhere", empty);
    assert_int_equal(mkdir(other, 0755), 0);
    snprintf(cmd, sizeof(cmd), "echo secret > %s/tok", other);
    assert_int_equal(system(cmd), 0);
    snprintf(p, sizeof(p), "%s/.well-known/acme-challenge", empty);
    assert_int_equal(symlink(other, p), 0);
    assert_int_equal(read_token(empty, "tok", &body, &len, why), 404);
    assert_non_null(strstr(why, "is a symbolic link or not a directory"));

    /* The webroot itself gone after the check: the gateway's trouble (500). */
    snprintf(cmd, sizeof(cmd), "rm -rf %s", empty);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(read_token(empty, "tok", &body, &len, why), 500);
    assert_non_null(strstr(why, "No such file or directory"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_target_and_token),
        cmocka_unit_test_setup_teardown(test_read, setup_root, teardown_root),
        cmocka_unit_test(test_read_directories),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
