/* auth/users: the users file's parser, passwords, tokens, and changes under the lock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/users.h"
#include "guard.h"

static struct users *parse(const char *text)
{
    struct guarded g = guard_bytes(text, strlen(text));
    struct users *u = users_parse("u", g.p, strlen(text));
    guard_free(g);
    assert_non_null(u);
    return u;
}

#define HASH "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"
#define THASH "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

static void test_parse(void **state)
{
    (void)state;
    struct users *u = parse("# c\n\nuser alice " HASH "\ntoken ci " THASH " 1700000000\n"
                            "user bob@example.org " HASH "\r\n");
    assert_null(users_error(u));
    assert_true(users_any(u));
    users_free(u);
    u = parse("token ci " THASH " 1\n");
    assert_null(users_error(u));
    assert_false(users_any(u));
    users_free(u);
    static const struct {
        const char *text, *msg;
    } bad[] = {
        {"root x\n", "u:1: expected \"user NAME HASH\""},
        {"user alice\n", "u:1: a malformed user entry"},
        {"user alice $2y$10$bcrypt\n", "a malformed user entry"},
        {"user a/b " HASH "\n", "a malformed user entry"},
        {"user alice " HASH " extra\n", "a malformed user entry"},
        {"token ci abc 1\n", "a malformed token entry"},
        {"token ci " THASH "\n", "a malformed token entry"},
        {"token ci " THASH " -1\n", "a malformed token entry"},
        {"token ci zz112233445566778899aabbccddeeff00112233445566778899aabbccddeeff 1\n",
         "a malformed token entry"},
        {"user a " HASH "\nuser a " HASH "\n", "u:2: user a appears twice"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        u = parse(bad[i].text);
        if (users_error(u) == NULL || strstr(users_error(u), bad[i].msg) == NULL) {
            fail_msg("%s: got \"%s\", want \"%s\"", bad[i].text,
                     users_error(u) ? users_error(u) : "no error", bad[i].msg);
        }
        users_free(u);
    }
    char nul[] = "user a " HASH "\n";
    nul[5] = '\0';
    struct guarded g = guard_bytes(nul, sizeof(nul) - 1);
    u = users_parse("u", g.p, sizeof(nul) - 1);
    guard_free(g);
    assert_non_null(strstr(users_error(u), "NUL byte"));
    users_free(u);
}

static void test_names(void **state)
{
    (void)state;
    assert_true(users_valid_name("alice"));
    assert_true(users_valid_name("a.b-c_d@example.org"));
    assert_false(users_valid_name(""));
    assert_false(users_valid_name("a b"));
    assert_false(users_valid_name("a:b"));
    char long_name[USERS_NAMELEN + 1];
    memset(long_name, 'a', USERS_NAMELEN);
    long_name[USERS_NAMELEN] = '\0';
    assert_false(users_valid_name(long_name));
}

static void test_passwords_and_tokens(void **state)
{
    (void)state;
    char dir[] = "/tmp/portgate-users-XXXXXX", path[128], err[768];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/users", dir);
    struct users *u = users_open(path); /* missing: no users yet */
    assert_null(users_error(u));
    assert_false(users_any(u));
    assert_false(users_check_password(u, "alice", "whatever"));

    assert_int_equal(users_set_password(path, "alice", "short", err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "8 to 1024 characters"));
    assert_int_equal(users_set_password(path, "a b", "long enough", err, sizeof(err)), -EINVAL);
    assert_int_equal(users_set_password(path, "alice", "correct horse", err, sizeof(err)), 0);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    users_refresh(u);
    assert_true(users_any(u));
    assert_true(users_check_password(u, "alice", "correct horse"));
    assert_false(users_check_password(u, "alice", "correct horsE"));
    assert_false(users_check_password(u, "bob", "correct horse"));
    /* A second user, and a new password for the first: both kept. */
    assert_int_equal(users_set_password(path, "bob", "battery staple", err, sizeof(err)), 0);
    assert_int_equal(users_set_password(path, "alice", "new password", err, sizeof(err)), 0);
    users_refresh(u);
    assert_true(users_check_password(u, "bob", "battery staple"));
    assert_true(users_check_password(u, "alice", "new password"));
    assert_false(users_check_password(u, "alice", "correct horse"));

    char token[USERS_TOKEN_LEN + 1], token2[USERS_TOKEN_LEN + 1];
    assert_int_equal(users_token_create(path, "ci", token, err, sizeof(err)), 0);
    assert_int_equal(strlen(token), USERS_TOKEN_LEN);
    assert_memory_equal(token, "pgt_", 4);
    assert_int_equal(users_token_create(path, "ci", token2, err, sizeof(err)), -EEXIST);
    assert_non_null(strstr(err, "exists"));
    assert_int_equal(users_token_create(path, "deploy", token2, err, sizeof(err)), 0);
    assert_string_not_equal(token, token2);
    users_refresh(u);
    assert_string_equal(users_check_token(u, token), "ci");
    assert_string_equal(users_check_token(u, token2), "deploy");
    char wrong[USERS_TOKEN_LEN + 1];
    snprintf(wrong, sizeof(wrong), "%s", token);
    wrong[10] = wrong[10] == 'A' ? 'B' : 'A';
    assert_null(users_check_token(u, wrong));
    assert_null(users_check_token(u, "pgt_"));
    assert_null(users_check_token(u, ""));
    /* The file keeps hashes only. */
    FILE *f = fopen(path, "r");
    char text[4096] = "";
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    text[n] = '\0';
    fclose(f);
    assert_null(strstr(text, token + 4));
    assert_null(strstr(text, "correct horse"));
    assert_int_equal(users_token_revoke(path, "ci", err, sizeof(err)), 0);
    assert_int_equal(users_token_revoke(path, "ci", err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, "no token called \"ci\""));
    users_refresh(u);
    assert_null(users_check_token(u, token));
    assert_string_equal(users_check_token(u, token2), "deploy");
    assert_true(users_check_password(u, "bob", "battery staple")); /* untouched */

    /* A file that no longer parses: the users read before stay. */
    f = fopen(path, "a");
    fputs("garbage line\n", f);
    fclose(f);
    users_refresh(u);
    assert_non_null(users_error(u));
    assert_true(users_check_password(u, "bob", "battery staple"));
    /* and a change refuses to write over it */
    assert_int_equal(users_set_password(path, "carol", "long enough", err, sizeof(err)), -EIO);
    assert_non_null(strstr(err, "fix or remove it first"));
    users_free(u);
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* Run by root, the commands keep the file whose it was: the directory's for a new one, the old
 * file's owner afterwards; and they make a missing directory. */
