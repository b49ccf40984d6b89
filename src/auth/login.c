#include "auth/login.h"

#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth/regulate.h"
#include "core/log.h"
#include "core/names.h"

#define USERS_RECHECK_S 2 /* how often the idle thread looks whether the users file changed */

struct login_job {
    unsigned refs;  /* atomic: the caller's and the queue's (the thread's) */
    int result;     /* atomic: enum login_result */
    bool abandoned; /* atomic: the caller left (login_job_abandon()) */
    uint64_t wait_s;
    char user[USERS_NAMELEN];
    char password[USERS_MAX_PASSWORD + 1];
    char code[USERS_MAX_CODE + 1];
    char client[64];
    char scope[LOGIN_SCOPE_LEN];
    char allowed[1024];
    char id[SESSION_IDLEN + 1];
    /* A player's login (login_start_player()): no second factor can come; by Digest when
     * digest, with its answer and the request's method. */
    bool player, digest;
    struct digest_answer answer;
    char method[32];
    struct login_job *next;
};

/* The sessions of one mapping. */
struct scope {
    char name[LOGIN_SCOPE_LEN];
    struct sessions *sessions;
};

static struct {
    pthread_mutex_t lock; /* what follows, but users */
    pthread_cond_t cond;
    pthread_t thread;
    bool running, stopping;
    struct login_job *head, *tail;
    size_t queued;
    struct regulate *regulate;
    uint64_t banned_logged_s,
        banned_quiet; /* the last "while it is banned" line, and those since */
    struct scope *scopes;
    size_t nscopes;
    /* The users, read by the thread's checks and by session checks, re-read when the file
     * changed: under their own lock, so that a password check does not hold the one above. */
    pthread_rwlock_t users_lock;
    struct users *users;
    char path[4096];
} L = {.lock = PTHREAD_MUTEX_INITIALIZER,
       .cond = PTHREAD_COND_INITIALIZER,
       .users_lock = PTHREAD_RWLOCK_INITIALIZER};

static uint64_t now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec;
}

