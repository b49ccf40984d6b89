#include "gateway.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "log.h"
#include "loop.h"
#include "mapping.h"
#include "relay.h"
#include "relay_tcp.h"
#include "relay_udp.h"
#include "sock.h"

#define LISTEN_BACKLOG 1024

/* One listening socket: one port of one mapping. */
struct listener {
    enum map_proto proto;
    struct sockaddr_storage addr; /* with the port */
    struct mapping *map;          /* borrowed: the relay listener holds the reference */
    struct tcp_listener *tcp;
    struct udp_listener *udp;
    int fd;    /* during apply: a socket bound but not yet handed to a relay listener */
    bool keep; /* during apply: still needed */
};

struct gateway {
    struct loop *loop;
    struct relay_ctx ctx;
    struct config *cfg;    /* the current configuration snapshot, replaced by reload */
    struct mapping **maps; /* one per enabled mapping of cfg */
    size_t nmaps;
    struct listener *ls;
    size_t nls;
    const char *path;
    char *const *specs;
    int nspecs;
    struct loop_io sig;
    struct loop_timer drain;
    bool draining;
};

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

static struct mapping *find_map(struct mapping **maps, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(maps[i]->conf.name, name) == 0) {
            return maps[i];
        }
    }
    return NULL;
}

static void listener_close(struct listener *l, const char *reason)
{
    tcp_listener_free(l->tcp);
    udp_listener_free(l->udp, reason);
    if (l->fd >= 0) {
        close(l->fd);
    }
    l->tcp = NULL;
    l->udp = NULL;
    l->fd = -1;
}

static void free_maps(struct mapping **maps, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        mapping_unref(maps[i]);
    }
    free(maps);
}

/*
 * Makes cfg the running configuration. All-or-nothing: on any failure (logged) the gateway is
 * as it was and cfg is not taken. On success the gateway owns cfg.
 */
