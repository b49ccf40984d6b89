#include "auth/users.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/file.h"
#include "core/log.h"

#define USERS_MAX_FILE (4u << 20)
#define TOKEN_PREFIX "pgt_"

struct entry {
    bool token;
    char name[USERS_NAMELEN];
    char hash[crypto_pwhash_STRBYTES];             /* user: the argon2id string */
    unsigned char thash[crypto_generichash_BYTES]; /* token */
    int64_t created;
};

struct users {
    char path[512];
    struct entry *v;
    size_t n;
    char error[640]; /* a path and what is wrong with it */
    /* What the file was when read, to see that it changed. */
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
    bool read_once;
};

bool users_valid_name(const char *name)
{
    size_t n = strlen(name);
    return n > 0 && n < USERS_NAMELEN &&
           strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-@") == n;
}

static void users_clear(struct users *u)
{
    if (u->v != NULL) {
        sodium_memzero(u->v, u->n * sizeof(*u->v));
    }
    free(u->v);
    u->v = NULL;
    u->n = 0;
}

/* Parses buf into u's entries (replacing them only if it all parses). Returns 0, or -1 with
 * u->error set. */
static int parse_into(struct users *u, const char *source, const char *buf, size_t len)
{
    struct entry *v = NULL;
    size_t n = 0, cap = 0;
    int line = 0;
    const char *p = buf, *end = buf + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t ll = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
        line++;
        char text[1024];
        if (ll >= sizeof(text)) {
            snprintf(u->error, sizeof(u->error), "%s:%d: line too long", source, line);
            goto bad;
        }
        memcpy(text, p, ll);
        text[ll] = '\0';
        p += ll + (nl != NULL);
        if (memchr(text, '\0', ll) != NULL) {
            snprintf(u->error, sizeof(u->error), "%s:%d: NUL byte in line", source, line);
            goto bad;
        }
        char *save = NULL;
        char *kind = strtok_r(text, " \t\r", &save);
        if (kind == NULL || kind[0] == '#') {
            continue;
        }
        char *name = strtok_r(NULL, " \t\r", &save);
        char *hash = strtok_r(NULL, " \t\r", &save);
        char *created = strtok_r(NULL, " \t\r", &save);
        char *extra = strtok_r(NULL, " \t\r", &save);
        bool is_user = strcmp(kind, "user") == 0, is_token = strcmp(kind, "token") == 0;
        if (!is_user && !is_token) {
            snprintf(u->error, sizeof(u->error),
                     "%s:%d: expected \"user NAME HASH\" or \"token NAME HASH TIME\"", source,
                     line);
            goto bad;
        }
        if (name == NULL || hash == NULL || !users_valid_name(name) ||
            (is_user && (created != NULL || strncmp(hash, "$argon2id$", 10) != 0 ||
                         strlen(hash) >= crypto_pwhash_STRBYTES)) ||
            (is_token &&
             (created == NULL || extra != NULL || strlen(hash) != 2 * crypto_generichash_BYTES ||
              strspn(created, "0123456789") != strlen(created)))) {
            snprintf(u->error, sizeof(u->error), "%s:%d: a malformed %s entry", source, line, kind);
            goto bad;
        }
        for (size_t i = 0; i < n; i++) {
            if (v[i].token == is_token && strcmp(v[i].name, name) == 0) {
                snprintf(u->error, sizeof(u->error), "%s:%d: %s %s appears twice", source, line,
                         kind, name);
                goto bad;
            }
        }
        if (n == USERS_MAX_ENTRIES) {
            snprintf(u->error, sizeof(u->error), "%s: more than %d entries", source,
                     USERS_MAX_ENTRIES);
            goto bad;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            struct entry *nv = realloc(v, cap * sizeof(*nv));
            if (nv == NULL) {
                snprintf(u->error, sizeof(u->error), "%s: out of memory", source);
                goto bad;
            }
            v = nv;
        }
        struct entry *e = &v[n];
        memset(e, 0, sizeof(*e));
        e->token = is_token;
        snprintf(e->name, sizeof(e->name), "%s", name);
        if (is_user) {
            snprintf(e->hash, sizeof(e->hash), "%s", hash);
        } else {
            size_t got = 0;
            if (sodium_hex2bin(e->thash, sizeof(e->thash), hash, strlen(hash), NULL, &got, NULL) !=
                    0 ||
                got != sizeof(e->thash)) {
                snprintf(u->error, sizeof(u->error), "%s:%d: a malformed token entry", source,
                         line);
                goto bad;
            }
            e->created = strtoll(created, NULL, 10);
        }
        n++;
    }
    users_clear(u);
    u->v = v;
    u->n = n;
    u->error[0] = '\0';
    return 0;
