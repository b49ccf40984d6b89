#include "proto/http/http_login.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "auth/login.h"

/* ---- the form ---- */

static int hex(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* Decodes s[0..n) (urlencoded) into out; -1 when malformed or too long. */
static int decode(const char *s, size_t n, char *out, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int ch = (unsigned char)s[i];
        if (ch == '+') {
            ch = ' ';
        } else if (ch == '%') {
            if (n - i < 3 || hex(s[i + 1]) < 0 || hex(s[i + 2]) < 0) {
                return -1;
            }
            ch = hex(s[i + 1]) * 16 + hex(s[i + 2]);
            i += 2;
        }
        if (ch < 0x20 || ch == 0x7f || o + 1 >= len) {
            return -1;
        }
        out[o++] = (char)ch;
    }
    out[o] = '\0';
    return (int)o;
}

int http_form_get(const char *body, size_t n, const char *key, char *out, size_t len)
{
    size_t kn = strlen(key);
    size_t i = 0;
    while (i < n) {
        const char *amp = memchr(body + i, '&', n - i);
        size_t end = amp != NULL ? (size_t)(amp - body) : n;
        const char *eq = memchr(body + i, '=', end - i);
        size_t nend = eq != NULL ? (size_t)(eq - body) : end;
        if (nend - i == kn && memcmp(body + i, key, kn) == 0) {
            size_t vs = eq != NULL ? nend + 1 : end;
            return decode(body + vs, end - vs, out, len);
        }
        i = end + 1;
    }
    return -1;
}

void http_login_next(const char *target, size_t n, char *out)
{
    bool ok = n >= 1 && n <= HTTP_LOGIN_NEXT_MAX && target[0] == '/' &&
              !(n >= 2 && (target[1] == '/' || target[1] == '\\'));
    for (size_t i = 0; ok && i < n; i++) {
        unsigned char c = (unsigned char)target[i];
        ok = c > 0x20 && c < 0x7f && c != '\\' && c != '"' && c != '<' && c != '>';
    }
    if (!ok) {
        strcpy(out, "/");
        return;
    }
    memcpy(out, target, n);
    out[n] = '\0';
}

void http_login_query_next(const char *target, size_t n, char *next)
{
    const char *q = memchr(target, '?', n);
    char v[HTTP_LOGIN_NEXT_MAX + 1];
    int k =
        q != NULL ? http_form_get(q + 1, n - (size_t)(q + 1 - target), "next", v, sizeof(v)) : -1;
    if (k > 0) {
        http_login_next(v, (size_t)k, next);
    } else {
        strcpy(next, "/");
    }
}

/* ---- the answers ---- */

struct buf {
    char *p;
    size_t len, off;
};

static void put(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct buf *b, const char *fmt, ...)
{
    if (b->off >= b->len) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->off, b->len - b->off, fmt, ap);
    va_end(ap);
    b->off += n > 0 ? (size_t)n : 0;
    if (b->off >= b->len) {
        b->off = b->len - 1;
    }
}

/* Appends s HTML-escaped. */
static void put_html(struct buf *b, const char *s)
{
    for (; *s != '\0'; s++) {
        switch (*s) {
        case '&':
            put(b, "&amp;");
            break;
        case '<':
            put(b, "&lt;");
            break;
        case '>':
            put(b, "&gt;");
            break;
        case '"':
            put(b, "&quot;");
            break;
        case '\'':
            put(b, "&#39;");
            break;
        default:
            put(b, "%c", *s);
        }
    }
}

static const char *status_line(int status)
{
    switch (status) {
    case 200:
        return "200 OK";
    case 303:
        return "303 See Other";
    case 401:
        return "401 Unauthorized";
    case 403:
        return "403 Forbidden";
    case 404:
        return "404 Not Found";
    case 429:
        return "429 Too Many Requests";
    default:
        return "500 Internal Server Error";
    }
}

