/* auth/login: the players' Digest nonces, fresh, stale and foreign (another mapping, another
 * connection, not the gateway's at all). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <string.h>

#include "auth/login.h"

static void test_nonces(void **state)
{
    (void)state;
    unsigned char conn[LOGIN_CONN_KEY] = {1, 2, 3}, other[LOGIN_CONN_KEY] = {1, 2, 4};
    char n[LOGIN_NONCE_LEN + 1], m[LOGIN_NONCE_LEN + 1];
    login_nonce_at("cam", conn, 1000, n);
    assert_int_equal(strlen(n), LOGIN_NONCE_LEN);
    assert_int_equal(strspn(n, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
                     LOGIN_NONCE_LEN);
    /* Fresh for LOGIN_NONCE_TTL_S seconds, then stale; never from the future. */
    assert_int_equal(login_nonce_check_at(n, "cam", conn, 1000), 1);
    assert_int_equal(login_nonce_check_at(n, "cam", conn, 1000 + LOGIN_NONCE_TTL_S - 1), 1);
    assert_int_equal(login_nonce_check_at(n, "cam", conn, 1000 + LOGIN_NONCE_TTL_S), 0);
    assert_int_equal(login_nonce_check_at(n, "cam", conn, 999), 0);
    /* Another mapping's, another connection's: not theirs. */
    assert_int_equal(login_nonce_check_at(n, "cam2", conn, 1000), -1);
    assert_int_equal(login_nonce_check_at(n, "ca", conn, 1000), -1);
    assert_int_equal(login_nonce_check_at(n, "cam", other, 1000), -1);
    /* Changed in any character, cut, longer, or not base64url: not the gateway's. */
    for (size_t i = 0; i < LOGIN_NONCE_LEN; i++) {
        memcpy(m, n, sizeof(m));
        m[i] = m[i] == 'A' ? 'B' : 'A';
        assert_int_equal(login_nonce_check_at(m, "cam", conn, 1000), -1);
    }
    memcpy(m, n, sizeof(m));
    m[LOGIN_NONCE_LEN - 1] = '\0';
    assert_int_equal(login_nonce_check_at(m, "cam", conn, 1000), -1);
    assert_int_equal(login_nonce_check_at("", "cam", conn, 1000), -1);
    assert_int_equal(login_nonce_check_at("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!", "cam", conn, 1000),
                     -1);
    /* Two connections' nonces at the same time differ. */
    login_nonce_at("cam", other, 1000, m);
    assert_string_not_equal(n, m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nonces),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
