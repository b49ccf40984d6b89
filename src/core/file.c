#include "core/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int file_read(const char *path, bool nofollow, size_t max, char **buf, size_t *len, struct stat *st)
{
    return file_read_at(AT_FDCWD, path, nofollow, max, buf, len, st);
}

int file_read_at(int dirfd, const char *path, bool nofollow, size_t max, char **buf, size_t *len,
                 struct stat *st)
{
    *buf = NULL;
    *len = 0;
    /* O_NONBLOCK: opening a FIFO would otherwise wait for a writer; on a regular file it
     * changes nothing. */
    int fd = openat(dirfd, path,
                    O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | (nofollow ? O_NOFOLLOW : 0));
    if (fd == -1) {
        return -errno;
    }
    struct stat sb;
    int rc = 0;
    char *b = NULL;
    size_t got = 0;
    if (fstat(fd, &sb) == -1 || !S_ISREG(sb.st_mode)) {
        rc = -EINVAL;
        goto out;
    }
    if ((unsigned long long)sb.st_size > max) {
        rc = -EFBIG;
        goto out;
    }
    b = malloc((size_t)sb.st_size + 1);
    if (b == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    while (got < (size_t)sb.st_size) {
        ssize_t n = read(fd, b + got, (size_t)sb.st_size - got);
        if (n == -1 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            rc = n == 0 ? -ENODATA : -errno;
            goto out;
        }
        got += (size_t)n;
    }
    b[got] = '\0';
    *buf = b;
    *len = got;
    b = NULL;
    if (st != NULL) {
        *st = sb;
    }
out:
    if (b != NULL) {
        explicit_bzero(b, got); /* a file read in part may be a key */
    }
    free(b);
    close(fd);
    return rc;
}

const char *file_strerror(int rc)
{
    switch (rc) {
    case -EINVAL:
        return "not a regular file";
    case -ENODATA:
        return "it shrank while it was read";
    default:
        return strerror(-rc);
    }
}
