/*
 * msg: the head of an HTTP/1.x or RTSP message, and the framing of what follows it. HTTP
 * (RFC 9112) and RTSP (RFC 2326; RTSP 2.0 heads, RFC 7826, parse the same way) share one grammar
 * with another protocol name, so they share this parser. Pure functions over buffers: no
 * sockets, no allocation, nothing kept between calls but what the caller keeps.
 *
 * msg_parse() reads one head in place: the start line and each header are pointer+length slices
 * of the caller's buffer, valid as long as it is. It returns the head's length, MSG_PARTIAL when
 * the head is not complete yet, or MSG_ERROR with a static reason and the status a server
 * answers it with (400, 505...).
 *
 * How strict it is depends on who sent the message:
 *   - MSG_HTTP_REQUEST, from a client the gateway stands in front of a weak device for: HTTP/1.0
 *     or 1.1; lines end in CRLF only; no folded header lines, no space before a header's colon,
 *     no control character in a value, no name with _ standing for Content-Length,
 *     Transfer-Encoding or Host; exactly one Host (HTTP/1.1), a host and a port; Content-Length
 *     one number, given once; Transfer-Encoding is chunked alone (no other coding, nothing
 *     empty), HTTP/1.1 only, never with Content-Length. Anything two parsers could read
 *     differently (request smuggling) is refused.
 *   - MSG_HTTP_RESPONSE, from the device: a bare LF ends a line too, equal Content-Lengths
 *     given twice are one (as RFC 9112 lets a recipient do), Transfer-Encoding may have gzip,
 *     deflate or compress and need not end in chunked (the body then ends with the
 *     connection); the rest as for requests.
 *   - MSG_RTSP, either way: bare LF line ends, equal Content-Lengths; Transfer-Encoding is just a
 *     header (RTSP has no chunked bodies).
 */
#ifndef PORTGATE_MSG_H
#define PORTGATE_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

#define MSG_MAX_HEADERS 100
#define MSG_PARTIAL (-2)
#define MSG_ERROR (-1)

enum msg_kind { MSG_HTTP_REQUEST, MSG_HTTP_RESPONSE, MSG_RTSP };

struct msg_str {
    const char *p;
    size_t n;
};

struct msg_header {
    struct msg_str name, value; /* value without leading and trailing blanks */
};

struct msg {
    bool response;
    struct msg_str method, target; /* a request: its method and request-target, as sent */
    int status;                    /* a response */
    struct msg_str reason;
    int major, minor; /* HTTP/major.minor, RTSP/major.minor */
    struct msg_header hdr[MSG_MAX_HEADERS];
    size_t nhdr;
    size_t head_len;     /* the start line, the headers and the empty line */
    bool has_length;     /* a Content-Length was given */
    uint64_t length;     /* its value; 0 without one */
    bool chunked;        /* HTTP: Transfer-Encoding ends in chunked */
    struct msg_str host; /* HTTP requests: the Host header's value, or empty */
};

/* Parses the head of the message at buf. Returns head_len (> 0), MSG_PARTIAL, or MSG_ERROR with
 * *why set to a static reason and *status to the answer it deserves (400, 501, 505; a response
 * that does not parse: 502). */
ssize_t msg_parse(const char *buf, size_t len, enum msg_kind kind, struct msg *m, const char **why,
                  int *status);
/* The first header called name (case-insensitive), or NULL. */
const struct msg_str *msg_header(const struct msg *m, const char *name);
/* Compares s with a NUL-terminated string, case-insensitively. Inline: for a literal the
 * length is known when compiling, and most names differ in length before any byte is read
 * (the filters compare every header's name with a few). */
static inline bool msg_str_ieq(struct msg_str s, const char *lit)
{
    size_t n = strlen(lit);
    return s.n == n && strncasecmp(s.p, lit, n) == 0;
}
/* True if the comma-separated list value has the element tok (case-insensitive, blanks around
 * elements ignored): Connection: keep-alive, Upgrade. */
bool msg_list_has(struct msg_str value, const char *tok);

/*
 * A chunked body (RFC 9112 7.1): which bytes belong to it, and where it ends. Chunk sizes are
 * hexadecimal, at most 15 digits, then blanks and ";" extensions (no control characters); a
 * trailer is a header line (a token, a colon, no control characters). A size line and each
 * trailer line are at most MSG_CHUNK_LINE_MAX bytes, the trailers MSG_TRAILERS_MAX in all;
 * lines end in CRLF.
 */
#define MSG_CHUNK_LINE_MAX 4096
#define MSG_TRAILERS_MAX 16384

struct msg_chunked {
    int state;
    uint64_t left;   /* bytes of the current chunk's data still to come */
    size_t line;     /* bytes of the current size or trailer line seen */
    size_t trailers; /* bytes of trailers seen */
    unsigned digits;
};

/* Starts following a chunked body. */
void msg_chunked_init(struct msg_chunked *c);
/* Takes the next len bytes of the stream, unchanged: returns how many belong to the body (all
 * of them, or fewer when the body ends within them: *done is then set), or MSG_ERROR with
 * *why. */
ssize_t msg_chunked_scan(struct msg_chunked *c, const char *in, size_t len, bool *done,
                         const char **why);
/* The same, but writes the body to out framed anew, as a request goes to a device: each size
 * in plain hexadecimal without extensions, the data, and a last chunk without trailers. So a
 * device reads the body as the gateway did, whatever its own parser makes of extensions and
 * trailers. Returns the input taken (it stops early when out lacks room: *out_len is what it
 * wrote), or MSG_ERROR with *why. */
ssize_t msg_chunked_reframe(struct msg_chunked *c, const char *in, size_t len, char *out,
                            size_t room, size_t *out_len, bool *done, const char **why);

#endif
