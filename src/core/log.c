#include "core/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* Written by the control thread at start and reload, read by every worker: relaxed atomics. */
static int cur_level = LOG_LVL_INFO;
static bool journal;
static pthread_once_t journal_once = PTHREAD_ONCE_INIT;

static void journal_init(void)
{
    journal = getenv("JOURNAL_STREAM") != NULL;
}

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
    __atomic_store_n(&cur_level, (int)lvl, __ATOMIC_RELAXED);
}

bool log_enabled(enum log_level lvl)
{
    return (int)lvl <= __atomic_load_n(&cur_level, __ATOMIC_RELAXED);
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
    if (!log_enabled(lvl)) {
        return;
    }
    pthread_once(&journal_once, journal_init);
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
    /* One write(2) per line: lines from different threads never interleave. A log that cannot
     * be written has nowhere to report that. */
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
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
