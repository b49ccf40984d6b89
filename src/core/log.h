/*
 * log: one line per event on stderr.
 *
 * Lines carry a level. When stderr is the systemd journal (JOURNAL_STREAM is set, see
 * sd-daemon(3)), each line starts with a "<N>" syslog priority so journald files it at the right
 * level and no timestamp is printed (the journal adds its own); otherwise a line is
 * "YYYY-mm-ddTHH:MM:SS.mmm LEVEL message". The level filter is process-wide and may be changed at
 * reload: it is the only mutable global in this module. Every function may be called from any
 * thread; a line is written with one write(2), so lines of different workers never interleave.
 */
#ifndef PORTGATE_LOG_H
#define PORTGATE_LOG_H

#include <stdbool.h>
#include <stdint.h>

enum log_level { LOG_LVL_ERROR, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

/* Parses "error", "warn", "info" or "debug". Returns 0, or -1 for anything else. */
int log_level_parse(const char *s, enum log_level *out);
const char *log_level_name(enum log_level lvl);

void log_set_level(enum log_level lvl);
bool log_enabled(enum log_level lvl);

void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_enabled(LOG_LVL_DEBUG))                                                            \
            log_msg(LOG_LVL_DEBUG, __VA_ARGS__);                                                   \
    } while (0)

/*
 * A rate limit for noisy events (refused clients, dropped datagrams): at most one line per
 * interval. log_ratelimit_ok() returns true when a line may be written now; *suppressed is then
 * the number of events dropped since the last line (for "... and N more").
 */
struct log_ratelimit {
    uint64_t last_ms;
    uint64_t suppressed;
};
bool log_ratelimit_ok(struct log_ratelimit *rl, uint64_t now_ms, uint64_t interval_ms,
                      uint64_t *suppressed);

#endif
