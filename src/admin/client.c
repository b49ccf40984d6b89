#include "admin/client.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

int client_parse_url(const char *url, struct client_target *t, char *err, size_t errlen)
{
    if (strncmp(url, "http://", 7) != 0) {
        snprintf(err, errlen, "\"%s\": expected http://HOST:PORT (the admin listener)", url);
        return -1;
    }
    const char *h = url + 7, *end;
    if (*h == '[') {
        end = strchr(h, ']');
        if (end == NULL) {
            snprintf(err, errlen, "\"%s\": no ']' after the IPv6 address", url);
            return -1;
        }
        h++;
    } else {
        end = h + strcspn(h, ":/");
    }
    size_t hl = (size_t)(end - h);
    if (hl == 0 || hl >= sizeof(t->host)) {
        snprintf(err, errlen, "\"%s\": no host", url);
        return -1;
    }
    memcpy(t->host, h, hl);
    t->host[hl] = '\0';
    if (*end == ']') {
        end++;
    }
    snprintf(t->port, sizeof(t->port), "80");
    if (*end == ':') {
        size_t pl = strspn(end + 1, "0123456789");
        long port = pl > 0 && pl <= 5 ? strtol(end + 1, NULL, 10) : 0;
        if (port < 1 || port > 65535 || (end[1 + pl] != '\0' && end[1 + pl] != '/')) {
            snprintf(err, errlen, "\"%s\": a bad port", url);
            return -1;
        }
        memcpy(t->port, end + 1, pl);
        t->port[pl] = '\0';
        end += 1 + pl;
    }
    if (*end != '\0' && strcmp(end, "/") != 0) {
        snprintf(err, errlen, "\"%s\": give the listener only, without a path", url);
        return -1;
    }
    t->socket = NULL;
    return 0;
}

