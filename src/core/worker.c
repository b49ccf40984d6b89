#include "core/worker.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"

/* What a post writes to the call pipe: one message, well under PIPE_BUF, so it is atomic. */
struct call {
    worker_fn fn;
    void *arg;
};

static void on_calls(struct loop_io *io, uint32_t ev)
{
    (void)ev;
    struct worker *w = container_of(io, struct worker, calls);
    struct call c;
    ssize_t n;
    while ((n = read(io->fd, &c, sizeof(c))) == (ssize_t)sizeof(c)) {
        c.fn(w, c.arg);
        sem_post(&w->done);
    }
    if (n > 0) {
        /* Cannot happen: the writer only writes whole messages of at most PIPE_BUF. */
        log_error("worker %u: a torn call message (%zd bytes)", w->id, n);
    }
}

int worker_init(struct worker *w, unsigned id)
{
    memset(w, 0, sizeof(*w));
    w->id = id;
    w->calls.fd = -1;
    w->calls_w = -1;
    w->loop = loop_new();
    if (w->loop == NULL) {
        return -errno;
    }
    int p[2];
    if (pipe2(p, O_CLOEXEC) == -1) {
        return -errno;
    }
    /* The worker reads without blocking; the control thread writes blocking (a full pipe only
     * means the worker is busy: the post waits for it). */
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    w->calls_w = p[1];
    int rc = loop_io_add(w->loop, &w->calls, p[0], LOOP_IN, on_calls);
    if (rc < 0) {
        close(p[0]);
        return rc;
    }
    if (sem_init(&w->done, 0, 0) == -1) {
        return -errno;
    }
    w->sem_ready = true;
    return 0;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    int rc = loop_run(w->loop);
    if (rc < 0) {
        log_error("worker %u: event loop: %s", w->id, strerror(-rc));
    }
    return NULL;
}

int worker_start(struct worker *w)
{
    /* Signals are for the control thread: the worker's threads keep them blocked. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&w->thread, NULL, worker_main, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        return -rc;
    }
    w->started = true;
    return 0;
}

void worker_post(struct worker *w, worker_fn fn, void *arg)
{
    struct call c = {fn, arg};
    const char *p = (const char *)&c;
    size_t left = sizeof(c);
    while (left > 0) {
        ssize_t n = write(w->calls_w, p, left);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            /* The pipe is ours and its reader lives as long as the worker: this is a bug. */
            log_error("worker %u: posting a call: %s", w->id, strerror(errno));
            abort();
        }
        p += n;
        left -= (size_t)n;
    }
}

void worker_wait(struct worker *w)
{
    while (sem_wait(&w->done) == -1 && errno == EINTR) {
    }
}

void worker_stop_loop(struct worker *w)
{
    loop_stop(w->loop);
}

void worker_fini(struct worker *w)
{
    if (w->started) {
        pthread_join(w->thread, NULL);
        w->started = false;
    }
    if (w->sem_ready) {
        sem_destroy(&w->done);
        w->sem_ready = false;
    }
    if (w->calls.fd >= 0) {
        loop_io_del(w->loop, &w->calls);
        close(w->calls.fd);
        w->calls.fd = -1;
    }
    if (w->calls_w >= 0) {
        close(w->calls_w);
        w->calls_w = -1;
    }
    loop_free(w->loop);
    w->loop = NULL;
}
