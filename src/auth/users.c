#include "auth/users.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "auth/totp.h"
#include "core/file.h"
#include "core/log.h"
#include "message/digest.h"

#define USERS_MAX_FILE (4u << 20)
#define TOKEN_PREFIX "pgt_"
/* The most fields a line has: "recovery", the name and the hashes. */
#define MAX_FIELDS (2 + USERS_RECOVERY_CODES)

_Static_assert(USERS_TOTP_SECRET_B32 == (TOTP_SECRET_LEN * 8 + 4) / 5, "a secret's base32");

struct entry {
    bool token;
    char name[USERS_NAMELEN];
    char hash[crypto_pwhash_STRBYTES];             /* user: the argon2id string */
    unsigned char thash[crypto_generichash_BYTES]; /* token */
    int64_t created;
    /* A user's second factor, if totp. */
    bool totp;
    unsigned char secret_len;
    unsigned char secret[TOTP_MAX_SECRET];
    uint64_t last_step;
    unsigned nrecovery;
    unsigned char recovery[USERS_RECOVERY_CODES][crypto_generichash_BYTES];
    /* A user's Digest keys, if digest: H(user:USERS_DIGEST_REALM:password), in hex. */
    bool digest, digest_read; /* digest_read: a digest line was read, good or not */
    char ha1_md5[33], ha1_sha256[65];
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

/* The user entry called name among the n of v, or NULL. */
static struct entry *user_entry(struct entry *v, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (!v[i].token && strcmp(v[i].name, name) == 0) {
            return &v[i];
        }
    }
    return NULL;
}

/* True if s is a decimal number that fits in a uint64_t, into *out. */
static bool parse_u64(const char *s, uint64_t *out)
{
    size_t n = strlen(s);
    if (n == 0 || n > 20 || strspn(s, "0123456789") != n) {
        return false;
    }
    errno = 0;
    unsigned long long v = strtoull(s, NULL, 10);
    if (errno != 0) {
        return false;
    }
    *out = v;
    return true;
}

/* A hex BLAKE2b-256, into out. */
static bool parse_hash(const char *hex, unsigned char out[crypto_generichash_BYTES])
{
    size_t got = 0;
    return strlen(hex) == 2 * crypto_generichash_BYTES &&
           sodium_hex2bin(out, crypto_generichash_BYTES, hex, strlen(hex), NULL, &got, NULL) == 0 &&
           got == crypto_generichash_BYTES;
}

/* The second factor's lines, totp and recovery, added to their user's entry among the n of v.
 * Returns 0, or -1 with why in msg. */
static int parse_factor(struct entry *v, size_t n, bool is_totp, char **f, size_t nf, char *msg,
                        size_t len)
{
    struct entry *e = user_entry(v, n, f[1]);
    if (e == NULL) {
        snprintf(msg, len, "%s for %s, who has no user line above", f[0], f[1]);
        return -1;
    }
    if (is_totp) {
        uint64_t step;
        ssize_t got;
        if (e->totp) {
            snprintf(msg, len, "totp %s appears twice", f[1]);
            return -1;
        }
        if (nf != 4 || !parse_u64(f[3], &step) ||
            (got = totp_base32_decode(f[2], strlen(f[2]), e->secret, sizeof(e->secret))) <
                TOTP_MIN_SECRET) {
            sodium_memzero(e->secret, sizeof(e->secret));
            snprintf(msg, len, "a malformed totp entry");
            return -1;
        }
        e->totp = true;
        e->secret_len = (unsigned char)got;
        e->last_step = step;
        return 0;
    }
    if (!e->totp) {
        snprintf(msg, len, "recovery codes for %s, who has no totp line above", f[1]);
        return -1;
    }
    if (e->nrecovery > 0) {
        snprintf(msg, len, "recovery %s appears twice", f[1]);
        return -1;
    }
    if (nf < 3 || nf > 2 + USERS_RECOVERY_CODES) {
        snprintf(msg, len, "a malformed recovery entry");
        return -1;
    }
    for (size_t i = 2; i < nf; i++) {
        if (!parse_hash(f[i], e->recovery[i - 2])) {
            snprintf(msg, len, "a malformed recovery entry");
            return -1;
        }
    }
    e->nrecovery = (unsigned)(nf - 2);
    return 0;
}

