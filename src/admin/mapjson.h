/*
 * mapjson: a mapping as a JSON object, the admin interface's form of the one mapping grammar.
 *
 * The object's members are exactly the keys of a [map NAME] section plus "name", with the values
 * the config file takes: strings in its grammar ("0.0.0.0:80", "30s"), whole numbers for counts,
 * booleans for enabled, arrays of strings for allow and deny (a string is taken too). Every value
 * goes through the config parser's own key handlers, so a bad one gets the message `portgate
 * check` gives, with the key. Besides them:
 *   - "lease" (API): seconds the mapping lasts; it is removed once they have passed;
 *   - "expires" (state file): the Unix time a leased mapping ends;
 *   - what mapjson_from_conf() adds for reading (source, status...): ignored on input, so that
 *     an object read from the API can be written back.
 * Pure functions: no I/O.
 */
#ifndef PORTGATE_MAPJSON_H
#define PORTGATE_MAPJSON_H

#include <jansson.h>
#include <stdint.h>

#include "gateway/config.h"

/* Where an object comes from: what it may say about its lease. */
enum mapjson_from {
    MAPJSON_API,   /* "lease" in seconds from now; "expires" is read-only */
    MAPJSON_STATE, /* "expires" as written by mapjson_from_conf() */
};

/* Most seconds a lease may have (a year), and most entries in an allow or deny array. */
#define MAPJSON_MAX_LEASE 31536000
#define MAPJSON_MAX_LIST 4096

/*
 * Adds the mapping obj describes to c (config_add_map()), made through the admin interface and
 * kept in source. now is the Unix time a lease starts from. Errors (not an object, a member of the
 * wrong type, an unknown key, a bad value) are added to c with the key they are about. Returns 0,
 * or -1 with errors added.
 */
int mapjson_add(struct config *c, const char *source, const json_t *obj, enum mapjson_from from,
                int64_t now);

/* The object for m with its settings (every key, defaults included) and, if it has a lease,
 * "expires" and the seconds left of it as of now in "lease". NULL when out of memory. */
json_t *mapjson_from_conf(const struct map_conf *m, int64_t now);

/* True if key is one of the members mapjson_from_conf()'s callers add for reading, which input
 * ignores: "source", "read-only", "status", "stats". */
bool mapjson_is_read_only(const char *key);

#endif
