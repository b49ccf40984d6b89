#include "core/duration.h"

#include <stdio.h>
#include <string.h>

int duration_parse(const char *s, uint32_t *out_ms, char *err, size_t errlen)
{
    const char *p = s;
    uint64_t v = 0;
    if (*p < '0' || *p > '9') {
        snprintf(err, errlen, "\"%s\": expected a duration such as 30s, 5m, 1h or 500ms", s);
        return -1;
    }
    while (*p >= '0' && *p <= '9') {
        v = v * 10 + (uint64_t)(*p - '0');
        if (v > UINT32_MAX) {
            snprintf(err, errlen, "\"%s\": duration too long", s);
            return -1;
        }
        p++;
    }
    uint64_t mult;
    if (*p == '\0') {
        if (v != 0) {
            snprintf(err, errlen, "\"%s\": missing unit (ms, s, m, h or d)", s);
            return -1;
        }
        mult = 1;
    } else if (strcmp(p, "ms") == 0) {
        mult = 1;
    } else if (strcmp(p, "s") == 0) {
        mult = 1000;
    } else if (strcmp(p, "m") == 0) {
        mult = 60000;
    } else if (strcmp(p, "h") == 0) {
        mult = 3600000;
    } else if (strcmp(p, "d") == 0) {
        mult = 86400000;
    } else {
        snprintf(err, errlen, "\"%s\": unknown unit \"%s\" (use ms, s, m, h or d)", s, p);
        return -1;
    }
    if (v * mult > UINT32_MAX) {
        snprintf(err, errlen, "\"%s\": duration too long (at most 49d)", s);
        return -1;
    }
    *out_ms = (uint32_t)(v * mult);
    return 0;
}

char *duration_format(uint32_t ms, char *buf, size_t len)
{
    if (ms == 0) {
        snprintf(buf, len, "0");
    } else if (ms % 3600000 == 0) {
        snprintf(buf, len, "%uh", ms / 3600000);
    } else if (ms % 60000 == 0) {
        snprintf(buf, len, "%um", ms / 60000);
    } else if (ms % 1000 == 0) {
        snprintf(buf, len, "%us", ms / 1000);
    } else {
        snprintf(buf, len, "%ums", ms);
    }
    return buf;
}
