#include "admin/cli.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "admin/client.h"
#include "admin/mapjson.h"
#include "auth/users.h"
#include "forward/proto.h"
#include "gateway/config.h"

/* The [gateway] settings of the config file given with -c, or of the default one if it exists,
 * or the defaults. Returns 0, or 1 with the file's errors printed. */
static int gateway_settings(const char *path, struct config_gateway *gw)
{
    struct config *c = config_new();
    if (c == NULL) {
        fprintf(stderr, "portgate: out of memory\n");
        return 1;
    }
    if (path == NULL && access(CLI_DEFAULT_CONFIG, F_OK) == 0) {
        path = CLI_DEFAULT_CONFIG;
    }
    if (path != NULL) {
        config_load_file(c, path);
    } else {
        snprintf(c->gw.users_file, sizeof(c->gw.users_file), "%s", CONFIG_USERS_FILE);
    }
    int rc = 0;
    if (c->nerrors > 0) {
        for (size_t i = 0; i < c->nerrors; i++) {
            fprintf(stderr, "%s\n", c->errors[i]);
        }
        rc = 1;
    }
    *gw = c->gw;
    config_free(c);
    return rc;
}

/* Reads a line from stdin without its line end into buf. Returns 0, or -1 at EOF or if the line
 * does not fit. */
static int read_line(char *buf, size_t len)
{
    if (fgets(buf, (int)len, stdin) == NULL) {
        return -1;
    }
    size_t n = strcspn(buf, "\r\n");
    if (buf[n] == '\0' && n == len - 1) {
        return -1; /* no line end within len: too long */
    }
    buf[n] = '\0';
    return 0;
}

/* Asks for a password on the terminal, without echo. Returns 0 or -1. */
static int prompt(const char *what, char *buf, size_t len)
{
    struct termios old, quiet;
    fprintf(stderr, "%s", what);
    fflush(stderr);
    if (tcgetattr(STDIN_FILENO, &old) != 0) {
        return -1;
    }
    quiet = old;
    quiet.c_lflag &= ~(tcflag_t)ECHO;
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    int rc = read_line(buf, len);
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
    fprintf(stderr, "\n");
    return rc;
}

static const char usage_passwd[] =
    "Usage: portgate passwd [-c FILE] [--password-stdin] [--digest | --no-digest] [--no-totp]\n"
    "                       USER\n"
    "\n"
    "Sets USER's password for the admin interface's web page and the gateway's login (adding\n"
    "the user if new), in the users file that FILE names (users-file in [gateway]; without -c,\n"
    "the one of " CLI_DEFAULT_CONFIG " if it exists, else " CONFIG_USERS_FILE ").\n"
    "On a terminal it asks for the password twice; otherwise, or with --password-stdin, it reads\n"
    "one line from standard input. A password is 8 to 1024 characters. A running gateway sees\n"
    "the change at once.\n"
    "\n"
    "  --digest     also keep the keys a player's Digest login checks against (rtsps mappings\n"
    "               with auth = login): MD5 and SHA-256 of USER:" USERS_DIGEST_REALM
    ":PASSWORD, which\n"
    "               are as good as the password to whoever reads the file, and quick to\n"
    "               guess from: only for the users who play streams\n"
    "  --no-digest  remove them\n"
    "Without either, a user who has the keys gets them for the new password.\n"
    "  --no-totp    also turn off the user's second factor (TOTP and its recovery codes), for\n"
    "               a user who lost them; the user turns it on again from the web page\n"
    "A second factor is otherwise kept.\n";