static int connect_target(const struct client_target *t, char *err, size_t errlen)
{
    if (t->socket != NULL) {
        struct sockaddr_un sun = {.sun_family = AF_UNIX};
        if (strlen(t->socket) >= sizeof(sun.sun_path)) {
            snprintf(err, errlen, "%s: path too long", t->socket);
            return -1;
        }
        snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", t->socket);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
            return fd;
        }
        snprintf(err, errlen, "%s: %s%s", t->socket, strerror(errno),
                 errno == ENOENT || errno == ECONNREFUSED
                     ? " (is the gateway running, with this admin-socket?)"
                     : (errno == EACCES ? " (run as root or a member of group portgate)" : ""));
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = getaddrinfo(t->host, t->port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "%s: %s", t->host, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            break;
        }
        snprintf(err, errlen, "%s:%s: %s", t->host, t->port, strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

/* Waits for fd to be ready for events until the deadline. Returns 0, or -1 (timeout). */
static int wait_fd(int fd, short events, const struct timespec *deadline)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long ms = (deadline->tv_sec - now.tv_sec) * 1000 + (deadline->tv_nsec - now.tv_nsec) / 1000000;
    if (ms <= 0) {
        return -1;
    }
    struct pollfd p = {.fd = fd, .events = events};
    return poll(&p, 1, (int)ms) == 1 ? 0 : -1;
}

int client_parse_response(const char *buf, size_t len, struct client_response *r)
{
    memset(r, 0, sizeof(*r));
    const char *head_end = NULL;
    for (size_t i = 0; i + 3 < len; i++) {
        if (memcmp(buf + i, "\r\n\r\n", 4) == 0) {
            head_end = buf + i;
            break;
        }
    }
    if (head_end == NULL || len < 12 || strncmp(buf, "HTTP/1.", 7) != 0 || buf[8] != ' ') {
        return -1;
    }
    int status = 0;
    for (int i = 9; i < 12; i++) {
        if (buf[i] < '0' || buf[i] > '9') {
            return -1;
        }
        status = status * 10 + (buf[i] - '0');
    }
    /* Headers: Content-Length (when given, the body is exactly that long) and ETag. */
    long long clen = -1;
    const char *line = memchr(buf, '\n', (size_t)(head_end - buf));
    while (line != NULL && line < head_end) {
        line++;
        const char *eol = memchr(line, '\r', (size_t)(head_end + 2 - line));
        if (eol == NULL) {
            break;
        }
        size_t ll = (size_t)(eol - line);
        if (ll > 15 && strncasecmp(line, "Content-Length:", 15) == 0) {
            const char *v = line + 15;
            while (*v == ' ') {
                v++;
            }
            if (*v < '0' || *v > '9') {
                return -1;
            }
            clen = strtoll(v, NULL, 10);
        } else if (ll > 5 && strncasecmp(line, "ETag:", 5) == 0) {
            const char *v = line + 5;
            while (*v == ' ' && v < eol) {
                v++;
            }
            size_t vl = (size_t)(eol - v);
            if (vl < sizeof(r->etag)) {
                memcpy(r->etag, v, vl);
                r->etag[vl] = '\0';
            }
        }
        line = memchr(eol, '\n', (size_t)(head_end + 4 - eol));
    }
    const char *body = head_end + 4;
    size_t blen = len - (size_t)(body - buf);
    if (clen >= 0) {
        if ((unsigned long long)clen > blen) {
            return -1; /* cut short */
        }
        blen = (size_t)clen;
    }
    r->body = malloc(blen + 1);
    if (r->body == NULL) {
        return -1;
    }
    memcpy(r->body, body, blen);
    r->body[blen] = '\0';
    r->len = blen;
    r->status = status;
    return 0;
}

int client_request(const struct client_target *t, const char *method, const char *path,
                   const char *body, struct client_response *r, char *err, size_t errlen)
{
    memset(r, 0, sizeof(*r));
    int fd = connect_target(t, err, errlen);
    if (fd < 0) {
        return -1;
    }
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += CLIENT_TIMEOUT_MS / 1000;
    size_t blen = body != NULL ? strlen(body) : 0;
    char auth[128] = "";
    if (t->token != NULL) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s\r\n", t->token);
    }
    char *req = NULL;
    /* Host with the port, as a browser sends it: the HTTP listener answers only to its own
     * names (IPv6 in brackets). */
    char host[sizeof(t->host) + 16];
    if (t->socket != NULL) {
        snprintf(host, sizeof(host), "portgate");
    } else {
        snprintf(host, sizeof(host), strchr(t->host, ':') != NULL ? "[%s]:%s" : "%s:%s", t->host,
                 t->port);
    }
    int n = asprintf(&req,
                     "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: portgate-cli\r\n%s%s"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                     method, path, host, auth,
                     body != NULL ? "Content-Type: application/json\r\n" : "", blen);
    int rc = -1;
    char *buf = NULL;
    if (n < 0) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    const char *parts[2] = {req, body};
    size_t lens[2] = {(size_t)n, blen};
    for (int p = 0; p < 2; p++) {
        size_t off = 0;
        while (off < lens[p]) {
            ssize_t w = send(fd, parts[p] + off, lens[p] - off, MSG_NOSIGNAL);
            if (w < 0 && errno == EINTR) {
                continue;
            }
            if (w < 0) {
                snprintf(err, errlen, "sending: %s", strerror(errno));
                goto out;
            }
            off += (size_t)w;
        }
    }
    size_t len = 0, cap = 65536;
    buf = malloc(cap);
    while (buf != NULL) {
        if (wait_fd(fd, POLLIN, &deadline) != 0) {
            snprintf(err, errlen, "no answer within %ds", CLIENT_TIMEOUT_MS / 1000);
            goto out;
        }
        if (len == cap) {
            if (cap >= CLIENT_MAX_BODY) {
                snprintf(err, errlen, "an answer larger than %u bytes", CLIENT_MAX_BODY);
                goto out;
            }
            char *nb = realloc(buf, cap * 2);
            if (nb == NULL) {
                break;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t got = recv(fd, buf + len, cap - len, 0);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got < 0) {
            snprintf(err, errlen, "reading the answer: %s", strerror(errno));
            goto out;
        }
        if (got == 0) {
            break;
        }
        len += (size_t)got;
    }
    if (buf == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    if (client_parse_response(buf, len, r) != 0) {
        snprintf(err, errlen, "a malformed answer from the gateway");
        goto out;
    }
    rc = 0;
out:
    free(buf);
    free(req);
    close(fd);
    return rc;
}
