#include "admin/auth.h"

#include <errno.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth/authhdr.h"
#include "auth/regulate.h"
#include "auth/session.h"
#include "auth/totp.h"
#include "auth/users.h"
#include "core/addr.h"
#include "core/log.h"

/* The issuer an authenticator app files the codes under. */
#define TOTP_ISSUER "portgate"
/* How long an enrolment waits for its confirmation. */
#define TOTP_PENDING_S 600

struct auth {
    char users_file[512];
    struct users *users;
    struct sessions *sessions;
    struct regulate *regulate;
    struct api_auth_stats stats;
};

struct auth *auth_new(const char *users_file)
{
    struct auth *a = calloc(1, sizeof(*a));
    if (a == NULL) {
        return NULL;
    }
    snprintf(a->users_file, sizeof(a->users_file), "%s", users_file);
    a->users = users_open(users_file);
    a->sessions = sessions_new();
    a->regulate = regulate_new();
    if (a->users == NULL || a->sessions == NULL || a->regulate == NULL) {
        auth_free(a);
        return NULL;
    }
    if (users_error(a->users) != NULL) {
        log_error("users-file %s: nobody can log in on the web page until it is fixed",
                  users_error(a->users));
    }
    return a;
}

const struct api_auth_stats *auth_stats(const struct auth *a)
{
    return &a->stats;
}

void auth_free(struct auth *a)
{
    if (a != NULL) {
        users_free(a->users);
        sessions_free(a->sessions);
        regulate_free(a->regulate);
        free(a);
    }
}