static int apply(struct gateway *g, struct config *cfg)
{
    struct mapping **maps = calloc(cfg->nmaps + 1, sizeof(*maps));
    size_t nmaps = 0, nls = 0, cap = 0;
    struct listener *ls = NULL;
    unsigned added = 0, changed = 0, same = 0, removed = 0;
    if (maps == NULL) {
        goto nomem;
    }
    for (size_t i = 0; i < g->nls; i++) {
        g->ls[i].keep = false;
    }
    for (size_t i = 0; i < cfg->nmaps; i++) {
        const struct map_conf *mc = &cfg->maps[i];
        if (!mc->enabled) {
            continue;
        }
        struct mapping *old = find_map(g->maps, g->nmaps, mc->name);
        struct mapping *m;
        if (old != NULL && map_conf_equal(&old->conf, mc)) {
            m = mapping_ref(old);
            same++;
        } else {
            m = mapping_new(mc, old ? old->state : NULL);
            if (m == NULL) {
                goto nomem;
            }
            old ? changed++ : added++;
        }
        maps[nmaps++] = m;
        for (unsigned port = mc->listen_lo; port <= mc->listen_hi; port++) {
            if (nls == cap) {
                cap = cap ? cap * 2 : 16;
                struct listener *v = realloc(ls, cap * sizeof(*v));
                if (v == NULL) {
                    goto nomem;
                }
                ls = v;
            }
            struct listener *l = &ls[nls];
            memset(l, 0, sizeof(*l));
            l->proto = mc->proto;
            l->addr = mc->listen;
            addr_set_port(&l->addr, (uint16_t)port);
            l->map = m;
            l->fd = -1;
            for (size_t j = 0; j < g->nls; j++) {
                struct listener *o = &g->ls[j];
                if (!o->keep && o->proto == l->proto && addr_equal(&o->addr, &l->addr)) {
                    o->keep = true;
                    l->tcp = o->tcp;
                    l->udp = o->udp;
                    break;
                }
            }
            if (l->tcp == NULL && l->udp == NULL) {
                int fd = mc->proto == MAP_TCP ? sock_listen_tcp(&l->addr, LISTEN_BACKLOG)
                                              : sock_bind_udp(&l->addr, addr_is_any(&l->addr));
                if (fd < 0) {
                    char as[ADDR_STRLEN];
                    log_error("map %s: cannot listen on %s %s: %s%s", mc->name,
                              map_proto_name(mc->proto), addr_format(&l->addr, as, sizeof(as)),
                              strerror(-fd),
                              fd == -EADDRINUSE ? " (another program, or another mapping, uses "
                                                  "this port)"
                              : fd == -EADDRNOTAVAIL ? " (no interface has this address)"
                              : fd == -EACCES        ? " (ports below 1024 need root or "
                                                       "CAP_NET_BIND_SERVICE)"
                                                     : "");
                    goto fail;
                }
                l->fd = fd;
            }
            nls++;
        }
    }

    /* Commit: nothing below can fail in a way that needs undoing. */
    for (size_t j = 0; j < g->nls; j++) {
        if (!g->ls[j].keep) {
            listener_close(&g->ls[j], "its mapping was removed or moved");
        }
    }
    for (size_t i = 0; i < g->nmaps; i++) {
        if (find_map(maps, nmaps, g->maps[i]->conf.name) == NULL) {
            removed++;
            log_info("map %s: removed; its established connections go on", g->maps[i]->conf.name);
        }
    }
    for (size_t i = 0; i < nls; i++) {
        struct listener *l = &ls[i];
        char as[ADDR_STRLEN], ts[ADDR_STRLEN];
        if (l->tcp != NULL) {
            tcp_listener_set_mapping(l->tcp, l->map);
        } else if (l->udp != NULL) {
            udp_listener_set_mapping(l->udp, l->map);
        } else {
            int fd = l->fd;
            l->fd = -1;
            uint16_t port = addr_port(&l->addr);
            if (l->proto == MAP_TCP) {
                l->tcp = tcp_listener_new(&g->ctx, fd, l->map, port);
            } else {
                l->udp = udp_listener_new(&g->ctx, fd, l->map, port);
            }
            if (l->tcp == NULL && l->udp == NULL) {
                log_error("map %s: out of memory setting up %s; this port is not served",
                          l->map->conf.name, addr_format(&l->addr, as, sizeof(as)));
                continue;
            }
            struct sockaddr_storage t;
            mapping_target(l->map, port, &t);
            log_info("map %s: listening on %s %s -> %s", l->map->conf.name,
                     map_proto_name(l->proto), addr_format(&l->addr, as, sizeof(as)),
                     addr_format(&t, ts, sizeof(ts)));
        }
    }
    free(g->ls);
    g->ls = ls;
    g->nls = nls;
    free_maps(g->maps, g->nmaps);
    g->maps = maps;
    g->nmaps = nmaps;
    config_free(g->cfg);
    g->cfg = cfg;
    g->ctx.splice = cfg->gw.splice;
    g->ctx.max_pipes = cfg->gw.max_pipes != 0 ? cfg->gw.max_pipes : default_max_pipes();
    /* The outcome is logged at the level in force when the reload was asked for. */
    log_info("configuration applied: %u mappings added, %u changed, %u removed, %u unchanged; %zu "
             "listening sockets",
             added, changed, removed, same, nls);
    log_set_level(cfg->gw.log_level);
    return 0;

nomem:
    log_error("out of memory applying the configuration");
fail:
    for (size_t i = 0; i < nls; i++) {
        if (ls[i].fd >= 0) {
            close(ls[i].fd);
        }
    }
    free(ls);
    free_maps(maps, nmaps);
    for (size_t j = 0; j < g->nls; j++) {
        g->ls[j].keep = false;
    }
    return -1;
}

static void stop_now(struct relay_ctx *ctx)
{
    struct gateway *g = container_of(ctx, struct gateway, ctx);
    loop_stop(g->loop);
}

static void drain_expired(struct loop_timer *t)
{
    struct gateway *g = container_of(t, struct gateway, drain);
    log_warn("drain-timeout reached: closing %zu connections", g->ctx.nconns);
    tcp_close_all(&g->ctx, "gateway stopping: drain-timeout reached");
    loop_stop(g->loop);
}

static void begin_drain(struct gateway *g, const char *signame)
{
    if (g->draining) {
        log_warn("%s again: closing %zu connections now", signame, g->ctx.nconns);
        tcp_close_all(&g->ctx, "gateway stopping: second signal");
        loop_stop(g->loop);
        return;
    }
    g->draining = true;
    for (size_t i = 0; i < g->nls; i++) {
        listener_close(&g->ls[i], "gateway stopping");
    }
    g->nls = 0;
    if (g->ctx.nconns == 0) {
        log_info("%s: stopping; no open connections", signame);
        loop_stop(g->loop);
        return;
    }
    uint32_t ms = g->cfg->gw.drain_timeout_ms;
    log_info("%s: stopped accepting; waiting up to %ums for %zu connections to finish", signame, ms,
             g->ctx.nconns);
    g->ctx.on_idle = stop_now;
    loop_timer_start(g->loop, &g->drain, ms);
}

