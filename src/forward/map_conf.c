#include "forward/map_conf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "forward/proto.h"

void map_conf_init(struct map_conf *m, enum map_origin origin, const char *name, const char *source,
                   int line)
{
    memset(m, 0, sizeof(*m));
    m->origin = origin;
    snprintf(m->name, sizeof(m->name), "%s", name);
    snprintf(m->source, sizeof(m->source), "%s", source);
    m->line = line;
    m->enabled = true;
    m->connect_timeout_ms = MAP_CONF_CONNECT_TIMEOUT_MS;
}

static void run_unref(struct map_run *r)
{
    if (r != NULL && __atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        r->proto->run_close(r->obj);
        free(r);
    }
}

void map_conf_clear(struct map_conf *m)
{
    cidr_set_clear(&m->allow);
    cidr_set_clear(&m->deny);
    cidr_set_clear(&m->trusted);
    free(m->pconf);
    m->pconf = NULL;
    run_unref(m->run);
    m->run = NULL;
}

int map_conf_open_run(struct map_conf *m, char *why, size_t whylen)
{
    const struct proto *p = m->proto;
    if (m->run != NULL || p == NULL || p->run_open == NULL) {
        return 0;
    }
    struct map_run *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    why[0] = '\0';
    r->obj = p->run_open(m->pconf, m->name, r->id, why, whylen);
    if (r->obj == NULL) {
        free(r);
        if (why[0] == '\0') {
            snprintf(why, whylen, "out of memory");
        }
        return -1;
    }
    r->refs = 1;
    r->proto = p;
    m->run = r;
    return 0;
}

int map_conf_copy(struct map_conf *dst, const struct map_conf *src)
{
    *dst = *src;
    memset(&dst->allow, 0, sizeof(dst->allow));
    memset(&dst->deny, 0, sizeof(dst->deny));
    memset(&dst->trusted, 0, sizeof(dst->trusted));
    dst->pconf = NULL;
    if (dst->run != NULL) {
        __atomic_add_fetch(&dst->run->refs, 1, __ATOMIC_RELAXED);
    }
    if (src->pconf != NULL) {
        dst->pconf = malloc(src->proto->conf_size);
        if (dst->pconf == NULL) {
            map_conf_clear(dst);
            return -ENOMEM;
        }
        memcpy(dst->pconf, src->pconf, src->proto->conf_size);
    }
    if (cidr_set_copy(&dst->allow, &src->allow) != 0 ||
        cidr_set_copy(&dst->deny, &src->deny) != 0 ||
        cidr_set_copy(&dst->trusted, &src->trusted) != 0) {
        map_conf_clear(dst);
        return -ENOMEM;
    }
    return 0;
}

bool map_conf_same_listen(const struct map_conf *a, const struct map_conf *b)
{
    return a->proto->transport == b->proto->transport && addr_ip_equal(&a->listen, &b->listen) &&
           a->listen_lo == b->listen_lo && a->listen_hi == b->listen_hi;
}

/* The protocol's settings are plain data (forward/proto.h), compared byte by byte. */
static bool pconf_equal(const struct map_conf *a, const struct map_conf *b)
{
    if (a->pconf == NULL || b->pconf == NULL) {
        return a->pconf == b->pconf;
    }
    return memcmp(a->pconf, b->pconf, a->proto->conf_size) == 0;
}

/* Run objects made from the same files (their digests) are interchangeable. */
static bool run_equal(const struct map_conf *a, const struct map_conf *b)
{
    if (a->run == NULL || b->run == NULL) {
        return a->run == b->run;
    }
    return memcmp(a->run->id, b->run->id, sizeof(a->run->id)) == 0;
}

bool map_conf_equal(const struct map_conf *a, const struct map_conf *b)
{
    return a->proto == b->proto && map_conf_same_listen(a, b) &&
           strcmp(a->target_host, b->target_host) == 0 && addr_equal(&a->target, &b->target) &&
           a->target_lo == b->target_lo && a->target_hi == b->target_hi &&
           cidr_set_equal(&a->allow, &b->allow) && cidr_set_equal(&a->deny, &b->deny) &&
           a->max_conns == b->max_conns && a->max_conns_per_ip == b->max_conns_per_ip &&
           a->max_sessions == b->max_sessions && a->connect_timeout_ms == b->connect_timeout_ms &&
           a->idle_timeout_ms == b->idle_timeout_ms && a->send_proxy == b->send_proxy &&
           a->accept_proxy == b->accept_proxy && cidr_set_equal(&a->trusted, &b->trusted) &&
           a->enabled == b->enabled && pconf_equal(a, b) && run_equal(a, b);
}
