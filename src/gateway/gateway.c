#include "gateway/gateway.h"

#include <assert.h>
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "auth/login.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/sock.h"
#include "core/worker.h"
#include "forward/mapping.h"
#include "forward/relay.h"
#include "forward/tcp.h"
#include "forward/udp.h"
#include "proto/protocols.h"

#define LISTEN_BACKLOG 1024

/* One listening socket of one worker. */
struct lslot {
    struct tcp_listener *tcp;
    struct udp_listener *udp;
    int fd; /* during apply: a socket bound but not yet handed to the worker's relay */
};

/* One port of one mapping (of several, with a protocol that routes: forward/proto.h): a listening
 * socket, bound with SO_REUSEPORT, on each worker that runs its protocol (placement). */
struct listener {
    const struct proto *proto;
    struct sockaddr_storage addr; /* with the port */
    struct mapping *map;          /* the first; borrowed: the relay listeners hold references */
    struct mapping **members;     /* all of them, when several share the port; else NULL */
    size_t nmembers;
    struct mapping_group *group; /* what the TCP listeners take (made once the plan is whole) */
    struct lslot *slots;         /* one per worker; empty on a worker that does not run it */
    ssize_t from;                /* during apply: the running listener taken over, or -1 */
    bool keep;                   /* during apply: still needed */
};

/* What a worker reports for SIGUSR1. */
struct relay_snapshot {
    size_t nconns, pipes_used, max_pipes, spare_pipes;
    uint64_t pipe_failures;
};

/* A worker thread and the relays of its loop, which only that thread touches. */
struct gw_worker {
    struct worker w;
    struct relay_ctx relay;
    bool relay_ready;
    struct gateway *g;
};

static struct relay_ctx *relay_of(struct worker *w)
{
    return &container_of(w, struct gw_worker, w)->relay;
}

struct gateway {
    struct loop *loop; /* the control thread's: signals, drain */
    struct gw_worker *workers;
    unsigned nworkers;
    struct config *cfg;    /* the current configuration snapshot, replaced by reload */
    struct mapping **maps; /* one per enabled mapping of cfg */
    size_t nmaps;
    struct listener *ls;
    size_t nls;
    const char *path;
    char *const *specs;
    int nspecs;
    struct gateway_hooks hooks;
    uint64_t started_ms;
    uint64_t reloads, reload_failures;
    char apply_error[512]; /* why the last apply failed, for gateway_apply() */
    int apply_errno;
    /* When it failed binding: the mapping, and why (without its name). */
    char bind_failed_map[MAP_CONF_NAMELEN];
    char bind_failed_why[160];
    struct loop_io sig;
    struct loop_io idle; /* eventfd: +1 per worker whose last connection closed while draining */
    unsigned nidle;
    struct loop_timer drain;
    bool draining;
    /* What the posted worker functions work on; set by the control thread before posting. */
    struct listener *old_ls; /* apply: the listeners being replaced */
    size_t old_nls;
    bool splice;
    uint32_t busy_poll_us; /* the workers' loops poll this long before sleeping */
    size_t max_pipes;      /* in all: shared out among the workers */
    const char *close_reason;
    struct relay_snapshot *snaps;
    /* Listing connections and sessions: each worker fills its own vector. */
    struct collect *collect;
    const char *collect_name; /* of the mapping asked for, or NULL */
    uint64_t close_id;
    bool closed;
};

/* What one worker lists for the admin interface. */
struct collect {
    void *v; /* struct gateway_conn or struct gateway_session */
    size_t n, cap;
    bool oom;
};

/* Runs fn on every worker at once and returns when all have run it. */
static void call_all(struct gateway *g, worker_fn fn)
{
    for (unsigned i = 0; i < g->nworkers; i++) {
        worker_post(&g->workers[i].w, fn, g);
    }
    for (unsigned i = 0; i < g->nworkers; i++) {
        worker_wait(&g->workers[i].w);
    }
}

static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rlim_t old = rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) == 0) {
            log_debug("raised the open files limit from %llu to %llu", (unsigned long long)old,
                      (unsigned long long)rl.rlim_max);
        }
    }
}

/* A pipe is two descriptors and a connection two more: a quarter of the limit leaves room. */
static size_t default_max_pipes(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) {
        return 1024;
    }
    return rl.rlim_cur / 4 > 0 ? (size_t)(rl.rlim_cur / 4) : 1;
}

static unsigned cpu_count(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0) {
        return (unsigned)CPU_COUNT(&set);
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1;
}

static unsigned resolve_workers(const struct config *cfg)
{
    unsigned n = cfg->gw.workers != 0 ? cfg->gw.workers : cpu_count();
    return n > CONFIG_MAX_WORKERS ? CONFIG_MAX_WORKERS : n;
}

static struct mapping *find_map(struct mapping **maps, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(maps[i]->conf.name, name) == 0) {
            return maps[i];
        }
    }
    return NULL;
}

static void free_maps(struct mapping **maps, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        mapping_unref(maps[i]);
    }
    free(maps);
}

/* On a worker: closes its socket of a listener. */
static void slot_close(struct lslot *s, const char *reason)
{
    tcp_listener_free(s->tcp);
    udp_listener_free(s->udp, reason);
    if (s->fd >= 0) {
        close(s->fd);
    }
    s->tcp = NULL;
    s->udp = NULL;
    s->fd = -1;
}

static void free_slots(struct listener *ls, size_t n, unsigned nworkers)
{
    for (size_t i = 0; i < n; i++) {
        if (ls[i].slots == NULL) {
            continue;
        }
        for (unsigned w = 0; w < nworkers; w++) {
            if (ls[i].slots[w].fd >= 0) {
                close(ls[i].slots[w].fd);
            }
        }
        free(ls[i].slots);
    }
    for (size_t i = 0; i < n; i++) {
        mapping_group_unref(ls[i].group);
        free(ls[i].members);
    }
    free(ls);
}

static void apply_failed(struct gateway *g, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Logs why an apply fails and keeps it for gateway_apply(). */
static void apply_failed(struct gateway *g, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->apply_error, sizeof(g->apply_error), fmt, ap);
    va_end(ap);
    g->apply_errno = err;
    log_error("%s", g->apply_error);
}

static const char *bind_hint(int err);

