/*
 * file: a whole file read into memory, for the parsers of files (the config file, the state
 * file, the users file), which each say what a failure means for them.
 */
#ifndef PORTGATE_FILE_H
#define PORTGATE_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>

/*
 * Reads the regular file at path, of at most max bytes, into *buf (malloc'd, NUL-terminated,
 * the caller frees it) and its length into *len; *st gets its fstat() (st may be NULL). With
 * nofollow, a symbolic link is not followed (-ELOOP). The open never blocks: a FIFO is refused
 * (-EINVAL) rather than waited on for a writer. Returns 0, or a negative errno: open()'s
 * (-ENOENT, -EACCES, -ELOOP...), -EINVAL (not a regular file), -EFBIG (larger than max),
 * -ENOMEM, a read()'s, or -ENODATA (the file shrank while read).
 */
int file_read(const char *path, bool nofollow, size_t max, char **buf, size_t *len,
              struct stat *st);
/* The same, with a relative path taken from the directory dirfd (openat(2); AT_FDCWD: the
 * working directory), for a reader that has opened and checked the directory itself. */
int file_read_at(int dirfd, const char *path, bool nofollow, size_t max, char **buf, size_t *len,
                 struct stat *st);
/* What file_read()'s failure rc was, as a message: "not a regular file", "it shrank while it
 * was read", or strerror's. */
const char *file_strerror(int rc);

#endif
