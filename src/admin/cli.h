/*
 * cli: the `portgate` commands that administer a gateway: passwd and token edit the users file
 * directly (they work while the gateway is stopped, and it reads the file again when it
 * changes); map, status and conns talk to the running gateway's API. Each takes its argv after
 * the command name and returns the exit status: 0 success, 1 failure (the reason on stderr), 2 a
 * usage error.
 */
#ifndef PORTGATE_CLI_H
#define PORTGATE_CLI_H

/* The config file read when -c is not given, if it exists. */
#define CLI_DEFAULT_CONFIG "/etc/portgate/portgate.conf"

int cli_passwd(int argc, char **argv);
int cli_token(int argc, char **argv);
/* portgate map list|show NAME|add SPEC|del NAME|enable NAME|disable NAME */
int cli_map(int argc, char **argv);
int cli_status(int argc, char **argv);
/* portgate conns [--kill ID] */
int cli_conns(int argc, char **argv);

#endif
