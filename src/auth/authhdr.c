#include "auth/authhdr.h"

#include <stdbool.h>
#include <string.h>
#include <strings.h>

/* RFC 6265 4.1.1 cookie-octet: visible ASCII but for '"', ',', ';' and '\'. */
static bool cookie_octet(unsigned char c)
{
    return c > 0x20 && c < 0x7f && c != '"' && c != ',' && c != ';' && c != '\\';
}

int authhdr_cookie(const char *header, const char *name, char *out, size_t len)
{
    size_t nlen = strlen(name);
    const char *p = header;
    while (*p != '\0') {
        while (*p == ' ' || *p == '\t') {
            p++;
        }
        const char *pair = p;
        p += strcspn(p, ";");
        const char *end = p;
        if (*p == ';') {
            p++;
        }
        const char *eq = memchr(pair, '=', (size_t)(end - pair));
        if (eq == NULL || (size_t)(eq - pair) != nlen || strncmp(pair, name, nlen) != 0) {
            continue;
        }
        const char *v = eq + 1;
        while (end > v && (end[-1] == ' ' || end[-1] == '\t')) {
            end--;
        }
        if (end - v >= 2 && v[0] == '"' && end[-1] == '"') {
            v++;
            end--;
        }
        size_t vlen = (size_t)(end - v);
        if (vlen == 0 || vlen >= len) {
            return -1;
        }
        for (size_t i = 0; i < vlen; i++) {
            if (!cookie_octet((unsigned char)v[i])) {
                return -1;
            }
        }
        memcpy(out, v, vlen);
        out[vlen] = '\0';
        return (int)vlen;
    }
    return -1;
}

/* RFC 7235 2.1 token68 */
static bool token68(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           strchr("-._~+/", c) != NULL;
}

int authhdr_bearer(const char *header, char *out, size_t len)
{
    if (strncasecmp(header, "Bearer", 6) != 0 || header[6] != ' ') {
        return -1;
    }
    const char *t = header + 6;
    while (*t == ' ') {
        t++;
    }
    size_t n = strspn(t, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~+/");
    while (t[n] == '=') {
        n++; /* token68 may end in '=' padding */
    }
    const char *rest = t + n;
    while (*rest == ' ') {
        rest++;
    }
    if (n == 0 || *rest != '\0' || n >= len || !token68((unsigned char)t[0])) {
        return -1;
    }
    memcpy(out, t, n);
    out[n] = '\0';
    return (int)n;
}
