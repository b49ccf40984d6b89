/*
 * gateway: the control thread of the running gateway and its workers. It opens listening sockets
 * for every port of every enabled mapping (one per worker that runs the mapping's protocol),
 * hands them to the TCP and UDP relays of the workers, and owns the current configuration
 * snapshot, which reload (SIGHUP) replaces as a whole:
 *   - the new config is built and checked first; if it has errors they are logged and the
 *     running one is kept;
 *   - every listening socket the new config needs that is already open (same transport, address
 *     and port, whatever the protocol) is kept, so established connections and UDP sessions on
 *     it are untouched; the others are bound before anything changes, and a failed bind cancels
 *     the whole reload;
 *   - then listeners no longer needed close (their TCP connections go on; their UDP sessions
 *     end), and kept ones move to the new generation of their mapping (new connections only),
 *     which may be of another protocol.
 * SIGUSR1 logs each mapping's counters.
 * SIGTERM and SIGINT stop accepting and wait for the TCP connections up to drain-timeout; a second
 * signal ends them at once.
 */
#ifndef PORTGATE_GATEWAY_H
#define PORTGATE_GATEWAY_H

#include "gateway/config.h"

struct gateway;

/* path and specs are where reloads read the configuration again; they must outlive the
 * gateway. Returns NULL with a logged reason. */
struct gateway *gateway_new(const char *path, char *const *specs, int nspecs);
/* Opens the listeners of cfg (which the gateway takes over, errors-free). Returns 0, or -1 with
 * every failure logged (nothing is left open). */
int gateway_start(struct gateway *g, struct config *cfg);
/* Runs until stopped by a signal. Returns the process exit status. */
int gateway_run(struct gateway *g);
/* Re-reads the configuration and applies it (what SIGHUP does). Returns 0 or -1. */
int gateway_reload(struct gateway *g);
void gateway_free(struct gateway *g);

#endif
