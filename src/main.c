/*
 * portgate: the command line. Parses arguments and dispatches to run or check.
 * Exit status: 0 success, 1 configuration or start-up error, 2 usage error.
 */
#include <getopt.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/admin.h"
#include "admin/cli.h"
#include "admin/state.h"
#include "core/log.h"
#include "gateway/config.h"
#include "gateway/gateway.h"
#include "proto/protocols.h"
#include "tls/tls_cert.h"

static const char usage_main[] =
    "Usage: portgate COMMAND [OPTIONS]\n"
    "\n"
    "portgate forwards TCP and UDP ports of this host to devices on a private network.\n"
    "\n"
    "Commands:\n"
    "  run      run the gateway in the foreground, logging to stderr\n"
    "  check    validate the configuration without binding anything\n"
    "  map      list, show, add, delete, enable or disable the running gateway's mappings\n"
    "  status   the running gateway's state\n"
    "  conns    its open TCP connections (--kill ID ends one)\n"
    "  passwd   set a password for the admin interface's web page\n"
    "  token    create, list or revoke API tokens for the admin interface\n"
    "  cert     make a self-signed certificate for a tls mapping\n"
    "\n"
    "Options:\n"
    "  -h, --help       show this help (portgate COMMAND --help shows a command's)\n"
    "  -V, --version    show the version\n"
    "\n"
    "Example:\n"
    "  portgate run --map tcp:0.0.0.0:8080=192.0.2.10:80\n"
    "  portgate check -c /etc/portgate/portgate.conf\n";

static const char usage_options[] =
    "  -c, --config FILE   read mappings and settings from FILE (INI; see docs/configuration.md)\n"
    "  -m, --map SPEC      add a mapping; may be repeated, and combined with --config\n"
    "  -h, --help          show this help\n"
    "\n"
    "SPEC is PROTO:LISTEN=TARGET[,KEY=VALUE...]\n";

static const char usage_spec[] =
    "  LISTEN   ADDRESS:PORT or ADDRESS:FIRST-LAST; IPv6 in brackets: [::]:80\n"
    "  TARGET   HOST:PORT or HOST:FIRST-LAST (a range as long as LISTEN's, or one port);\n"
    "           HOST is an address or a name resolved at start and at reload\n"
    "  KEY      any mapping key of the config file: allow, deny, max-conns, max-conns-per-ip,\n"
    "           max-sessions, connect-timeout, send-proxy, accept-proxy, trusted-proxies,\n"
    "           idle-timeout, enabled, those of its protocol (below); and name (default cli-N)\n";

static const char usage_examples[] =
    "\n"
    "Examples:\n"
    "  tcp:0.0.0.0:8080=192.0.2.10:80\n"
    "  udp:[::]:5000=192.0.2.10:5000\n"
    "  tcp:0.0.0.0:6000-6009=192.0.2.10:7000-7009\n"
    "  tcp:[2001:db8::1]:80=192.0.2.10:80,allow=198.51.100.0/24,max-conns=100\n"
    "  rtsp:0.0.0.0:554=192.0.2.10:554,rtp-ports=16384-16483\n"
    "  tls:0.0.0.0:8443=192.0.2.10:80,cert=/etc/portgate/cam.crt,key=/etc/portgate/cam.key\n";

/* A command's help: its text, then the SPEC grammar with the protocols of the table. */
static void print_usage(const char *usage)
{
    char names[128];
    printf("%s%s  PROTO    %s\n%s", usage, usage_options,
           protocols_list(names, sizeof(names), NULL, NULL, "or"), usage_spec);
    for (const struct proto *const *p = protocols; *p != NULL; p++) {
        const char *const *k = (*p)->keys;
        if (k == NULL || *k == NULL) {
            continue;
        }
        printf("           %s:", (*p)->name);
        for (; *k != NULL; k++) {
            printf(" %s", *k);
        }
        printf("\n");
    }
    printf("%s", usage_examples);
}

static const char usage_run[] =
    "Usage: portgate run [-c FILE] [--map SPEC]...\n"
    "\n"
    "Runs the gateway in the foreground. Logs go to stderr (with syslog priorities when stderr\n"
    "is the systemd journal). Signals: SIGHUP reloads the configuration (an invalid one is\n"
    "reported and the running one kept); SIGTERM or SIGINT stop accepting and let open\n"
    "connections finish for up to drain-timeout (a second signal ends them at once); SIGUSR1\n"
    "logs each mapping's counters.\n"
    "\n"
    "Options:\n";

static const char usage_check[] =
    "Usage: portgate check [-c FILE] [--map SPEC]...\n"
    "\n"
    "Validates the configuration without binding anything. Prints \"ok\" and the mapping table\n"
    "on stdout and exits 0, or prints every error as FILE:LINE: message on stderr and exits 1.\n"
    "Target host names are resolved, as at start.\n"
    "\n"
    "Options:\n";

struct args {
    const char *config;
    char **specs;
    int nspecs;
};

