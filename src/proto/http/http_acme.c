#include "proto/http/http_acme.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/file.h"

#define PREFIX_LEN (sizeof(HTTP_ACME_PREFIX) - 1)

bool http_acme_target(const char *target, size_t n)
{
    return n >= PREFIX_LEN && memcmp(target, HTTP_ACME_PREFIX, PREFIX_LEN) == 0;
}

static bool base64url(char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '_';
}

bool http_acme_token(const char *target, size_t n, char token[HTTP_ACME_TOKEN_MAX + 1])
{
    token[0] = '\0';
    if (!http_acme_target(target, n)) {
        return false;
    }
    const char *t = target + PREFIX_LEN;
    size_t tn = n - PREFIX_LEN;
    if (tn == 0 || tn > HTTP_ACME_TOKEN_MAX) {
        return false;
    }
    for (size_t i = 0; i < tn; i++) {
        if (!base64url(t[i])) {
            return false;
        }
    }
    memcpy(token, t, tn);
    token[tn] = '\0';
    return true;
}

/* Opens the directory name under dirfd, not through a symbolic link. Returns the fd, or -1
 * with errno (ELOOP or ENOTDIR for a link, ENOTDIR for a file). */
static int open_dir_at(int dirfd, const char *name)
{
    return openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

int http_acme_read(const char *webroot, const char *token, char **body, size_t *len, char *why,
                   size_t whylen)
{
    static const char *const below[] = {".well-known", "acme-challenge"};
    *body = NULL;
    *len = 0;
    int dirfd = open(webroot, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd == -1) {
        snprintf(why, whylen, "acme-webroot %s: %s", webroot, strerror(errno));
        return 500;
    }
    for (size_t i = 0; i < sizeof(below) / sizeof(below[0]); i++) {
        int fd = open_dir_at(dirfd, below[i]);
        int err = errno;
        close(dirfd);
        dirfd = fd;
        if (fd == -1) {
            if (err == ENOENT) {
                snprintf(why, whylen, "no such token (no %s/%s%s)", webroot,
                         i == 0 ? "" : ".well-known/", below[i]);
                return 404;
            }
            if (err == ELOOP || err == ENOTDIR) {
                snprintf(why, whylen, "%s/%s%s is a symbolic link or not a directory", webroot,
                         i == 0 ? "" : ".well-known/", below[i]);
                return 404;
            }
            snprintf(why, whylen, "%s/%s%s: %s", webroot, i == 0 ? "" : ".well-known/", below[i],
                     strerror(err));
            return 500;
        }
    }
    int rc = file_read_at(dirfd, token, true, HTTP_ACME_FILE_MAX, body, len, NULL);
    close(dirfd);
    switch (rc) {
    case 0:
        return 200;
    case -ENOENT:
        snprintf(why, whylen, "no such token");
        return 404;
    case -ELOOP:
        snprintf(why, whylen, "the token's file is a symbolic link");
        return 404;
    case -EINVAL:
        snprintf(why, whylen, "the token's file is not a regular file");
        return 404;
    case -EFBIG:
        snprintf(why, whylen, "the token's file is larger than %d bytes", HTTP_ACME_FILE_MAX);
        return 500;
    default:
        snprintf(why, whylen, "the token's file: %s", file_strerror(rc));
        return 500;
    }
}