int cli_passwd(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"password-stdin", no_argument, NULL, 's'},
                                         {"digest", no_argument, NULL, 'd'},
                                         {"no-digest", no_argument, NULL, 'n'},
                                         {"no-totp", no_argument, NULL, 't'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *config = NULL;
    bool from_stdin = false;
    enum users_digest digest = USERS_DIGEST_KEEP;
    bool no_totp = false;
    int ch;
    opterr = 0;
    optind = 1;
    while ((ch = getopt_long(argc, argv, ":c:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            config = optarg;
            break;
        case 's':
            from_stdin = true;
            break;
        case 't':
            no_totp = true;
            break;
        case 'd':
        case 'n':
            if (digest != USERS_DIGEST_KEEP &&
                digest != (ch == 'd' ? USERS_DIGEST_ON : USERS_DIGEST_OFF)) {
                fprintf(stderr, "portgate passwd: --digest or --no-digest, not both\n");
                return 2;
            }
            digest = ch == 'd' ? USERS_DIGEST_ON : USERS_DIGEST_OFF;
            break;
        case 'h':
            fputs(usage_passwd, stdout);
            return 0;
        default:
            fprintf(stderr, "portgate passwd: bad option %s\n%s", argv[optind - 1], usage_passwd);
            return 2;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "portgate passwd: give one USER\n%s", usage_passwd);
        return 2;
    }
    const char *user = argv[optind];
    if (!users_valid_name(user)) {
        fprintf(stderr,
                "portgate passwd: \"%s\": a user name is 1 to %d letters, digits, '.', "
                "'_', '-' or '@'\n",
                user, USERS_NAMELEN - 1);
        return 2;
    }
    struct config_gateway gw;
    if (gateway_settings(config, &gw) != 0) {
        return 1;
    }
    char pw[USERS_MAX_PASSWORD + 2], again[USERS_MAX_PASSWORD + 2];
    int rc = 1;
    if (!from_stdin && isatty(STDIN_FILENO)) {
        if (prompt("New password: ", pw, sizeof(pw)) != 0 ||
            prompt("Again: ", again, sizeof(again)) != 0) {
            fprintf(stderr, "portgate passwd: no password read\n");
            goto out;
        }
        if (strcmp(pw, again) != 0) {
            fprintf(stderr, "portgate passwd: the two passwords differ; nothing changed\n");
            goto out;
        }
    } else if (read_line(pw, sizeof(pw)) != 0) {
        fprintf(stderr,
                "portgate passwd: no password line on standard input (or one over %d "
                "characters)\n",
                USERS_MAX_PASSWORD);
        goto out;
    }
    char err[768];
    if (users_set_password(gw.users_file, user, pw, digest, err, sizeof(err)) != 0) {
        fprintf(stderr, "portgate passwd: %s\n", err);
        goto out;
    }
    fprintf(stderr, "password set for %s in %s%s\n", user, gw.users_file,
            digest == USERS_DIGEST_ON    ? ", with the keys for players' Digest logins"
            : digest == USERS_DIGEST_OFF ? ", without keys for players' Digest logins"
                                         : "");
    if (no_totp) {
        int trc = users_totp_disable(gw.users_file, user, err, sizeof(err));
        if (trc != 0 && trc != -ENOENT) {
            fprintf(stderr, "portgate passwd: %s\n", err);
            goto out;
        }
        fprintf(stderr, "%s\n",
                trc == 0 ? "second factor turned off: the user may turn it on "
                           "again from the web page"
                         : "the user had no second factor");
    }
    rc = 0;
out:
    sodium_memzero(pw, sizeof(pw));
    sodium_memzero(again, sizeof(again));
    return rc;
}

static const char usage_token[] =
    "Usage: portgate token [-c FILE] create NAME | list | revoke NAME\n"
    "\n"
    "API tokens, for scripts that use the admin interface's HTTP listener (sent as\n"
    "Authorization: Bearer TOKEN). create prints the new token alone on one line, once: only\n"
    "its hash is kept. list shows each token's name and when it was made; revoke ends one.\n"
    "The users file is found as for portgate passwd.\n";

static void print_token(void *arg, const char *name, int64_t created)
{
    int *n = arg;
    char when[32] = "?";
    time_t t = (time_t)created;
    struct tm tm;
    if (gmtime_r(&t, &tm) != NULL) {
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    }
    if ((*n)++ == 0) {
        printf("%-32s %s\n", "NAME", "CREATED");
    }
    printf("%-32s %s\n", name, when);
}

int cli_token(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *config = NULL;
    int ch;
    opterr = 0;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "+:c:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            config = optarg;
            break;
        case 'h':
            fputs(usage_token, stdout);
            return 0;
        default:
            fprintf(stderr, "portgate token: bad option %s\n%s", argv[optind - 1], usage_token);
            return 2;
        }
    }
    int n = argc - optind;
    const char *verb = n > 0 ? argv[optind] : "";
    bool list = strcmp(verb, "list") == 0;
    if (!(list && n == 1) &&
        !((strcmp(verb, "create") == 0 || strcmp(verb, "revoke") == 0) && n == 2)) {
        fprintf(stderr, "portgate token: expected create NAME, list or revoke NAME\n%s",
                usage_token);
        return 2;
    }
    struct config_gateway gw;
    if (gateway_settings(config, &gw) != 0) {
        return 1;
    }
    char err[768];
    if (list) {
        struct users *u = users_open(gw.users_file);
        if (u == NULL || users_error(u) != NULL) {
            fprintf(stderr, "portgate token: %s\n", u != NULL ? users_error(u) : "out of memory");
            users_free(u);
            return 1;
        }
        int count = 0;
        users_each_token(u, print_token, &count);
        users_free(u);
        if (count == 0) {
            fprintf(stderr, "no API tokens in %s\n", gw.users_file);
        }
        return 0;
    }
    const char *name = argv[optind + 1];
    if (strcmp(verb, "create") == 0) {
        char token[USERS_TOKEN_LEN + 1];
        if (users_token_create(gw.users_file, name, token, err, sizeof(err)) != 0) {
            fprintf(stderr, "portgate token: %s\n", err);
            return 1;
        }
        printf("%s\n", token);
        sodium_memzero(token, sizeof(token));
        return 0;
    }
    if (users_token_revoke(gw.users_file, name, err, sizeof(err)) != 0) {
        fprintf(stderr, "portgate token: %s\n", err);
        return 1;
    }
    fprintf(stderr, "token %s revoked\n", name);
    return 0;
}

