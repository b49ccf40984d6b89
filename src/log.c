#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static enum log_level cur_level = LOG_LVL_INFO;
static int journal = -1; /* -1: not yet known */

static const char *const names[] = {"error", "warn", "info", "debug"};
/* syslog priorities: err, warning, info, debug */
static const int prio[] = {3, 4, 6, 7};

int log_level_parse(const char *s, enum log_level *out)
{
    for (int i = 0; i <= LOG_LVL_DEBUG; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

const char *log_level_name(enum log_level lvl)
{
    return names[lvl];
}

void log_set_level(enum log_level lvl)
{
    cur_level = lvl;
}

bool log_enabled(enum log_level lvl)
{
    return lvl <= cur_level;
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
    if (!log_enabled(lvl)) {
        return;
    }
    if (journal < 0) {
        journal = getenv("JOURNAL_STREAM") != NULL;
    }
    /* Build the whole line first so that one write(2) carries it: lines never interleave. */
    char line[2048];
    int n;
    if (journal) {
        n = snprintf(line, sizeof(line), "<%d>", prio[lvl]);
    } else {
        struct timeval tv;
        struct tm tm;
        gettimeofday(&tv, NULL);
        gmtime_r(&tv.tv_sec, &tm);
        n = (int)strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
        n += snprintf(line + n, sizeof(line) - (size_t)n, ".%03dZ %-5s ", (int)(tv.tv_usec / 1000),
                      names[lvl]);
    }
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0) {
        m = 0;
    }
    size_t len = (size_t)n + (size_t)m;
    if (len > sizeof(line) - 2) {
        len = sizeof(line) - 2; /* truncated */
    }
    line[len++] = '\n';
    fwrite(line, 1, len, stderr);
}

bool log_ratelimit_ok(struct log_ratelimit *rl, uint64_t now_ms, uint64_t interval_ms,
                      uint64_t *suppressed)
{
    if (rl->last_ms != 0 && now_ms - rl->last_ms < interval_ms) {
        rl->suppressed++;
        return false;
    }
    rl->last_ms = now_ms;
    *suppressed = rl->suppressed;
    rl->suppressed = 0;
    return true;
}
