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
    /* Parameters: name=token or name="quoted", commas between; a name not followed by '='
     * starts the next challenge. */
    for (;;) {
        p = skip_ws(s, p, n);
        while (p < n && s[p] == ',') {
            p = skip_ws(s, p + 1, n);
        }
        size_t ns = p;
        while (p < n && is_tchar(s[p])) {
            p++;
        }
        size_t ne = p;
        size_t q = skip_ws(s, p, n);
        if (ne == ns || q >= n || s[q] != '=') {
            *i = ns; /* the next challenge's scheme, or the end */
            break;
        }
        q = skip_ws(s, q + 1, n);
        const char *v;
        size_t vn = 0;
        if (q < n && s[q] == '"') {
            q++;
            while (q < n && s[q] != '"') {
                if (s[q] == '\\' && q + 1 < n) {
                    q++;
                }
                if (vn + 1 >= DIGEST_FIELD_MAX) {
                    r->why = "a realm, nonce or opaque too long";
                    *i = n;
                    return false;
                }
                (*unq)[vn++] = s[q++];
            }
            if (q >= n) {
                r->why = "a quoted value without its end";
                *i = n;
                return false;
            }
            q++;
            v = *unq;
        } else {
            size_t vs = q;
            while (q < n && is_tchar(s[q])) {
                q++;
            }
            v = s + vs;
            vn = q - vs;
        }
        p = q;
        if (ok && !param(r, s + ns, ne - ns, v, vn)) {
            ok = false;
        }
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
