/*
 * worker: a thread that runs one event loop.
 *
 * Each worker owns its loop, and what its owner registers in that loop (the gateway: a relay
 * context, listeners, connections) is touched only on the worker's thread. The control thread (the
 * gateway) never reaches into a worker's objects: it asks the worker to run a function on its own
 * thread with worker_post(), and worker_wait() returns once that function has run. A post and its
 * wait are the only synchronisation: everything the function wrote is visible to the control thread
 * after the wait, and everything the control thread wrote before the post is visible to the
 * function. So a control thread may hand a worker a plan (sockets to take over, listeners to
 * close), wait, and read back what the worker made of it, without locks. Several workers can run
 * their posts at the same time: post to all, then wait for all.
 *
 * Every worker_post() must be followed by one worker_wait() on the same worker before the next
 * post. The data path never goes through here.
 */
#ifndef PORTGATE_WORKER_H
#define PORTGATE_WORKER_H

#include <pthread.h>
#include <semaphore.h>
#include <stdbool.h>

#include "core/loop.h"

struct worker;
typedef void (*worker_fn)(struct worker *w, void *arg);

struct worker {
    unsigned id;
    struct loop *loop;
    /* private */
    pthread_t thread;
    bool started, sem_ready;
    struct loop_io calls; /* read end of the call pipe */
    int calls_w;
    sem_t done;
    worker_fn fn;
    void *arg;
};

/* Sets up worker id's loop; no thread yet. Returns 0, or -errno. */
int worker_init(struct worker *w, unsigned id);
/* Starts the thread, which runs the loop until a posted function calls worker_stop_loop().
 * Returns 0, or -errno. */
int worker_start(struct worker *w);
/* Asks the worker to run fn(w, arg) on its thread. */
void worker_post(struct worker *w, worker_fn fn, void *arg);
/* Waits until the function of the last worker_post() has run. */
void worker_wait(struct worker *w);
/* From a function running on the worker: its loop ends after this call, and the thread with it. */
void worker_stop_loop(struct worker *w);
/* Waits for the thread (after a function called worker_stop_loop()) and frees the loop; what
 * the owner registered in it must be gone. Safe on a worker never started, and on one whose
 * worker_init() failed. */
void worker_fini(struct worker *w);

#endif