static void job_unref(struct login_job *j)
{
    if (__atomic_sub_fetch(&j->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        sodium_memzero(j, sizeof(*j));
        free(j);
    }
}

/* The sessions of scope, made if needed (under L.lock). NULL when out of memory. */
static struct sessions *scope_sessions(const char *name, bool make)
{
    for (size_t i = 0; i < L.nscopes; i++) {
        if (strcmp(L.scopes[i].name, name) == 0) {
            return L.scopes[i].sessions;
        }
    }
    if (!make) {
        return NULL;
    }
    struct scope *v = realloc(L.scopes, (L.nscopes + 1) * sizeof(*v));
    if (v == NULL) {
        return NULL;
    }
    L.scopes = v;
    struct sessions *s = sessions_new();
    if (s == NULL) {
        return NULL;
    }
    snprintf(v[L.nscopes].name, sizeof(v[L.nscopes].name), "%s", name);
    v[L.nscopes++].sessions = s;
    return s;
}

/* Re-reads the users file if it changed (users_refresh() logs a broken one). */
static void refresh_users(void)
{
    pthread_rwlock_wrlock(&L.users_lock);
    if (L.users != NULL) {
        users_refresh(L.users);
    }
    pthread_rwlock_unlock(&L.users_lock);
}

/* Checks one job: regulation, then the password (the slow part, under no lock but the users'
 * read lock), then regulation again and a session. */
static enum login_result check(struct login_job *j)
{
    char by_addr[REGULATE_KEYLEN], by_user[REGULATE_KEYLEN];
    snprintf(by_addr, sizeof(by_addr), "addr %s", j->client);
    snprintf(by_user, sizeof(by_user), "user %s", j->user);
    uint64_t now = now_s(), left = 0, left2 = 0;
    pthread_mutex_lock(&L.lock);
    bool banned = regulate_banned(L.regulate, by_addr, now, &left) ||
                  regulate_banned(L.regulate, by_user, now, &left2);
    pthread_mutex_unlock(&L.lock);
    if (banned) {
        j->wait_s = left > left2 ? left : left2;
        /* No argon2id stands between these and the log: one line a second, with a count. */
        pthread_mutex_lock(&L.lock);
        bool say = now != L.banned_logged_s;
        uint64_t quiet = say ? L.banned_quiet : 0;
        if (say) {
            L.banned_logged_s = now;
            L.banned_quiet = 0;
        } else {
            L.banned_quiet++;
        }
        pthread_mutex_unlock(&L.lock);
        if (say) {
            log_warn("login: map %s: refused a login from %s while it is banned (%llu more "
                     "refusals of banned logins not logged)",
                     j->scope, j->client, (unsigned long long)quiet);
        }
        return LOGIN_BANNED;
    }
    refresh_users();
    pthread_rwlock_rdlock(&L.users_lock);
    bool known = L.users != NULL && users_valid_name(j->user) && users_exists(L.users, j->user);
    bool ok;
    if (j->digest) {
        int d = L.users != NULL
                    ? users_check_digest(L.users, &j->answer, j->method, strlen(j->method))
                    : -ENOENT;
        ok = d == 1 && users_valid_name(j->user);
        if (d == -ENOENT && known) {
            log_warn("login: map %s: user %s from %s answered Digest, but has no Digest keys: "
                     "portgate passwd --digest %s makes them",
                     j->scope, j->user, j->client, j->user);
        }
    } else {
        ok = L.users != NULL && users_valid_name(j->user) &&
             users_check_password(L.users, j->user, j->password);
    }
    bool other = ok && j->allowed[0] != '\0' && !names_has(j->allowed, j->user);
    if (other) {
        ok = false; /* its password is right: said only to the log */
        log_warn("login: map %s: user %s from %s may not use it (users)", j->scope, j->user,
                 j->client);
    }
    bool factor = ok && users_totp_enabled(L.users, j->user);
    char err[160] = "";
    if (factor && j->player) {
        /* A player cannot give a code: a password alone must not get past the second factor. */
        ok = false;
        factor = false;
        log_warn("login: map %s: user %s from %s has a second factor, which a player cannot "
                 "give: use a user without one for players, or auth = client-cert",
                 j->scope, j->user, j->client);
    } else if (factor) {
        /* The code is used up in the file (users_second_factor): a replay is wrong. */
        ok = users_second_factor(L.path, L.users, j->user, j->code, (int64_t)time(NULL), err,
                                 sizeof(err)) > 0;
    }
    unsigned char stamp[USERS_STAMP_LEN] = {0};
    if (ok) {
        users_stamp(L.users, j->user, stamp);
    }
    pthread_rwlock_unlock(&L.users_lock);
    if (factor && !ok) {
        log_warn("login: map %s: user %s from %s: a wrong second factor (%s)", j->scope, j->user,
                 j->client, err[0] ? err : "wrong code");
    }
    if (factor && ok) {
        refresh_users(); /* the code was used up in the file: its stamp, its last step */
        pthread_rwlock_rdlock(&L.users_lock);
        users_stamp(L.users, j->user, stamp);
        pthread_rwlock_unlock(&L.users_lock);
    }
    sodium_memzero(j->password, sizeof(j->password));
    sodium_memzero(j->code, sizeof(j->code));
    sodium_memzero(&j->answer, sizeof(j->answer));
    pthread_mutex_lock(&L.lock);
    enum login_result r = LOGIN_REFUSED;
    if (ok) {
        regulate_success(L.regulate, by_user);
        struct sessions *s = scope_sessions(j->scope, true);
        const struct session *se = s != NULL ? sessions_create(s, j->user, stamp, now) : NULL;
        if (se != NULL) {
            memcpy(j->id, se->id, sizeof(j->id));
            r = LOGIN_OK;
        } else {
            r = LOGIN_BUSY;
        }
    } else {
        bool ban_addr = regulate_fail(L.regulate, by_addr, now);
        bool ban_user = regulate_fail(L.regulate, by_user, now);
        pthread_mutex_unlock(&L.lock);
        /* The name only if it is a user's: one that is not may be a password typed there. */
        log_warn("login: map %s: failed login for %s%s from %s", j->scope,
                 known ? "user " : "a user name that does not exist", known ? j->user : "",
                 j->client);
        if (ban_addr || ban_user) {
            char whom[USERS_NAMELEN + 96];
            const char *name = known ? j->user : "(a name that is no user's)";
            if (ban_addr && ban_user) {
                snprintf(whom, sizeof(whom), "for user %s and from %s", name, j->client);
            } else if (ban_user) {
                snprintf(whom, sizeof(whom), "for user %s", name);
            } else {
                snprintf(whom, sizeof(whom), "from %s", j->client);
            }
            log_warn("login: %d failed logins within %d minutes %s; refusing %s for %d minutes",
                     REGULATE_MAX_FAILURES, REGULATE_WINDOW_S / 60, whom,
                     ban_addr && ban_user ? "both" : (ban_user ? "that user" : "that address"),
                     REGULATE_BAN_S / 60);
        }
        return r;
    }
    pthread_mutex_unlock(&L.lock);
    if (r == LOGIN_OK) {
        log_info("login: map %s: user %s logged in from %s%s", j->scope, j->user, j->client,
                 !j->player  ? ""
                 : j->digest ? " (a player, by Digest)"
                             : " (a player, by Basic)");
    }
    return r;
}

/* Ends the session job j made (under L.lock: the caller holds none of the service's locks). */
static void end_session(const struct login_job *j)
{
    pthread_mutex_lock(&L.lock);
    struct sessions *s = scope_sessions(j->scope, false);
    if (s != NULL) {
        sessions_end(s, j->id);
    }
    pthread_mutex_unlock(&L.lock);
}

static void *run(void *arg)
{
    (void)arg;
    users_prepare(); /* an unknown user's first check costs what the others do */
    pthread_mutex_lock(&L.lock);
    for (;;) {
        /* Idle, the users file is looked at every USERS_RECHECK_S: a password changed ends
         * the sessions it made (login_session() compares stamps, under the read lock only, so
         * that a worker never waits while this thread hashes). */
        while (L.head == NULL && !L.stopping) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += USERS_RECHECK_S;
            if (pthread_cond_timedwait(&L.cond, &L.lock, &until) == ETIMEDOUT) {
                pthread_mutex_unlock(&L.lock);
                refresh_users();
                pthread_mutex_lock(&L.lock);
            }
        }
        if (L.stopping) {
            break;
        }
        struct login_job *j = L.head;
        L.head = j->next;
        if (L.head == NULL) {
            L.tail = NULL;
        }
        L.queued--;
        bool abandoned = __atomic_load_n(&j->refs, __ATOMIC_ACQUIRE) == 1;
        pthread_mutex_unlock(&L.lock);
        /* A job whose client left is dropped unchecked: no one waits for it. */
        enum login_result r = abandoned ? LOGIN_REFUSED : check(j);
        __atomic_store_n(&j->result, (int)r, __ATOMIC_SEQ_CST);
        if (r == LOGIN_OK && __atomic_load_n(&j->abandoned, __ATOMIC_SEQ_CST)) {
            end_session(j); /* its client left while it was checked: nobody will use it */
        }
        job_unref(j);
        pthread_mutex_lock(&L.lock);
    }
    /* Stopping: what waits ends refused. */
    while (L.head != NULL) {
        struct login_job *j = L.head;
        L.head = j->next;
        __atomic_store_n(&j->result, (int)LOGIN_BUSY, __ATOMIC_RELEASE);
        job_unref(j);
    }
    L.tail = NULL;
    L.queued = 0;
    pthread_mutex_unlock(&L.lock);
    return NULL;
}