static void answer(struct api_response *rs, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void answer(struct api_response *rs, unsigned status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    api_text_clean(msg);
    rs->status = status;
    rs->json = json_pack("{s:s}", "error", msg);
}

static const char setup_msg[] = "no user yet: on the gateway, run: portgate passwd USER";

/* The body as a JSON object, or NULL with the answer set. */
static json_t *body_object(const struct auth_request *rq, struct api_response *rs)
{
    if (rq->content_type == NULL || strncasecmp(rq->content_type, "application/json", 16) != 0) {
        answer(rs, 415, "send JSON, with Content-Type: application/json");
        return NULL;
    }
    json_t *j =
        json_loadb(rq->body != NULL ? rq->body : "", rq->body_len, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(j)) {
        json_decref(j);
        answer(rs, 400, "expected a JSON object");
        return NULL;
    }
    return j;
}

/* A string member, or NULL (also for one holding a NUL). */
static const char *member(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    const char *s = json_string_value(v);
    return s != NULL && strlen(s) == json_string_length(v) ? s : NULL;
}

/* The session the request's cookie names, or NULL. One whose user is gone, or whose password
 * changed since the login (by any means: the page, portgate passwd), ends here. */
static struct session *cookie_session(struct auth *a, const char *cookie, uint64_t now)
{
    char id[SESSION_IDLEN + 1];
    if (cookie == NULL || authhdr_cookie(cookie, SESSION_COOKIE, id, sizeof(id)) < 0) {
        return NULL;
    }
    struct session *se = sessions_find(a->sessions, id, now);
    unsigned char stamp[USERS_STAMP_LEN];
    if (se != NULL && (!users_stamp(a->users, se->user, stamp) ||
                       sodium_memcmp(stamp, se->stamp, sizeof(stamp)) != 0)) {
        log_info("admin: user %s's session ended: %s", se->user,
                 users_exists(a->users, se->user) ? "the password or the second factor changed"
                                                  : "no such user now");
        sessions_end(a->sessions, se->id);
        return NULL;
    }
    return se;
}

bool auth_credentials(struct auth *a, const char *cookie, const char *authorization, uint64_t now)
{
    users_refresh(a->users);
    if (authorization != NULL) {
        char token[USERS_TOKEN_LEN + 1];
        bool ok = authhdr_bearer(authorization, token, sizeof(token)) >= 0 &&
                  users_check_token(a->users, token) != NULL;
        sodium_memzero(token, sizeof(token));
        return ok;
    }
    return cookie_session(a, cookie, now) != NULL;
}

static bool changes(const struct auth_request *rq)
{
    return strcmp(rq->method, "GET") != 0 && strcmp(rq->method, "HEAD") != 0;
}

/* True if neither the client's address nor user is refused now; else the answer is 429. */
static bool not_banned(struct auth *a, const struct auth_request *rq, const char *user,
                       struct api_response *rs)
{
    char by_addr[REGULATE_KEYLEN], by_user[REGULATE_KEYLEN];
    snprintf(by_addr, sizeof(by_addr), "addr %s", rq->client);
    snprintf(by_user, sizeof(by_user), "user %s", user);
    uint64_t left = 0, left2 = 0;
    bool banned_addr = regulate_banned(a->regulate, by_addr, rq->now, &left);
    bool banned_user = regulate_banned(a->regulate, by_user, rq->now, &left2);
    if (banned_addr || banned_user) {
        uint64_t s = left > left2 ? left : left2;
        answer(rs, 429, "too many failed logins: try again in %llu minutes",
               (unsigned long long)((s + 59) / 60));
        return false;
    }
    return true;
}

/* A failure (a wrong password, a wrong code): counted per address and per user, the ban it may
 * start logged; the answer is 401 msg. */
static void failure(struct auth *a, const struct auth_request *rq, const char *user,
                    const char *msg, struct api_response *rs)
{
    char by_addr[REGULATE_KEYLEN], by_user[REGULATE_KEYLEN];
    snprintf(by_addr, sizeof(by_addr), "addr %s", rq->client);
    snprintf(by_user, sizeof(by_user), "user %s", user);
    bool known = users_exists(a->users, user);
    bool ban_addr = regulate_fail(a->regulate, by_addr, rq->now);
    bool ban_user = regulate_fail(a->regulate, by_user, rq->now);
    if (ban_addr || ban_user) {
        char whom[USERS_NAMELEN + ADDR_STRLEN + 48];
        const char *name = known ? user : "(a name that is no user's)";
        if (ban_addr && ban_user) {
            snprintf(whom, sizeof(whom), "for user %s and from %s", name, rq->client);
        } else if (ban_user) {
            snprintf(whom, sizeof(whom), "for user %s", name);
        } else {
            snprintf(whom, sizeof(whom), "from %s", rq->client);
        }
        log_warn("admin: %d failed logins within %d minutes %s; refusing %s for %d minutes",
                 REGULATE_MAX_FAILURES, REGULATE_WINDOW_S / 60, whom,
                 ban_addr && ban_user ? "both" : (ban_user ? "that user" : "that address"),
                 REGULATE_BAN_S / 60);
    }
    answer(rs, 401, "%s", msg);
}

/* Forgets user's failures, once they proved who they are. */
static void settled(struct auth *a, const char *user)
{
    char by_user[REGULATE_KEYLEN];
    snprintf(by_user, sizeof(by_user), "user %s", user);
    regulate_success(a->regulate, by_user);
}

/* A password check, under regulation (not_banned() first). Returns true on a match; otherwise
 * the failure is counted and the answer is 401 msg. */
static bool password_ok(struct auth *a, const struct auth_request *rq, const char *user,
                        const char *password, const char *msg, struct api_response *rs)
{
    if (users_check_password(a->users, user, password)) {
        return true;
    }
    /* The name only if it is a user's: one that is not may be a password typed in the wrong
     * field. */
    bool known = users_exists(a->users, user);
    log_warn("admin: failed login for %s%s from %s",
             known ? "user " : "a user name that does not exist", known ? user : "", rq->client);
    failure(a, rq, user, msg, rs);
    return false;
}

/* A password check under regulation: per address and per user. Returns true on a match;
 * otherwise the answer is set (401, or 429 when banned). */
static bool check_password(struct auth *a, const struct auth_request *rq, const char *user,
                           const char *password, struct api_response *rs)
{
    if (!not_banned(a, rq, user, rs) ||
        !password_ok(a, rq, user, password, "wrong user or password", rs)) {
        return false;
    }
    settled(a, user);
    return true;
}

/*
 * A second-factor code of user (a TOTP code or a recovery code), under regulation (not_banned()
 * first): used up in the users file if it is right. Returns what it was (USERS_FACTOR_TOTP or
 * USERS_FACTOR_RECOVERY); otherwise 0, the wrong code logged, counted and counted as a failure,
 * and the answer 401 msg (or 500 if the users file could not be written).
 */
static int code_ok(struct auth *a, const struct auth_request *rq, const char *user,
                   const char *code, const char *msg, struct api_response *rs)
{
    char err[640];
    int rc = users_second_factor(a->users_file, a->users, user, code, (int64_t)time(NULL), err,
                                 sizeof(err));
    if (rc == -EIO) {
        log_error("admin: user %s's second factor: %s", user, err);
        answer(rs, 500, "the users file could not be updated: the gateway's log says why");
        return 0;
    }
    if (rc <= 0) {
        a->stats.totp_wrong_codes++;
        log_warn("admin: wrong second-factor code for user %s from %s: %s", user, rq->client, err);
        failure(a, rq, user, msg, rs);
        return 0;
    }
    users_refresh(a->users); /* the step or the recovery code used up */
    if (rc == USERS_FACTOR_RECOVERY) {
        a->stats.recovery_used++;
        log_warn("admin: user %s used a recovery code from %s; %u left", user, rq->client,
                 users_recovery_left(a->users, user));
    }
    return rc;
}

static void session_answer(struct api_response *rs, const struct session *se)
{
    rs->status = 200;
    rs->json = json_pack("{s:s,s:s}", "user", se->user, "csrf", se->csrf);
}

static void login(struct auth *a, const struct auth_request *rq, struct api_response *rs,
                  char *set_cookie, size_t len)
{
    json_t *body = body_object(rq, rs);
    if (body == NULL) {
        return;
    }
    const char *user = member(body, "user"), *password = member(body, "password");
    const char *code = member(body, "code");
    if (code != NULL && code[0] == '\0') {
        code = NULL; /* the page's empty field */
    }
    /* The answer depends on what was sent, never on which part was wrong. */
    const char *wrong = code != NULL ? "wrong user, password or code" : "wrong user or password";
    if (user == NULL || password == NULL || !users_valid_name(user) ||
        (json_object_get(body, "code") != NULL && !json_is_string(json_object_get(body, "code")))) {
        answer(rs, 400, "send {\"user\": ..., \"password\": ...}, and \"code\" if asked for one");
    } else if (!not_banned(a, rq, user, rs) || !password_ok(a, rq, user, password, wrong, rs)) {
        /* answered */
    } else if (users_totp_enabled(a->users, user) && code == NULL) {
        /* The password is right: what is missing is said, so the page can ask for it. */
        answer(rs, 401, "enter the code of your authenticator app (or a recovery code)");
        json_object_set_new(rs->json, "code-needed", json_true());
    } else if (!users_totp_enabled(a->users, user) || code_ok(a, rq, user, code, wrong, rs) > 0) {
        settled(a, user);
        unsigned char stamp[USERS_STAMP_LEN];
        users_stamp(a->users, user, stamp);
        const struct session *se = sessions_create(a->sessions, user, stamp, rq->now);
        snprintf(set_cookie, len, "%s=%s; Path=/; HttpOnly; SameSite=Strict; Max-Age=%d",
                 SESSION_COOKIE, se->id, SESSION_MAX_AGE_S);
        session_answer(rs, se);
        a->stats.logins++;
        log_info("admin: user %s logged in from %s", user, rq->client);
    }
    if (rs->status == 401) {
        a->stats.login_failures += json_object_get(rs->json, "code-needed") == NULL;
    }
    json_decref(body);
}

static void change_password(struct auth *a, const struct auth_request *rq, struct session *se,
                            struct api_response *rs)
{
    json_t *body = body_object(rq, rs);
    if (body == NULL) {
        return;
    }
    const char *old = member(body, "old"), *new = member(body, "new");
    char user[USERS_NAMELEN], err[512];
    snprintf(user, sizeof(user), "%s", se->user);
    if (old == NULL || new == NULL) {
        answer(rs, 400, "send {\"old\": ..., \"new\": ...}");
    } else if (check_password(a, rq, user, old, rs)) {
        int rc = users_set_password(a->users_file, user, new, USERS_DIGEST_KEEP, err, sizeof(err));
        if (rc != 0) {
            answer(rs, rc == -EINVAL ? 400 : 500, "%s", err);
            if (rs->json != NULL && rs->status == 400) {
                json_object_set_new(rs->json, "field", json_string("new"));
            }
        } else {
            users_refresh(a->users);
            /* This session goes on with the new password; the user's others end: whoever had
             * the old password is out. */
            users_stamp(a->users, user, se->stamp);
            sessions_end_user(a->sessions, user, se);
            rs->status = 204;
            log_info("admin: user %s changed their password", user);
        }
    }
    json_decref(body);
}

/* After a change of user's second factor: this session goes on (its stamp made again), the
 * user's others end, as after a password change: they were opened under the old rules. */
static void factor_changed(struct auth *a, struct session *se, const char *user)
{
    users_refresh(a->users);
    users_stamp(a->users, user, se->stamp);
    sessions_end_user(a->sessions, user, se);
}

static void forget_pending(struct session *se)
{
    sodium_memzero(se->totp_pending, sizeof(se->totp_pending));
    se->totp_pending_at = 0;
}

/* POST /me/totp: a new secret, kept in the session until it is confirmed, and shown to the app
 * (a URI and its QR code). */
static void totp_begin(struct auth *a, const struct auth_request *rq, struct session *se,
                       struct api_response *rs)
{
    char user[USERS_NAMELEN], err[512], secret[USERS_TOTP_SECRET_B32 + 1], uri[512];
    snprintf(user, sizeof(user), "%s", se->user);
    int rc = users_totp_begin(a->users, user, secret, err, sizeof(err));
    if (rc != 0) {
        answer(rs, rc == -EEXIST ? 409 : 500, "%s", err);
        return;
    }
    unsigned size = 0;
    char *path = NULL, *svg = NULL;
    if (totp_uri(TOTP_ISSUER, user, secret, uri, sizeof(uri)) < 0 ||
        (path = totp_qr_path(uri, &size)) == NULL || (svg = totp_qr_svg(uri)) == NULL) {
        answer(rs, 500, "out of memory");
    } else {
        snprintf(se->totp_pending, sizeof(se->totp_pending), "%s", secret);
        se->totp_pending_at = rq->now;
        rs->status = 200;
        rs->json = json_pack("{s:s,s:s,s:s,s:{s:i,s:s}}", "secret", secret, "uri", uri, "qr-svg",
                             svg, "qr", "size", (int)size, "path", path);
    }
    free(path);
    free(svg);
    sodium_memzero(secret, sizeof(secret));
    sodium_memzero(uri, sizeof(uri));
}

/* POST /me/totp/confirm {"code"}: turns the second factor on, and answers its recovery codes. */
static void totp_confirm(struct auth *a, const struct auth_request *rq, struct session *se,
                         struct api_response *rs)
{
    json_t *body = body_object(rq, rs);
    if (body == NULL) {
        return;
    }
    const char *code = member(body, "code");
    char user[USERS_NAMELEN], err[640];
    snprintf(user, sizeof(user), "%s", se->user);
    if (se->totp_pending[0] != '\0' && rq->now - se->totp_pending_at >= TOTP_PENDING_S) {
        forget_pending(se);
    }
    if (code == NULL) {
        answer(rs, 400, "send {\"code\": ...}, the code the app shows");
    } else if (se->totp_pending[0] == '\0') {
        answer(rs, 409,
               "no enrolment under way (or it took over %d minutes): begin with POST "
               "/me/totp",
               TOTP_PENDING_S / 60);
    } else {
        char rec[USERS_RECOVERY_CODES][USERS_RECOVERY_LEN + 1];
        int rc = users_totp_confirm(a->users_file, user, se->totp_pending, code,
                                    (int64_t)time(NULL), rec, err, sizeof(err));
        if (rc == -EACCES) {
            a->stats.totp_wrong_codes++;
            log_warn("admin: wrong second-factor code for user %s from %s: %s, confirming a new "
                     "one",
                     user, rq->client, err);
            answer(rs, 400, "wrong code: check the app's clock, and that it has the new key");
            json_object_set_new(rs->json, "field", json_string("code"));
        } else if (rc != 0) {
            answer(rs, rc == -EEXIST ? 409 : 500, "%s", err);
        } else {
            forget_pending(se);
            factor_changed(a, se, user);
            json_t *list = json_array();
            for (size_t k = 0; k < USERS_RECOVERY_CODES; k++) {
                json_array_append_new(list, json_string(rec[k]));
            }
            sodium_memzero(rec, sizeof(rec));
            rs->status = 200;
            rs->json = json_pack("{s:o}", "recovery-codes", list);
            a->stats.totp_enrolled++;
            log_info("admin: user %s turned on two-factor authentication from %s", user,
                     rq->client);
        }
    }
    json_decref(body);
}

/* DELETE /me/totp {"password"} or {"code"}: turns the second factor off. */
static void totp_disable(struct auth *a, const struct auth_request *rq, struct session *se,
                         struct api_response *rs)
{
    json_t *body = body_object(rq, rs);
    if (body == NULL) {
        return;
    }
    const char *password = member(body, "password"), *code = member(body, "code");
    char user[USERS_NAMELEN], err[640];
    snprintf(user, sizeof(user), "%s", se->user);
    static const char wrong[] = "wrong password or code";
    int used = 0;
    if ((password == NULL) == (code == NULL)) {
        answer(rs, 400, "send {\"password\": ...} or {\"code\": ...}");
    } else if (!users_totp_enabled(a->users, user)) {
        answer(rs, 404, "two-factor authentication is off already");
    } else if (!not_banned(a, rq, user, rs)) {
        /* answered */
    } else if (password != NULL ? password_ok(a, rq, user, password, wrong, rs)
                                : (used = code_ok(a, rq, user, code, wrong, rs)) > 0) {
        settled(a, user);
        int rc = users_totp_disable(a->users_file, user, err, sizeof(err));
        if (rc != 0) {
            answer(rs, rc == -ENOENT ? 404 : 500, "%s", err);
        } else {
            factor_changed(a, se, user);
            rs->status = 204;
            a->stats.totp_disabled++;
            log_info("admin: user %s turned off two-factor authentication from %s, with %s", user,
                     rq->client,
                     password != NULL                ? "the password"
                     : used == USERS_FACTOR_RECOVERY ? "a recovery code"
                                                     : "a code");
        }
    }
    json_decref(body);
}

/* /me/totp and /me/totp/confirm: the session's user's second factor. */
static void me_totp(struct auth *a, const struct auth_request *rq, struct session *se,
                    struct api_response *rs)
{
    bool confirm = strcmp(rq->path, "/me/totp/confirm") == 0;
    if (confirm) {
        if (strcmp(rq->method, "POST") == 0) {
            totp_confirm(a, rq, se, rs);
        } else {
            answer(rs, 405, "POST /me/totp/confirm with {\"code\": ...}");
        }
    } else if (strcmp(rq->method, "GET") == 0) {
        rs->status = 200;
        rs->json = json_pack(
            "{s:b,s:i,s:b}", "enabled", users_totp_enabled(a->users, se->user),
            "recovery-codes-left", (int)users_recovery_left(a->users, se->user), "pending",
            se->totp_pending[0] != '\0' && rq->now - se->totp_pending_at < TOTP_PENDING_S);
    } else if (strcmp(rq->method, "POST") == 0) {
        totp_begin(a, rq, se, rs);
    } else if (strcmp(rq->method, "DELETE") == 0) {
        totp_disable(a, rq, se, rs);
    } else {
        answer(rs, 405, "use GET, POST or DELETE /me/totp, POST /me/totp/confirm");
    }
}

static void add_token(void *arg, const char *name, int64_t created)
{
    json_array_append_new(arg,
                          json_pack("{s:s,s:I}", "name", name, "created", (json_int_t)created));
}

static void tokens(struct auth *a, const struct auth_request *rq, const char *who,
                   struct api_response *rs)
{
    char err[512];
    int rc;
    const char *name = rq->path[7] == '/' ? rq->path + 8 : NULL; /* /tokens/NAME */
    if (strcmp(rq->path, "/tokens") == 0 && strcmp(rq->method, "GET") == 0) {
        json_t *list = json_array();
        users_each_token(a->users, add_token, list);
        rs->status = 200;
        rs->json = json_pack("{s:o}", "tokens", list);
    } else if (strcmp(rq->path, "/tokens") == 0 && strcmp(rq->method, "POST") == 0) {
        json_t *body = body_object(rq, rs);
        const char *n = body != NULL ? member(body, "name") : NULL;
        char token[USERS_TOKEN_LEN + 1];
        if (body != NULL && n == NULL) {
            answer(rs, 400, "send {\"name\": ...}");
        } else if (n != NULL &&
                   (rc = users_token_create(a->users_file, n, token, err, sizeof(err))) != 0) {
            answer(rs, rc == -EEXIST ? 409 : rc == -EINVAL ? 400 : 500, "%s", err);
        } else if (n != NULL) {
            users_refresh(a->users);
            rs->status = 201;
            rs->json = json_pack("{s:s,s:s}", "name", n, "token", token);
            sodium_memzero(token, sizeof(token));
            log_info("admin: %s made API token %s", who, n);
        }
        json_decref(body);
    } else if (name != NULL && strcmp(rq->method, "DELETE") == 0) {
        if ((rc = users_token_revoke(a->users_file, name, err, sizeof(err))) != 0) {
            answer(rs, rc == -ENOENT ? 404 : 500, "%s", err);
        } else {
            users_refresh(a->users);
            rs->status = 204;
            log_info("admin: %s revoked API token %s", who, name);
        }
    } else {
        answer(rs, 405, "use GET or POST /tokens, DELETE /tokens/NAME");
    }
}

enum auth_verdict auth_handle(struct auth *a, const struct auth_request *rq,
                              struct api_response *rs, char *set_cookie, size_t len)
{
    memset(rs, 0, sizeof(*rs));
    set_cookie[0] = '\0';
    users_refresh(a->users);
    bool session_path = strcmp(rq->path, "/session") == 0;
    bool tokens_path = strcmp(rq->path, "/tokens") == 0 || strncmp(rq->path, "/tokens/", 8) == 0;
    bool me_path = strcmp(rq->path, "/me") == 0 || strncmp(rq->path, "/me/", 4) == 0;
    if (rq->local) {
        if (tokens_path) {
            tokens(a, rq, "the unix socket", rs);
            return AUTH_ANSWERED;
        }
        if (session_path || me_path || strcmp(rq->path, "/password") == 0) {
            answer(rs, 404, "no login on the unix socket: it is trusted by its permissions");
            return AUTH_ANSWERED;
        }
        return AUTH_PASS;
    }
    /* With no user yet the page can only say how to make one; an API token (made on the
     * gateway too) works all the same. */
    if (!users_any(a->users) && rq->authorization == NULL) {
        answer(rs, 401, "%s", setup_msg);
        json_object_set_new(rs->json, "setup", json_true());
        return AUTH_ANSWERED;
    }
    if (session_path && strcmp(rq->method, "POST") == 0) {
        login(a, rq, rs, set_cookie, len);
        return AUTH_ANSWERED;
    }
    /* Everything else needs a token or a session. */
    struct session *se = cookie_session(a, rq->cookie, rq->now);
    const char *token_name = NULL;
    char who[USERS_NAMELEN + 16];
    if (rq->authorization != NULL) {
        char token[USERS_TOKEN_LEN + 1];
        if (authhdr_bearer(rq->authorization, token, sizeof(token)) >= 0) {
            token_name = users_check_token(a->users, token);
        }
        sodium_memzero(token, sizeof(token));
        if (token_name == NULL) {
            answer(rs, 401, "this API token is not valid (revoked, or mistyped)");
            return AUTH_ANSWERED;
        }
        snprintf(who, sizeof(who), "token %s", token_name);
    } else if (se != NULL) {
        snprintf(who, sizeof(who), "user %s", se->user);
        if (changes(rq) && !(session_path && strcmp(rq->method, "DELETE") == 0) &&
            !session_csrf_ok(se, rq->csrf)) {
            answer(rs, 403, "missing or wrong X-CSRF-Token (reload the page)");
            return AUTH_ANSWERED;
        }
    } else {
        answer(rs, 401, "log in first");
        return AUTH_ANSWERED;
    }
    if (session_path) {
        if (strcmp(rq->method, "GET") == 0 && se != NULL) {
            session_answer(rs, se);
        } else if (strcmp(rq->method, "DELETE") == 0 && se != NULL) {
            log_info("admin: user %s logged out", se->user);
            sessions_end(a->sessions, se->id);
            snprintf(set_cookie, len, "%s=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
                     SESSION_COOKIE);
            rs->status = 204;
        } else {
            answer(rs, 400, "a token has no session: use GET /session with the page's cookie");
        }
        return AUTH_ANSWERED;
    }
    if (strcmp(rq->path, "/password") == 0) {
        if (se == NULL || strcmp(rq->method, "POST") != 0) {
            answer(rs, 400, "POST /password with the page's session changes your password");
        } else {
            change_password(a, rq, se, rs);
        }
        return AUTH_ANSWERED;
    }
    if (tokens_path) {
        tokens(a, rq, who, rs);
        return AUTH_ANSWERED;
    }
    if (me_path) {
        if (se == NULL) {
            answer(rs, 400, "a token has no user: /me is the page's session's");
        } else if (strcmp(rq->path, "/me/totp") == 0 || strcmp(rq->path, "/me/totp/confirm") == 0) {
            me_totp(a, rq, se, rs);
        } else {
            answer(rs, 404, "no such endpoint: %s (see docs/admin.md)", rq->path);
        }
        return AUTH_ANSWERED;
    }
    return AUTH_PASS;
}