/* ---- commands that talk to the running gateway ---- */

static const char usage_remote[] =
    "Options:\n"
    "  -c, --config FILE   the config file whose admin-socket to use (default: " CLI_DEFAULT_CONFIG
    ",\n"
    "                      if it exists, else " CONFIG_ADMIN_SOCKET ")\n"
    "      --socket PATH   the admin interface's unix socket\n"
    "      --url URL       its HTTP listener instead (http://127.0.0.1:8088), with a token\n"
    "      --token-file F  the API token for --url (default: $PORTGATE_TOKEN)\n"
    "      --json          print the API's JSON instead of a table\n"
    "Exit status: 0 done, 1 the gateway refused or could not be reached (the reason on\n"
    "stderr), 2 a usage error.\n";

struct remote {
    struct client_target t;
    bool json;
    char token[USERS_TOKEN_LEN + 64];
    char socket[CONFIG_PATHLEN];
    char kill[64]; /* conns --kill ID */
};

/* Parses the common options; the remaining arguments start at optind. Returns 0, 1 (help
 * printed) or 2 (a usage error, reported). */
static int remote_args(const char *cmd, const char *usage, int argc, char **argv, struct remote *r)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"socket", required_argument, NULL, 's'},
        {"url", required_argument, NULL, 'u'},    {"token-file", required_argument, NULL, 't'},
        {"json", no_argument, NULL, 'j'},         {"kill", required_argument, NULL, 'k'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
    const char *config = NULL, *sock = NULL, *url = NULL, *token_file = NULL;
    memset(r, 0, sizeof(*r));
    int ch;
    opterr = 0;
    optind = 1;
    /* Options may follow the verb (portgate map list --json): getopt permutes. */
    while ((ch = getopt_long(argc, argv, ":c:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            config = optarg;
            break;
        case 's':
            sock = optarg;
            break;
        case 'u':
            url = optarg;
            break;
        case 't':
            token_file = optarg;
            break;
        case 'j':
            r->json = true;
            break;
        case 'k':
            if (strcmp(cmd, "conns") != 0) {
                goto bad;
            }
            snprintf(r->kill, sizeof(r->kill), "%s", optarg);
            break;
        case 'h':
            printf("%s\n%s", usage, usage_remote);
            return 1;
        default:
            goto bad;
        }
    }
    if (url != NULL && sock != NULL) {
        fprintf(stderr, "portgate %s: --socket or --url, not both\n", cmd);
        return 2;
    }
    char err[512];
    if (url != NULL) {
        if (client_parse_url(url, &r->t, err, sizeof(err)) != 0) {
            fprintf(stderr, "portgate %s: --url %s\n", cmd, err);
            return 2;
        }
        const char *env = getenv("PORTGATE_TOKEN");
        if (token_file != NULL) {
            FILE *f = fopen(token_file, "r");
            if (f == NULL || fgets(r->token, sizeof(r->token), f) == NULL) {
                fprintf(stderr, "portgate %s: --token-file %s: %s\n", cmd, token_file,
                        f == NULL ? strerror(errno) : "empty");
                if (f != NULL) {
                    fclose(f);
                }
                return 2;
            }
            fclose(f);
            r->token[strcspn(r->token, "\r\n")] = '\0';
        } else if (env != NULL) {
            snprintf(r->token, sizeof(r->token), "%s", env);
        } else {
            fprintf(stderr,
                    "portgate %s: the HTTP listener needs an API token: --token-file FILE "
                    "or PORTGATE_TOKEN (see portgate token create)\n",
                    cmd);
            return 2;
        }
        r->t.token = r->token;
        return 0;
    }
    if (sock == NULL) {
        struct config_gateway gw;
        if (config != NULL || access(CLI_DEFAULT_CONFIG, F_OK) == 0) {
            if (gateway_settings(config, &gw) != 0) {
                return 2;
            }
            if (gw.admin_socket[0] == '\0') {
                fprintf(stderr, "portgate %s: admin-socket is off in %s: give --socket or --url\n",
                        cmd, config != NULL ? config : CLI_DEFAULT_CONFIG);
                return 2;
            }
            snprintf(r->socket, sizeof(r->socket), "%s", gw.admin_socket);
        } else {
            snprintf(r->socket, sizeof(r->socket), "%s", CONFIG_ADMIN_SOCKET);
        }
    } else {
        snprintf(r->socket, sizeof(r->socket), "%s", sock);
    }
    r->t.socket = r->socket;
    return 0;
bad:
    fprintf(stderr, "portgate %s: bad option %s\n%s\n%s", cmd, argv[optind - 1], usage,
            usage_remote);
    return 2;
}

/* Makes the request; on an error answer prints the gateway's message (and the field). Returns
 * the JSON answer (or json_null() for 204), or NULL after printing why. */
static json_t *call(const char *cmd, struct remote *r, const char *method, const char *path,
                    const json_t *body, int *status)
{
    char err[512];
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    struct client_response resp;
    int rc = client_request(&r->t, method, path, text, &resp, err, sizeof(err));
    free(text);
    if (rc != 0) {
        fprintf(stderr, "portgate %s: %s\n", cmd, err);
        return NULL;
    }
    *status = resp.status;
    json_t *j = resp.len > 0 ? json_loadb(resp.body, resp.len, 0, NULL) : json_null();
    if (resp.status >= 300) {
        const char *msg = json_string_value(json_object_get(j, "error"));
        fprintf(stderr, "portgate %s: %s\n", cmd, msg != NULL ? msg : resp.body);
        json_t *all = json_object_get(j, "errors");
        for (size_t i = 1; i < json_array_size(all); i++) {
            fprintf(stderr, "portgate %s: %s\n", cmd,
                    json_string_value(json_object_get(json_array_get(all, i), "error")));
        }
        json_decref(j);
        free(resp.body);
        return NULL;
    }
    if (j == NULL && resp.status != 204) {
        fprintf(stderr, "portgate %s: the gateway's answer is not JSON\n", cmd);
    }
    free(resp.body);
    return j;
}

static void print_json(const json_t *j)
{
    char *text = json_dumps(j, JSON_INDENT(2));
    if (text != NULL) {
        printf("%s\n", text);
        free(text);
    }
}

/* 1536 -> "1.5K" */
static const char *human(json_int_t n, char *buf, size_t len)
{
    static const char units[] = "KMGTP";
    if (n < 1024) {
        snprintf(buf, len, "%lld", (long long)n);
        return buf;
    }
    double v = (double)n;
    int u = -1;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    snprintf(buf, len, v < 10 ? "%.1f%c" : "%.0f%c", v, units[u]);
    return buf;
}

static const char *str(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s != NULL ? s : "-";
}

static json_int_t num(const json_t *o, const char *key)
{
    return json_integer_value(json_object_get(o, key));
}

static void print_mappings(const json_t *list)
{
    printf("%-20s %-5s %-24s %-24s %-10s %5s %7s %7s %s\n", "NAME", "PROTO", "LISTEN", "TARGET",
           "STATE", "OPEN", "IN", "OUT", "SOURCE");
    size_t i;
    const json_t *m;
    json_array_foreach(list, i, m)
    {
        const json_t *st = json_object_get(m, "stats");
        char in[24], out[24];
        printf("%-20s %-5s %-24s %-24s %-10s %5lld %7s %7s %s\n", str(m, "name"), str(m, "proto"),
               str(m, "listen"), str(m, "target"), str(json_object_get(m, "status"), "state"),
               (long long)num(st, "open"), human(num(st, "bytes-in"), in, sizeof(in)),
               human(num(st, "bytes-out"), out, sizeof(out)), str(m, "source"));
    }
}

static void print_mapping(const json_t *m)
{
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)m, k, v)
    {
        if (json_is_object(v)) {
            const char *k2;
            const json_t *v2;
            json_object_foreach((json_t *)v, k2, v2)
            {
                char *t = json_is_string(v2) ? NULL : json_dumps(v2, JSON_ENCODE_ANY);
                printf("%s.%s: %s\n", k, k2,
                       json_is_string(v2) ? json_string_value(v2) : (t != NULL ? t : "?"));
                free(t);
            }
            continue;
        }
        char *t = json_is_string(v) ? NULL : json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
        printf("%s: %s\n", k, json_is_string(v) ? json_string_value(v) : (t != NULL ? t : "?"));
        free(t);
    }
}

