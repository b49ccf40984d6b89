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

#include "auth/totp.h"
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
/* "12345678901234567890", RFC 6238's secret. */
#define SECRET "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"

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
    /* A second factor, with its recovery codes: 1 to 10 of them. */
    u = parse("user alice " HASH "\ntotp alice " SECRET " 37037036\nrecovery alice " THASH " " THASH
              "\nuser bob " HASH "\ntotp bob " SECRET " 0\n");
    assert_null(users_error(u));
    assert_true(users_totp_enabled(u, "alice"));
    assert_int_equal(users_recovery_left(u, "alice"), 2);
    assert_true(users_totp_enabled(u, "bob"));
    assert_int_equal(users_recovery_left(u, "bob"), 0);
    assert_false(users_totp_enabled(u, "carol"));
    users_free(u);
    u = parse("user alice " HASH "\n");
    assert_false(users_totp_enabled(u, "alice"));
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
        /* The second factor's lines. */
        {"totp a " SECRET " 0\n", "u:1: totp for a, who has no user line above"},
        {"user a " HASH "\ntotp a " SECRET "\n", "u:2: a malformed totp entry"},
        {"user a " HASH "\ntotp a " SECRET " 1 2\n", "u:2: a malformed totp entry"},
        {"user a " HASH "\ntotp a " SECRET " -1\n", "a malformed totp entry"},
        {"user a " HASH "\ntotp a " SECRET " 18446744073709551616\n", "a malformed totp entry"},
        {"user a " HASH "\ntotp a gezdgnbvgy3tqojqgezdgnbvgy3tqojq 0\n", "a malformed totp entry"},
        {"user a " HASH "\ntotp a GEZDGNBVGY3TQOJQ 0\n", "a malformed totp entry"}, /* 10 bytes */
        {"user a " HASH "\ntotp a " SECRET " 0\ntotp a " SECRET " 0\n",
         "u:3: totp a appears twice"},
        {"user a " HASH "\nrecovery a " THASH "\n",
         "u:2: recovery codes for a, who has no totp line above"},
        {"user a " HASH "\ntotp a " SECRET " 0\nrecovery a\n", "u:3: a malformed recovery entry"},
        {"user a " HASH "\ntotp a " SECRET " 0\nrecovery a abc\n", "a malformed recovery entry"},
        {"user a " HASH "\ntotp a " SECRET " 0\nrecovery a " THASH " " THASH " " THASH " " THASH
         " " THASH " " THASH " " THASH " " THASH " " THASH " " THASH " " THASH "\n",
         "a malformed recovery entry"},
        {"user a " HASH "\ntotp a " SECRET " 0\nrecovery a " THASH "\nrecovery a " THASH "\n",
         "u:4: recovery a appears twice"},
        {"token a " THASH " 1\ntotp a " SECRET " 0\n", "totp for a, who has no user line above"},
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

    assert_int_equal(
        users_set_password(path, "alice", "short", USERS_DIGEST_KEEP, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "8 to 1024 characters"));
    assert_int_equal(
        users_set_password(path, "a b", "long enough", USERS_DIGEST_KEEP, err, sizeof(err)),
        -EINVAL);
    assert_int_equal(
        users_set_password(path, "alice", "correct horse", USERS_DIGEST_KEEP, err, sizeof(err)), 0);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    users_refresh(u);
    assert_true(users_any(u));
    assert_true(users_check_password(u, "alice", "correct horse"));
    assert_false(users_check_password(u, "alice", "correct horsE"));
    assert_false(users_check_password(u, "bob", "correct horse"));
    /* A second user, and a new password for the first: both kept. */
    assert_int_equal(
        users_set_password(path, "bob", "battery staple", USERS_DIGEST_KEEP, err, sizeof(err)), 0);
    assert_int_equal(
        users_set_password(path, "alice", "new password", USERS_DIGEST_KEEP, err, sizeof(err)), 0);
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
    assert_int_equal(
        users_set_password(path, "carol", "long enough", USERS_DIGEST_KEEP, err, sizeof(err)),
        -EIO);
    assert_non_null(strstr(err, "fix or remove it first"));
    users_free(u);
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static char *read_text(const char *path)
{
    static char text[8192];
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    text[n] = '\0';
    fclose(f);
    return text;
}