bad:
    if (v != NULL) {
        sodium_memzero(v, n * sizeof(*v));
    }
    free(v);
    return -1;
}

struct users *users_parse(const char *source, const char *buf, size_t len)
{
    struct users *u = calloc(1, sizeof(*u));
    if (u != NULL) {
        parse_into(u, source, buf, len);
    }
    return u;
}

/* Reads the file into u. Returns 0 (a missing file is an empty one), or -1 with u->error. */
static int load(struct users *u)
{
    /* Not through a symbolic link: root reads it for portgate passwd, in a directory that the
     * gateway's user owns. */
    char *buf;
    size_t len;
    struct stat sb;
    int rc = file_read(u->path, true, USERS_MAX_FILE, &buf, &len, &sb);
    if (rc == -ENOENT) {
        users_clear(u);
        u->error[0] = '\0';
        memset(&u->mtime, 0, sizeof(u->mtime));
        u->dev = 0;
        u->ino = 0;
        u->size = 0;
        return 0;
    }
    if (rc != 0) {
        snprintf(u->error, sizeof(u->error), "%s: %s", u->path,
                 rc == -ELOOP   ? "a symbolic link (give the file's own path)"
                 : rc == -EFBIG ? "larger than 4 MiB"
                                : file_strerror(rc));
        return -1;
    }
    rc = parse_into(u, u->path, buf, len);
    u->dev = sb.st_dev;
    u->ino = sb.st_ino;
    u->size = sb.st_size;
    u->mtime = sb.st_mtim;
    sodium_memzero(buf, len);
    free(buf);
    return rc;
}

struct users *users_open(const char *path)
{
    struct users *u = calloc(1, sizeof(*u));
    if (u == NULL) {
        return NULL;
    }
    snprintf(u->path, sizeof(u->path), "%s", path);
    load(u);
    u->read_once = true;
    return u;
}

void users_refresh(struct users *u)
{
    struct stat sb;
    bool gone = stat(u->path, &sb) == -1;
    if (gone ? u->ino == 0 && u->error[0] == '\0'
             : sb.st_dev == u->dev && sb.st_ino == u->ino && sb.st_size == u->size &&
                   sb.st_mtim.tv_sec == u->mtime.tv_sec && sb.st_mtim.tv_nsec == u->mtime.tv_nsec) {
        return;
    }
    char before[sizeof(u->error)];
    snprintf(before, sizeof(before), "%s", u->error);
    if (load(u) != 0 && strcmp(before, u->error) != 0) {
        log_error("users-file %s; keeping the users read before", u->error);
    }
}

void users_free(struct users *u)
{
    if (u != NULL) {
        users_clear(u);
        free(u);
    }
}

const char *users_error(const struct users *u)
{
    return u->error[0] != '\0' ? u->error : NULL;
}

bool users_any(const struct users *u)
{
    for (size_t i = 0; i < u->n; i++) {
        if (!u->v[i].token) {
            return true;
        }
    }
    return false;
}

/* A hash of a random password with the cost real ones have, checked when the user does not
 * exist, so that an unknown user costs the same time as a wrong password. */
