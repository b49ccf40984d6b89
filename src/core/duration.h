/*
 * duration: the durations of the config file's keys ("30s", "5m", "1500ms"), read and written.
 * Pure functions.
 */
#ifndef PORTGATE_DURATION_H
#define PORTGATE_DURATION_H

#include <stddef.h>
#include <stdint.h>

/* Parses a duration: "0", or a whole number with a unit ms, s, m, h or d. Returns 0, or -1 with
 * a one-line reason in err ("\"30\": missing unit (ms, s, m, h or d)"). At most 49 days. */
int duration_parse(const char *s, uint32_t *out_ms, char *err, size_t errlen);
/* Formats a duration the way duration_parse() reads it, in the largest whole unit. */
char *duration_format(uint32_t ms, char *buf, size_t len);

#endif