/* Returns 0, 1 if help was printed, or 2 on a usage error (reported). */
static int parse_args(const char *cmd, const char *usage, int argc, char **argv, struct args *a)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"map", required_argument, NULL, 'm'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    a->specs = calloc((size_t)argc + 1, sizeof(*a->specs));
    if (a->specs == NULL) {
        fprintf(stderr, "portgate: out of memory\n");
        return 2;
    }
    opterr = 0;
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, ":c:m:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            if (a->config != NULL) {
                fprintf(stderr, "portgate %s: -c given twice\n", cmd);
                return 2;
            }
            a->config = optarg;
            break;
        case 'm':
            a->specs[a->nspecs++] = optarg;
            break;
        case 'h':
            print_usage(usage);
            return 1;
        case ':':
            fprintf(stderr, "portgate %s: %s needs a value (see portgate %s --help)\n", cmd,
                    argv[optind - 1], cmd);
            return 2;
        default:
            fprintf(stderr, "portgate %s: unknown option %s (see portgate %s --help)\n", cmd,
                    argv[optind - 1], cmd);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "portgate %s: unexpected argument \"%s\" (see portgate %s --help)\n", cmd,
                argv[optind], cmd);
        return 2;
    }
    if (a->config == NULL && a->nspecs == 0) {
        fprintf(stderr,
                "portgate %s: no mappings: give a config file (-c FILE) or mappings (--map SPEC); "
                "see portgate %s --help\n",
                cmd, cmd);
        return 2;
    }
    return 0;
}

static void print_errors(const struct config *c)
{
    for (size_t i = 0; i < c->nerrors; i++) {
        fprintf(stderr, "%s\n", c->errors[i]);
    }
}

static void print_warning(void *arg, const char *msg)
{
    (void)arg;
    fprintf(stderr, "warning: %s\n", msg);
}

static int cmd_check(int argc, char **argv)
{
    struct args a = {0};
    int rc = parse_args("check", usage_check, argc, argv, &a);
    if (rc != 0) {
        free(a.specs);
        return rc == 1 ? 0 : rc;
    }
    struct config *c = config_build(a.config, a.specs, a.nspecs, true, state_load, NULL);
    if (c == NULL) {
        fprintf(stderr, "portgate: out of memory\n");
        free(a.specs);
        return 1;
    }
    if (c->nerrors > 0) {
        print_errors(c);
        fprintf(stderr, "%zu error%s\n", c->nerrors, c->nerrors == 1 ? "" : "s");
        rc = 1;
    } else {
        printf("ok\n");
        config_print(c, stdout);
        config_warnings(c, print_warning, NULL);
        /* What run would keep without running it: mappings of the admin interface. */
        for (size_t i = 0; i < c->nmaps; i++) {
            if (c->maps[i].enabled && c->maps[i].failed[0] != '\0') {
                fprintf(stderr, "warning: %s: [map %s] would not run: %s\n", c->maps[i].source,
                        c->maps[i].name, c->maps[i].failed);
            }
        }
    }
    config_free(c);
    free(a.specs);
    return rc;
}

static int cmd_run(int argc, char **argv)
{
    struct args a = {0};
    int rc = parse_args("run", usage_run, argc, argv, &a);
    if (rc != 0) {
        free(a.specs);
        return rc == 1 ? 0 : rc;
    }
    struct config *c = config_build(a.config, a.specs, a.nspecs, true, state_load, NULL);
    if (c == NULL || c->nerrors > 0) {
        if (c != NULL) {
            print_errors(c);
        }
        fprintf(stderr, "portgate: not started: fix the configuration (portgate check shows the "
                        "same errors)\n");
        config_free(c);
        free(a.specs);
        return 1;
    }
    log_info("portgate %s starting", PORTGATE_VERSION);
    struct admin *adm = admin_new();
    struct gateway *g =
        adm != NULL ? gateway_new(a.config, a.specs, a.nspecs, admin_hooks(adm)) : NULL;
    if (g == NULL) {
        config_free(c);
        admin_free(adm);
        free(a.specs);
        return 1;
    }
    if (gateway_start(g, c) != 0) {
        log_error("not started: no listening socket was left open");
        config_free(c);
        gateway_free(g);
        admin_free(adm);
        free(a.specs);
        return 1;
    }
    if (admin_start(adm, g) != 0) {
        log_error("not started: the admin interface could not start (set admin and admin-socket "
                  "in [gateway], or off)");
        admin_free(adm);
        gateway_free(g);
        free(a.specs);
        return 1;
    }
    rc = gateway_run(g);
    admin_free(adm);
    gateway_free(g);
    free(a.specs);
    return rc;
}

int main(int argc, char **argv)
{
    /* Random numbers and hashes (tokens, sessions, table keys) need it; it fails only if the
     * system has no source of randomness. */
    if (sodium_init() < 0) {
        fprintf(stderr, "portgate: libsodium cannot start (no source of randomness?)\n");
        return 1;
    }
    if (argc < 2) {
        fputs(usage_main, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
        fputs(usage_main, stdout);
        return 0;
    }
    if (strcmp(cmd, "-V") == 0 || strcmp(cmd, "--version") == 0) {
        printf("portgate %s\n", PORTGATE_VERSION);
        return 0;
    }
    if (strcmp(cmd, "run") == 0) {
        return cmd_run(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "check") == 0) {
        return cmd_check(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "passwd") == 0) {
        return cli_passwd(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "token") == 0) {
        return cli_token(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "map") == 0) {
        return cli_map(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "status") == 0) {
        return cli_status(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "conns") == 0) {
        return cli_conns(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "cert") == 0) {
        return tls_cert_command(argc - 1, argv + 1);
    }
    fprintf(stderr,
            "portgate: unknown command \"%s\" (commands: run, check, map, status, conns, passwd, "
            "token, cert; see portgate --help)\n",
            cmd);
    return 2;
}
