#include "proto/protocols.h"

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "forward/relay.h"
#include "proto/http/http_proto.h"
#include "proto/rtsp/rtsp_proto.h"
#include "proto/tls/tls_proto.h"

/* Plain TCP: the bytes go through untouched, spliced when they come in bulk. */
static const struct proto tcp = {
    .name = "tcp",
    .transport = SOCK_STREAM,
    .placement = PROTO_EVERY_WORKER,
};

/* Plain UDP: a session per client address and port (forward/udp.c). */
static const struct proto udp = {
    .name = "udp",
    .transport = SOCK_DGRAM,
    .placement = PROTO_EVERY_WORKER,
    .default_max_sessions = 4096,
};

const struct proto *const protocols[] = {
    &tcp, &udp, &tls_proto, &http_proto, &https_proto, &rtsp_proto, &rtsps_proto, NULL,
};
_Static_assert(sizeof(protocols) / sizeof(protocols[0]) - 1 <= RELAY_MAX_PROTOS,
               "a worker keeps the state of RELAY_MAX_PROTOS protocols at most");

const struct proto *protocols_find(const char *name)
{
    for (const struct proto *const *p = protocols; *p != NULL; p++) {
        if (strcmp((*p)->name, name) == 0) {
            return *p;
        }
    }
    return NULL;
}

char *protocols_list(char *buf, size_t len, bool (*keep)(const struct proto *p, const void *arg),
                     const void *arg, const char *last)
{
    const struct proto *pick[sizeof(protocols) / sizeof(protocols[0])];
    size_t n = 0, off = 0;
    for (const struct proto *const *p = protocols; *p != NULL; p++) {
        if (keep == NULL || keep(*p, arg)) {
            pick[n++] = *p;
        }
    }
    buf[0] = '\0';
    for (size_t i = 0; i < n && off < len; i++) {
        int w = snprintf(buf + off, len - off, "%s%s%s%s",
                         i == 0       ? ""
                         : i + 1 == n ? " "
                                      : ", ",
                         i > 0 && i + 1 == n ? last : "", i > 0 && i + 1 == n ? " " : "",
                         pick[i]->name);
        off += w > 0 ? (size_t)w : 0;
    }
    return buf;
}