/* A socket of listener l could not be bound or listen (err): logged, and kept for apply(). */
static void bind_failed(struct gateway *g, const struct listener *l, int err)
{
    char as[ADDR_STRLEN];
    snprintf(g->bind_failed_map, sizeof(g->bind_failed_map), "%s", l->map->conf.name);
    snprintf(g->bind_failed_why, sizeof(g->bind_failed_why), "cannot listen on %s %s: %s",
             l->proto->name, addr_format(&l->addr, as, sizeof(as)), strerror(-err));
    apply_failed(g, err, "map %s: %s%s", l->map->conf.name, g->bind_failed_why, bind_hint(err));
}

static const char *bind_hint(int err)
{
    switch (err) {
    case -EADDRINUSE:
        return " (another program, or another mapping, uses this port)";
    case -EADDRNOTAVAIL:
        return " (no interface has this address)";
    case -EACCES:
        return " (ports below 1024 need root or CAP_NET_BIND_SERVICE)";
    default:
        return "";
    }
}

/* How many workers run a listener of protocol p, each with its own socket: all of them, or
 * worker 0 only. */
static unsigned nsockets(const struct gateway *g, const struct proto *p)
{
    return p->placement == PROTO_ONE_WORKER ? 1 : g->nworkers;
}

static bool slot_in_use(const struct lslot *s)
{
    return s->tcp != NULL || s->udp != NULL;
}

/* The next configuration's mappings and listening sockets, made before anything changes. */
struct plan {
    struct mapping **maps; /* one per enabled mapping */
    size_t nmaps;
    struct listener *ls;
    size_t nls, cap;
    unsigned added, changed, same;
    /* The running state, indexed: a config may have thousands of mappings, and a change of one
     * must not compare each with all. */
    struct mapping **by_name; /* g->maps by name */
    bool *kept;               /* by_name[i] goes on in the new set */
    size_t *ls_order;         /* g->ls by transport, family, port, address */
};

static int cmp_map_name(const void *x, const void *y)
{
    return strcmp((*(struct mapping *const *)x)->conf.name,
                  (*(struct mapping *const *)y)->conf.name);
}

/* The key listeners are found by: transport, family, port, then the address bytes. */
static int cmp_listen_key(const struct listener *a, int transport, const struct sockaddr_storage *b)
{
    if (a->proto->transport != transport) {
        return a->proto->transport < transport ? -1 : 1;
    }
    if (a->addr.ss_family != b->ss_family) {
        return a->addr.ss_family < b->ss_family ? -1 : 1;
    }
    uint16_t pa = addr_port(&a->addr), pb = addr_port(b);
    if (pa != pb) {
        return pa < pb ? -1 : 1;
    }
    if (b->ss_family == AF_INET6) {
        return memcmp(&((const struct sockaddr_in6 *)&a->addr)->sin6_addr,
                      &((const struct sockaddr_in6 *)b)->sin6_addr, 16);
    }
    return memcmp(&((const struct sockaddr_in *)&a->addr)->sin_addr,
                  &((const struct sockaddr_in *)b)->sin_addr, 4);
}

/* A qsort_r() comparison of indices into the gateway's listeners (ctx). */
static int cmp_ls_order(const void *x, const void *y, void *ctx)
{
    const struct gateway *g = ctx;
    const struct listener *a = &g->ls[*(const size_t *)x];
    const struct listener *b = &g->ls[*(const size_t *)y];
    return cmp_listen_key(a, b->proto->transport, &b->addr);
}