static const char *dummy_hash(void)
{
    static char hash[crypto_pwhash_STRBYTES];
    if (hash[0] == '\0') {
        unsigned char pw[16];
        randombytes_buf(pw, sizeof(pw));
        if (crypto_pwhash_str(hash, (const char *)pw, sizeof(pw),
                              crypto_pwhash_OPSLIMIT_INTERACTIVE,
                              crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0) {
            hash[0] = '\0';
        }
    }
    return hash;
}

void users_prepare(void)
{
    dummy_hash();
}

static const struct entry *find_user(const struct users *u, const char *user)
{
    for (size_t i = 0; i < u->n; i++) {
        if (!u->v[i].token && strcmp(u->v[i].name, user) == 0) {
            return &u->v[i];
        }
    }
    return NULL;
}

bool users_exists(const struct users *u, const char *user)
{
    return find_user(u, user) != NULL;
}

bool users_stamp(const struct users *u, const char *user, unsigned char stamp[USERS_STAMP_LEN])
{
    const struct entry *e = find_user(u, user);
    if (e == NULL) {
        return false;
    }
    crypto_generichash(stamp, USERS_STAMP_LEN, (const unsigned char *)e->hash, strlen(e->hash),
                       NULL, 0);
    return true;
}

bool users_check_password(const struct users *u, const char *user, const char *password)
{
    const char *hash = NULL;
    for (size_t i = 0; i < u->n; i++) {
        if (!u->v[i].token && strcmp(u->v[i].name, user) == 0) {
            hash = u->v[i].hash;
        }
    }
    size_t len = strnlen(password, USERS_MAX_PASSWORD + 1);
    if (len > USERS_MAX_PASSWORD) {
        len = USERS_MAX_PASSWORD; /* checked all the same: it cannot match */
    }
    if (hash == NULL) {
        const char *d = dummy_hash();
        if (d[0] != '\0' && crypto_pwhash_str_verify(d, password, len) == 0) {
            return false; /* a random password cannot match: the work is what counts */
        }
        return false;
    }
    return crypto_pwhash_str_verify(hash, password, len) == 0 &&
           strlen(password) <= USERS_MAX_PASSWORD;
}

const char *users_check_token(const struct users *u, const char *token)
{
    if (strlen(token) != USERS_TOKEN_LEN || strncmp(token, TOKEN_PREFIX, 4) != 0) {
        return NULL;
    }
    unsigned char h[crypto_generichash_BYTES];
    crypto_generichash(h, sizeof(h), (const unsigned char *)token, USERS_TOKEN_LEN, NULL, 0);
    const char *found = NULL;
    for (size_t i = 0; i < u->n; i++) {
        /* Every entry is compared, in constant time: no early exit on a match. */
        if (u->v[i].token && sodium_memcmp(h, u->v[i].thash, sizeof(h)) == 0) {
            found = u->v[i].name;
        }
    }
    return found;
}

void users_each_token(const struct users *u,
                      void (*fn)(void *arg, const char *name, int64_t created), void *arg)
{
    for (size_t i = 0; i < u->n; i++) {
        if (u->v[i].token) {
            fn(arg, u->v[i].name, u->v[i].created);
        }
    }
}

/* ---- changes ---- */

/* The directory holding path, in dir (len bytes). */
static const char *dir_of(const char *path, char *dir, size_t len)
{
    char copy[600];
    snprintf(copy, sizeof(copy), "%s", path);
    snprintf(dir, len, "%s", dirname(copy));
    return dir;
}

/*
 * Writes u's entries to the file base in the directory dirfd (locked), as a new file renamed
 * over the old one. Every name is taken relative to dirfd and no symbolic link is followed:
 * run as root in a directory that the gateway's user owns, a link planted there must not make
 * root write, or give away, a file elsewhere. Root gives the new file the owner of the old one
 * (not a link), or of the directory. Returns 0, or -EIO with err set.
 */
static int write_file(int dirfd, const char *dir, const char *base, const struct users *u,
                      char *err, size_t errlen)
{
    char tmp[128];
    unsigned char rnd[8];
    randombytes_buf(rnd, sizeof(rnd));
    char hex[2 * sizeof(rnd) + 1];
    sodium_bin2hex(hex, sizeof(hex), rnd, sizeof(rnd));
    snprintf(tmp, sizeof(tmp), ".%.64s.%s.tmp", base, hex);
    int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd == -1) {
        snprintf(err, errlen, "%s/%s: %s", dir, tmp, strerror(errno));
        return -EIO;
    }
    /* Root keeps the file whose it was (the gateway's, when it runs as its own user). */
    struct stat sb;
    bool old = fstatat(dirfd, base, &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(sb.st_mode);
    if (geteuid() == 0 && (old || fstat(dirfd, &sb) == 0) &&
        fchown(fd, sb.st_uid, sb.st_gid) != 0) {
        snprintf(err, errlen, "%s/%s: giving it to uid %u: %s", dir, tmp, (unsigned)sb.st_uid,
                 strerror(errno));
        close(fd);
        unlinkat(dirfd, tmp, 0);
        return -EIO;
    }
    FILE *f = fdopen(fd, "w");
    if (f == NULL) {
        snprintf(err, errlen, "%s/%s: %s", dir, tmp, strerror(errno));
        close(fd);
        unlinkat(dirfd, tmp, 0);
        return -EIO;
    }
    fprintf(f, "# portgate users and API tokens: see portgate passwd and portgate token.\n");
    for (size_t i = 0; i < u->n; i++) {
        const struct entry *e = &u->v[i];
        if (e->token) {
            char th[2 * crypto_generichash_BYTES + 1];
            sodium_bin2hex(th, sizeof(th), e->thash, sizeof(e->thash));
            fprintf(f, "token %s %s %lld\n", e->name, th, (long long)e->created);
        } else {
            fprintf(f, "user %s %s\n", e->name, e->hash);
        }
    }
    if (fflush(f) != 0 || fsync(fd) != 0) {
        snprintf(err, errlen, "%s/%s: %s", dir, tmp, strerror(errno));
        fclose(f);
        unlinkat(dirfd, tmp, 0);
        return -EIO;
    }
    fclose(f);
    if (renameat(dirfd, tmp, dirfd, base) != 0) {
        snprintf(err, errlen, "%s/%s: %s", dir, base, strerror(errno));
        unlinkat(dirfd, tmp, 0);
        return -EIO;
    }
    if (fsync(dirfd) != 0) {
        /* The new file is in place: the change is made, only its durability is in doubt. */
        log_warn("users-file %s/%s: syncing its directory: %s", dir, base, strerror(errno));
    }
    return 0;
}

/* Runs change on the file's entries under its lock, and writes them back if it returns 0.
 * Returns 0 or what change returned (-EINVAL, -EEXIST, -ENOENT), or -EIO. */
static int edit(const char *path,
                int (*change)(struct users *u, void *arg, char *err, size_t errlen), void *arg,
                char *err, size_t errlen)
{
    /* The lock is on the directory: a lock file would be one more file whose owner could keep
     * the gateway or the commands out. */
    char dir[600], copy[600];
    dir_of(path, dir, sizeof(dir));
    snprintf(copy, sizeof(copy), "%s", path);
    const char *base = basename(copy);
    int lock = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (lock == -1 && errno == ENOENT && mkdir(dir, 0750) == 0) {
        lock = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    }
    if (lock == -1) {
        snprintf(err, errlen, "%s: %s", dir, strerror(errno));
        return -EIO;
    }
    int rc = -EIO;
    struct users *u = NULL;
    if (flock(lock, LOCK_EX) != 0) {
        snprintf(err, errlen, "%s: %s", dir, strerror(errno));
        goto out;
    }
    u = users_open(path);
    if (u == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    if (users_error(u) != NULL) {
        snprintf(err, errlen, "%s (fix or remove it first)", users_error(u));
        goto out;
    }
    rc = change(u, arg, err, errlen);
    if (rc == 0) {
        rc = write_file(lock, dir, base, u, err, errlen);
    }
out:
    users_free(u);
    close(lock); /* and the lock with it */
    return rc;
}

static struct entry *add_entry(struct users *u, char *err, size_t errlen)
{
    if (u->n == USERS_MAX_ENTRIES) {
        snprintf(err, errlen, "%s: already %d entries", u->path, USERS_MAX_ENTRIES);
        return NULL;
    }
    struct entry *v = realloc(u->v, (u->n + 1) * sizeof(*v));
    if (v == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    u->v = v;
    memset(&v[u->n], 0, sizeof(v[0]));
    return &v[u->n++];
}

struct set_password {
    const char *user, *password;
};

static int do_set_password(struct users *u, void *arg, char *err, size_t errlen)
{
    const struct set_password *sp = arg;
    struct entry *e = NULL;
    for (size_t i = 0; i < u->n; i++) {
        if (!u->v[i].token && strcmp(u->v[i].name, sp->user) == 0) {
            e = &u->v[i];
        }
    }
    if (e == NULL && (e = add_entry(u, err, errlen)) == NULL) {
        return -EIO;
    }
    snprintf(e->name, sizeof(e->name), "%s", sp->user);
    if (crypto_pwhash_str(e->hash, sp->password, strlen(sp->password),
                          crypto_pwhash_OPSLIMIT_INTERACTIVE,
                          crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0) {
        snprintf(err, errlen, "hashing the password: out of memory");
        return -EIO;
    }
    return 0;
}

int users_set_password(const char *path, const char *user, const char *password, char *err,
                       size_t errlen)
{
    if (!users_valid_name(user)) {
        snprintf(err, errlen,
                 "\"%s\": a user name is 1 to %d letters, digits, '.', '_', '-' or '@'", user,
                 USERS_NAMELEN - 1);
        return -EINVAL;
    }
    size_t len = strlen(password);
    if (len < USERS_MIN_PASSWORD || len > USERS_MAX_PASSWORD) {
        snprintf(err, errlen, "a password is %d to %d characters", USERS_MIN_PASSWORD,
                 USERS_MAX_PASSWORD);
        return -EINVAL;
    }
    struct set_password sp = {user, password};
    return edit(path, do_set_password, &sp, err, errlen);
}

struct token_create {
    const char *name;
    char *token;
};

static int do_token_create(struct users *u, void *arg, char *err, size_t errlen)
{
    struct token_create *tc = arg;
    for (size_t i = 0; i < u->n; i++) {
        if (u->v[i].token && strcmp(u->v[i].name, tc->name) == 0) {
            snprintf(err, errlen, "a token called \"%s\" exists (revoke it first)", tc->name);
            return -EEXIST;
        }
    }
    struct entry *e = add_entry(u, err, errlen);
    if (e == NULL) {
        return -EIO;
    }
    unsigned char raw[32];
    randombytes_buf(raw, sizeof(raw));
    memcpy(tc->token, TOKEN_PREFIX, 4);
    sodium_bin2base64(tc->token + 4, USERS_TOKEN_LEN - 4 + 1, raw, sizeof(raw),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(raw, sizeof(raw));
    e->token = true;
    snprintf(e->name, sizeof(e->name), "%s", tc->name);
    crypto_generichash(e->thash, sizeof(e->thash), (const unsigned char *)tc->token,
                       USERS_TOKEN_LEN, NULL, 0);
    e->created = (int64_t)time(NULL);
    return 0;
}

int users_token_create(const char *path, const char *name, char *token, char *err, size_t errlen)
{
    if (!users_valid_name(name)) {
        snprintf(err, errlen,
                 "\"%s\": a token name is 1 to %d letters, digits, '.', '_', '-' or '@'", name,
                 USERS_NAMELEN - 1);
        return -EINVAL;
    }
    struct token_create tc = {name, token};
    int rc = edit(path, do_token_create, &tc, err, errlen);
    if (rc != 0) {
        sodium_memzero(token, USERS_TOKEN_LEN + 1);
    }
    return rc;
}

static int do_token_revoke(struct users *u, void *arg, char *err, size_t errlen)
{
    const char *name = arg;
    for (size_t i = 0; i < u->n; i++) {
        if (u->v[i].token && strcmp(u->v[i].name, name) == 0) {
            memmove(&u->v[i], &u->v[i + 1], (u->n - i - 1) * sizeof(*u->v));
            u->n--;
            return 0;
        }
    }
    snprintf(err, errlen, "no token called \"%s\"", name);
    return -ENOENT;
}

int users_token_revoke(const char *path, const char *name, char *err, size_t errlen)
{
    return edit(path, do_token_revoke, (void *)name, err, errlen);
}
