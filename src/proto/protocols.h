/*
 * protocols: the protocol table, every protocol a mapping may name in proto = (forward/proto.h).
 * Adding a protocol is a folder under src/proto/ and one line in protocols.c.
 */
#ifndef PORTGATE_PROTOCOLS_H
#define PORTGATE_PROTOCOLS_H

#include "forward/proto.h"

/* Every protocol, NULL-terminated, in the order help and messages list them. */
extern const struct proto *const protocols[];

/* The protocol called name, or NULL. */
const struct proto *protocols_find(const char *name);
/* Writes the names of the protocols for which keep(p, arg) is true (every one when keep is NULL)
 * into buf as a list with "or" before the last ("tcp, udp, tls, ... rtsp or rtsps"), and
 * returns buf. */
char *protocols_list(char *buf, size_t len, bool (*keep)(const struct proto *p, const void *arg),
                     const void *arg, const char *last);

#endif
