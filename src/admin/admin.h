/*
 * admin: the configuration interface of a running gateway. An HTTP server (libmicrohttpd) on a
 * unix socket (gateway key admin-socket; who may connect is decided by the socket's mode and
 * group, and checked again with SO_PEERCRED) and on a loopback address (key admin; always behind
 * a login), serving the REST API (admin/api.h) and the web page (admin/www/).
 *
 * It runs on the control thread's event loop, never on a worker: libmicrohttpd is driven from
 * its own epoll descriptor, registered in the loop, so a request is handled between signals and
 * reloads, with no lock, and relaying never waits for it. Each connection has a deadline: a
 * request must arrive whole within ADMIN_REQUEST_TIMEOUT_S of the connection or the previous
 * answer, so a client sending a byte a second is cut off and holds nothing but its socket.
 *
 * Also the lease timer: a mapping with a lease is removed when it ends, like any change.
 */
#ifndef PORTGATE_ADMIN_H
#define PORTGATE_ADMIN_H

#include "gateway/gateway.h"

#define ADMIN_REQUEST_TIMEOUT_S 10
#define ADMIN_MAX_CONNECTIONS 512

struct admin;

/* An admin interface that is not started yet: its hooks go to gateway_new(). NULL when out of
 * memory. */
struct admin *admin_new(void);
/* What the gateway calls: state_load() and state_save() (admin/state.h), and a look at the
 * leases after each change. Valid while a lives. */
const struct gateway_hooks *admin_hooks(struct admin *a);
/* Starts the listeners that the running config of g asks for (none: nothing to do). Returns 0,
 * or -1 with the reason logged (an address in use, a socket path another gateway serves...). */
int admin_start(struct admin *a, struct gateway *g);
/* Closes the listeners and their connections. admin_free(NULL) is a no-op. */
void admin_free(struct admin *a);

#endif
