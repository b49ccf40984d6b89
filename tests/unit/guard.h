/* Test helper: places bytes right before a PROT_NONE page, so that any read past the end of the
 * input faults (the technique of picohttpparser's tests). */
#ifndef PORTGATE_TEST_GUARD_H
#define PORTGATE_TEST_GUARD_H

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

struct guarded {
    void *map;
    size_t maplen;
    char *p;
};

/* Copies len bytes so that the last one is the last readable byte. */
static inline struct guarded guard_bytes(const void *data, size_t len)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    size_t npages = (len + pg - 1) / pg + 1;
    struct guarded g;
    g.maplen = npages * pg;
    g.map = mmap(NULL, g.maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (g.map == MAP_FAILED) {
        abort();
    }
    mprotect((char *)g.map + (npages - 1) * pg, pg, PROT_NONE);
    g.p = (char *)g.map + (npages - 1) * pg - len;
    memcpy(g.p, data, len);
    return g;
}

/* A C string whose terminating NUL is the last readable byte. */
static inline struct guarded guard_str(const char *s)
{
    return guard_bytes(s, strlen(s) + 1);
}

static inline void guard_free(struct guarded g)
{
    munmap(g.map, g.maplen);
}

#endif
