#include "admin/state.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "admin/mapjson.h"
#include "core/file.h"
#include "core/log.h"

#define STATE_FORMAT 1

void state_load_buffer(struct config *c, const char *source, const char *buf, size_t len,
                       int64_t now)
{
    json_error_t jerr;
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        config_add_error(c, NULL,
                         "%s:%d:%d: not valid JSON: %s (restore it from a backup, or "
                         "move it away to start with no API mappings)",
                         source, jerr.line, jerr.column, jerr.text);
        return;
    }
    const json_t *fmt = json_object_get(root, "portgate-state");
    const json_t *rev = json_object_get(root, "revision");
    const json_t *maps = json_object_get(root, "mappings");
    if (!json_is_object(root) || !json_is_integer(fmt) || !json_is_array(maps) ||
        (rev != NULL && (!json_is_integer(rev) || json_integer_value(rev) < 0))) {
        config_add_error(c, NULL,
                         "%s: not a portgate state file (expected {\"portgate-state\": %d, "
                         "\"revision\": N, \"mappings\": [...]})",
                         source, STATE_FORMAT);
    } else if (json_integer_value(fmt) != STATE_FORMAT) {
        config_add_error(c, NULL,
                         "%s: state format %" JSON_INTEGER_FORMAT
                         " is not one this portgate reads (%d)",
                         source, json_integer_value(fmt), STATE_FORMAT);
    } else {
        c->revision = rev != NULL ? (uint64_t)json_integer_value(rev) : 0;
        size_t i;
        const json_t *m;
        json_array_foreach(maps, i, m)
        {
            const json_t *exp = json_is_object(m) ? json_object_get(m, "expires") : NULL;
            if (json_is_integer(exp) && json_integer_value(exp) > 0 &&
                json_integer_value(exp) <= now) {
                const json_t *name = json_object_get(m, "name");
                log_info("map %s: its lease ended while the gateway was stopped; not restored",
                         json_is_string(name) ? json_string_value(name) : "?");
                continue;
            }
            mapjson_add(c, source, m, MAPJSON_STATE, now);
        }
    }
    json_decref(root);
}

void state_load(void *arg, struct config *c)
{
    (void)arg;
    const char *path = c->gw.state;
    if (!config_admin_on(&c->gw) || path[0] == '\0') {
        return;
    }
    char *buf;
    size_t len;
    int rc = file_read(path, false, STATE_MAX_FILE, &buf, &len, NULL);
    if (rc == -ENOENT) {
        return; /* none yet: no mapping was made through the admin interface */
    }
    if (rc == -EFBIG) {
        config_add_error(c, NULL, "%s: the state file is larger than %u bytes", path,
                         STATE_MAX_FILE);
        return;
    }
    if (rc == -EINVAL) {
        config_add_error(c, NULL, "%s: the state file is not a regular file", path);
        return;
    }
    if (rc != 0) {
        config_add_error(c, NULL, "%s: cannot read the state file: %s", path, file_strerror(rc));
        return;
    }
    state_load_buffer(c, path, buf, len, (int64_t)time(NULL));
    free(buf);
}

static int write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n == -1 && errno == EINTR) {
            continue;
        }
        if (n == -1) {
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* fsync of the directory holding path, so that a rename in it is durable. */
static int sync_dir(const char *path)
{
    char copy[CONFIG_PATHLEN];
    snprintf(copy, sizeof(copy), "%s", path);
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd == -1) {
        return -1;
    }
    int rc = fsync(fd);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

int state_save(const struct config *c, char *err, size_t errlen)
{
    const char *path = c->gw.state;
    json_t *root = json_object();
    json_t *maps = json_array();
    int rc = -1;
    char *text = NULL;
    if (root == NULL || maps == NULL) {
        goto oom;
    }
    json_object_set_new(root, "portgate-state", json_integer(STATE_FORMAT));
    json_object_set_new(root, "revision", json_integer((json_int_t)c->revision));
    int64_t now = (int64_t)time(NULL);
    for (size_t i = 0; i < c->nmaps; i++) {
        if (c->maps[i].origin != MAP_ORIGIN_API) {
            continue;
        }
        json_t *m = mapjson_from_conf(&c->maps[i], now);
        if (m == NULL) {
            goto oom;
        }
        json_object_del(m, "lease"); /* the file keeps the end of the lease, not what is left */
        if (json_array_append_new(maps, m) != 0) {
            goto oom;
        }
    }
    json_object_set(root, "mappings", maps);
    text = json_dumps(root, JSON_INDENT(1));
    if (text == NULL) {
        goto oom;
    }
    char tmp[CONFIG_PATHLEN + 8];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd == -1 && errno == ENOENT) {
        /* Its directory, one level, as systemd's StateDirectory= would make it. */
        char dir[CONFIG_PATHLEN];
        snprintf(dir, sizeof(dir), "%s", path);
        if (mkdir(dirname(dir), 0750) == 0) {
            fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
        }
    }
    if (fd == -1) {
        snprintf(err, errlen, "%s: cannot write the state file: %s", tmp, strerror(errno));
        goto out;
    }
    size_t len = strlen(text);
    text[len] = '\n'; /* json_dumps() ends with a NUL we no longer need */
    if (write_all(fd, text, len + 1) != 0 || fsync(fd) != 0) {
        snprintf(err, errlen, "%s: writing the state file: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        goto out;
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        snprintf(err, errlen, "%s: cannot replace the state file: %s", path, strerror(errno));
        unlink(tmp);
        goto out;
    }
    if (sync_dir(path) != 0) {
        /* The new file is in place: failing now would tell the client its change was not made
         * while the next start would make it. It is made; only its durability is in doubt. */
        log_warn("state %s: syncing its directory: %s", path, strerror(errno));
    }
    rc = 0;
    goto out;
oom:
    snprintf(err, errlen, "%s: out of memory writing the state file", path);
out:
    free(text);
    json_decref(maps);
    json_decref(root);
    return rc;
}
