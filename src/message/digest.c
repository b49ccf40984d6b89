#include "message/digest.h"

#include "core/file.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- reading a challenge ---- */

static bool is_tchar(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

static size_t skip_ws(const char *s, size_t i, size_t n)
{
    while (i < n && (s[i] == ' ' || s[i] == '\t')) {
        i++;
    }
    return i;
}

/* One challenge being read: its parameters, with what was seen, for duplicates. */
struct reading {
    struct digest_challenge c;
    bool sess, userhash, seen_realm, seen_nonce, seen_algo, seen_qop, auth_int_only;
    const char *why;
};

/* Copies a parameter's value (unescaped) to dst; false when too long. */
static bool take(char *dst, const char *v, size_t vn)
{
    if (vn >= DIGEST_FIELD_MAX) {
        return false;
    }
    memcpy(dst, v, vn);
    dst[vn] = '\0';
    return true;
}

static bool list_has(const char *v, size_t vn, const char *tok)
{
    size_t tn = strlen(tok), i = 0;
    while (i < vn) {
        i = skip_ws(v, i, vn);
        size_t j = i;
        while (j < vn && v[j] != ',') {
            j++;
        }
        size_t k = j;
        while (k > i && (v[k - 1] == ' ' || v[k - 1] == '\t')) {
            k--;
        }
        if (k - i == tn && strncasecmp(v + i, tok, tn) == 0) {
            return true;
        }
        i = j + 1;
    }
    return false;
}

/* Applies one parameter to r. Returns false with r->why when the challenge is refused. */
static bool param(struct reading *r, const char *name, size_t nn, const char *v, size_t vn)
{
#define IS(lit) (nn == sizeof(lit) - 1 && strncasecmp(name, lit, nn) == 0)
    bool *seen = IS("realm")       ? &r->seen_realm
                 : IS("nonce")     ? &r->seen_nonce
                 : IS("algorithm") ? &r->seen_algo
                 : IS("qop")       ? &r->seen_qop
                                   : NULL;
    if (seen != NULL) {
        if (*seen) {
            r->why = "a parameter given twice";
            return false;
        }
        *seen = true;
    }
    if (IS("realm") || IS("nonce") || IS("opaque")) {
        char *dst = IS("realm") ? r->c.realm : IS("nonce") ? r->c.nonce : r->c.opaque;
        if (IS("opaque")) {
            r->c.has_opaque = true;
        }
        if (!take(dst, v, vn)) {
            r->why = "a realm, nonce or opaque too long";
            return false;
        }
    } else if (IS("algorithm")) {
        if (vn == 3 && strncasecmp(v, "MD5", 3) == 0) {
            r->c.scheme = DIGEST_MD5;
        } else if (vn == 8 && strncasecmp(v, "MD5-sess", 8) == 0) {
            r->c.scheme = DIGEST_MD5;
            r->sess = true;
        } else if (vn == 7 && strncasecmp(v, "SHA-256", 7) == 0) {
            r->c.scheme = DIGEST_SHA256;
        } else if (vn == 12 && strncasecmp(v, "SHA-256-sess", 12) == 0) {
            r->c.scheme = DIGEST_SHA256;
            r->sess = true;
        } else {
            r->why = "an algorithm other than MD5 and SHA-256";
            return false;
        }
    } else if (IS("qop")) {
        r->c.qop_auth = list_has(v, vn, "auth");
        r->auth_int_only = !r->c.qop_auth;
    } else if (IS("stale")) {
        r->c.stale = vn == 4 && strncasecmp(v, "true", 4) == 0;
    } else if (IS("userhash")) {
        r->userhash = vn == 4 && strncasecmp(v, "true", 4) == 0;
    }
    return true; /* domain, charset and the unknown: ignored (RFC 7616 3.3) */
#undef IS
}

/*
 * The next auth-param at s[*p..n) (RFC 7235 2.1): blanks and commas before it skipped, then
 * name=token or name="quoted-string", which is unescaped into unq (unqlen bytes). Returns 1 with
 * the name and value (*v points into s or unq) and *p past it; 0 when no parameter follows (a
 * name without '=' starts the next challenge; *p is where that name, or the end, is); -1 with
 * *why when the value is malformed or does not fit unq (*p = n).
 */
static int next_param(const char *s, size_t n, size_t *p, const char **name, size_t *nn,
                      const char **v, size_t *vn, char *unq, size_t unqlen, const char **why)
{
    size_t i = skip_ws(s, *p, n);
    while (i < n && s[i] == ',') {
        i = skip_ws(s, i + 1, n);
    }
    size_t ns = i;
    while (i < n && is_tchar(s[i])) {
        i++;
    }
    size_t ne = i, q = skip_ws(s, i, n);
    if (ne == ns || q >= n || s[q] != '=') {
        *p = ns;
        return 0;
    }
    *name = s + ns;
    *nn = ne - ns;
    q = skip_ws(s, q + 1, n);
    if (q < n && s[q] == '"') {
        size_t k = 0;
        for (q++; q < n && s[q] != '"'; q++) {
            if (s[q] == '\\' && q + 1 < n) {
                q++;
            }
            if (k + 1 >= unqlen) {
                *why = "a parameter's value too long";
                *p = n;
                return -1;
            }
            unq[k++] = s[q];
        }
        if (q >= n) {
            *why = "a quoted value without its end";
            *p = n;
            return -1;
        }
        unq[k] = '\0';
        *v = unq;
        *vn = k;
        *p = q + 1;
        return 1;
    }
    size_t vs = q;
    while (q < n && is_tchar(s[q])) {
        q++;
    }
    *v = s + vs;
    *vn = q - vs;
    *p = q;
    return 1;
}

/* Reads the challenge at s[*i..n): a scheme and its parameters, up to the next scheme. Returns
 * true with r filled, false (r->why) if it is refused; *i is past it either way. */
static bool read_challenge(const char *s, size_t n, size_t *i, struct reading *r,
                           char (*unq)[DIGEST_FIELD_MAX])
{
    memset(r, 0, sizeof(*r));
    size_t p = skip_ws(s, *i, n);
    size_t t = p;
    while (t < n && is_tchar(s[t])) {
        t++;
    }
    bool basic = t - p == 5 && strncasecmp(s + p, "Basic", 5) == 0;
    bool digest = t - p == 6 && strncasecmp(s + p, "Digest", 6) == 0;
    r->c.scheme = basic ? DIGEST_BASIC : DIGEST_MD5;
    bool ok = basic || digest;
    if (!ok) {
        r->why = "no Basic or Digest challenge";
    }
    p = t;
    /* Parameters, commas between; a name not followed by '=' starts the next challenge. */
    const char *name, *v, *why;
    size_t nn, vn;
    int got;
    while ((got = next_param(s, n, &p, &name, &nn, &v, &vn, *unq, sizeof(*unq), &why)) == 1) {
        if (ok && !param(r, name, nn, v, vn)) {
            ok = false;
        }
    }
    *i = p;
    if (got < 0) {
        r->why = why;
        return false;
    }
    if (!ok) {
        return false;
    }
    if (!r->seen_realm && !basic) {
        r->why = "a Digest challenge without a realm";
        return false;
    }
    if (digest && !r->seen_nonce) {
        r->why = "a Digest challenge without a nonce";
        return false;
    }
    if (digest && r->auth_int_only) {
        r->why = "a Digest challenge that offers qop=auth-int only";
        return false;
    }
    if (basic) {
        r->c.stale = false; /* a Digest word: a Basic challenge cannot ask to answer again */
    }
    if (r->sess || r->userhash) {
        r->why = r->sess ? "a -sess algorithm" : "userhash";
        return false;
    }
    return true;
}

int digest_parse(const char *value, size_t n, struct digest_challenge *c, const char **why)
{
    size_t i = 0;
    bool found = false;
    *why = "no challenge";
    char unq[DIGEST_FIELD_MAX];
    for (int k = 0; k < 8 && skip_ws(value, i, n) < n; k++) {
        struct reading r;
        size_t before = i;
        if (read_challenge(value, n, &i, &r, &unq)) {
            if (!found || digest_better(&r.c, c)) {
                *c = r.c;
            }
            found = true;
        } else if (!found) {
            *why = r.why;
        }
        if (i == before) {
            break; /* nothing read: junk */
        }
    }
    return found ? 0 : -1;
}

bool digest_better(const struct digest_challenge *a, const struct digest_challenge *b)
{
    return a->scheme > b->scheme;
}

/* ---- answering ---- */

/* Hex of the digest (MD5 or SHA-256) of the concatenated parts into hex. */
static void hash_hex(enum digest_scheme s, const char *const *parts, const size_t *lens, int n,
                     char hex[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, s == DIGEST_SHA256 ? EVP_sha256() : EVP_md5(), NULL);
    for (int i = 0; i < n; i++) {
        EVP_DigestUpdate(ctx, parts[i], lens[i]);
    }
    EVP_DigestFinal_ex(ctx, md, &mdlen);
    EVP_MD_CTX_free(ctx);
    for (unsigned int i = 0; i < mdlen; i++) {
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    }
    hex[2 * mdlen] = '\0';
}

/* Appends s as a quoted-string's content (backslash before '"' and '\'). */
static size_t put_quoted(char *out, size_t off, size_t len, const char *s, size_t n)
{
    for (size_t i = 0; i < n && off < len; i++) {
        if (s[i] == '"' || s[i] == '\\') {
            out[off++] = '\\';
        }
        if (off < len) {
            out[off++] = s[i];
        }
    }
    return off;
}

static size_t basic(const char *user, const char *password, char *out, size_t len)
{
    char plain[512];
    int pn = snprintf(plain, sizeof(plain), "%s:%s", user, password);
    if (pn < 0 || (size_t)pn >= sizeof(plain) || strchr(user, ':') != NULL) {
        return 0;
    }
    size_t need = 6 + 4 * (((size_t)pn + 2) / 3);
    if (need >= len) {
        return 0;
    }
    memcpy(out, "Basic ", 6);
    EVP_EncodeBlock((unsigned char *)out + 6, (const unsigned char *)plain, pn);
    OPENSSL_cleanse(plain, sizeof(plain));
    return need;
}

size_t digest_credentials_cnonce(const struct digest_challenge *c, const char *user,
                                 const char *password, const char *method, size_t mlen,
                                 const char *uri, size_t ulen, uint32_t nc, const char *cnonce,
                                 char *out, size_t len)
{
    if (c->scheme == DIGEST_BASIC) {
        return basic(user, password, out, len);
    }
    char ha1[65], ha2[65], resp[65], ncs[9];
    snprintf(ncs, sizeof(ncs), "%08x", nc);
    {
        const char *p[] = {user, ":", c->realm, ":", password};
        size_t l[] = {strlen(user), 1, strlen(c->realm), 1, strlen(password)};
        hash_hex(c->scheme, p, l, 5, ha1);
    }
    {
        const char *p[] = {method, ":", uri};
        size_t l[] = {mlen, 1, ulen};
        hash_hex(c->scheme, p, l, 3, ha2);
    }
    if (c->qop_auth) {
        const char *p[] = {ha1, ":", c->nonce, ":", ncs, ":", cnonce, ":auth:", ha2};
        size_t l[] = {strlen(ha1), 1, strlen(c->nonce), 1, 8, 1, strlen(cnonce), 6, strlen(ha2)};
        hash_hex(c->scheme, p, l, 9, resp);
    } else {
        const char *p[] = {ha1, ":", c->nonce, ":", ha2};
        size_t l[] = {strlen(ha1), 1, strlen(c->nonce), 1, strlen(ha2)};
        hash_hex(c->scheme, p, l, 5, resp);
    }
    OPENSSL_cleanse(ha1, sizeof(ha1));
    size_t off = 0;
    char *o = out;
#define LIT(s)                                                                                     \
    do {                                                                                           \
        size_t sl_ = strlen(s);                                                                    \
        if (off + sl_ < len) {                                                                     \
            memcpy(o + off, s, sl_);                                                               \
        }                                                                                          \
        off += sl_;                                                                                \
    } while (0)
#define QUOTED(s, n)                                                                               \
    do {                                                                                           \
        if (off < len) {                                                                           \
            off = put_quoted(o, off, len, s, n);                                                   \
        }                                                                                          \
    } while (0)
    LIT("Digest username=\"");
    QUOTED(user, strlen(user));
    LIT("\", realm=\"");
    QUOTED(c->realm, strlen(c->realm));
    LIT("\", nonce=\"");
    QUOTED(c->nonce, strlen(c->nonce));
    LIT("\", uri=\"");
    QUOTED(uri, ulen);
    LIT("\", algorithm=");
    LIT(c->scheme == DIGEST_SHA256 ? "SHA-256" : "MD5");
    LIT(", response=\"");
    LIT(resp);
    LIT("\"");
    if (c->qop_auth) {
        LIT(", qop=auth, nc=");
        LIT(ncs);
        LIT(", cnonce=\"");
        LIT(cnonce);
        LIT("\"");
    }
    if (c->has_opaque) {
        LIT(", opaque=\"");
        QUOTED(c->opaque, strlen(c->opaque));
        LIT("\"");
    }
#undef LIT
#undef QUOTED
    if (off >= len) {
        return 0;
    }
    out[off] = '\0';
    return off;
}

size_t digest_credentials(const struct digest_challenge *c, const char *user, const char *password,
                          const char *method, size_t mlen, const char *uri, size_t ulen,
                          uint32_t nc, char *out, size_t len)
{
    unsigned char r[16];
    char cnonce[33];
    if (RAND_bytes(r, sizeof(r)) != 1) {
        return 0;
    }
    for (size_t i = 0; i < sizeof(r); i++) {
        snprintf(cnonce + 2 * i, 3, "%02x", r[i]);
    }
    return digest_credentials_cnonce(c, user, password, method, mlen, uri, ulen, nc, cnonce, out,
                                     len);
}

/* ---- the device's login ---- */

/* Splits "USER:PASSWORD" (n bytes, no line end) into l. */
static int login_split(struct digest_login *l, const char *s, size_t n, const char *what, char *why,
                       size_t whylen)
{
    const char *colon = memchr(s, ':', n);
    size_t un = colon != NULL ? (size_t)(colon - s) : 0, pn = colon != NULL ? n - un - 1 : 0;
    if (colon == NULL || un == 0) {
        snprintf(why, whylen, "%s: USER:PASSWORD, or file:/PATH of a file that holds it", what);
        return -1;
    }
    if (un >= sizeof(l->user) || pn >= sizeof(l->password)) {
        snprintf(why, whylen, "%s: a user of at most %zu bytes and a password of at most %zu", what,
                 sizeof(l->user) - 1, sizeof(l->password) - 1);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
            snprintf(why, whylen, "%s: a control character in the user or password", what);
            return -1;
        }
    }
    memcpy(l->user, s, un);
    l->user[un] = '\0';
    memcpy(l->password, colon + 1, pn);
    l->password[pn] = '\0';
    return 0;
}