/* The head of one of the gateway's answers, then body (HTML when html). */
static size_t answer(char *out, size_t len, int status, const char *extra, const char *body,
                     size_t blen, bool html, bool head, bool close)
{
    struct buf b = {out, len, 0};
    put(&b, "HTTP/1.1 %s\r\n", status_line(status));
    put(&b, "Content-Type: %s; charset=utf-8\r\n", html ? "text/html" : "text/plain");
    put(&b, "Content-Length: %zu\r\n", blen);
    put(&b, "Cache-Control: no-store\r\nX-Frame-Options: DENY\r\nReferrer-Policy: no-referrer\r\n"
            "X-Content-Type-Options: nosniff\r\n");
    if (html) {
        put(&b, "Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'; "
                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'\r\n");
    }
    put(&b, "%s%s\r\n", extra, close ? "Connection: close\r\n" : "");
    if (!head && b.off + blen < len) {
        memcpy(out + b.off, body, blen);
        b.off += blen;
    }
    return b.off;
}

static const char STYLE[] =
    "<style>body{font-family:system-ui,sans-serif;background:#f4f5f7;margin:0;display:flex;"
    "min-height:100vh;align-items:center;justify-content:center}main{background:#fff;"
    "padding:2em;border-radius:8px;box-shadow:0 1px 4px #0002;min-width:18em}h1{font-size:1.2em;"
    "margin:0 0 1em}label{display:block;margin:.8em 0 .2em}input{width:100%;box-sizing:border-box;"
    "padding:.5em;font-size:1em}button{margin-top:1.2em;width:100%;padding:.6em;font-size:1em}"
    "p.error{color:#b00020}</style>";

size_t http_login_page(char *out, size_t len, int status, const char *mapname, const char *next,
                       const char *error, bool head, bool close)
{
    /* Room for the page with a next of HTTP_LOGIN_NEXT_MAX bytes all escaped ("&amp;"). */
    char body[HTTP_LOGIN_ANSWER_MAX - 2048];
    struct buf b = {body, sizeof(body), 0};
    put(&b,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" "
        "content=\"width=device-width\"><title>Log in: ");
    put_html(&b, mapname);
    put(&b, "</title>%s</head><body><main><h1>Log in to ", STYLE);
    put_html(&b, mapname);
    put(&b, "</h1>");
    if (error != NULL) {
        put(&b, "<p class=\"error\" id=\"error\">");
        put_html(&b, error);
        put(&b, "</p>");
    }
    put(&b, "<form method=\"post\" action=\"%s\"><input type=\"hidden\" name=\"next\" value=\"",
        HTTP_LOGIN_PAGE);
    put_html(&b, next);
    put(&b, "\"><label for=\"user\">User</label><input id=\"user\" name=\"user\" "
            "autocomplete=\"username\" required autofocus><label for=\"password\">Password</label>"
            "<input id=\"password\" name=\"password\" type=\"password\" "
            "autocomplete=\"current-password\" required><label for=\"code\">Code "
            "<small>(with two-factor authentication)</small></label><input id=\"code\" "
            "name=\"code\" autocomplete=\"one-time-code\" inputmode=\"numeric\" "
            "maxlength=\"64\"><button type=\"submit\">Log in</button></form></main></body>"
            "</html>\n");
    return answer(out, len, status, "", body, b.off, true, head, close);
}

/* Appends s percent-encoded for a query value. */
static void put_query(struct buf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            strchr("-._~/", c) != NULL) {
            put(b, "%c", c);
        } else {
            put(b, "%%%02X", c);
        }
    }
}

size_t http_login_needed(char *out, size_t len, bool get, bool head, const char *target,
                         size_t tlen, bool close)
{
    if (!get) {
        static const char body[] = "401 Unauthorized: log in first, at " HTTP_LOGIN_PAGE "\n";
        return answer(out, len, 401, "", body, sizeof(body) - 1, false, false, close);
    }
    char next[HTTP_LOGIN_NEXT_MAX + 1], loc[3 * HTTP_LOGIN_NEXT_MAX + 64];
    http_login_next(target, tlen, next);
    struct buf b = {loc, sizeof(loc), 0};
    put(&b, "Location: %s", HTTP_LOGIN_PAGE);
    if (strcmp(next, "/") != 0) {
        put(&b, "?next=");
        put_query(&b, next, strlen(next));
    }
    put(&b, "\r\n");
    static const char body[] = "303 See Other: log in first\n";
    return answer(out, len, 303, loc, body, sizeof(body) - 1, false, head, close);
}

size_t http_login_done(char *out, size_t len, const char *mapname, const char *id, const char *next,
                       bool tls, bool close)
{
    char extra[HTTP_LOGIN_NEXT_MAX + 320];
    snprintf(
        extra, sizeof(extra),
        "Location: %s\r\nSet-Cookie: %s%s=%s; Path=/; HttpOnly; SameSite=Lax; Max-Age=%d%s\r\n",
        next, LOGIN_COOKIE, mapname, id, SESSION_MAX_AGE_S, tls ? "; Secure" : "");
    static const char body[] = "303 See Other: logged in\n";
    return answer(out, len, 303, extra, body, sizeof(body) - 1, false, false, close);
}

size_t http_logout_page(char *out, size_t len, const char *mapname, bool post, const char *who,
                        bool tls, bool head, bool close)
{
    if (post) {
        char extra[320];
        snprintf(
            extra, sizeof(extra),
            "Location: %s\r\nSet-Cookie: %s%s=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0%s\r\n",
            HTTP_LOGIN_PAGE, LOGIN_COOKIE, mapname, tls ? "; Secure" : "");
        static const char body[] = "303 See Other: logged out\n";
        return answer(out, len, 303, extra, body, sizeof(body) - 1, false, false, close);
    }
    char body[2048];
    struct buf b = {body, sizeof(body), 0};
    put(&b,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Log out</title>"
        "%s</head><body><main><h1>",
        STYLE);
    if (who[0] != '\0') {
        put(&b, "Logged in as ");
        put_html(&b, who);
    } else {
        put(&b, "Not logged in");
    }
    put(&b,
        "</h1><form method=\"post\" action=\"%s\"><button type=\"submit\" id=\"logout\">Log "
        "out</button></form></main></body></html>\n",
        HTTP_LOGOUT_PAGE);
    return answer(out, len, 200, "", body, b.off, true, head, close);
}

size_t http_login_unknown(char *out, size_t len, bool head, bool close)
{
    static const char body[] = "404 Not Found: none of the gateway's pages\n";
    return answer(out, len, 404, "", body, sizeof(body) - 1, false, head, close);
}