/* A SPEC (as --map takes it) as the API's mapping object, checked here first with the messages
 * of portgate check. Its name is name=, or PROTO-PORT. Returns NULL after printing the errors. */
static json_t *spec_to_json(const char *spec)
{
    struct config *c = config_new();
    if (c == NULL) {
        return NULL;
    }
    json_t *obj = NULL;
    if (config_add_spec(c, spec, 1) != 0) {
        for (size_t i = 0; i < c->nerrors; i++) {
            fprintf(stderr, "%s\n", c->errors[i]);
        }
    } else {
        struct map_conf *m = &c->maps[0];
        bool named = false;
        for (const char *p = strchr(spec, ','); p != NULL; p = strchr(p + 1, ',')) {
            named |= strncmp(p + 1, "name=", 5) == 0;
        }
        if (!named) {
            if (m->listen_hi != m->listen_lo) {
                snprintf(m->name, sizeof(m->name), "%s-%u-%u", m->proto->name, m->listen_lo,
                         m->listen_hi);
            } else {
                snprintf(m->name, sizeof(m->name), "%s-%u", m->proto->name, m->listen_lo);
            }
        }
        obj = mapjson_from_conf(m, 0);
    }
    config_free(c);
    return obj;
}

static const char usage_map[] =
    "Usage: portgate map [OPTIONS] list | show NAME | add SPEC | del NAME | enable NAME |\n"
    "                    disable NAME\n"
    "\n"
    "The running gateway's mappings, through its admin interface. add takes a SPEC as --map\n"
    "does (PROTO:LISTEN=TARGET[,KEY=VALUE...]; its name is name=, else PROTO-PORT), checked\n"
    "with the messages of portgate check; the gateway keeps it in its state file. Mappings\n"
    "of the config file are shown but changed only there.\n";