/* What binds a user's Digest keys to the password hash they were made with (the hex of a
 * BLAKE2b of it, DIGEST_BOUND bytes), into hex. */
#define DIGEST_BOUND 8
static void digest_bound(const struct entry *e, char hex[2 * DIGEST_BOUND + 1])
{
    unsigned char h[DIGEST_BOUND];
    crypto_generichash(h, sizeof(h), (const unsigned char *)e->hash, strlen(e->hash), NULL, 0);
    sodium_bin2hex(hex, 2 * DIGEST_BOUND + 1, h, sizeof(h));
}

/* A user's Digest keys (a digest line) added to its entry among the n of v. Returns 0, or -1
 * with why in msg. */
static int parse_digest(struct entry *v, size_t n, char **f, size_t nf, char *msg, size_t len)
{
    struct entry *e = user_entry(v, n, f[1]);
    if (e == NULL) {
        snprintf(msg, len, "digest for %s, who has no user line above", f[1]);
        return -1;
    }
    if (e->digest_read) {
        snprintf(msg, len, "digest %s appears twice", f[1]);
        return -1;
    }
    e->digest_read = true;
    if (nf != 5 || strlen(f[2]) != 32 || strlen(f[3]) != 64 || strlen(f[4]) != 2 * DIGEST_BOUND ||
        strspn(f[2], "0123456789abcdef") != 32 || strspn(f[3], "0123456789abcdef") != 64 ||
        strspn(f[4], "0123456789abcdef") != 2 * DIGEST_BOUND) {
        snprintf(msg, len,
                 "a malformed digest entry (digest NAME MD5 SHA256 BOUND, in lower-case hex)");
        return -1;
    }
    /* Keys made with another password than the user line's (a line replaced by hand) are not
     * the user's: left out, as if there were none. */
    char bound[2 * DIGEST_BOUND + 1];
    digest_bound(e, bound);
    e->digest = sodium_memcmp(bound, f[4], sizeof(bound) - 1) == 0;
    if (e->digest) {
        memcpy(e->ha1_md5, f[2], 33);
        memcpy(e->ha1_sha256, f[3], 65);
    }
    return 0;
}

/* Parses buf into u's entries (replacing them only if it all parses). Returns 0, or -1 with
 * u->error set. */