/* The first position in p->ls_order whose listener is not below (transport, addr). */
static size_t ls_lower_bound(const struct gateway *g, const struct plan *p, int transport,
                             const struct sockaddr_storage *addr)
{
    size_t lo = 0, hi = g->nls;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cmp_listen_key(&g->ls[p->ls_order[mid]], transport, addr) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

/* Index of mapping name in p->by_name, or -1. */
static ssize_t plan_find_old(const struct gateway *g, const struct plan *p, const char *name)
{
    size_t lo = 0, hi = g->nmaps;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int r = strcmp(p->by_name[mid]->conf.name, name);
        if (r == 0) {
            return (ssize_t)mid;
        }
        if (r < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return -1;
}

/* Indexes the running state for the plan. Returns 0 or -ENOMEM. */
static int plan_index(struct gateway *g, struct plan *p)
{
    p->by_name = malloc((g->nmaps + 1) * sizeof(*p->by_name));
    p->kept = calloc(g->nmaps + 1, sizeof(*p->kept));
    p->ls_order = malloc((g->nls + 1) * sizeof(*p->ls_order));
    if (p->by_name == NULL || p->kept == NULL || p->ls_order == NULL) {
        return -ENOMEM;
    }
    if (g->nmaps > 0) { /* none at start: g->maps is NULL */
        memcpy(p->by_name, g->maps, g->nmaps * sizeof(*p->by_name));
        qsort(p->by_name, g->nmaps, sizeof(*p->by_name), cmp_map_name);
    }
    for (size_t i = 0; i < g->nls; i++) {
        p->ls_order[i] = i;
    }
    qsort_r(p->ls_order, g->nls, sizeof(*p->ls_order), cmp_ls_order, g);
    return 0;
}

static void plan_index_free(struct plan *p)
{
    free(p->by_name);
    free(p->kept);
    free(p->ls_order);
    p->by_name = NULL;
    p->kept = NULL;
    p->ls_order = NULL;
}

/* True if a running listener of ours holds l's port on an overlapping address of its family and
 * transport (the same address, or a wildcard on either side): l's sockets join it there, since
 * every socket is bound with SO_REUSEPORT, until the commit closes the old one. */
static bool port_is_ours(const struct gateway *g, const struct plan *p, const struct listener *l)
{
    /* The running listeners of l's transport, family and port sort together, from the one at
     * the lowest address (the wildcard, all zeroes) on. */
    struct sockaddr_storage lowest = {.ss_family = l->addr.ss_family};
    addr_set_port(&lowest, addr_port(&l->addr));
    for (size_t k = ls_lower_bound(g, p, l->proto->transport, &lowest); k < g->nls; k++) {
        const struct listener *o = &g->ls[p->ls_order[k]];
        if (o->proto->transport != l->proto->transport || o->addr.ss_family != l->addr.ss_family ||
            addr_port(&o->addr) != addr_port(&l->addr)) {
            break;
        }
        if (addr_is_any(&o->addr) || addr_is_any(&l->addr) || addr_ip_equal(&o->addr, &l->addr)) {
            return true;
        }
    }
    return false;
}

/*
 * Binds the sockets l needs, one per worker that runs it, but for those of the running listener
 * it takes over (from, or NULL), which are kept. Every socket is bound with SO_REUSEPORT: the
 * workers' sockets share the port, and a port can move between a wildcard and a specific
 * address, or a listener gain workers, while the old sockets are still open. A probe bound first
 * without it makes sure no other program holds the port, since sockets of another process of
 * the same user could otherwise join the group and take a share of the clients; where one of
 * ours holds it already, the probe would only find us. Returns 0, or -1 (logged; the sockets
 * bound so far stay in l->slots for the caller).
 */
static int bind_slots(struct gateway *g, const struct plan *p, struct listener *l,
                      const struct listener *from)
{
    bool tcp = l->proto->transport == SOCK_STREAM;
    int pktinfo = addr_is_any(&l->addr);
    bool probe = from == NULL && !port_is_ours(g, p, l);
    for (unsigned w = 0; w < nsockets(g, l->proto); w++) {
        if (from != NULL && slot_in_use(&from->slots[w])) {
            continue; /* kept */
        }
        int fd;
        if (probe) {
            fd = tcp ? sock_listen_tcp(&l->addr, 0, 0) : sock_bind_udp(&l->addr, 0, 0);
            if (fd >= 0) {
                close(fd);
                probe = false;
            }
        }
        if (!probe) {
            /* TCP sockets listen only when the plan is complete (plan_listen): one that joined
             * a running group would take connections, reset if the plan failed after. */
            fd = tcp ? sock_listen_tcp(&l->addr, 0, 1) : sock_bind_udp(&l->addr, pktinfo, 1);
        }
        if (fd < 0) {
            bind_failed(g, l, fd);
            return -1;
        }
        l->slots[w].fd = fd;
    }
    return 0;
}

/* On each worker during apply: closes the sockets of listeners no longer needed, moves kept ones
 * to the new generation of their mapping, and takes over the new sockets. */
static void w_apply(struct worker *w, void *arg)
{
    struct gateway *g = arg;
    struct relay_ctx *ctx = relay_of(w);
    for (size_t j = 0; j < g->old_nls; j++) {
        struct lslot *s = &g->old_ls[j].slots[w->id];
        if (s->tcp != NULL) {
            /* Its clients have connected already: they go on, with the mapping they reached. */
            tcp_listener_take_queued(s->tcp);
        }
        slot_close(s, "its mapping was removed or moved");
    }
    for (size_t i = 0; i < g->nls; i++) {
        struct listener *l = &g->ls[i];
        struct lslot *s = &l->slots[w->id];
        if (s->tcp != NULL) {
            tcp_listener_set_group(s->tcp, l->group);
        } else if (s->udp != NULL) {
            udp_listener_set_mapping(s->udp, l->map);
        } else if (s->fd >= 0) {
            int fd = s->fd;
            s->fd = -1;
            uint16_t port = addr_port(&l->addr);
            if (l->proto->transport == SOCK_STREAM) {
                s->tcp = tcp_listener_new(ctx, fd, l->group, port);
            } else {
                s->udp = udp_listener_new(ctx, fd, l->map, port);
            }
            if (s->tcp == NULL && s->udp == NULL) {
                char as[ADDR_STRLEN];
                log_error("map %s: worker %u: setting up %s: %s; this worker does not serve this "
                          "port",
                          l->map->conf.name, w->id, addr_format(&l->addr, as, sizeof(as)),
                          strerror(errno));
            }
        }
    }
    ctx->splice = g->splice;
    loop_set_busy_poll(w->loop, g->busy_poll_us);
    ctx->max_pipes = g->max_pipes / g->nworkers + (w->id < g->max_pipes % g->nworkers);
}

/* The running generation of mc's mapping when mc leaves it as it is, else a new generation (it
 * inherits the state of the one it replaces) or a new mapping. NULL when out of memory. */
static struct mapping *plan_mapping(struct gateway *g, struct plan *p, const struct map_conf *mc)
{
    ssize_t k = plan_find_old(g, p, mc->name);
    struct mapping *old = k >= 0 ? p->by_name[k] : NULL;
    if (k >= 0) {
        p->kept[k] = true;
    }
    struct mapping *m;
    if (old != NULL && map_conf_equal(&old->conf, mc)) {
        m = mapping_ref(old);
        p->same++;
    } else {
        /* A mapping that changes protocol starts its counts anew: what its open connections
         * hold stays with the generation that admitted them, and the protocol's own counters
         * mean something else. */
        bool same_proto = old != NULL && old->conf.proto == mc->proto;
        m = mapping_new(mc, same_proto ? old->state : NULL, g->nworkers);
        if (m == NULL) {
            return NULL;
        }
        old ? p->changed++ : p->added++;
    }
    p->maps[p->nmaps++] = m;
    return m;
}

/*
 * m's protocol routes (forward/proto.h): if the plan has the port's listener already, m joins
 * its mappings (the configuration let them share it). Returns 1 when it joined, 0 when the port
 * is not in the plan yet, -1 when out of memory (reported).
 */
static int plan_share(struct gateway *g, struct plan *p, struct mapping *m, uint16_t port)
{
    struct sockaddr_storage addr = m->conf.listen;
    addr_set_port(&addr, port);
    for (size_t i = p->nls; i-- > 0;) {
        struct listener *l = &p->ls[i];
        if (l->proto != m->conf.proto || cmp_listen_key(l, SOCK_STREAM, &addr) != 0) {
            continue;
        }
        struct mapping **v = realloc(l->members, (l->nmembers + 2) * sizeof(*v));
        if (v == NULL) {
            apply_failed(g, -ENOMEM, "out of memory applying the configuration");
            return -1;
        }
        if (l->members == NULL) {
            v[l->nmembers++] = l->map;
        }
        v[l->nmembers++] = m;
        l->members = v;
        return 1;
    }
    return 0;
}

/* Makes each listener's group of mappings, for the TCP listeners. Returns 0, or -1 (reported). */
static int plan_groups(struct gateway *g, struct plan *p)
{
    for (size_t i = 0; i < p->nls; i++) {
        struct listener *l = &p->ls[i];
        l->group = l->members != NULL ? mapping_group_new(l->members, l->nmembers)
                                      : mapping_group_new(&l->map, 1);
        if (l->group == NULL) {
            apply_failed(g, -ENOMEM, "out of memory applying the configuration");
            return -1;
        }
    }
    return 0;
}

/*
 * Adds the listener of m's port to the plan: the running one on the same protocol, address and
 * port if there is one (kept, so its socket is never closed and re-bound), else new sockets
 * bound now. Returns 0, or -1 (logged: out of memory, or a bind failed).
 */
static int plan_port(struct gateway *g, struct plan *p, struct mapping *m, uint16_t port)
{
    int shared = m->conf.proto->router != NULL ? plan_share(g, p, m, port) : 0;
    if (shared != 0) {
        return shared > 0 ? 0 : -1;
    }
    if (p->nls == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 16;
        struct listener *v = realloc(p->ls, cap * sizeof(*v));
        if (v == NULL) {
            apply_failed(g, -ENOMEM, "out of memory applying the configuration");
            return -1;
        }
        p->ls = v;
        p->cap = cap;
    }
    struct listener *l = &p->ls[p->nls++];
    memset(l, 0, sizeof(*l));
    l->proto = m->conf.proto;
    l->addr = m->conf.listen;
    addr_set_port(&l->addr, port);
    l->map = m;
    l->from = -1;
    /* The running socket on the same transport, address and port is kept, whatever the
     * protocol: a reload may turn a tcp mapping into an rtsp one. */
    size_t k = ls_lower_bound(g, p, l->proto->transport, &l->addr);
    if (k < g->nls) {
        size_t j = p->ls_order[k];
        struct listener *o = &g->ls[j];
        if (!o->keep && cmp_listen_key(o, l->proto->transport, &l->addr) == 0) {
            o->keep = true;
            l->from = (ssize_t)j;
        }
    }
    l->slots = calloc(g->nworkers, sizeof(*l->slots));
    if (l->slots == NULL) {
        apply_failed(g, -ENOMEM, "out of memory applying the configuration");
        return -1;
    }
    for (unsigned w = 0; w < g->nworkers; w++) {
        l->slots[w].fd = -1;
    }
    return bind_slots(g, p, l, l->from >= 0 ? &g->ls[l->from] : NULL);
}

/* Puts the plan's new TCP sockets in the listening state, once everything else is bound.
 * Returns 0, or -1 (logged). */
static int plan_listen(struct gateway *g, struct plan *p)
{
    for (size_t i = 0; i < p->nls; i++) {
        struct listener *l = &p->ls[i];
        for (unsigned w = 0; w < g->nworkers && l->proto->transport == SOCK_STREAM; w++) {
            int rc = l->slots[w].fd >= 0 ? sock_listen(l->slots[w].fd, LISTEN_BACKLOG) : 0;
            if (rc < 0) {
                bind_failed(g, l, rc);
                return -1;
            }
        }
    }
    return 0;
}

/* Undoes a plan that will not run: the sockets it bound close, the running ones stay. */
static void plan_discard(struct gateway *g, struct plan *p)
{
    free_slots(p->ls, p->nls, g->nworkers);
    free_maps(p->maps, p->nmaps);
    plan_index_free(p);
    for (size_t j = 0; j < g->nls; j++) {
        g->ls[j].keep = false;
    }
}

/* Makes the plan for cfg the running state: kept listeners move to the new table, and the
 * workers close the others and take over the new sockets. Nothing here can fail. */
static void log_config_warning(void *arg, const char *msg)
{
    (void)arg;
    log_warn("%s", msg);
}

static void commit(struct gateway *g, struct config *cfg, struct plan *p)
{
    for (size_t i = 0; i < p->nls; i++) {
        struct listener *l = &p->ls[i];
        if (l->from < 0) {
            continue;
        }
        /* The running listener's sockets on the workers that run l move to it; the workers
         * that no longer do (a protocol placed on one worker now) close theirs in w_apply. */
        struct listener *o = &g->ls[l->from];
        for (unsigned w = 0; w < nsockets(g, l->proto); w++) {
            if (slot_in_use(&o->slots[w])) {
                l->slots[w] = o->slots[w];
                o->slots[w] = (struct lslot){.fd = -1};
            }
        }
        if (o->proto != l->proto) {
            char as[ADDR_STRLEN];
            log_info("map %s: %s %s is now %s, on the same socket%s", l->map->conf.name,
                     o->proto->name, addr_format(&l->addr, as, sizeof(as)), l->proto->name,
                     nsockets(g, l->proto) < nsockets(g, o->proto)
                         ? " (on one worker: the other workers' sockets close)"
                         : "");
        }
    }
    unsigned removed = 0;
    for (size_t i = 0; i < g->nmaps; i++) {
        if (!p->kept[i]) {
            removed++;
            log_info("map %s: removed; its established connections go on",
                     p->by_name[i]->conf.name);
        }
    }
    plan_index_free(p);
    g->old_ls = g->ls;
    g->old_nls = g->nls;
    g->ls = p->ls;
    g->nls = p->nls;
    g->splice = cfg->gw.splice;
    g->busy_poll_us = cfg->gw.busy_poll_us;
    g->max_pipes = cfg->gw.max_pipes != 0 ? cfg->gw.max_pipes : default_max_pipes();
    call_all(g, w_apply);
    for (size_t i = 0; i < g->nls; i++) {
        struct listener *l = &g->ls[i];
        if (l->from < 0) {
            char as[ADDR_STRLEN], ts[ADDR_STRLEN];
            struct sockaddr_storage t;
            mapping_target(l->map, addr_port(&l->addr), &t);
            log_info("map %s: listening on %s %s -> %s", l->map->conf.name, l->proto->name,
                     addr_format(&l->addr, as, sizeof(as)), addr_format(&t, ts, sizeof(ts)));
        }
        for (size_t k = 1; k < l->nmembers && l->from < 0; k++) {
            char as[ADDR_STRLEN];
            log_info("map %s: shares %s %s with map %s, by what its clients ask for",
                     l->members[k]->conf.name, l->proto->name,
                     addr_format(&l->addr, as, sizeof(as)), l->map->conf.name);
        }
    }
    free_slots(g->old_ls, g->old_nls, g->nworkers);
    g->old_ls = NULL;
    g->old_nls = 0;
    free_maps(g->maps, g->nmaps);
    g->maps = p->maps;
    g->nmaps = p->nmaps;
    if (g->cfg != NULL && resolve_workers(cfg) != g->nworkers) {
        log_warn("workers: %u running; a change takes effect when portgate is restarted",
                 g->nworkers);
    }
    config_free(g->cfg);
    g->cfg = cfg;
    config_warnings(cfg, log_config_warning, NULL);
    /* auth = login mappings log in the users of the users file. */
    int lrc = login_configure(cfg->gw.users_file);
    if (lrc < 0) {
        log_error("login: %s; auth = login mappings refuse every login", strerror(-lrc));
    }
    /* The outcome is logged at the level in force when the reload was asked for. */
    log_info("configuration applied: %u mappings added, %u changed, %u removed, %u unchanged; %zu "
             "ports listening on %u workers",
             p->added, p->changed, removed, p->same, g->nls, g->nworkers);
    log_set_level(cfg->gw.log_level);
}

/*
 * Makes cfg the running configuration. All-or-nothing: on any failure (logged) the gateway is
 * as it was and cfg is not taken. On success the gateway owns cfg.
 */
static int apply_once(struct gateway *g, struct config *cfg)
{
    g->apply_errno = 0;
    g->apply_error[0] = '\0';
    g->bind_failed_map[0] = '\0';
    struct plan p = {.maps = calloc(cfg->nmaps + 1, sizeof(*p.maps))};
    if (p.maps == NULL || plan_index(g, &p) != 0) {
        free(p.maps);
        plan_index_free(&p);
        apply_failed(g, -ENOMEM, "out of memory applying the configuration");
        return -1;
    }
    for (size_t i = 0; i < g->nls; i++) {
        g->ls[i].keep = false;
    }
    for (size_t i = 0; i < cfg->nmaps; i++) {
        const struct map_conf *mc = &cfg->maps[i];
        if (!map_conf_runs(mc)) {
            continue;
        }
        struct mapping *m = plan_mapping(g, &p, mc);
        if (m == NULL) {
            apply_failed(g, -ENOMEM, "out of memory applying the configuration");
            plan_discard(g, &p);
            return -1;
        }
        for (unsigned port = mc->listen_lo; port <= mc->listen_hi; port++) {
            if (plan_port(g, &p, m, (uint16_t)port) != 0) {
                plan_discard(g, &p);
                return -1;
            }
        }
    }
    if (plan_groups(g, &p) != 0 || plan_listen(g, &p) != 0) {
        plan_discard(g, &p);
        return -1;
    }
    /* A revision is never used twice, even when the one the config was built from is older than
     * the running one (a reload reads the state file again). */
    uint64_t running = g->cfg != NULL ? g->cfg->revision : 0;
    cfg->revision = (cfg->revision > running ? cfg->revision : running) + 1;
    if (g->hooks.persist != NULL) {
        char why[400];
        if (g->hooks.persist(g->hooks.arg, cfg, why, sizeof(why)) != 0) {
            apply_failed(g, -EIO, "%s", why);
            plan_discard(g, &p);
            return -1;
        }
    }
    commit(g, cfg, &p);
    if (g->hooks.applied != NULL) {
        g->hooks.applied(g->hooks.arg);
    }
    return 0;
}

/*
 * apply_once(), and at start and at a reload (cfg->keep_failed), again without each mapping of
 * the admin interface that could not be bound: it stays in the table, failed with the reason,
 * rather than keep every other mapping from running. It is tried again at the next reload, or
 * when it is changed through the API (then strictly: the change is refused).
 */
static int apply(struct gateway *g, struct config *cfg)
{
    while (apply_once(g, cfg) != 0) {
        ssize_t k = g->bind_failed_map[0] != '\0' ? config_find_map(cfg, g->bind_failed_map) : -1;
        if (!cfg->keep_failed || k < 0 || cfg->maps[k].origin != MAP_ORIGIN_API ||
            cfg->maps[k].failed[0] != '\0') {
            return -1;
        }
        snprintf(cfg->maps[k].failed, sizeof(cfg->maps[k].failed), "%s", g->bind_failed_why);
        log_warn("map %s: kept in the table but not running (made through the admin API): %s",
                 cfg->maps[k].name, g->bind_failed_why);
    }
    for (size_t i = 0; i < cfg->nmaps && cfg->keep_failed; i++) {
        if (cfg->maps[i].enabled && cfg->maps[i].failed[0] != '\0' &&
            strncmp(cfg->maps[i].failed, "target:", 7) == 0) {
            log_warn("map %s: kept in the table but not running (made through the admin API): %s",
                     cfg->maps[i].name, cfg->maps[i].failed);
        }
    }
    return 0;
}

/* On each worker: closes its listening sockets (draining or stopping). */
static void w_close_listeners(struct worker *w, void *arg)
{
    struct gateway *g = arg;
    for (size_t i = 0; i < g->nls; i++) {
        slot_close(&g->ls[i].slots[w->id], "gateway stopping");
    }
}

static void w_idle(struct relay_ctx *ctx)
{
    struct gw_worker *gw = container_of(ctx, struct gw_worker, relay);
    uint64_t one = 1;
    ctx->on_idle = NULL; /* once */
    if (write(gw->g->idle.fd, &one, sizeof(one)) != sizeof(one)) {
        log_error("worker %u: telling the control thread it is idle: %s", gw->w.id,
                  strerror(errno));
    }
}

static void w_drain(struct worker *w, void *arg)
{
    w_close_listeners(w, arg);
    struct relay_ctx *ctx = relay_of(w);
    ctx->on_idle = w_idle;
    if (ctx->nconns == 0) {
        w_idle(ctx);
    }
}

static void w_close_all(struct worker *w, void *arg)
{
    struct gateway *g = arg;
    tcp_close_all(relay_of(w), g->close_reason);
}

static void w_stop(struct worker *w, void *arg)
{
    w_close_listeners(w, arg);
    relay_of(w)->on_idle = NULL;
    tcp_close_all(relay_of(w), "gateway stopping");
    worker_stop_loop(w);
}

static void w_snapshot(struct worker *w, void *arg)
{
    struct gateway *g = arg;
    const struct relay_ctx *ctx = relay_of(w);
    struct relay_snapshot *s = &g->snaps[w->id];
    s->nconns = ctx->nconns;
    s->pipes_used = ctx->pipes_used;
    s->max_pipes = ctx->max_pipes;
    s->spare_pipes = ctx->pipe_pool_len;
    s->pipe_failures = ctx->pipe_failures;
}

static size_t open_conns(struct gateway *g)
{
    call_all(g, w_snapshot);
    size_t n = 0;
    for (unsigned i = 0; i < g->nworkers; i++) {
        n += g->snaps[i].nconns;
    }
    return n;
}

static void close_all_now(struct gateway *g, const char *why)
{
    log_warn("%s: closing %zu connections", why, open_conns(g));
    g->close_reason = why;
    call_all(g, w_close_all);
    loop_stop(g->loop);
}

static void drain_expired(struct loop_timer *t)
{
    struct gateway *g = container_of(t, struct gateway, drain);
    close_all_now(g, "gateway stopping: drain-timeout reached");
}

static void on_idle(struct loop_io *io, uint32_t ev)
{
    (void)ev;
    struct gateway *g = container_of(io, struct gateway, idle);
    uint64_t n;
    if (read(io->fd, &n, sizeof(n)) == sizeof(n)) {
        g->nidle += (unsigned)n;
    }
    if (g->draining && g->nidle >= g->nworkers) {
        log_info("all connections finished");
        loop_stop(g->loop);
    }
}

static void begin_drain(struct gateway *g, const char *signame)
{
    if (g->draining) {
        char why[64];
        snprintf(why, sizeof(why), "gateway stopping: second %s", signame);
        close_all_now(g, why);
        return;
    }
    g->draining = true;
    size_t n = open_conns(g);
    uint32_t ms = g->cfg->gw.drain_timeout_ms;
    /* Every worker has closed its listeners when this returns, so the line below is true when
     * it is read; each reports (on_idle) when its last connection is gone. */
    call_all(g, w_drain);
    if (n == 0) {
        log_info("%s: stopping; no open connections", signame);
    } else {
        log_info("%s: stopped accepting; waiting up to %ums for %zu connections to finish", signame,
                 ms, n);
        loop_timer_start(g->loop, &g->drain, ms);
    }
}

/* One line for the relays and one of counters per running mapping (SIGUSR1). Bytes and
 * datagrams count ended connections and sessions; "open" is what runs now. */
static void log_stats(struct gateway *g)
{
    call_all(g, w_snapshot);
    struct relay_snapshot sum = {0};
    char per[CONFIG_MAX_WORKERS * 12] = "";
    size_t off = 0;
    for (unsigned i = 0; i < g->nworkers; i++) {
        const struct relay_snapshot *s = &g->snaps[i];
        sum.nconns += s->nconns;
        sum.pipes_used += s->pipes_used;
        sum.max_pipes += s->max_pipes;
        sum.spare_pipes += s->spare_pipes;
        sum.pipe_failures += s->pipe_failures;
        int n = snprintf(per + off, sizeof(per) - off, " %zu", s->nconns);
        off += n > 0 && (size_t)n < sizeof(per) - off ? (size_t)n : 0;
    }
    log_info("relay: %zu tcp connections open, splice %s, %zu pipes in use (at most %zu), %zu "
             "spare, %llu reads copied for want of a pipe; %u workers, connections per worker:%s",
             sum.nconns, g->splice ? "on" : "off", sum.pipes_used, sum.max_pipes, sum.spare_pipes,
             (unsigned long long)sum.pipe_failures, g->nworkers, per);
    for (size_t i = 0; i < g->nmaps; i++) {
        const struct mapping *m = g->maps[i];
        struct mapping_stats st;
        mapping_stats_sum(m->state, &st);
        /* Then the protocol's own counters, by the names it gives them. */
        char own[512] = "";
        size_t len = 0;
        const char *const *names = m->conf.proto->stat_names;
        for (size_t k = 0; names != NULL && names[k] != NULL && len < sizeof(own); k++) {
            int n = snprintf(own + len, sizeof(own) - len, ", %llu %s",
                             (unsigned long long)st.proto[k], names[k]);
            len += n > 0 ? (size_t)n : 0;
        }
        log_info("map %s: stats: %u open, %llu accepted, %llu refused by allow/deny, %llu refused "
                 "by limits, %llu connect failures, %llu evicted, %llu bytes to targets, %llu "
                 "bytes to clients, %llu bytes spliced, %llu datagrams to targets, %llu datagrams "
                 "to clients, %llu datagrams dropped%s",
                 m->conf.name, mapping_active(m->state), (unsigned long long)st.accepted,
                 (unsigned long long)st.refused_acl, (unsigned long long)st.refused_limit,
                 (unsigned long long)st.connect_failed, (unsigned long long)st.evicted,
                 (unsigned long long)st.bytes_in, (unsigned long long)st.bytes_out,
                 (unsigned long long)st.bytes_spliced, (unsigned long long)st.dgrams_in,
                 (unsigned long long)st.dgrams_out, (unsigned long long)st.dgrams_dropped, own);
    }
}

static void on_signal(struct loop_io *io, uint32_t ev)
{
    (void)ev;
    struct gateway *g = container_of(io, struct gateway, sig);
    struct signalfd_siginfo si;
    while (read(io->fd, &si, sizeof(si)) == sizeof(si)) {
        switch (si.ssi_signo) {
        case SIGHUP:
            if (g->draining) {
                log_warn("SIGHUP while stopping: ignored");
            } else {
                gateway_reload(g, NULL);
            }
            break;
        case SIGTERM:
            begin_drain(g, "SIGTERM");
            break;
        case SIGINT:
            begin_drain(g, "SIGINT");
            break;
        case SIGUSR1:
            log_stats(g);
            break;
        default:
            break;
        }
    }
}

struct gateway *gateway_new(const char *path, char *const *specs, int nspecs,
                            const struct gateway_hooks *hooks)
{
    struct gateway *g = calloc(1, sizeof(*g));
    if (g == NULL) {
        log_error("out of memory");
        return NULL;
    }
    g->path = path;
    g->specs = specs;
    g->nspecs = nspecs;
    if (hooks != NULL) {
        g->hooks = *hooks;
    }
    g->sig.fd = -1;
    g->idle.fd = -1;
    g->loop = loop_new();
    if (g->loop == NULL) {
        log_error("epoll_create1: %s", strerror(errno));
        free(g);
        return NULL;
    }
    loop_timer_init(&g->drain, drain_expired);
    g->started_ms = loop_now(g->loop);
    raise_fd_limit();

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR1);
    int fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd == -1 || sigprocmask(SIG_BLOCK, &set, NULL) == -1 ||
        loop_io_add(g->loop, &g->sig, fd, LOOP_IN, on_signal) < 0) {
        log_error("signal set-up: %s", strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        gateway_free(g);
        return NULL;
    }
    fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd == -1 || loop_io_add(g->loop, &g->idle, fd, LOOP_IN, on_idle) < 0) {
        log_error("eventfd: %s", strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        gateway_free(g);
        return NULL;
    }
    signal(SIGPIPE, SIG_IGN);
    return g;
}

/* Gives a worker's relay context the state each protocol keeps there (forward/proto.h), before
 * its thread starts. Returns 0 or -ENOMEM. */
static int add_proto_states(struct relay_ctx *ctx)
{
    for (const struct proto *const *p = protocols; *p != NULL; p++) {
        if ((*p)->worker_new == NULL) {
            continue;
        }
        void *st = (*p)->worker_new(ctx);
        if (st == NULL) {
            return -ENOMEM;
        }
        int rc = relay_set_proto_state(ctx, *p, st);
        assert(rc == 0); /* the table holds fewer protocols than RELAY_MAX_PROTOS: protocols.c */
        (void)rc;
    }
    return 0;
}

int gateway_start(struct gateway *g, struct config *cfg)
{
    log_set_level(cfg->gw.log_level);
    unsigned n = resolve_workers(cfg);
    g->workers = calloc(n, sizeof(*g->workers));
    g->snaps = calloc(n, sizeof(*g->snaps));
    if (g->workers == NULL || g->snaps == NULL) {
        log_error("out of memory starting %u workers", n);
        return -1;
    }
    for (unsigned i = 0; i < n; i++) {
        struct gw_worker *gw = &g->workers[i];
        int rc = worker_init(&gw->w, i);
        g->nworkers = i + 1; /* gateway_free() undoes what was done */
        gw->g = g;
        if (rc == 0 && (rc = relay_ctx_init(&gw->relay, gw->w.loop, i)) == 0) {
            gw->relay_ready = true;
            rc = add_proto_states(&gw->relay);
        }
        if (rc == 0) {
            rc = worker_start(&gw->w);
        }
        if (rc < 0) {
            log_error("starting worker %u of %u: %s", i + 1, n, strerror(-rc));
            return -1;
        }
    }
    return apply(g, cfg);
}

int gateway_reload(struct gateway *g, struct config **errors)
{
    log_info("reloading the configuration");
    g->reloads++;
    struct config *cfg =
        config_build(g->path, g->specs, g->nspecs, true, g->hooks.load, g->hooks.arg);
    loop_update_time(g->loop); /* name resolution may have blocked */
    if (cfg == NULL) {
        log_error("reload failed: out of memory; keeping the running configuration");
        g->reload_failures++;
        return -1;
    }
    if (cfg->nerrors > 0) {
        for (size_t i = 0; i < cfg->nerrors; i++) {
            log_error("%s", cfg->errors[i]);
        }
        log_error("reload failed: %zu errors; keeping the running configuration", cfg->nerrors);
        if (errors != NULL) {
            *errors = cfg;
        } else {
            config_free(cfg);
        }
        g->reload_failures++;
        return -1;
    }
    if (apply(g, cfg) != 0) {
        log_error("reload failed; keeping the running configuration");
        config_free(cfg);
        g->reload_failures++;
        return -1;
    }
    return 0;
}

int gateway_apply(struct gateway *g, struct config *cfg, char *err, size_t errlen)
{
    if (g->draining) {
        snprintf(err, errlen, "the gateway is stopping");
        return -ESHUTDOWN;
    }
    int rc = apply(g, cfg);
    loop_update_time(g->loop); /* binding and fsync may have taken a while */
    if (rc != 0) {
        snprintf(err, errlen, "%s", g->apply_error);
        return g->apply_errno != 0 ? g->apply_errno : -EIO;
    }
    return 0;
}

const struct config *gateway_config(const struct gateway *g)
{
    return g->cfg;
}

struct loop *gateway_loop(struct gateway *g)
{
    return g->loop;
}

static void map_stats(const struct mapping *m, struct gateway_map_stats *out)
{
    mapping_stats_sum(m->state, &out->st);
    out->open = mapping_active(m->state);
    out->last_ms = mapping_last_active(m->state);
    out->sessions = m->conf.proto->transport == SOCK_DGRAM
                        ? out->open
                        : __atomic_load_n(&m->state->sessions, __ATOMIC_RELAXED);
}

void gateway_all_stats(const struct gateway *g, struct gateway_map_stats *out)
{
    /* g->maps holds the running mappings of g->cfg in its order (apply). */
    size_t j = 0;
    for (size_t i = 0; i < g->cfg->nmaps; i++) {
        memset(&out[i], 0, sizeof(out[i]));
        if (map_conf_runs(&g->cfg->maps[i]) && j < g->nmaps) {
            assert(strcmp(g->maps[j]->conf.name, g->cfg->maps[i].name) == 0);
            map_stats(g->maps[j++], &out[i]);
        }
    }
}

bool gateway_mapping_stats(const struct gateway *g, const char *name, struct gateway_map_stats *out)
{
    const struct mapping *m = find_map(g->maps, g->nmaps, name);
    memset(out, 0, sizeof(*out));
    if (m == NULL) {
        return false;
    }
    map_stats(m, out);
    return true;
}

void gateway_get_status(struct gateway *g, struct gateway_status *st)
{
    call_all(g, w_snapshot);
    memset(st, 0, sizeof(*st));
    st->workers = g->nworkers;
    st->started_ms = g->started_ms;
    st->listeners = g->nls;
    for (unsigned i = 0; i < g->nworkers; i++) {
        const struct relay_snapshot *s = &g->snaps[i];
        st->conns += s->nconns;
        st->pipes_used += s->pipes_used;
        st->max_pipes += s->max_pipes;
        st->spare_pipes += s->spare_pipes;
        st->pipe_failures += s->pipe_failures;
    }
    st->reloads = g->reloads;
    st->reload_failures = g->reload_failures;
}

/* Appends an element of size sz to a worker's vector; NULL (and oom set) when out of memory. */
static void *collect_push(struct collect *c, size_t sz)
{
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 64;
        void *v = realloc(c->v, cap * sz);
        if (v == NULL) {
            c->oom = true;
            return NULL;
        }
        c->v = v;
        c->cap = cap;
    }
    return (char *)c->v + sz * c->n++;
}