static void test_owner_kept(void **state)
{
    (void)state;
    if (geteuid() != 0) {
        skip();
    }
    char dir[] = "/tmp/portgate-owner-XXXXXX", path[128], err[768];
    assert_non_null(mkdtemp(dir));
    assert_int_equal(chown(dir, 65534, 65534), 0);
    snprintf(path, sizeof(path), "%s/users", dir);
    assert_int_equal(users_set_password(path, "alice", "correct horse", err, sizeof(err)), 0);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_uid, 65534);
    assert_int_equal(sb.st_mode & 0777, 0600);
    assert_int_equal(chown(path, 65533, 65533), 0);
    char token[USERS_TOKEN_LEN + 1];
    assert_int_equal(users_token_create(path, "ci", token, err, sizeof(err)), 0);
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_uid, 65533);
    assert_int_equal(sb.st_gid, 65533);
    char sub[160];
    snprintf(sub, sizeof(sub), "%s/new/users", dir);
    assert_int_equal(users_set_password(sub, "bob", "long enough", err, sizeof(err)), 0);

    /* Links planted by the directory's owner (the gateway's user) make root write or give away
     * nothing else: not as the temporary file (its name is random, and made exclusively), not
     * as the users file (refused). */
    char canary[160], link[160];
    snprintf(canary, sizeof(canary), "%s/canary", dir);
    FILE *f = fopen(canary, "w");
    fputs("root's\n", f);
    fclose(f);
    snprintf(link, sizeof(link), "%s/users.tmp", dir);
    assert_int_equal(symlink(canary, link), 0);
    assert_int_equal(users_set_password(path, "alice", "another one", err, sizeof(err)), 0);
    struct stat cs;
    assert_int_equal(stat(canary, &cs), 0);
    assert_int_equal(cs.st_uid, 0);
    assert_int_equal(cs.st_size, 7);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(symlink(canary, path), 0);
    assert_int_equal(users_set_password(path, "alice", "another one", err, sizeof(err)), -EIO);
    assert_non_null(strstr(err, "a symbolic link"));
    assert_int_equal(stat(canary, &cs), 0);
    assert_int_equal(cs.st_uid, 0);
    assert_int_equal(cs.st_size, 7);
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    assert_true(sodium_init() >= 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_passwords_and_tokens),
        cmocka_unit_test(test_owner_kept),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