int login_configure(const char *users_file)
{
    pthread_rwlock_rdlock(&L.users_lock);
    bool same = L.users != NULL && strcmp(L.path, users_file) == 0;
    pthread_rwlock_unlock(&L.users_lock);
    if (same) {
        return 0; /* re-read when it changes (users_refresh) */
    }
    struct users *u = users_open(users_file);
    if (u == NULL) {
        return -ENOMEM;
    }
    if (users_error(u) != NULL) {
        log_warn("login: users-file %s: %s; nobody can log in through a mapping until it is "
                 "fixed",
                 users_file, users_error(u));
    }
    pthread_rwlock_wrlock(&L.users_lock);
    struct users *old = L.users;
    L.users = u;
    snprintf(L.path, sizeof(L.path), "%s", users_file);
    pthread_rwlock_unlock(&L.users_lock);
    users_free(old);
    pthread_mutex_lock(&L.lock);
    int rc = 0;
    if (L.regulate == NULL && (L.regulate = regulate_new()) == NULL) {
        rc = -ENOMEM;
    }
    if (rc == 0 && !L.running) {
        L.stopping = false;
        rc = -pthread_create(&L.thread, NULL, run, NULL);
        L.running = rc == 0;
    }
    pthread_mutex_unlock(&L.lock);
    return rc;
}