int cli_map(int argc, char **argv)
{
    struct remote r;
    int rc = remote_args("map", usage_map, argc, argv, &r);
    if (rc != 0) {
        return rc == 1 ? 0 : rc;
    }
    int n = argc - optind;
    const char *verb = n > 0 ? argv[optind] : "";
    const char *arg = n > 1 ? argv[optind + 1] : NULL;
    bool one = strcmp(verb, "show") == 0 || strcmp(verb, "add") == 0 || strcmp(verb, "del") == 0 ||
               strcmp(verb, "enable") == 0 || strcmp(verb, "disable") == 0;
    if (!((strcmp(verb, "list") == 0 && n == 1) || (one && n == 2))) {
        fprintf(stderr,
                "portgate map: expected list, show NAME, add SPEC, del NAME, enable NAME "
                "or disable NAME\n%s",
                usage_map);
        return 2;
    }
    if (arg != NULL && strcmp(verb, "add") != 0 && strcspn(arg, "/?#%") != strlen(arg)) {
        fprintf(stderr, "portgate map: \"%s\": not a mapping name\n", arg);
        return 1;
    }
    char path[256];
    json_t *body = NULL, *j = NULL;
    int status = 0;
    if (strcmp(verb, "list") == 0) {
        j = call("map", &r, "GET", "/api/v1/mappings", NULL, &status);
        if (j != NULL) {
            r.json ? print_json(j) : print_mappings(json_object_get(j, "mappings"));
        }
    } else if (strcmp(verb, "show") == 0) {
        snprintf(path, sizeof(path), "/api/v1/mappings/%s", arg);
        j = call("map", &r, "GET", path, NULL, &status);
        if (j != NULL) {
            r.json ? print_json(j) : print_mapping(j);
        }
    } else if (strcmp(verb, "add") == 0) {
        body = spec_to_json(arg);
        if (body == NULL) {
            return 1;
        }
        j = call("map", &r, "POST", "/api/v1/mappings", body, &status);
        if (j != NULL) {
            r.json ? print_json(j)
                   : (void)fprintf(stderr, "added %s: %s %s -> %s\n", str(j, "name"),
                                   str(j, "proto"), str(j, "listen"), str(j, "target"));
        }
    } else if (strcmp(verb, "del") == 0) {
        snprintf(path, sizeof(path), "/api/v1/mappings/%s", arg);
        j = call("map", &r, "DELETE", path, NULL, &status);
        if (j != NULL) {
            fprintf(stderr, "deleted %s\n", arg);
        }
    } else {
        snprintf(path, sizeof(path), "/api/v1/mappings/%s/%s", arg, verb);
        j = call("map", &r, "POST", path, NULL, &status);
        if (j != NULL) {
            r.json ? print_json(j) : (void)fprintf(stderr, "%sd %s\n", verb, arg);
        }
    }
    rc = j != NULL ? 0 : 1;
    json_decref(j);
    json_decref(body);
    return rc;
}