/* One line of counters per running mapping (SIGUSR1). Bytes and datagrams count ended
 * connections and sessions; "open" is what runs now. */
static void log_stats(struct gateway *g)
{
    log_info("relay: %zu tcp connections open, splice %s, %zu pipes in use (at most %zu), %zu "
             "spare, %llu reads copied for want of a pipe",
             g->ctx.nconns, g->ctx.splice ? "on" : "off", g->ctx.pipes_used, g->ctx.max_pipes,
             g->ctx.pipe_pool_len, (unsigned long long)g->ctx.pipe_failures);
    for (size_t i = 0; i < g->nmaps; i++) {
        const struct mapping *m = g->maps[i];
        const struct map_stats *st = &m->state->stats;
        log_info("map %s: stats: %u open, %llu accepted, %llu refused by allow/deny, %llu refused "
                 "by limits, %llu connect failures, %llu evicted, %llu bytes to targets, %llu "
                 "bytes to clients, %llu bytes spliced, %llu datagrams to targets, %llu datagrams "
                 "to clients, %llu datagrams dropped",
                 m->conf.name, m->state->active, (unsigned long long)st->accepted,
                 (unsigned long long)st->refused_acl, (unsigned long long)st->refused_limit,
                 (unsigned long long)st->connect_failed, (unsigned long long)st->evicted,
                 (unsigned long long)st->bytes_in, (unsigned long long)st->bytes_out,
                 (unsigned long long)st->bytes_spliced, (unsigned long long)st->dgrams_in,
                 (unsigned long long)st->dgrams_out, (unsigned long long)st->dgrams_dropped);
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
                gateway_reload(g);
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

struct gateway *gateway_new(const char *path, char *const *specs, int nspecs)
{
    struct gateway *g = calloc(1, sizeof(*g));
    if (g == NULL) {
        log_error("out of memory");
        return NULL;
    }
    g->path = path;
    g->specs = specs;
    g->nspecs = nspecs;
    g->sig.fd = -1;
    g->loop = loop_new();
    if (g->loop == NULL) {
        log_error("epoll_create1: %s", strerror(errno));
        free(g);
        return NULL;
    }
    relay_ctx_init(&g->ctx, g->loop);
    loop_timer_init(&g->drain, drain_expired);
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
    signal(SIGPIPE, SIG_IGN);
    return g;
}

int gateway_start(struct gateway *g, struct config *cfg)
{
    log_set_level(cfg->gw.log_level);
    return apply(g, cfg);
}

int gateway_reload(struct gateway *g)
{
    log_info("reloading the configuration");
    struct config *cfg = config_build(g->path, g->specs, g->nspecs, true);
    loop_update_time(g->loop); /* name resolution may have blocked */
    if (cfg == NULL) {
        log_error("reload failed: out of memory; keeping the running configuration");
        return -1;
    }
    if (cfg->nerrors > 0) {
        for (size_t i = 0; i < cfg->nerrors; i++) {
            log_error("%s", cfg->errors[i]);
        }
        log_error("reload failed: %zu errors; keeping the running configuration", cfg->nerrors);
        config_free(cfg);
        return -1;
    }
    if (apply(g, cfg) != 0) {
        log_error("reload failed; keeping the running configuration");
        config_free(cfg);
        return -1;
    }
    return 0;
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
    for (size_t i = 0; i < g->nls; i++) {
        listener_close(&g->ls[i], "gateway stopping");
    }
    tcp_close_all(&g->ctx, "gateway stopping");
    free(g->ls);
    free_maps(g->maps, g->nmaps);
    config_free(g->cfg);
    if (g->sig.fd >= 0) {
        loop_io_del(g->loop, &g->sig);
        close(g->sig.fd);
    }
    loop_timer_stop(g->loop, &g->drain);
    relay_ctx_fini(&g->ctx);
    loop_free(g->loop);
    free(g);
}