static bool collect_wanted(const struct gateway *g, const struct mapping *m)
{
    return g->collect_name == NULL || (m != NULL && strcmp(m->conf.name, g->collect_name) == 0);
}

struct collect_arg {
    struct gateway *g;
    unsigned worker;
};

static void collect_conn(void *arg, const struct tcp_conn_info *ci)
{
    struct collect_arg *a = arg;
    if (!collect_wanted(a->g, ci->map)) {
        return;
    }
    struct gateway_conn *gc = collect_push(&a->g->collect[a->worker], sizeof(*gc));
    if (gc == NULL) {
        return;
    }
    gc->worker = a->worker;
    gc->id = ci->id;
    snprintf(gc->mapping, sizeof(gc->mapping), "%s", ci->map->conf.name);
    gc->proto = ci->map->conf.proto->name;
    gc->client = ci->client;
    gc->target = ci->target;
    gc->bytes[0] = ci->bytes[TCP_UP];
    gc->bytes[1] = ci->bytes[TCP_DOWN];
    gc->start_ms = ci->start_ms;
    gc->last_ms = ci->last_ms;
    gc->connected = ci->connected;
}

static void w_connections(struct worker *w, void *arg)
{
    struct gateway *g = arg;
    struct collect_arg a = {g, w->id};
    tcp_conn_each(relay_of(w), collect_conn, &a);
}

