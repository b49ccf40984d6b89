/*
 * state: the state file, where the mappings made through the admin interface live (gateway key
 * `state`). JSON: {"portgate-state": 1, "revision": N, "mappings": [mapping objects]} with the
 * mapping objects of admin/mapjson.h.
 *
 * It is loaded after the config file, at start, on SIGHUP and by `portgate check` (a conflict
 * with the file is a config error like any other), and written whole on every change before the
 * change takes effect and the API answers: a temporary file beside it, fsync, rename over it,
 * fsync of the directory, so that after a crash it holds either the old or the new set, never a
 * mix, and a change that was answered is on disk.
 */
#ifndef PORTGATE_STATE_H
#define PORTGATE_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "gateway/config.h"

/* The largest state file read (10,000 mappings take about 3 MiB). */
#define STATE_MAX_FILE (64u << 20)

/*
 * A config_extra_fn: adds the mappings of c->gw.state to c, when c has an admin interface, and
 * sets c->revision to the file's. A missing file is an empty set; one that cannot be read or does
 * not parse is an error that names it (never an empty set). Leases that ended while the gateway
 * was down are left out. arg is unused.
 */
void state_load(void *arg, struct config *c);
/* Loads the state file's text in buf (for tests and fuzzing); source names it in messages. */
void state_load_buffer(struct config *c, const char *source, const char *buf, size_t len,
                       int64_t now);

/* Writes c's admin interface mappings and revision to c->gw.state, atomically and durably.
 * Returns 0, or -1 with the reason (naming the file) in err. */
int state_save(const struct config *c, char *err, size_t errlen);

#endif
