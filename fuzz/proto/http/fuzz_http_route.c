/* libFuzzer target: the http router, as the relay drives it, on a port that three mappings
 * share (an exact name, a wildcard, and one for any other name). The input's first byte picks
 * the server name (bits 0-1: none, or one of three), whether the client has closed (bit 2) and
 * whether the time is up (bit 3); the rest is what the client sent, offered in growing prefixes
 * the way it arrives. A choice must be a member of the port's group, a refusal's answer must fit
 * its room and be an HTTP answer, and "more" may never come when no more bytes will. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "forward/mapping.h"
#include "gateway/config.h"
#include "proto/http/http_route.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct mapping_group *group;

static struct mapping *make(const char *spec)
{
    struct config *c = config_new();
    config_add_spec(c, spec, 1);
    struct mapping *m = c->nerrors == 0 ? mapping_new(&c->maps[0], NULL, 1) : NULL;
    config_free(c);
    if (m == NULL) {
        abort();
    }
    return m;
}

static void setup(void)
{
    log_set_level(LOG_LVL_ERROR);
    struct mapping *m[3] = {
        make("http:127.0.0.1:80=192.0.2.10:80,host=cam1.example.org,max-header-size=2048"),
        make("http:127.0.0.1:80=192.0.2.11:80,host=*.cams.example.org"),
        make("http:127.0.0.1:80=192.0.2.12:80"),
    };
    group = mapping_group_new(m, 3);
    for (int i = 0; i < 3; i++) {
        mapping_unref(m[i]);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (group == NULL) {
        setup();
    }
    if (size < 1) {
        return 0;
    }
    static const char *const names[] = {NULL, "cam1.example.org", "x.cams.example.org",
                                        "other.example.org"};
    struct sockaddr_storage client = {.ss_family = AF_INET};
    struct tcp_route_conn rc = {
        .group = group, .servername = names[data[0] & 3], .client = &client};
    bool eof = data[0] & 4, timeout = data[0] & 8;
    const char *in = (const char *)data + 1;
    size_t len = size - 1;
    /* The bytes as they arrive: in three steps, the last one with what eof and timeout say. */
    size_t steps[3] = {len / 3, 2 * len / 3, len};
    for (int s = 0; s < 3; s++) {
        bool last = s == 2;
        char out[TCP_ROUTE_ANSWER_MAX];
        size_t out_len = 0;
        const char *reason = NULL;
        ssize_t r = http_router.route(&rc, in, steps[s], last && eof, last && timeout, out,
                                      sizeof(out), &out_len, &reason);
        if (r == TCP_ROUTE_MORE) {
            if (last && (eof || timeout)) {
                abort(); /* nothing more will come */
            }
            continue;
        }
        if (r == TCP_ROUTE_REFUSE) {
            if (reason == NULL || out_len >= sizeof(out) ||
                (out_len > 0 && memcmp(out, "HTTP/1.1 ", 9) != 0)) {
                abort();
            }
            return 0;
        }
        if (r < 0 || (size_t)r >= group->n) {
            abort();
        }
        return 0;
    }
    return 0;
}