static void collect_session(void *arg, const struct proto_session_info *si)
{
    struct collect_arg *a = arg;
    if (!collect_wanted(a->g, si->map)) {
        return;
    }
    struct gateway_session *gs = collect_push(&a->g->collect[a->worker], sizeof(*gs));
    if (gs == NULL) {
        return;
    }
    gs->worker = a->worker;
    snprintf(gs->mapping, sizeof(gs->mapping), "%s", si->map != NULL ? si->map->conf.name : "");
    gs->si = *si;
    gs->si.map = NULL;
}

static void w_sessions(struct worker *w, void *arg)
{
    struct gateway *g = arg;
    struct collect_arg a = {g, w->id};
    for (size_t i = 0; i < g->nls; i++) {
        const struct lslot *s = &g->ls[i].slots[w->id];
        if (s->udp != NULL) {
            udp_listener_sessions(s->udp, collect_session, &a);
        }
    }
    struct relay_ctx *ctx = relay_of(w);
    for (const struct proto *const *p = protocols; *p != NULL; p++) {
        void *st = relay_proto_state(ctx, *p);
        if ((*p)->sessions != NULL && st != NULL) {
            (*p)->sessions(st, collect_session, &a);
        }
    }
}

/* Runs fn on every worker to fill g->collect, then joins the vectors into one. */
static ssize_t collect_all(struct gateway *g, worker_fn fn, const char *name, size_t sz, void **out)
{
    g->collect = calloc(g->nworkers, sizeof(*g->collect));
    if (g->collect == NULL) {
        return -ENOMEM;
    }
    g->collect_name = name;
    call_all(g, fn);
    size_t total = 0;
    bool oom = false;
    for (unsigned w = 0; w < g->nworkers; w++) {
        total += g->collect[w].n;
        oom |= g->collect[w].oom;
    }
    char *v = oom ? NULL : malloc(total * sz + 1);
    size_t off = 0;
    for (unsigned w = 0; w < g->nworkers; w++) {
        if (v != NULL && g->collect[w].n > 0) {
            memcpy(v + off, g->collect[w].v, g->collect[w].n * sz);
            off += g->collect[w].n * sz;
        }
        free(g->collect[w].v);
    }
    free(g->collect);
    g->collect = NULL;
    if (v == NULL) {
        return -ENOMEM;
    }
    *out = v;
    return (ssize_t)total;
}