static const char usage_status[] = "Usage: portgate status [OPTIONS]\n"
                                   "\n"
                                   "The running gateway: version, uptime, workers, descriptors,\n"
                                   "connections, mappings and where they come from.\n";

int cli_status(int argc, char **argv)
{
    struct remote r;
    int rc = remote_args("status", usage_status, argc, argv, &r);
    if (rc != 0) {
        return rc == 1 ? 0 : rc;
    }
    if (optind != argc) {
        fprintf(stderr, "portgate status: no arguments expected\n%s", usage_status);
        return 2;
    }
    int status;
    json_t *j = call("status", &r, "GET", "/api/v1/status", NULL, &status);
    if (j == NULL) {
        return 1;
    }
    if (r.json) {
        print_json(j);
    } else {
        const json_t *fds = json_object_get(j, "fds"), *maps = json_object_get(j, "mappings");
        const json_t *relay = json_object_get(j, "relay"), *rl = json_object_get(j, "reloads");
        json_int_t up = num(j, "uptime");
        printf("portgate %s, pid %lld, up %lldd %02lld:%02lld:%02lld, %lld workers\n",
               str(j, "version"), (long long)num(j, "pid"), (long long)(up / 86400),
               (long long)(up / 3600 % 24), (long long)(up / 60 % 60), (long long)(up % 60),
               (long long)num(j, "workers"));
        printf("configuration revision %lld; %lld reloads, %lld failed\n",
               (long long)num(j, "revision"), (long long)num(rl, "total"),
               (long long)num(rl, "failed"));
        printf("mappings: %lld (%lld enabled; %lld from the config, %lld from the API), %lld "
               "ports listening\n",
               (long long)num(maps, "total"), (long long)num(maps, "enabled"),
               (long long)num(maps, "config"), (long long)num(maps, "api"),
               (long long)num(j, "listening-ports"));
        printf("tcp connections: %lld; pipes: %lld of %lld; descriptors: %lld of %lld\n",
               (long long)num(relay, "connections"), (long long)num(relay, "pipes"),
               (long long)num(relay, "max-pipes"), (long long)num(fds, "open"),
               (long long)num(fds, "limit"));
        size_t i;
        const json_t *s;
        json_array_foreach(json_object_get(j, "sources"), i, s)
        {
            printf("source: %s (%s)\n", str(s, "source"), str(s, "kind"));
        }
    }
    json_decref(j);
    return 0;
}