void login_shutdown(void)
{
    pthread_mutex_lock(&L.lock);
    bool running = L.running;
    L.stopping = true;
    pthread_cond_signal(&L.cond);
    pthread_mutex_unlock(&L.lock);
    if (running) {
        pthread_join(L.thread, NULL);
    }
    pthread_mutex_lock(&L.lock);
    L.running = false;
    for (size_t i = 0; i < L.nscopes; i++) {
        sessions_free(L.scopes[i].sessions);
    }
    free(L.scopes);
    L.scopes = NULL;
    L.nscopes = 0;
    regulate_free(L.regulate);
    L.regulate = NULL;
    pthread_mutex_unlock(&L.lock);
    pthread_rwlock_wrlock(&L.users_lock);
    users_free(L.users);
    L.users = NULL;
    pthread_rwlock_unlock(&L.users_lock);
}

/* A new job for user from client to scope, not queued yet. NULL when out of memory. */
static struct login_job *job_new(const char *user, const char *client, const char *scope,
                                 const char *allowed)
{
    struct login_job *j = calloc(1, sizeof(*j));
    if (j == NULL) {
        return NULL;
    }
    j->refs = 2;
    j->result = LOGIN_PENDING;
    snprintf(j->user, sizeof(j->user), "%s", user);
    snprintf(j->client, sizeof(j->client), "%s", client);
    snprintf(j->scope, sizeof(j->scope), "%s", scope);
    snprintf(j->allowed, sizeof(j->allowed), "%s", allowed);
    return j;
}

/* Queues j for the thread, or ends it LOGIN_BUSY at once. Returns j. */
static struct login_job *job_queue(struct login_job *j)
{
    pthread_mutex_lock(&L.lock);
    if (!L.running || L.stopping || L.queued >= LOGIN_QUEUE_MAX) {
        pthread_mutex_unlock(&L.lock);
        j->refs = 1;
        j->result = LOGIN_BUSY; /* the caller polls it, then frees it */
        sodium_memzero(j->password, sizeof(j->password));
        sodium_memzero(j->code, sizeof(j->code));
        sodium_memzero(&j->answer, sizeof(j->answer));
        return j;
    }
    if (L.tail != NULL) {
        L.tail->next = j;
    } else {
        L.head = j;
    }
    L.tail = j;
    L.queued++;
    pthread_cond_signal(&L.cond);
    pthread_mutex_unlock(&L.lock);
    return j;
}