int digest_login_set(struct digest_login *l, const char *val, char *why, size_t whylen)
{
    memset(l, 0, sizeof(*l));
    if (val[0] == '\0' || strcmp(val, "off") == 0) {
        return 0;
    }
    if (strncmp(val, "file:", 5) != 0) {
        /* The value holds a password: no message repeats it. Settings are listed as
         * KEY=VALUE with no space in a value: a password with spaces goes in a file. */
        if (strpbrk(val, " \t") != NULL) {
            snprintf(why, whylen,
                     "\"(not shown)\": a space in the value; put USER:PASSWORD in a file and "
                     "give file:/PATH");
            return -1;
        }
        return login_split(l, val, strlen(val), "\"(not shown)\"", why, whylen);
    }
    const char *path = val + 5;
    char what[300];
    snprintf(what, sizeof(what), "\"file:%.200s\"", path);
    if (path[0] != '/' || strlen(path) >= sizeof(l->file)) {
        snprintf(why, whylen, "%s: an absolute path, shorter than %zu bytes", what,
                 sizeof(l->file));
        return -1;
    }
    char *buf = NULL;
    size_t n = 0;
    struct stat st;
    int rc = file_read(path, false, 1024, &buf, &n, &st);
    if (rc != 0) {
        snprintf(why, whylen, "%s: %s", what,
                 rc == -EFBIG ? "larger than 1024 bytes" : file_strerror(rc));
        return -1;
    }
    if (st.st_mode & S_IROTH) {
        OPENSSL_cleanse(buf, n);
        free(buf);
        snprintf(why, whylen, "%s: readable by every user; chmod o-r it (the device's password)",
                 what);
        return -1;
    }
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) {
        n--;
    }
    rc = login_split(l, buf, n, what, why, whylen);
    OPENSSL_cleanse(buf, n);
    free(buf);
    if (rc == 0) {
        snprintf(l->file, sizeof(l->file), "%s", path);
    }
    return rc;
}