static const char usage_conns[] =
    "Usage: portgate conns [OPTIONS] [--kill ID] [MAPPING]\n"
    "\n"
    "The running gateway's open TCP connections (of MAPPING, or all): their id, mapping,\n"
    "client, target, bytes each way, age and idle time. --kill ID ends one.\n";

int cli_conns(int argc, char **argv)
{
    struct remote r;
    int rc = remote_args("conns", usage_conns, argc, argv, &r);
    if (rc != 0) {
        return rc == 1 ? 0 : rc;
    }
    const char *kill_id = r.kill;
    int n = argc - optind;
    if (n > 1 || (n == 1 && kill_id[0] != '\0')) {
        fprintf(stderr, "portgate conns: at most one MAPPING, and not with --kill\n%s",
                usage_conns);
        return 2;
    }
    char path[256];
    int status;
    json_t *j;
    if (kill_id[0] != '\0') {
        if (strcspn(kill_id, "/?#%") != strlen(kill_id)) {
            fprintf(stderr, "portgate conns: \"%s\": not a connection id\n", kill_id);
            return 1;
        }
        snprintf(path, sizeof(path), "/api/v1/connections/%s", kill_id);
        j = call("conns", &r, "DELETE", path, NULL, &status);
        if (j != NULL) {
            fprintf(stderr, "ended connection %s\n", kill_id);
        }
        rc = j != NULL ? 0 : 1;
        json_decref(j);
        return rc;
    }
    if (n == 1 && strspn(argv[optind], "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                       "0123456789._-") != strlen(argv[optind])) {
        fprintf(stderr, "portgate conns: \"%s\": not a mapping name\n", argv[optind]);
        return 1;
    }
    snprintf(path, sizeof(path), "/api/v1/connections%s%s", n == 1 ? "?mapping=" : "",
             n == 1 ? argv[optind] : "");
    j = call("conns", &r, "GET", path, NULL, &status);
    if (j == NULL) {
        return 1;
    }
    if (r.json) {
        print_json(j);
    } else {
        printf("%-10s %-20s %-24s %-24s %7s %7s %7s %7s\n", "ID", "MAPPING", "CLIENT", "TARGET",
               "IN", "OUT", "AGE", "IDLE");
        size_t i;
        const json_t *c;
        json_array_foreach(json_object_get(j, "connections"), i, c)
        {
            char in[24], out[24];
            printf("%-10s %-20s %-24s %-24s %7s %7s %6llds %6llds\n", str(c, "id"),
                   str(c, "mapping"), str(c, "client"), str(c, "target"),
                   human(num(c, "bytes-in"), in, sizeof(in)),
                   human(num(c, "bytes-out"), out, sizeof(out)), (long long)num(c, "age"),
                   (long long)num(c, "idle"));
        }
    }
    json_decref(j);
    return 0;
}