struct login_job *login_start(const char *user, const char *password, const char *code,
                              const char *client, const char *scope, const char *allowed)
{
    if (strlen(password) > USERS_MAX_PASSWORD || strlen(code) > USERS_MAX_CODE) {
        return NULL;
    }
    struct login_job *j = job_new(user, client, scope, allowed);
    if (j == NULL) {
        return NULL;
    }
    snprintf(j->password, sizeof(j->password), "%s", password);
    snprintf(j->code, sizeof(j->code), "%s", code);
    return job_queue(j);
}

struct login_job *login_start_player(const struct digest_answer *a, const char *method,
                                     const char *client, const char *scope, const char *allowed)
{
    if (strlen(a->password) > USERS_MAX_PASSWORD ||
        strlen(method) >= sizeof(((struct login_job *)0)->method)) {
        return NULL;
    }
    struct login_job *j = job_new(a->user, client, scope, allowed);
    if (j == NULL) {
        return NULL;
    }
    j->player = true;
    if (a->scheme == DIGEST_BASIC) {
        snprintf(j->password, sizeof(j->password), "%s", a->password);
    } else {
        j->digest = true;
        j->answer = *a;
        snprintf(j->method, sizeof(j->method), "%s", method);
    }
    return job_queue(j);
}

enum login_result login_poll(struct login_job *j, char id[SESSION_IDLEN + 1], uint64_t *wait_s)
{
    enum login_result r = (enum login_result)__atomic_load_n(&j->result, __ATOMIC_ACQUIRE);
    if (r == LOGIN_OK) {
        memcpy(id, j->id, SESSION_IDLEN + 1);
    }
    if (r == LOGIN_BANNED) {
        *wait_s = j->wait_s;
    }
    return r;
}

void login_job_free(struct login_job *j)
{
    if (j != NULL) {
        job_unref(j);
    }
}

void login_job_abandon(struct login_job *j)
{
    if (j == NULL) {
        return;
    }
    /* The thread publishes its result, then looks for this flag; this sets the flag, then looks
     * for a result (both sequentially consistent): one of the two sees the other, so a session
     * made for a client that left is ended by one of them (or both: ending twice is nothing). */
    __atomic_store_n(&j->abandoned, true, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&j->result, __ATOMIC_SEQ_CST) == LOGIN_OK) {
        end_session(j);
    }
    job_unref(j);
}

bool login_session(const char *id, const char *scope, char user[USERS_NAMELEN])
{
    uint64_t now = now_s();
    pthread_mutex_lock(&L.lock);
    struct sessions *s = scope_sessions(scope, false);
    struct session *se = s != NULL ? sessions_find(s, id, now) : NULL;
    char who[USERS_NAMELEN] = "";
    unsigned char stamp[USERS_STAMP_LEN];
    if (se != NULL) {
        snprintf(who, sizeof(who), "%s", se->user);
        memcpy(stamp, se->stamp, sizeof(stamp));
    }
    pthread_mutex_unlock(&L.lock);
    if (se == NULL) {
        return false;
    }
    /* A password changed since the login (by any means) ends the session. */
    unsigned char now_stamp[USERS_STAMP_LEN];
    pthread_rwlock_rdlock(&L.users_lock);
    bool same = L.users != NULL && users_stamp(L.users, who, now_stamp) &&
                sodium_memcmp(now_stamp, stamp, sizeof(stamp)) == 0;
    pthread_rwlock_unlock(&L.users_lock);
    if (!same) {
        pthread_mutex_lock(&L.lock);
        s = scope_sessions(scope, false);
        if (s != NULL) {
            sessions_end(s, id);
        }
        pthread_mutex_unlock(&L.lock);
        log_info("login: map %s: the session of %s ended: the password changed or the user is "
                 "gone",
                 scope, who);
        return false;
    }
    memcpy(user, who, USERS_NAMELEN);
    return true;
}