void digest_login_format(const struct digest_login *l, char *buf, size_t len)
{
    if (l->file[0] != '\0') {
        snprintf(buf, len, "file:%s", l->file);
    } else if (l->user[0] != '\0') {
        snprintf(buf, len, "%s:%s", l->user, l->password);
    } else {
        snprintf(buf, len, "off");
    }
}

/* ---- the gateway as the server ---- */

/* Copies v (vn bytes) into dst (size bytes) unless it does not fit or holds a control
 * character. */
static bool take_into(char *dst, size_t size, const char *v, size_t vn)
{
    if (vn >= size) {
        return false;
    }
    for (size_t i = 0; i < vn; i++) {
        if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f) {
            return false;
        }
    }
    memcpy(dst, v, vn);
    dst[vn] = '\0';
    return true;
}

static bool is_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') ||
              (s[i] >= 'A' && s[i] <= 'F'))) {
            return false;
        }
    }
    return true;
}

/* "Basic" and its token68 at s[i..n), decoded into a's user and password. */
static int basic_answer(const char *s, size_t i, size_t n, struct digest_answer *a,
                        const char **why)
{
    i = skip_ws(s, i, n);
    size_t start = i;
    while (i < n && ((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
                     (s[i] >= '0' && s[i] <= '9') || s[i] == '+' || s[i] == '/')) {
        i++;
    }
    size_t pad = 0;
    while (i < n && s[i] == '=' && pad < 2) {
        i++;
        pad++;
    }
    size_t len = i - start;
    if (skip_ws(s, i, n) != n || len == 0 || len % 4 != 0) {
        *why = "Basic credentials that are not base64";
        return -1;
    }
    if (len / 4 * 3 > DIGEST_FIELD_MAX + DIGEST_PASSWORD_MAX) {
        *why = "Basic credentials too long";
        return -1;
    }
    unsigned char plain[(DIGEST_FIELD_MAX + DIGEST_PASSWORD_MAX) + 4];
    int got = EVP_DecodeBlock(plain, (const unsigned char *)s + start, (int)len);
    int rc = -1;
    if (got < 0 || (size_t)got < pad) {
        *why = "Basic credentials that are not base64";
        goto out;
    }
    size_t pn = (size_t)got - pad; /* EVP_DecodeBlock counts the padding's bytes */
    const unsigned char *colon = memchr(plain, ':', pn);
    if (colon == NULL) {
        *why = "Basic credentials without a ':' between user and password";
        goto out;
    }
    size_t un = (size_t)(colon - plain);
    if (un == 0 || !take_into(a->user, sizeof(a->user), (const char *)plain, un) ||
        !take_into(a->password, sizeof(a->password), (const char *)colon + 1, pn - un - 1)) {
        *why = "a Basic user or password empty, too long or with a control character";
        goto out;
    }
    a->scheme = DIGEST_BASIC;
    rc = 0;
out:
    OPENSSL_cleanse(plain, sizeof(plain));
    if (rc != 0) {
        OPENSSL_cleanse(a->password, sizeof(a->password));
    }
    return rc;
}

/* One parameter of a Digest answer. Returns false with *why when it is refused. */
static bool answer_param(struct digest_answer *a, unsigned *seen, const char *name, size_t nn,
                         const char *v, size_t vn, const char **why)
{
    static const char *const names[] = {"username", "realm",     "nonce",    "uri",
                                        "response", "algorithm", "qop",      "nc",
                                        "cnonce",   "opaque",    "userhash", "username*"};
    size_t k = 0;
    while (k < sizeof(names) / sizeof(names[0]) &&
           !(strlen(names[k]) == nn && strncasecmp(names[k], name, nn) == 0)) {
        k++;
    }
    if (k == sizeof(names) / sizeof(names[0])) {
        return true; /* an extension: ignored */
    }
    if (*seen & (1u << k)) {
        *why = "a Digest parameter given twice";
        return false;
    }
    *seen |= 1u << k;
    const char *name_k = names[k];
    bool ok = true;
    if (strcmp(name_k, "username") == 0) {
        ok = take_into(a->user, sizeof(a->user), v, vn);
    } else if (strcmp(name_k, "realm") == 0) {
        ok = take_into(a->realm, sizeof(a->realm), v, vn);
    } else if (strcmp(name_k, "nonce") == 0) {
        ok = take_into(a->nonce, sizeof(a->nonce), v, vn);
    } else if (strcmp(name_k, "uri") == 0) {
        ok = take_into(a->uri, sizeof(a->uri), v, vn);
    } else if (strcmp(name_k, "cnonce") == 0) {
        ok = take_into(a->cnonce, sizeof(a->cnonce), v, vn);
    } else if (strcmp(name_k, "response") == 0) {
        ok = (vn == 32 || vn == 64) && is_hex(v, vn) && take_into(a->response, 65, v, vn);
        for (size_t i = 0; ok && i < vn; i++) {
            a->response[i] = (char)(a->response[i] | 0x20); /* lower case */
        }
    } else if (strcmp(name_k, "algorithm") == 0) {
        if (vn == 3 && strncasecmp(v, "MD5", 3) == 0) {
            a->scheme = DIGEST_MD5;
        } else if (vn == 7 && strncasecmp(v, "SHA-256", 7) == 0) {
            a->scheme = DIGEST_SHA256;
        } else {
            *why = "a Digest algorithm other than MD5 and SHA-256";
            return false;
        }
    } else if (strcmp(name_k, "qop") == 0) {
        if (!(vn == 4 && strncasecmp(v, "auth", 4) == 0)) {
            *why = "a Digest qop other than auth";
            return false;
        }
        a->qop_auth = true;
    } else if (strcmp(name_k, "nc") == 0) {
        ok = vn == 8 && is_hex(v, vn) && take_into(a->nc, sizeof(a->nc), v, vn);
    } else if (strcmp(name_k, "userhash") == 0 || strcmp(name_k, "username*") == 0) {
        if (strcmp(name_k, "username*") == 0 || (vn == 4 && strncasecmp(v, "true", 4) == 0)) {
            *why = "a Digest user name given as userhash or username*";
            return false;
        }
    }
    if (!ok) {
        *why = "a Digest parameter malformed, too long or with a control character";
    }
    return ok;
}

int digest_answer_parse(const char *value, size_t n, struct digest_answer *a, const char **why)
{
    memset(a, 0, sizeof(*a));
    size_t p = skip_ws(value, 0, n), t = p;
    while (t < n && is_tchar(value[t])) {
        t++;
    }
    if (t - p == 5 && strncasecmp(value + p, "Basic", 5) == 0) {
        return basic_answer(value, t, n, a, why);
    }
    if (!(t - p == 6 && strncasecmp(value + p, "Digest", 6) == 0)) {
        *why = "no Basic or Digest credentials";
        return -1;
    }
    a->scheme = DIGEST_MD5; /* without algorithm= */
    unsigned seen = 0;
    const char *name, *v;
    size_t nn, vn;
    int got;
    char unq[DIGEST_URI_MAX];
    p = t;
    while ((got = next_param(value, n, &p, &name, &nn, &v, &vn, unq, sizeof(unq), why)) == 1) {
        if (!answer_param(a, &seen, name, nn, v, vn, why)) {
            return -1;
        }
    }
    if (got < 0) {
        return -1;
    }
    if (skip_ws(value, p, n) != n) {
        *why = "junk after the Digest parameters";
        return -1;
    }
    if (a->user[0] == '\0' || !(seen & (1u << 1)) || a->nonce[0] == '\0' || a->uri[0] == '\0' ||
        a->response[0] == '\0') {
        *why = "a Digest answer without its username, realm, nonce, uri or response";
        return -1;
    }
    if (strlen(a->response) != (a->scheme == DIGEST_SHA256 ? 64u : 32u)) {
        *why = "a Digest response of the wrong length for its algorithm";
        return -1;
    }
    if (a->qop_auth && (a->nc[0] == '\0' || a->cnonce[0] == '\0')) {
        *why = "a Digest answer with qop=auth but no nc or cnonce";
        return -1;
    }
    return 0;
}

void digest_ha1(enum digest_scheme s, const char *user, const char *realm, const char *password,
                char hex[65])
{
    const char *p[] = {user, ":", realm, ":", password};
    size_t l[] = {strlen(user), 1, strlen(realm), 1, strlen(password)};
    hash_hex(s, p, l, 5, hex);
}

bool digest_answer_ok(const struct digest_answer *a, const char *ha1, const char *method,
                      size_t mlen)
{
    if (a->scheme != DIGEST_MD5 && a->scheme != DIGEST_SHA256) {
        return false;
    }
    char ha2[65], want[65];
    const char *p2[] = {method, ":", a->uri};
    size_t l2[] = {mlen, 1, strlen(a->uri)};
    hash_hex(a->scheme, p2, l2, 3, ha2);
    if (a->qop_auth) {
        const char *p[] = {ha1, ":", a->nonce, ":", a->nc, ":", a->cnonce, ":auth:", ha2};
        size_t l[] = {strlen(ha1),       1, strlen(a->nonce), 1, strlen(a->nc), 1,
                      strlen(a->cnonce), 6, strlen(ha2)};
        hash_hex(a->scheme, p, l, 9, want);
    } else {
        const char *p[] = {ha1, ":", a->nonce, ":", ha2};
        size_t l[] = {strlen(ha1), 1, strlen(a->nonce), 1, strlen(ha2)};
        hash_hex(a->scheme, p, l, 5, want);
    }
    size_t n = strlen(want);
    bool ok = strlen(a->response) == n && CRYPTO_memcmp(want, a->response, n) == 0;
    OPENSSL_cleanse(want, sizeof(want));
    return ok;
}

size_t digest_challenges_write(char *out, size_t len, const char *realm, const char *nonce,
                               bool stale)
{
    int n = snprintf(out, len,
                     "WWW-Authenticate: Digest realm=\"%s\", nonce=\"%s\", algorithm=SHA-256, "
                     "qop=\"auth\"%s\r\n"
                     "WWW-Authenticate: Digest realm=\"%s\", nonce=\"%s\", algorithm=MD5, "
                     "qop=\"auth\"%s\r\n"
                     "WWW-Authenticate: Basic realm=\"%s\"\r\n",
                     realm, nonce, stale ? ", stale=true" : "", realm, nonce,
                     stale ? ", stale=true" : "", realm);
    return n > 0 && (size_t)n < len ? (size_t)n : 0;
}