/* The code of the base32 secret b32 at t. */
static void code_at(const char *b32, int64_t t, char code[TOTP_DIGITS + 1])
{
    unsigned char key[TOTP_MAX_SECRET];
    ssize_t n = totp_base32_decode(b32, strlen(b32), key, sizeof(key));
    assert_true(n >= TOTP_MIN_SECRET);
    assert_int_equal(totp_code(key, (size_t)n, t, TOTP_DIGITS, code), 0);
}

static void test_second_factor(void **state)
{
    (void)state;
    char dir[] = "/tmp/portgate-totp-XXXXXX", path[128], err[768];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/users", dir);
    assert_int_equal(
        users_set_password(path, "alice", "correct horse", USERS_DIGEST_KEEP, err, sizeof(err)), 0);
    assert_int_equal(
        users_set_password(path, "bob", "battery staple", USERS_DIGEST_KEEP, err, sizeof(err)), 0);
    struct users *u = users_open(path);
    unsigned char stamp0[USERS_STAMP_LEN], stamp1[USERS_STAMP_LEN], stamp2[USERS_STAMP_LEN];
    assert_true(users_stamp(u, "alice", stamp0));
    const int64_t t = 1700000000;
    char code[TOTP_DIGITS + 1], code2[TOTP_DIGITS + 1];

    /* Nothing to check yet. */
    assert_int_equal(users_second_factor(path, u, "alice", "123456", t, err, sizeof(err)), -ENOENT);
    assert_false(users_check_second_factor(path, u, "alice", "123456", t, err, sizeof(err)));

    /* Begin: a secret, and nothing written. */
    char secret[USERS_TOTP_SECRET_B32 + 1], other[USERS_TOTP_SECRET_B32 + 1];
    assert_int_equal(users_totp_begin(u, "nobody", secret, err, sizeof(err)), -ENOENT);
    assert_int_equal(users_totp_begin(u, "alice", secret, err, sizeof(err)), 0);
    assert_int_equal(strlen(secret), USERS_TOTP_SECRET_B32);
    unsigned char raw[TOTP_MAX_SECRET];
    assert_int_equal(totp_base32_decode(secret, strlen(secret), raw, sizeof(raw)), TOTP_SECRET_LEN);
    assert_int_equal(users_totp_begin(u, "alice", other, err, sizeof(err)), 0);
    assert_string_not_equal(secret, other);
    assert_null(strstr(read_text(path), "totp"));

    /* Confirm: a wrong code, a bad secret, then the right code. */
    char rec[USERS_RECOVERY_CODES][USERS_RECOVERY_LEN + 1];
    code_at(secret, t, code);
    code_at(secret, t + 90, code2);
    assert_int_equal(users_totp_confirm(path, "alice", secret, code2, t, rec, err, sizeof(err)),
                     -EACCES);
    assert_string_equal(err, "a wrong code");
    assert_int_equal(rec[0][0], '\0'); /* wiped */
    assert_int_equal(users_totp_confirm(path, "alice", "GEZDGNBV", code, t, rec, err, sizeof(err)),
                     -EINVAL);
    assert_int_equal(users_totp_confirm(path, "nobody", secret, code, t, rec, err, sizeof(err)),
                     -ENOENT);
    assert_null(strstr(read_text(path), "totp"));
    assert_int_equal(users_totp_confirm(path, "alice", secret, code, t, rec, err, sizeof(err)), 0);
    for (size_t k = 0; k < USERS_RECOVERY_CODES; k++) {
        assert_int_equal(strlen(rec[k]), USERS_RECOVERY_LEN);
        assert_int_equal(strspn(rec[k], "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"), USERS_RECOVERY_LEN);
        assert_null(strstr(read_text(path), rec[k])); /* hashes only */
        for (size_t j = 0; j < k; j++) {
            assert_string_not_equal(rec[j], rec[k]);
        }
    }
    char line[128];
    snprintf(line, sizeof(line), "totp alice %s %llu\n", secret, (unsigned long long)totp_step(t));
    assert_non_null(strstr(read_text(path), line));
    assert_non_null(strstr(read_text(path), "\nrecovery alice "));
    char rec2[USERS_RECOVERY_CODES][USERS_RECOVERY_LEN + 1];
    assert_int_equal(users_totp_confirm(path, "alice", secret, code, t, rec2, err, sizeof(err)),
                     -EEXIST);
    users_refresh(u);
    assert_true(users_totp_enabled(u, "alice"));
    assert_false(users_totp_enabled(u, "bob"));
    assert_int_equal(users_recovery_left(u, "alice"), USERS_RECOVERY_CODES);
    assert_int_equal(users_totp_begin(u, "alice", other, err, sizeof(err)), -EEXIST);
    /* The stamp moved: the sessions opened with the password alone end. */
    assert_true(users_stamp(u, "alice", stamp1));
    assert_memory_not_equal(stamp0, stamp1, USERS_STAMP_LEN);

    /* The code that confirmed it is used up; the next step's works once, and so the current
     * one no longer does. */
    assert_int_equal(users_second_factor(path, u, "alice", code, t, err, sizeof(err)), -EALREADY);
    assert_string_equal(err, "a code already used");
    char next[TOTP_DIGITS + 1];
    code_at(secret, t + 30, next);
    assert_int_equal(users_second_factor(path, u, "alice", next, t + 5, err, sizeof(err)),
                     USERS_FACTOR_TOTP);
    /* Replayed against a stale u: refused by the file, under its lock. */
    assert_int_equal(users_second_factor(path, u, "alice", next, t + 5, err, sizeof(err)),
                     -EALREADY);
    users_refresh(u);
    assert_int_equal(users_second_factor(path, u, "alice", next, t + 5, err, sizeof(err)),
                     -EALREADY);
    assert_false(users_check_second_factor(path, u, "alice", next, t + 35, err, sizeof(err)));
    /* Typed with a space; then wrong ones. */
    char spaced[16];
    code_at(secret, t + 60, code2);
    snprintf(spaced, sizeof(spaced), "%.3s %s", code2, code2 + 3);
    assert_true(users_check_second_factor(path, u, "alice", spaced, t + 60, err, sizeof(err)));
    code_at(secret, t + 150, code2);
    assert_int_equal(users_second_factor(path, u, "alice", code2, t + 60, err, sizeof(err)), 0);
    assert_string_equal(err, "a wrong code");
    assert_int_equal(users_second_factor(path, u, "alice", "12345", t + 60, err, sizeof(err)), 0);
    char huge[USERS_MAX_CODE + 2];
    memset(huge, ' ', sizeof(huge) - 1);
    huge[sizeof(huge) - 1] = '\0';
    memcpy(huge, code2, TOTP_DIGITS);
    assert_int_equal(users_second_factor(path, u, "alice", huge, t + 150, err, sizeof(err)), 0);
    assert_int_equal(users_second_factor(path, u, "bob", code2, t + 150, err, sizeof(err)),
                     -ENOENT);

    /* A recovery code works once, in any case and with a dash. */
    char typed[16];
    snprintf(typed, sizeof(typed), "%.5s-%.5s", rec[3], rec[3] + 5);
    for (char *c = typed; *c != '\0'; c++) {
        *c = (char)(*c >= 'A' && *c <= 'Z' ? *c - 'A' + 'a' : *c);
    }
    users_refresh(u);
    assert_int_equal(users_second_factor(path, u, "alice", typed, t, err, sizeof(err)),
                     USERS_FACTOR_RECOVERY);
    users_refresh(u);
    assert_int_equal(users_recovery_left(u, "alice"), USERS_RECOVERY_CODES - 1);
    assert_int_equal(users_second_factor(path, u, "alice", rec[3], t, err, sizeof(err)), 0);
    assert_int_equal(users_second_factor(path, u, "alice", "AAAAAAAAAA", t, err, sizeof(err)), 0);
    /* Another one works, once too. */
    assert_int_equal(users_second_factor(path, u, "alice", rec[4], t, err, sizeof(err)),
                     USERS_FACTOR_RECOVERY);

    /* A password change, here or by portgate passwd, keeps the second factor; so do tokens. */
    assert_int_equal(
        users_set_password(path, "alice", "new password", USERS_DIGEST_KEEP, err, sizeof(err)), 0);
    char token[USERS_TOKEN_LEN + 1];
    assert_int_equal(users_token_create(path, "ci", token, err, sizeof(err)), 0);
    assert_int_equal(users_token_revoke(path, "ci", err, sizeof(err)), 0);
    users_refresh(u);
    assert_true(users_totp_enabled(u, "alice"));
    assert_int_equal(users_recovery_left(u, "alice"), USERS_RECOVERY_CODES - 2);
    assert_true(users_check_password(u, "alice", "new password"));
    code_at(secret, t + 300, code2);
    assert_int_equal(users_second_factor(path, u, "alice", code2, t + 300, err, sizeof(err)),
                     USERS_FACTOR_TOTP);

    /* Disable: gone with its recovery codes; the stamp moves again. */
    assert_int_equal(users_totp_disable(path, "bob", err, sizeof(err)), -ENOENT);
    assert_int_equal(users_totp_disable(path, "alice", err, sizeof(err)), 0);
    assert_int_equal(users_totp_disable(path, "alice", err, sizeof(err)), -ENOENT);
    const char *text = read_text(path);
    assert_null(strstr(text, "totp"));
    assert_null(strstr(text, "recovery"));
    users_refresh(u);
    assert_false(users_totp_enabled(u, "alice"));
    assert_int_equal(users_recovery_left(u, "alice"), 0);
    assert_true(users_stamp(u, "alice", stamp2));
    assert_memory_not_equal(stamp1, stamp2, USERS_STAMP_LEN);
    assert_true(users_check_password(u, "alice", "new password"));
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
    assert_int_equal(
        users_set_password(path, "alice", "correct horse", USERS_DIGEST_KEEP, err, sizeof(err)), 0);
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
    assert_int_equal(
        users_set_password(sub, "bob", "long enough", USERS_DIGEST_KEEP, err, sizeof(err)), 0);

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
    assert_int_equal(
        users_set_password(path, "alice", "another one", USERS_DIGEST_KEEP, err, sizeof(err)), 0);
    struct stat cs;
    assert_int_equal(stat(canary, &cs), 0);
    assert_int_equal(cs.st_uid, 0);
    assert_int_equal(cs.st_size, 7);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(symlink(canary, path), 0);
    assert_int_equal(
        users_set_password(path, "alice", "another one", USERS_DIGEST_KEEP, err, sizeof(err)),
        -EIO);
    assert_non_null(strstr(err, "a symbolic link"));
    assert_int_equal(stat(canary, &cs), 0);
    assert_int_equal(cs.st_uid, 0);
    assert_int_equal(cs.st_size, 7);
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* A Digest answer of user with password, as a player would make it for our realm. */
static void answer_of(const char *user, const char *password, enum digest_scheme alg,
                      struct digest_answer *a)
{
    struct digest_challenge c = {.scheme = alg, .qop_auth = true};
    strcpy(c.realm, USERS_DIGEST_REALM);
    strcpy(c.nonce, "n0nce");
    char cred[DIGEST_CRED_MAX];
    const char *why;
    assert_true(digest_credentials_cnonce(&c, user, password, "PLAY", 4, "rtsps://h/s", 11, 1, "c",
                                          cred, sizeof(cred)) > 0);
    assert_int_equal(digest_answer_parse(cred, strlen(cred), a, &why), 0);
}

static void test_digest_keys(void **state)
{
    (void)state;
    char dir[] = "/tmp/portgate-users-XXXXXX", path[128], err[768];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/users", dir);
    struct digest_answer md5, sha, wrong;
    answer_of("alice", "correct horse", DIGEST_MD5, &md5);
    answer_of("alice", "correct horse", DIGEST_SHA256, &sha);
    answer_of("alice", "correct horsE", DIGEST_MD5, &wrong);
    /* Without --digest: no keys, whatever the answer. */
    assert_int_equal(
        users_set_password(path, "alice", "correct horse", USERS_DIGEST_KEEP, err, sizeof(err)), 0);
    struct users *u = users_open(path);
    assert_false(users_digest_enabled(u, "alice"));
    assert_int_equal(users_check_digest(u, &md5, "PLAY", 4), -ENOENT);
    /* --digest: MD5 and SHA-256 keys, in the file as a digest line. */
    assert_int_equal(
        users_set_password(path, "alice", "correct horse", USERS_DIGEST_ON, err, sizeof(err)), 0);
    users_refresh(u);
    assert_true(users_digest_enabled(u, "alice"));
    assert_int_equal(users_check_digest(u, &md5, "PLAY", 4), 1);
    assert_int_equal(users_check_digest(u, &sha, "PLAY", 4), 1);
    assert_int_equal(users_check_digest(u, &md5, "PAUSE", 5), 0);
    assert_int_equal(users_check_digest(u, &wrong, "PLAY", 4), 0);
    struct digest_answer bob;
    answer_of("bob", "correct horse", DIGEST_MD5, &bob);
    assert_int_equal(users_check_digest(u, &bob, "PLAY", 4), -ENOENT);
    /* A new password without either option: the keys follow it. */
    assert_int_equal(
        users_set_password(path, "alice", "correct horsE", USERS_DIGEST_KEEP, err, sizeof(err)), 0);
    users_refresh(u);
    assert_int_equal(users_check_digest(u, &md5, "PLAY", 4), 0);
    assert_int_equal(users_check_digest(u, &wrong, "PLAY", 4), 1);
    assert_true(users_check_password(u, "alice", "correct horsE"));
    /* --no-digest: gone. */
    assert_int_equal(
        users_set_password(path, "alice", "correct horsE", USERS_DIGEST_OFF, err, sizeof(err)), 0);
    users_refresh(u);
    assert_false(users_digest_enabled(u, "alice"));
    assert_int_equal(users_check_digest(u, &wrong, "PLAY", 4), -ENOENT);
    users_free(u);

    /* A digest line made with another password than the user line's (one replaced by hand):
     * no keys, and no error. */
    assert_int_equal(
        users_set_password(path, "alice", "correct horse", USERS_DIGEST_ON, err, sizeof(err)), 0);
    struct users *v = users_open(path);
    assert_int_equal(users_check_digest(v, &md5, "PLAY", 4), 1);
    users_free(v);
    char other[] = "/tmp/portgate-users-XXXXXX", opath[160];
    assert_non_null(mkdtemp(other));
    snprintf(opath, sizeof(opath), "%s/users", other);
    assert_int_equal(
        users_set_password(opath, "alice", "battery staple", USERS_DIGEST_KEEP, err, sizeof(err)),
        0);
    char text[4096], otext[4096];
    FILE *fp = fopen(path, "r");
    size_t tn = fread(text, 1, sizeof(text) - 1, fp);
    fclose(fp);
    text[tn] = '\0';
    fp = fopen(opath, "r");
    size_t on = fread(otext, 1, sizeof(otext) - 1, fp);
    fclose(fp);
    otext[on] = '\0';
    char mixed[8192];
    const char *uline = strstr(otext, "user alice "), *dline = strstr(text, "digest alice ");
    assert_non_null(uline);
    assert_non_null(dline);
    snprintf(mixed, sizeof(mixed), "%.*s%.*s", (int)(strchr(uline, '\n') + 1 - uline), uline,
             (int)(strchr(dline, '\n') + 1 - dline), dline);
    v = users_parse("mixed", mixed, strlen(mixed));
    assert_null(users_error(v));
    assert_false(users_digest_enabled(v, "alice"));
    assert_int_equal(users_check_digest(v, &md5, "PLAY", 4), -ENOENT);
    users_free(v);
    unlink(opath);
    rmdir(other);

    /* The file's digest lines: each refusal. */
    static const char *const keys =
        "0123456789abcdef0123456789abcdef "
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef 0123456789abcdef\n";
    char bad[4][512];
    snprintf(bad[0], sizeof(bad[0]), "digest alice %s", keys);
    snprintf(bad[1], sizeof(bad[1]), "user alice $argon2id$x\ndigest alice 0123\n");
    snprintf(bad[2], sizeof(bad[2]),
             "user alice $argon2id$x\ndigest alice 0123456789ABCDEF0123456789abcdef "
             "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef "
             "0123456789abcdef\n");
    snprintf(bad[3], sizeof(bad[3]), "user alice $argon2id$x\ndigest alice %sdigest alice %s", keys,
             keys);
    static const char *const why[] = {"no user line above", "malformed digest", "malformed digest",
                                      "appears twice"};
    for (size_t i = 0; i < 4; i++) {
        struct users *b = users_parse("f", bad[i], strlen(bad[i]));
        assert_non_null(users_error(b));
        if (strstr(users_error(b), why[i]) == NULL) {
            fail_msg("case %zu: %s", i, users_error(b));
        }
        users_free(b);
    }
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    assert_true(sodium_init() >= 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_passwords_and_tokens),
        cmocka_unit_test(test_second_factor),
        cmocka_unit_test(test_owner_kept),
        cmocka_unit_test(test_digest_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
