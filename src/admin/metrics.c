/*
 * metrics: GET /metrics, the Prometheus text exposition format (version 0.0.4): each metric
 * family once, with its HELP and TYPE, then a sample per mapping labelled with its name and
 * protocol. Counters end in _total. Mapping names are letters, digits, '.', '_' and '-', so
 * label values need no escaping.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "admin/api.h"

struct family {
    const char *name, *type, *help;
};

/* Where a sample of a family comes from. */
enum field {
    F_OPEN,
    F_SESSIONS,
    F_ACCEPTED,
    F_REFUSED_ACL,
    F_REFUSED_LIMIT,
    F_CONNECT_FAILED,
    F_BYTES_IN,
    F_BYTES_OUT,
    F_BYTES_SPLICED,
    F_DGRAMS_IN,
    F_DGRAMS_OUT,
    F_DGRAMS_DROPPED,
    F_EVICTED,
};

static const struct {
    struct family f;
    enum field field;
    const char *label; /* an extra label, or NULL */
} map_metrics[] = {
    {{"portgate_mapping_open", "gauge", "Open TCP connections (UDP: sessions) of the mapping."},
     F_OPEN,
     NULL},
    {{"portgate_mapping_sessions", "gauge",
      "Open sessions as the protocol counts them (UDP clients, RTSP sessions holding RTP ports)."},
     F_SESSIONS,
     NULL},
    {{"portgate_mapping_accepted_total", "counter", "TCP connections and UDP sessions admitted."},
     F_ACCEPTED,
     NULL},
    {{"portgate_mapping_refused_total", "counter",
      "Clients refused, by reason: acl (allow/deny, or a peer not in trusted-proxies) or limit "
      "(max-conns, max-conns-per-ip, max-sessions)."},
     F_REFUSED_ACL,
     "reason=\"acl\""},
    {{NULL, NULL, NULL}, F_REFUSED_LIMIT, "reason=\"limit\""},
    {{"portgate_mapping_connect_failures_total", "counter",
      "Connections whose target could not be reached."},
     F_CONNECT_FAILED,
     NULL},
    {{"portgate_mapping_bytes_total", "counter",
      "Bytes relayed, by direction: in (client to target) and out (target to client); counted "
      "when a connection ends."},
     F_BYTES_IN,
     "direction=\"in\""},
    {{NULL, NULL, NULL}, F_BYTES_OUT, "direction=\"out\""},
    {{"portgate_mapping_spliced_bytes_total", "counter",
      "Of the bytes relayed, those moved by splice() without a copy."},
     F_BYTES_SPLICED,
     NULL},
    {{"portgate_mapping_datagrams_total", "counter", "UDP datagrams relayed, by direction."},
     F_DGRAMS_IN,
     "direction=\"in\""},
    {{NULL, NULL, NULL}, F_DGRAMS_OUT, "direction=\"out\""},
    {{"portgate_mapping_datagrams_dropped_total", "counter",
      "UDP datagrams dropped for want of a session, a socket or memory."},
     F_DGRAMS_DROPPED,
     NULL},
    {{"portgate_mapping_evicted_total", "counter",
      "UDP sessions evicted for new clients at max-sessions."},
     F_EVICTED,
     NULL},
};

static uint64_t value(const struct gateway_map_stats *s, enum field f)
{
    switch (f) {
    case F_OPEN:
        return s->open;
    case F_SESSIONS:
        return s->sessions;
    case F_ACCEPTED:
        return s->st.accepted;
    case F_REFUSED_ACL:
        return s->st.refused_acl;
    case F_REFUSED_LIMIT:
        return s->st.refused_limit;
    case F_CONNECT_FAILED:
        return s->st.connect_failed;
    case F_BYTES_IN:
        return s->st.bytes_in;
    case F_BYTES_OUT:
        return s->st.bytes_out;
    case F_BYTES_SPLICED:
        return s->st.bytes_spliced;
    case F_DGRAMS_IN:
        return s->st.dgrams_in;
    case F_DGRAMS_OUT:
        return s->st.dgrams_out;
    case F_DGRAMS_DROPPED:
        return s->st.dgrams_dropped;
    case F_EVICTED:
        return s->st.evicted;
    }
    return 0;
}

