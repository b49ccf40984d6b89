/*
 * names: lists of names as a key gives them ("alice, bob"), kept as "alice,bob": users, the
 * common names of client certificates. Pure functions.
 */
#ifndef PORTGATE_NAMES_H
#define PORTGATE_NAMES_H

#include <stdbool.h>
#include <stddef.h>

/* Reads val: names separated by commas, blanks around them dropped; each 1 to max - 1 bytes of
 * printable ASCII without a blank (settings are listed as KEY=VALUE). Writes them to out (len
 * bytes) with commas between. Returns 0, or -1 with "\"VALUE\": what is wrong" in why, what
 * naming the kind of name ("a common name"). */
int names_parse(const char *val, const char *what, size_t max, char *out, size_t len, char *why,
                size_t whylen);

/* True if name is one of list (as names_parse() wrote it), exactly. */
bool names_has(const char *list, const char *name);

#endif
