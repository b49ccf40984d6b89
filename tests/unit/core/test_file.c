/* core/file: a whole file read, and each way it can fail. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/file.h"

static void test_read(void **state)
{
    (void)state;
    char dir[] = "/tmp/portgate-file-XXXXXX", path[128], link[128];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/f", dir);
    snprintf(link, sizeof(link), "%s/l", dir);
    FILE *f = fopen(path, "w");
    fputs("hello\n", f);
    fclose(f);
    char *buf;
    size_t len;
    struct stat st;
    assert_int_equal(file_read(path, true, 100, &buf, &len, &st), 0);
    assert_int_equal(len, 6);
    assert_string_equal(buf, "hello\n"); /* NUL-terminated */
    assert_int_equal(st.st_size, 6);
    free(buf);
    assert_int_equal(file_read(path, false, 5, &buf, &len, NULL), -EFBIG);
    assert_null(buf);
    assert_int_equal(symlink(path, link), 0);
    assert_int_equal(file_read(link, false, 100, &buf, &len, NULL), 0);
    free(buf);
    assert_int_equal(file_read(link, true, 100, &buf, &len, NULL), -ELOOP);
    assert_int_equal(file_read(dir, false, 100, &buf, &len, NULL), -EINVAL);
    assert_string_equal(file_strerror(-EINVAL), "not a regular file");
    /* A FIFO is refused at once, not waited on for a writer. */
    char fifo[128];
    snprintf(fifo, sizeof(fifo), "%s/p", dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    assert_int_equal(file_read(fifo, true, 100, &buf, &len, NULL), -EINVAL);
    /* Relative to a directory: openat(2), the link in its place not followed. */
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    assert_true(dfd >= 0);
    assert_int_equal(file_read_at(dfd, "f", true, 100, &buf, &len, NULL), 0);
    assert_string_equal(buf, "hello\n");
    free(buf);
    assert_int_equal(file_read_at(dfd, "l", true, 100, &buf, &len, NULL), -ELOOP);
    close(dfd);
    snprintf(path, sizeof(path), "%s/none", dir);
    assert_int_equal(file_read(path, false, 100, &buf, &len, NULL), -ENOENT);
    assert_string_equal(file_strerror(-ENOENT), "No such file or directory");
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_read)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
