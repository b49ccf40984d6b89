#include "core/names.h"

#include <stdio.h>
#include <string.h>

int names_parse(const char *val, const char *what, size_t max, char *out, size_t len, char *why,
                size_t whylen)
{
    char buf[4096]; /* out only changes when the whole value is good */
    size_t off = 0;
    len = len < sizeof(buf) ? len : sizeof(buf);
    for (const char *p = val; *p != '\0';) {
        p += strspn(p, " \t");
        size_t n = strcspn(p, ",");
        size_t e = n;
        while (e > 0 && (p[e - 1] == ' ' || p[e - 1] == '\t')) {
            e--;
        }
        for (size_t i = 0; i < e; i++) {
            if ((unsigned char)p[i] <= 0x20 || (unsigned char)p[i] >= 0x7f) {
                snprintf(why, whylen, "\"%.60s\": %s with a space or a control character", val,
                         what);
                return -1;
            }
        }
        if (e == 0 || e >= max || off + e + 2 > len) {
            snprintf(why, whylen, "\"%.60s\": %s%s", val, e == 0 ? "an empty name" : what,
                     e == 0     ? ""
                     : e >= max ? " too long"
                                : ": too many in all");
            return -1;
        }
        off += (size_t)snprintf(buf + off, len - off, "%s%.*s", off ? "," : "", (int)e, p);
        p += n + (p[n] == ',');
    }
    buf[off] = '\0';
    memcpy(out, buf, off + 1);
    return 0;
}

bool names_has(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; *p != '\0';) {
        size_t k = strcspn(p, ",");
        if (k == n && memcmp(p, name, n) == 0) {
            return true;
        }
        p += k + (p[k] == ',');
    }
    return false;
}