void login_logout(const char *id, const char *client)
{
    pthread_mutex_lock(&L.lock);
    char who[USERS_NAMELEN] = "", scope[LOGIN_SCOPE_LEN] = "";
    for (size_t i = 0; i < L.nscopes && who[0] == '\0'; i++) {
        struct session *se = sessions_find(L.scopes[i].sessions, id, now_s());
        if (se != NULL) {
            snprintf(who, sizeof(who), "%s", se->user);
            snprintf(scope, sizeof(scope), "%s", L.scopes[i].name);
            sessions_end(L.scopes[i].sessions, id);
        }
    }
    pthread_mutex_unlock(&L.lock);
    if (who[0] != '\0') {
        log_info("login: map %s: user %s logged out from %s", scope, who, client);
    }
}

void login_session_end(const char *id, const char *scope)
{
    pthread_mutex_lock(&L.lock);
    struct sessions *s = scope_sessions(scope, false);
    if (s != NULL) {
        sessions_end(s, id);
    }
    pthread_mutex_unlock(&L.lock);
}

/* ---- Digest nonces ---- */

/* The key nonces are made with: random, made once per process. */
static unsigned char nonce_key[crypto_auth_hmacsha256_KEYBYTES];
static pthread_once_t nonce_once = PTHREAD_ONCE_INIT;

static void nonce_key_make(void)
{
    randombytes_buf(nonce_key, sizeof(nonce_key));
}

#define NONCE_MAC 16

/* The MAC of a nonce's time for scope and the connection's conn. */
static void nonce_mac(const unsigned char t[8], const char *scope,
                      const unsigned char conn[LOGIN_CONN_KEY], unsigned char mac[NONCE_MAC])
{
    pthread_once(&nonce_once, nonce_key_make);
    crypto_auth_hmacsha256_state st;
    unsigned char full[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_init(&st, nonce_key, sizeof(nonce_key));
    crypto_auth_hmacsha256_update(&st, t, 8);
    crypto_auth_hmacsha256_update(&st, conn, LOGIN_CONN_KEY);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)scope, strlen(scope) + 1);
    crypto_auth_hmacsha256_final(&st, full);
    memcpy(mac, full, NONCE_MAC);
    sodium_memzero(&st, sizeof(st));
}

void login_nonce(const char *scope, const unsigned char conn[LOGIN_CONN_KEY],
                 char nonce[LOGIN_NONCE_LEN + 1])
{
    login_nonce_at(scope, conn, now_s(), nonce);
}

void login_nonce_at(const char *scope, const unsigned char conn[LOGIN_CONN_KEY], uint64_t now,
                    char nonce[LOGIN_NONCE_LEN + 1])
{
    unsigned char raw[8 + NONCE_MAC];
    for (int i = 0; i < 8; i++) {
        raw[i] = (unsigned char)(now >> (56 - 8 * i));
    }
    nonce_mac(raw, scope, conn, raw + 8);
    sodium_bin2base64(nonce, LOGIN_NONCE_LEN + 1, raw, sizeof(raw),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

int login_nonce_check(const char *nonce, const char *scope,
                      const unsigned char conn[LOGIN_CONN_KEY])
{
    return login_nonce_check_at(nonce, scope, conn, now_s());
}

int login_nonce_check_at(const char *nonce, const char *scope,
                         const unsigned char conn[LOGIN_CONN_KEY], uint64_t now)
{
    unsigned char raw[8 + NONCE_MAC], mac[NONCE_MAC];
    size_t got = 0;
    if (strlen(nonce) != LOGIN_NONCE_LEN ||
        sodium_base642bin(raw, sizeof(raw), nonce, LOGIN_NONCE_LEN, NULL, &got, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        got != sizeof(raw)) {
        return -1;
    }
    nonce_mac(raw, scope, conn, mac);
    if (sodium_memcmp(mac, raw + 8, NONCE_MAC) != 0) {
        return -1;
    }
    uint64_t t = 0;
    for (int i = 0; i < 8; i++) {
        t = t << 8 | raw[i];
    }
    return t <= now && now - t < LOGIN_NONCE_TTL_S ? 1 : 0;
}