static void family(FILE *out, const char *name, const char *type, const char *help)
{
    fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A protocol's counter "rtsp sessions" as the family portgate_rtsp_sessions_total. */
static void proto_metric_name(const char *stat, char *buf, size_t len)
{
    int n = snprintf(buf, len, "portgate_%s_total", stat);
    for (int i = 0; i < n && (size_t)i < len; i++) {
        if (buf[i] == ' ' || buf[i] == '-') {
            buf[i] = '_';
        }
    }
}

char *api_metrics(struct gateway *g, const struct api_auth_stats *auth)
{
    const struct config *run = gateway_config(g);
    struct gateway_map_stats *stats = calloc(run->nmaps + 1, sizeof(*stats));
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    if (stats == NULL || out == NULL) {
        free(stats);
        if (out != NULL) {
            fclose(out);
            free(text);
        }
        return NULL;
    }
    gateway_all_stats(g, stats);
    for (size_t k = 0; k < sizeof(map_metrics) / sizeof(map_metrics[0]); k++) {
        if (map_metrics[k].f.name != NULL) {
            family(out, map_metrics[k].f.name, map_metrics[k].f.type, map_metrics[k].f.help);
        }
        size_t base = k;
        while (map_metrics[base].f.name == NULL) {
            base--; /* a second label value of the family above */
        }
        for (size_t i = 0; i < run->nmaps; i++) {
            const struct map_conf *m = &run->maps[i];
            fprintf(out, "%s{mapping=\"%s\",proto=\"%s\"%s%s} %llu\n", map_metrics[base].f.name,
                    m->name, m->proto->name, map_metrics[k].label ? "," : "",
                    map_metrics[k].label ? map_metrics[k].label : "",
                    (unsigned long long)value(&stats[i], map_metrics[k].field));
        }
    }
    family(out, "portgate_mapping_up", "gauge",
           "1 if the mapping listens; 0 if it is disabled, or failed (its status says why).");
    for (size_t i = 0; i < run->nmaps; i++) {
        fprintf(out, "portgate_mapping_up{mapping=\"%s\",proto=\"%s\"} %d\n", run->maps[i].name,
                run->maps[i].proto->name, map_conf_runs(&run->maps[i]) ? 1 : 0);
    }
    /* Each protocol's own counters, for its mappings. */
    for (size_t i = 0; i < run->nmaps; i++) {
        const struct proto *p = run->maps[i].proto;
        bool first = true;
        for (size_t j = 0; j < i && first; j++) {
            first = run->maps[j].proto != p;
        }
        for (size_t k = 0; first && p->stat_names != NULL && p->stat_names[k] != NULL; k++) {
            char name[96];
            proto_metric_name(p->stat_names[k], name, sizeof(name));
            char help[160];
            snprintf(help, sizeof(help), "%s (%s mappings).", p->stat_names[k], p->name);
            family(out, name, "counter", help);
            for (size_t j = i; j < run->nmaps; j++) {
                if (run->maps[j].proto == p) {
                    fprintf(out, "%s{mapping=\"%s\",proto=\"%s\"} %llu\n", name, run->maps[j].name,
                            p->name, (unsigned long long)stats[j].st.proto[k]);
                }
            }
        }
    }
    free(stats);

    struct gateway_status st;
    gateway_get_status(g, &st);
    struct rlimit rl = {0};
    getrlimit(RLIMIT_NOFILE, &rl);
    const struct {
        const char *name, *type, *help;
        unsigned long long v;
    } proc[] = {
        {"portgate_workers", "gauge", "Worker threads relaying.", st.workers},
        {"portgate_open_fds", "gauge", "Open file descriptors.", api_open_fds()},
        {"portgate_max_fds", "gauge", "The open files limit.", (unsigned long long)rl.rlim_cur},
        {"portgate_tcp_connections", "gauge", "Open TCP connections, all mappings.", st.conns},
        {"portgate_listening_ports", "gauge", "Listening ports, all mappings.", st.listeners},
        {"portgate_pipes", "gauge", "Pipes in use by splice().", st.pipes_used},
        {"portgate_pipes_max", "gauge", "Pipes in use at most (max-pipes).", st.max_pipes},
        {"portgate_pipe_shortage_total", "counter", "Reads copied for want of a pipe.",
         st.pipe_failures},
        {"portgate_config_revision", "gauge", "The running configuration's revision.",
         (unsigned long long)run->revision},
        {"portgate_mappings", "gauge", "Mappings configured, enabled or not.",
         (unsigned long long)run->nmaps},
        {"portgate_reloads_total", "counter", "Reloads (SIGHUP) asked for.", st.reloads},
        {"portgate_reload_failures_total", "counter",
         "Reloads that failed; the running configuration was kept.", st.reload_failures},
    };
    for (size_t k = 0; k < sizeof(proc) / sizeof(proc[0]); k++) {
        family(out, proc[k].name, proc[k].type, proc[k].help);
        fprintf(out, "%s %llu\n", proc[k].name, proc[k].v);
    }
    /* The admin page's logins and second factors (the HTTP listener's; the unix socket has
     * none). */
    if (auth != NULL) {
        family(out, "portgate_admin_logins_total", "counter",
               "Logins to the admin interface, by result: success (a session made) or failure (a "
               "wrong user, password or second-factor code).");
        fprintf(out, "portgate_admin_logins_total{result=\"success\"} %llu\n",
                (unsigned long long)auth->logins);
        fprintf(out, "portgate_admin_logins_total{result=\"failure\"} %llu\n",
                (unsigned long long)auth->login_failures);
        const struct {
            const char *name, *help;
            uint64_t v;
        } tfa[] = {
            {"portgate_admin_totp_enrolled_total", "Second factors (TOTP) turned on.",
             auth->totp_enrolled},
            {"portgate_admin_totp_disabled_total", "Second factors (TOTP) turned off.",
             auth->totp_disabled},
            {"portgate_admin_totp_wrong_codes_total",
             "Wrong or replayed second-factor codes: at a login, an enrolment or a disable.",
             auth->totp_wrong_codes},
            {"portgate_admin_recovery_codes_used_total", "Recovery codes used up.",
             auth->recovery_used},
        };
        for (size_t k = 0; k < sizeof(tfa) / sizeof(tfa[0]); k++) {
            family(out, tfa[k].name, "counter", tfa[k].help);
            fprintf(out, "%s %llu\n", tfa[k].name, (unsigned long long)tfa[k].v);
        }
    }
    family(out, "portgate_build_info", "gauge", "Always 1, labelled with the version.");
    fprintf(out, "portgate_build_info{version=\"%s\"} 1\n", PORTGATE_VERSION);
    if (fclose(out) != 0) {
        free(text);
        return NULL;
    }
    return text;
}
