#include "admin/cli.h"

#include <getopt.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "admin/users.h"
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
    "Usage: portgate passwd [-c FILE] [--password-stdin] USER\n"
    "\n"
    "Sets USER's password for the admin interface's web page (adding the user if new), in the\n"
    "users file that FILE names (users-file in [gateway]; without -c, the one "
    "of\n" CLI_DEFAULT_CONFIG " if it exists, else " CONFIG_USERS_FILE ").\n"
    "On a terminal it asks for the password twice; otherwise, or with --password-stdin, it reads\n"
    "one line from standard input. A password is 8 to 1024 characters. A running gateway sees\n"
    "the change at once.\n";

int cli_passwd(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"password-stdin", no_argument, NULL, 's'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *config = NULL;
    bool from_stdin = false;
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
    if (users_set_password(gw.users_file, user, pw, err, sizeof(err)) != 0) {
        fprintf(stderr, "portgate passwd: %s\n", err);
        goto out;
    }
    fprintf(stderr, "password set for %s in %s\n", user, gw.users_file);
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