static int parse_into(struct users *u, const char *source, const char *buf, size_t len)
{
    struct entry *v = NULL;
    size_t n = 0, cap = 0;
    int line = 0;
    const char *p = buf, *end = buf + len;
    /* A line holds a TOTP secret: wiped once read. */
    char text[1024];
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t ll = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
        line++;
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
        char *save = NULL, *f[MAX_FIELDS + 1];
        size_t nf = 0;
        for (char *t = strtok_r(text, " \t\r", &save); t != NULL && nf <= MAX_FIELDS;
             t = strtok_r(NULL, " \t\r", &save)) {
            f[nf++] = t;
        }
        if (nf == 0 || f[0][0] == '#') {
            continue;
        }
        const char *kind = f[0];
        char *name = nf > 1 ? f[1] : NULL, *hash = nf > 2 ? f[2] : NULL;
        char *created = nf > 3 ? f[3] : NULL;
        bool is_user = strcmp(kind, "user") == 0, is_token = strcmp(kind, "token") == 0;
        bool is_totp = strcmp(kind, "totp") == 0, is_recovery = strcmp(kind, "recovery") == 0;
        bool is_digest = strcmp(kind, "digest") == 0;
        if (!is_user && !is_token && !is_totp && !is_recovery && !is_digest) {
            snprintf(u->error, sizeof(u->error),
                     "%s:%d: expected \"user NAME HASH\", \"token NAME HASH TIME\", \"digest "
                     "NAME MD5 SHA256\", \"totp NAME SECRET STEP\" or \"recovery NAME HASH...\"",
                     source, line);
            goto bad;
        }
        if (name == NULL || hash == NULL || !users_valid_name(name) ||
            (is_user && (nf != 3 || strncmp(hash, "$argon2id$", 10) != 0 ||
                         strlen(hash) >= crypto_pwhash_STRBYTES)) ||
            (is_token && (nf != 4 || strlen(hash) != 2 * crypto_generichash_BYTES ||
                          strspn(created, "0123456789") != strlen(created)))) {
            snprintf(u->error, sizeof(u->error), "%s:%d: a malformed %s entry", source, line, kind);
            goto bad;
        }
        if (is_digest) {
            char msg[200];
            if (parse_digest(v, n, f, nf, msg, sizeof(msg)) != 0) {
                snprintf(u->error, sizeof(u->error), "%s:%d: %s", source, line, msg);
                goto bad;
            }
            continue;
        }
        if (is_totp || is_recovery) {
            char msg[200];
            if (parse_factor(v, n, is_totp, f, nf, msg, sizeof(msg)) != 0) {
                snprintf(u->error, sizeof(u->error), "%s:%d: %s", source, line, msg);
                goto bad;
            }
            continue;
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
            struct entry *nv = malloc(cap * sizeof(*nv));
            if (nv == NULL) {
                snprintf(u->error, sizeof(u->error), "%s: out of memory", source);
                goto bad;
            }
            /* Not realloc: the old array holds secrets, wiped before it is freed. */
            if (v != NULL) {
                memcpy(nv, v, n * sizeof(*v));
                sodium_memzero(v, n * sizeof(*v));
                free(v);
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
            if (!parse_hash(hash, e->thash)) {
                snprintf(u->error, sizeof(u->error), "%s:%d: a malformed token entry", source,
                         line);
                goto bad;
            }
            e->created = strtoll(created, NULL, 10);
        }
        n++;
    }
    sodium_memzero(text, sizeof(text));
    users_clear(u);
    u->v = v;
    u->n = n;
    u->error[0] = '\0';
    return 0;
bad:
    sodium_memzero(text, sizeof(text));
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
static char dummy[crypto_pwhash_STRBYTES];
static pthread_once_t dummy_once = PTHREAD_ONCE_INIT;

static void dummy_make(void)
{
    unsigned char pw[16];
    randombytes_buf(pw, sizeof(pw));
    if (crypto_pwhash_str(dummy, (const char *)pw, sizeof(pw), crypto_pwhash_OPSLIMIT_INTERACTIVE,
                          crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0) {
        dummy[0] = '\0';
    }
}

/* Once, whichever thread asks first (the admin interface's, the gateway's login thread). */
static const char *dummy_hash(void)
{
    pthread_once(&dummy_once, dummy_make);
    return dummy;
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
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, USERS_STAMP_LEN);
    crypto_generichash_update(&st, (const unsigned char *)e->hash, strlen(e->hash));
    if (e->totp) {
        /* The secret, not the last step: a login with a code does not end the sessions. */
        crypto_generichash_update(&st, (const unsigned char *)"\0totp", 5);
        crypto_generichash_update(&st, e->secret, e->secret_len);
    }
    crypto_generichash_final(&st, stamp, USERS_STAMP_LEN);
    sodium_memzero(&st, sizeof(st));
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

bool users_digest_enabled(const struct users *u, const char *user)
{
    const struct entry *e = find_user(u, user);
    return e != NULL && e->digest;
}

int users_check_digest(const struct users *u, const struct digest_answer *a, const char *method,
                       size_t mlen)
{
    const struct entry *e = find_user(u, a->user);
    bool has = e != NULL && e->digest;
    char key[65];
    if (has) {
        snprintf(key, sizeof(key), "%s", a->scheme == DIGEST_SHA256 ? e->ha1_sha256 : e->ha1_md5);
    } else {
        /* A key nobody has, checked all the same: the work says nothing of who exists. */
        unsigned char r[32];
        randombytes_buf(r, sizeof(r));
        sodium_bin2hex(key, sizeof(key), r, a->scheme == DIGEST_SHA256 ? 32 : 16);
    }
    bool ok = digest_answer_ok(a, key, method, mlen);
    sodium_memzero(key, sizeof(key));
    return !has ? -ENOENT : ok ? 1 : 0;
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
    /* stdio's buffer is ours, to wipe the TOTP secrets that pass through it. */
    char iobuf[BUFSIZ];
    setvbuf(f, iobuf, _IOFBF, sizeof(iobuf));
    fprintf(f, "# portgate users and API tokens: see portgate passwd and portgate token.\n");
    for (size_t i = 0; i < u->n; i++) {
        const struct entry *e = &u->v[i];
        if (e->token) {
            char th[2 * crypto_generichash_BYTES + 1];
            sodium_bin2hex(th, sizeof(th), e->thash, sizeof(e->thash));
            fprintf(f, "token %s %s %lld\n", e->name, th, (long long)e->created);
            continue;
        }
        fprintf(f, "user %s %s\n", e->name, e->hash);
        if (e->digest) {
            char bound[2 * DIGEST_BOUND + 1];
            digest_bound(e, bound);
            fprintf(f, "digest %s %s %s %s\n", e->name, e->ha1_md5, e->ha1_sha256, bound);
        }
        if (e->totp) {
            char b32[TOTP_MAX_SECRET_B32 + 1];
            totp_base32_encode(e->secret, e->secret_len, false, b32, sizeof(b32));
            fprintf(f, "totp %s %s %llu\n", e->name, b32, (unsigned long long)e->last_step);
            sodium_memzero(b32, sizeof(b32));
        }
        if (e->nrecovery > 0) {
            fprintf(f, "recovery %s", e->name);
            for (unsigned k = 0; k < e->nrecovery; k++) {
                char rh[2 * crypto_generichash_BYTES + 1];
                sodium_bin2hex(rh, sizeof(rh), e->recovery[k], sizeof(e->recovery[k]));
                fprintf(f, " %s", rh);
            }
            fputc('\n', f);
        }
    }
    if (fflush(f) != 0 || fsync(fd) != 0) {
        snprintf(err, errlen, "%s/%s: %s", dir, tmp, strerror(errno));
        fclose(f);
        sodium_memzero(iobuf, sizeof(iobuf));
        unlinkat(dirfd, tmp, 0);
        return -EIO;
    }
    fclose(f);
    sodium_memzero(iobuf, sizeof(iobuf));
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
    /* Not realloc: the old array holds secrets, wiped before it is freed. */
    struct entry *v = malloc((u->n + 1) * sizeof(*v));
    if (v == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (u->v != NULL) {
        memcpy(v, u->v, u->n * sizeof(*v));
        sodium_memzero(u->v, u->n * sizeof(*v));
        free(u->v);
    }
    u->v = v;
    memset(&v[u->n], 0, sizeof(v[0]));
    return &v[u->n++];
}

struct set_password {
    const char *user, *password;
    enum users_digest digest;
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
    /* Keys made of the old password would still let it in: they follow the new one, or go. */
    e->digest = sp->digest == USERS_DIGEST_ON || (sp->digest == USERS_DIGEST_KEEP && e->digest);
    sodium_memzero(e->ha1_md5, sizeof(e->ha1_md5));
    sodium_memzero(e->ha1_sha256, sizeof(e->ha1_sha256));
    if (e->digest) {
        char md5[65];
        digest_ha1(DIGEST_MD5, sp->user, USERS_DIGEST_REALM, sp->password, md5);
        memcpy(e->ha1_md5, md5, sizeof(e->ha1_md5)); /* 32 digits and the NUL */
        sodium_memzero(md5, sizeof(md5));
        digest_ha1(DIGEST_SHA256, sp->user, USERS_DIGEST_REALM, sp->password, e->ha1_sha256);
    }
    if (crypto_pwhash_str(e->hash, sp->password, strlen(sp->password),
                          crypto_pwhash_OPSLIMIT_INTERACTIVE,
                          crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0) {
        snprintf(err, errlen, "hashing the password: out of memory");
        return -EIO;
    }
    return 0;
}

int users_set_password(const char *path, const char *user, const char *password,
                       enum users_digest digest, char *err, size_t errlen)
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
    struct set_password sp = {user, password, digest};
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
            sodium_memzero(&u->v[u->n], sizeof(*u->v)); /* a copy of the last one */
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

/* ---- the second factor ---- */

bool users_totp_enabled(const struct users *u, const char *user)
{
    const struct entry *e = find_user(u, user);
    return e != NULL && e->totp;
}

unsigned users_recovery_left(const struct users *u, const char *user)
{
    const struct entry *e = find_user(u, user);
    return e != NULL && e->totp ? e->nrecovery : 0;
}

static const char recovery_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

enum code_kind {
    CODE_NONE,
    CODE_TOTP,
    CODE_RECOVERY,
};

/* What a code typed by a user is, written into out as it is compared: without spaces and
 * dashes, in upper case. */
static enum code_kind canonical_code(const char *code, char out[USERS_MAX_CODE + 1])
{
    size_t len = strnlen(code, USERS_MAX_CODE + 1), n = 0;
    out[0] = '\0';
    if (len > USERS_MAX_CODE) {
        return CODE_NONE;
    }
    for (size_t i = 0; i < len; i++) {
        char c = code[i];
        if (c != ' ' && c != '-') {
            out[n++] = c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
        }
    }
    out[n] = '\0';
    if (n == TOTP_DIGITS && strspn(out, "0123456789") == n) {
        return CODE_TOTP;
    }
    if (n == USERS_RECOVERY_LEN && strspn(out, recovery_alphabet) == n) {
        return CODE_RECOVERY;
    }
    return CODE_NONE;
}

/* The hash a recovery code is kept as: BLAKE2b-256 of it, after a label and the user's name, so
 * that a code hashes differently for every user. */
static void recovery_hash(const char *user, const char *code,
                          unsigned char out[crypto_generichash_BYTES])
{
    static const char label[] = "portgate recovery code";
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, crypto_generichash_BYTES);
    crypto_generichash_update(&st, (const unsigned char *)label, sizeof(label));
    crypto_generichash_update(&st, (const unsigned char *)user, strlen(user) + 1);
    crypto_generichash_update(&st, (const unsigned char *)code, USERS_RECOVERY_LEN);
    crypto_generichash_final(&st, out, crypto_generichash_BYTES);
    sodium_memzero(&st, sizeof(st));
}

/* Checks a canonical code of kind against e's second factor at now: TOTP_OK with the step (a
 * TOTP code) or the index (a recovery code) that matched, TOTP_REPLAYED or TOTP_WRONG. */
static enum totp_verdict match_factor(const struct entry *e, enum code_kind kind, const char *code,
                                      int64_t now, uint64_t *step, size_t *index)
{
    if (kind == CODE_TOTP) {
        return totp_verify(e->secret, e->secret_len, code, now, e->last_step, step);
    }
    unsigned char h[crypto_generichash_BYTES];
    recovery_hash(e->name, code, h);
    /* Every code left is compared, in constant time: no early exit on a match. */
    size_t at = 0;
    unsigned found = 0;
    for (size_t k = 0; k < e->nrecovery; k++) {
        unsigned match = (unsigned)(sodium_memcmp(h, e->recovery[k], sizeof(h)) == 0);
        size_t mask = 0 - (size_t)match;
        at = (at & ~mask) | (k & mask);
        found |= match;
    }
    sodium_memzero(h, sizeof(h));
    *index = at;
    return found ? TOTP_OK : TOTP_WRONG;
}

struct use_factor {
    const char *user;
    enum code_kind kind;
    const char *code; /* canonical */
    int64_t now;
};

static int do_use_factor(struct users *u, void *arg, char *err, size_t errlen)
{
    const struct use_factor *uf = arg;
    struct entry *e = user_entry(u->v, u->n, uf->user);
    if (e == NULL || !e->totp) {
        snprintf(err, errlen, "user %s has no second factor now", uf->user);
        return -ENOENT;
    }
    uint64_t step = 0;
    size_t k = 0;
    switch (match_factor(e, uf->kind, uf->code, uf->now, &step, &k)) {
    case TOTP_WRONG:
        snprintf(err, errlen, "a wrong code");
        return -EACCES;
    case TOTP_REPLAYED:
        snprintf(err, errlen, "a code already used");
        return -EALREADY;
    case TOTP_OK:
        break;
    }
    if (uf->kind == CODE_TOTP) {
        e->last_step = step;
    } else {
        memmove(e->recovery[k], e->recovery[k + 1],
                (e->nrecovery - k - 1) * sizeof(e->recovery[0]));
        e->nrecovery--;
        sodium_memzero(e->recovery[e->nrecovery], sizeof(e->recovery[0]));
    }
    return 0;
}

int users_second_factor(const char *path, const struct users *u, const char *user, const char *code,
                        int64_t now, char *err, size_t errlen)
{
    const struct entry *e = find_user(u, user);
    if (e == NULL || !e->totp) {
        snprintf(err, errlen, "user %s has no second factor", user);
        return -ENOENT;
    }
    char canon[USERS_MAX_CODE + 1];
    enum code_kind kind = canonical_code(code, canon);
    uint64_t step = 0;
    size_t k = 0;
    int rc = 0;
    if (kind == CODE_NONE) {
        snprintf(err, errlen, "not a code (%d digits, or a recovery code)", TOTP_DIGITS);
        goto out;
    }
    /* First against what u holds, to spend no lock on a wrong code; then, if it matched, under
     * the lock against the file, which may have used it meanwhile (another login, another
     * process). */
    enum totp_verdict v = match_factor(e, kind, canon, now, &step, &k);
    if (v != TOTP_OK) {
        snprintf(err, errlen, "%s", v == TOTP_REPLAYED ? "a code already used" : "a wrong code");
        rc = v == TOTP_REPLAYED ? -EALREADY : 0;
        goto out;
    }
    struct use_factor uf = {user, kind, canon, now};
    rc = edit(path, do_use_factor, &uf, err, errlen);
    if (rc == 0) {
        rc = kind == CODE_TOTP ? USERS_FACTOR_TOTP : USERS_FACTOR_RECOVERY;
    } else if (rc == -EACCES) {
        rc = 0;
    }
out:
    sodium_memzero(canon, sizeof(canon));
    return rc;
}

bool users_check_second_factor(const char *path, const struct users *u, const char *user,
                               const char *code, int64_t now, char *err, size_t errlen)
{
    return users_second_factor(path, u, user, code, now, err, errlen) > 0;
}

int users_totp_begin(const struct users *u, const char *user,
                     char secret[USERS_TOTP_SECRET_B32 + 1], char *err, size_t errlen)
{
    const struct entry *e = find_user(u, user);
    secret[0] = '\0';
    if (e == NULL) {
        snprintf(err, errlen, "no user %s", user);
        return -ENOENT;
    }
    if (e->totp) {
        snprintf(err, errlen, "user %s has two-factor authentication already (turn it off first)",
                 user);
        return -EEXIST;
    }
    unsigned char raw[TOTP_SECRET_LEN];
    randombytes_buf(raw, sizeof(raw));
    totp_base32_encode(raw, sizeof(raw), false, secret, USERS_TOTP_SECRET_B32 + 1);
    sodium_memzero(raw, sizeof(raw));
    return 0;
}

struct totp_confirm {
    const char *user;
    const unsigned char *secret;
    size_t len;
    uint64_t step;
    char (*recovery)[USERS_RECOVERY_LEN + 1];
};

static int do_totp_confirm(struct users *u, void *arg, char *err, size_t errlen)
{
    const struct totp_confirm *tc = arg;
    struct entry *e = user_entry(u->v, u->n, tc->user);
    if (e == NULL) {
        snprintf(err, errlen, "no user %s", tc->user);
        return -ENOENT;
    }
    if (e->totp) {
        snprintf(err, errlen, "user %s has two-factor authentication already (turn it off first)",
                 tc->user);
        return -EEXIST;
    }
    e->totp = true;
    memcpy(e->secret, tc->secret, tc->len);
    e->secret_len = (unsigned char)tc->len;
    e->last_step = tc->step; /* the code that confirmed it is used */
    for (size_t k = 0; k < USERS_RECOVERY_CODES; k++) {
        for (size_t i = 0; i < USERS_RECOVERY_LEN; i++) {
            tc->recovery[k][i] = recovery_alphabet[randombytes_uniform(32)];
        }
        tc->recovery[k][USERS_RECOVERY_LEN] = '\0';
        recovery_hash(e->name, tc->recovery[k], e->recovery[k]);
    }
    e->nrecovery = USERS_RECOVERY_CODES;
    return 0;
}

int users_totp_confirm(const char *path, const char *user, const char *secret, const char *code,
                       int64_t now, char recovery[USERS_RECOVERY_CODES][USERS_RECOVERY_LEN + 1],
                       char *err, size_t errlen)
{
    unsigned char key[TOTP_MAX_SECRET];
    char canon[USERS_MAX_CODE + 1];
    size_t slen = strnlen(secret, TOTP_MAX_SECRET_B32 + 1);
    ssize_t n =
        slen > TOTP_MAX_SECRET_B32 ? -1 : totp_base32_decode(secret, slen, key, sizeof(key));
    uint64_t step = 0;
    int rc;
    if (n < TOTP_MIN_SECRET) {
        snprintf(err, errlen, "not a TOTP secret: %d to %d bytes in base32", TOTP_MIN_SECRET,
                 TOTP_MAX_SECRET);
        rc = -EINVAL;
    } else if (canonical_code(code, canon) != CODE_TOTP ||
               totp_verify(key, (size_t)n, canon, now, 0, &step) != TOTP_OK) {
        snprintf(err, errlen, "a wrong code");
        rc = -EACCES;
    } else {
        struct totp_confirm tc = {user, key, (size_t)n, step, recovery};
        rc = edit(path, do_totp_confirm, &tc, err, errlen);
    }
    if (rc != 0) {
        sodium_memzero(recovery, USERS_RECOVERY_CODES * sizeof(recovery[0]));
    }
    sodium_memzero(key, sizeof(key));
    sodium_memzero(canon, sizeof(canon));
    return rc;
}

static int do_totp_disable(struct users *u, void *arg, char *err, size_t errlen)
{
    const char *user = arg;
    struct entry *e = user_entry(u->v, u->n, user);
    if (e == NULL || !e->totp) {
        snprintf(err, errlen, "user %s has no two-factor authentication", user);
        return -ENOENT;
    }
    e->totp = false;
    e->secret_len = 0;
    e->last_step = 0;
    e->nrecovery = 0;
    sodium_memzero(e->secret, sizeof(e->secret));
    sodium_memzero(e->recovery, sizeof(e->recovery));
    return 0;
}

int users_totp_disable(const char *path, const char *user, char *err, size_t errlen)
{
    return edit(path, do_totp_disable, (void *)user, err, errlen);
}