ssize_t gateway_connections(struct gateway *g, const char *name, struct gateway_conn **out)
{
    return collect_all(g, w_connections, name, sizeof(**out), (void **)out);
}

ssize_t gateway_sessions(struct gateway *g, const char *name, struct gateway_session **out)
{
    return collect_all(g, w_sessions, name, sizeof(**out), (void **)out);
}

static void w_close_one(struct worker *w, void *arg)
{
    struct gateway *g = arg;
    g->closed = tcp_conn_close_id(relay_of(w), g->close_id, g->close_reason);
}

int gateway_close_connection(struct gateway *g, unsigned w, uint64_t id, const char *reason)
{
    if (w >= g->nworkers) {
        return -ENOENT;
    }
    g->close_id = id;
    g->close_reason = reason;
    g->closed = false;
    worker_post(&g->workers[w].w, w_close_one, g);
    worker_wait(&g->workers[w].w);
    return g->closed ? 0 : -ENOENT;
}

int gateway_run(struct gateway *g)
{
    int rc = loop_run(g->loop);
    if (rc < 0) {
        log_error("event loop: %s", strerror(-rc));
        return 1;
    }
    log_info("stopped");
    return 0;
}

void gateway_free(struct gateway *g)
{
    if (g == NULL) {
        return;
    }
    /* Workers that run are stopped first: they close their listeners and connections. */
    for (unsigned i = 0; i < g->nworkers; i++) {
        if (g->workers[i].w.started) {
            worker_post(&g->workers[i].w, w_stop, g);
        }
    }
    for (unsigned i = 0; i < g->nworkers; i++) {
        struct gw_worker *gw = &g->workers[i];
        if (gw->w.started) {
            worker_wait(&gw->w);
        }
        worker_fini(&gw->w); /* the thread has ended: its relay context is free to go */
        if (gw->relay_ready) {
            relay_ctx_fini(&gw->relay);
        }
    }
    free(g->workers);
    free(g->snaps);
    login_shutdown(); /* after the workers: no connection waits for a login check now */
    free_slots(g->ls, g->nls, g->nworkers);
    free_maps(g->maps, g->nmaps);
    config_free(g->cfg);
    if (g->sig.fd >= 0) {
        loop_io_del(g->loop, &g->sig);
        close(g->sig.fd);
    }
    if (g->idle.fd >= 0) {
        loop_io_del(g->loop, &g->idle);
        close(g->idle.fd);
    }
    loop_timer_stop(g->loop, &g->drain);
    loop_free(g->loop);
    free(g);
}
