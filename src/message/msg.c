#include "message/msg.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* ---- pieces ---- */

static bool is_token_char(unsigned char c)
{
    /* RFC 9110 5.6.2 token (RFC 2326 uses RFC 2616's, the same set): no controls, no
     * separators. */
    return c > 32 && c < 127 && strchr("()<>@,;:\\\"/[]?={}", c) == NULL;
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* s without blanks before and after. */
static struct msg_str trim(struct msg_str s)
{
    while (s.n > 0 && is_blank(s.p[0])) {
        s.p++;
        s.n--;
    }
    while (s.n > 0 && is_blank(s.p[s.n - 1])) {
        s.n--;
    }
    return s;
}

/* Calls fn for each element of a comma-separated list (trimmed, empty ones skipped) until it
 * returns true; returns whether one did. */
static bool list_each(struct msg_str v, bool (*fn)(struct msg_str el, void *arg), void *arg)
{
    const char *p = v.p, *end = v.p + v.n;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *e = comma != NULL ? comma : end;
        struct msg_str el = trim((struct msg_str){p, (size_t)(e - p)});
        if (el.n > 0 && fn(el, arg)) {
            return true;
        }
        p = e + 1;
    }
    return false;
}

static bool el_is(struct msg_str el, void *arg)
{
    return msg_str_ieq(el, arg);
}

bool msg_list_has(struct msg_str value, const char *tok)
{
    return list_each(value, el_is, (void *)tok);
}

const struct msg_str *msg_header(const struct msg *m, const char *name)
{
    for (size_t i = 0; i < m->nhdr; i++) {
        if (msg_str_ieq(m->hdr[i].name, name)) {
            return &m->hdr[i].value;
        }
    }
    return NULL;
}

/* ---- lines ---- */

/* The end of the line starting at p (the CR of CRLF, or the LF), NULL if it is not complete
 * before end, or NULL with *bad set to a reason: a bare CR, or a bare LF when crlf is required. */
static const char *line_end(const char *p, const char *end, bool crlf, const char **bad)
{
    const char *lf = memchr(p, '\n', (size_t)(end - p));
    const char *stop = lf != NULL ? lf : end;
    const char *cr = memchr(p, '\r', (size_t)(stop - p));
    if (cr != NULL && cr + 1 != stop) {
        *bad = "bare CR";
        return NULL;
    }
    if (cr != NULL && lf == NULL) {
        return NULL; /* the CR is the last byte: its LF may follow */
    }
    if (lf == NULL) {
        return NULL;
    }
    if (cr == NULL && crlf) {
        *bad = "bare LF";
        return NULL;
    }
    return cr != NULL ? cr : lf;
}

static const char *next_line(const char *eol)
{
    return *eol == '\r' ? eol + 2 : eol + 1;
}

/* "NAME/" DIGIT "." DIGIT, NAME being HTTP or RTSP. */
static int parse_version(const char *p, size_t n, const char *name, int *major, int *minor)
{
    if (n != 8 || strncmp(p, name, 4) != 0 || p[4] != '/' || p[5] < '0' || p[5] > '9' ||
        p[6] != '.' || p[7] < '0' || p[7] > '9') {
        return -1;
    }
    *major = p[5] - '0';
    *minor = p[7] - '0';
    return 0;
}

struct parse {
    enum msg_kind kind;
    const char *name; /* "HTTP" or "RTSP" */
    bool http, strict;
    const char **why;
    int *status;
};

static int fail(const struct parse *ps, int status, const char *why)
{
    *ps->why = why;
    *ps->status = ps->kind == MSG_HTTP_RESPONSE ? 502 : status;
    return -1;
}

static int parse_start_line(const struct parse *ps, const char *p, const char *eol, struct msg *m)
{
    const char *sp1 = memchr(p, ' ', (size_t)(eol - p));
    if (sp1 == NULL) {
        return fail(ps, 400, "start line without a space");
    }
    bool versioned = (size_t)(sp1 - p) == 8 && strncmp(p, ps->name, 4) == 0 && p[4] == '/';
    if (versioned && ps->kind != MSG_HTTP_REQUEST) {
        /* status-line: VERSION SP 3DIGIT SP [reason] */
        m->response = true;
        if (parse_version(p, 8, ps->name, &m->major, &m->minor) != 0) {
            return fail(ps, 400, ps->http ? "bad HTTP version" : "bad RTSP version");
        }
        const char *c = sp1 + 1;
        if (eol - c < 3 || c[0] < '1' || c[0] > '5' || c[1] < '0' || c[1] > '9' || c[2] < '0' ||
            c[2] > '9' || (eol - c > 3 && c[3] != ' ')) {
            return fail(ps, 400, "bad status code");
        }
        m->status = (c[0] - '0') * 100 + (c[1] - '0') * 10 + (c[2] - '0');
        m->reason.p = eol - c > 3 ? c + 4 : eol;
        m->reason.n = (size_t)(eol - m->reason.p);
        for (size_t i = 0; i < m->reason.n; i++) {
            unsigned char ch = (unsigned char)m->reason.p[i];
            if ((ch < 32 && ch != '\t') || ch == 127) {
                return fail(ps, 400, "control character in the reason phrase");
            }
        }
        return 0;
    }
    if (ps->kind == MSG_HTTP_RESPONSE) {
        return fail(ps, 502, "not an HTTP response");
    }
    /* request-line: method SP request-target SP VERSION, one space each */
    m->response = false;
    for (const char *q = p; q < sp1; q++) {
        if (!is_token_char((unsigned char)*q)) {
            return fail(ps, 400, "bad method");
        }
    }
    const char *sp2 = memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1));
    if (sp1 == p || sp2 == NULL || sp2 == sp1 + 1) {
        return fail(ps, 400, "bad request line");
    }
    for (const char *q = sp1 + 1; q < sp2; q++) {
        if ((unsigned char)*q <= 32 || *q == 127) {
            return fail(ps, 400, "bad request target");
        }
    }
    if (parse_version(sp2 + 1, (size_t)(eol - sp2 - 1), ps->name, &m->major, &m->minor) != 0) {
        return fail(ps, 400, ps->http ? "bad HTTP version" : "bad RTSP version");
    }
    if (ps->http && (m->major != 1 || m->minor > 1)) {
        return fail(ps, 505, "HTTP version not supported (HTTP/1.0 and 1.1 are)");
    }
    m->method = (struct msg_str){p, (size_t)(sp1 - p)};
    m->target = (struct msg_str){sp1 + 1, (size_t)(sp2 - sp1 - 1)};
    return 0;
}

/* Content-Length: digits only (at most 9 for RTSP, 18 for HTTP). */
static int parse_length(struct msg_str v, size_t max_digits, uint64_t *out)
{
    if (v.n == 0 || v.n > max_digits) {
        return -1;
    }
    uint64_t n = 0;
    for (size_t i = 0; i < v.n; i++) {
        if (v.p[i] < '0' || v.p[i] > '9') {
            return -1;
        }
        n = n * 10 + (uint64_t)(v.p[i] - '0');
    }
    *out = n;
    return 0;
}

/* Transfer-Encoding's codings, across its header lines: whether the last is chunked, whether
 * chunked comes anywhere else, and whether one is unknown. */
struct codings {
    bool last_chunked, chunked_before, unknown, any;
    bool request; /* a request may have chunked only: no coding a device could get wrong */
    size_t lines; /* Transfer-Encoding header lines, empty ones too */
};

static bool coding(struct msg_str el, void *arg)
{
    struct codings *c = arg;
    if (c->last_chunked) {
        c->chunked_before = true;
    }
    c->any = true;
    c->last_chunked = msg_str_ieq(el, "chunked");
    if (!c->last_chunked &&
        (c->request || (!msg_str_ieq(el, "gzip") && !msg_str_ieq(el, "deflate") &&
                        !msg_str_ieq(el, "compress")))) {
        c->unknown = true;
    }
    return false;
}

/* A Host value: a name or an IPv4 address, or an IPv6 literal in brackets; then ":PORT" or
 * nothing. Stricter than RFC 3986's reg-name (no sub-delims), which no device needs. */
static bool host_ok(struct msg_str v)
{
    size_t i = 0;
    if (v.n > 0 && v.p[0] == '[') {
        for (i = 1; i < v.n && v.p[i] != ']'; i++) {
            unsigned char ch = (unsigned char)v.p[i];
            if (!((ch >= '0' && ch <= '9') || ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'f') ||
                  ch == ':' || ch == '.')) {
                return false;
            }
        }
        if (i == v.n) {
            return false;
        }
        i++;
    } else {
        for (; i < v.n && v.p[i] != ':'; i++) {
            unsigned char ch = (unsigned char)v.p[i];
            if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_' || ch == '~')) {
                return false;
            }
        }
    }
    if (i < v.n) {
        if (v.p[i] != ':' || v.n - i < 2 || v.n - i > 6) {
            return false;
        }
        for (i++; i < v.n; i++) {
            if (v.p[i] < '0' || v.p[i] > '9') {
                return false;
            }
        }
    }
    return true;
}

/* A request header whose name, with _ read as -, is one the framing or routing depends on:
 * some servers read Content_Length as Content-Length. */
static bool lookalike(struct msg_str name)
{
    if (memchr(name.p, '_', name.n) == NULL) {
        return false;
    }
    static const char *const names[] = {"content-length", "transfer-encoding", "host"};
    for (size_t k = 0; k < 3; k++) {
        size_t n = strlen(names[k]);
        if (name.n != n) {
            continue;
        }
        size_t i = 0;
        while (i < n &&
               ((name.p[i] | 0x20) == names[k][i] || (name.p[i] == '_' && names[k][i] == '-'))) {
            i++;
        }
        if (i == n) {
            return true;
        }
    }
    return false;
}

/* What the headers say of the body and the host, once all are read. */
static int framing(const struct parse *ps, struct msg *m, const struct codings *te, size_t nlength,
                   size_t nhost)
{
    if (!ps->http) {
        return 0;
    }
    if (te->lines > 0 && !te->any) {
        return fail(ps, 400, "an empty Transfer-Encoding");
    }
    if (te->any) {
        if (m->major == 1 && m->minor == 0 && !m->response) {
            return fail(ps, 400, "Transfer-Encoding in an HTTP/1.0 request");
        }
        if (nlength > 0) {
            return fail(ps, 400, "both Content-Length and Transfer-Encoding");
        }
        if (te->unknown) {
            return fail(ps, 501, "a Transfer-Encoding the gateway does not know");
        }
        if (!te->last_chunked && !m->response) {
            return fail(ps, 400, "a request body whose length is unknown (chunked must be last)");
        }
        if (te->chunked_before) {
            return fail(ps, 400, "chunked applied twice, or not last, in Transfer-Encoding");
        }
        m->chunked = te->last_chunked; /* a response not chunked ends with the connection */
    }
    if (!m->response) {
        if (nhost > 1) {
            return fail(ps, 400, "more than one Host header");
        }
        if (nhost == 0 && m->minor >= 1) {
            return fail(ps, 400, "an HTTP/1.1 request without Host");
        }
        if (nhost == 1 && !host_ok(m->host)) {
            return fail(ps, 400, "bad Host");
        }
    }
    return 0;
}

ssize_t msg_parse(const char *buf, size_t len, enum msg_kind kind, struct msg *m, const char **why,
                  int *status)
{
    struct parse ps = {.kind = kind,
                       .name = kind == MSG_RTSP ? "RTSP" : "HTTP",
                       .http = kind != MSG_RTSP,
                       .strict = kind == MSG_HTTP_REQUEST,
                       .why = why,
                       .status = status};
    const char *p = buf, *end = buf + len, *bad = NULL;
    memset(m, 0, sizeof(*m));
    *why = "malformed message";
    *status = 400;
    const char *eol = line_end(p, end, ps.strict, &bad);
    if (eol == NULL) {
        if (bad != NULL) {
            fail(&ps, 400,
                 strcmp(bad, "bare CR") == 0 ? "bare CR in the start line"
                                             : "bare LF in the start line");
            return MSG_ERROR;
        }
        /* A request that is no request (TLS to a plain port, a binary protocol) is known by
         * its first bytes: no need to wait for a line that never ends. */
        for (const char *q = p; kind == MSG_HTTP_REQUEST && q < end && *q != ' '; q++) {
            if (!is_token_char((unsigned char)*q)) {
                fail(&ps, 400, "bad method");
                return MSG_ERROR;
            }
        }
        return MSG_PARTIAL;
    }
    if (parse_start_line(&ps, p, eol, m) != 0) {
        return MSG_ERROR;
    }
    struct codings te = {.request = kind == MSG_HTTP_REQUEST};
    size_t nlength = 0, nhost = 0;
    for (p = next_line(eol);; p = next_line(eol)) {
        eol = line_end(p, end, ps.strict, &bad);
        if (eol == NULL) {
            if (bad != NULL) {
                fail(&ps, 400,
                     strcmp(bad, "bare CR") == 0 ? "bare CR in a header" : "bare LF in a header");
                return MSG_ERROR;
            }
            return MSG_PARTIAL;
        }
        if (eol == p) {
            break; /* the empty line */
        }
        if (is_blank(*p)) {
            fail(&ps, 400, "folded header line");
            return MSG_ERROR;
        }
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        if (colon == NULL || colon == p) {
            fail(&ps, 400, "header without a name");
            return MSG_ERROR;
        }
        for (const char *q = p; q < colon; q++) {
            if (!is_token_char((unsigned char)*q)) {
                const char *r = q;
                while (r < colon && is_blank(*r)) {
                    r++;
                }
                fail(&ps, 400, r == colon ? "space before a header's colon" : "bad header name");
                return MSG_ERROR;
            }
        }
        if (m->nhdr == MSG_MAX_HEADERS) {
            fail(&ps, 431, "too many headers");
            return MSG_ERROR;
        }
        struct msg_header *h = &m->hdr[m->nhdr++];
        h->name = (struct msg_str){p, (size_t)(colon - p)};
        h->value = trim((struct msg_str){colon + 1, (size_t)(eol - colon - 1)});
        for (size_t i = 0; ps.http && i < h->value.n; i++) {
            unsigned char ch = (unsigned char)h->value.p[i];
            if ((ch < 32 && ch != '\t') || ch == 127) {
                fail(&ps, 400, "control character in a header value");
                return MSG_ERROR;
            }
        }
        if (msg_str_ieq(h->name, "Content-Length")) {
            uint64_t n;
            if (parse_length(h->value, ps.http ? 18 : 9, &n) != 0) {
                fail(&ps, 400, "bad Content-Length");
                return MSG_ERROR;
            }
            if (nlength > 0 && (ps.strict || n != m->length)) {
                fail(&ps, 400, "Content-Length given twice");
                return MSG_ERROR;
            }
            nlength++;
            m->has_length = true;
            m->length = n;
        } else if (ps.http && msg_str_ieq(h->name, "Transfer-Encoding")) {
            te.lines++;
            list_each(h->value, coding, &te);
        } else if (ps.http && msg_str_ieq(h->name, "Host")) {
            nhost++;
            m->host = h->value;
        } else if (ps.strict && lookalike(h->name)) {
            fail(&ps, 400,
                 "a header name with _ that stands for Content-Length, "
                 "Transfer-Encoding or Host");
            return MSG_ERROR;
        }
    }
    if (framing(&ps, m, &te, nlength, nhost) != 0) {
        return MSG_ERROR;
    }
    m->head_len = (size_t)(next_line(eol) - buf);
    return (ssize_t)m->head_len;
}

/* ---- chunked bodies ---- */

enum {
    C_SIZE,    /* hex digits of a chunk size */
    C_BWS,     /* blanks after them, before ';' or the CR */
    C_EXT,     /* after ';', up to the CR: extensions */
    C_SIZE_LF, /* the LF after the size line */
    C_DATA,    /* chunk data */
    C_DATA_CR, /* the CRLF after it */
    C_DATA_LF,
    C_TRAILER,      /* the start of a trailer line, or of the final CRLF */
    C_TRAILER_NAME, /* a trailer's name, up to its colon */
    C_TRAILER_LINE, /* its value, up to the CR */
    C_TRAILER_LF,
    C_END_LF, /* the LF of the final CRLF */
    C_DONE,
};

/* What a byte of framing did (step()). */
enum { EV_NONE, EV_CHUNK, EV_CHUNK_END, EV_LAST };

void msg_chunked_init(struct msg_chunked *c)
{
    memset(c, 0, sizeof(*c));
    c->state = C_SIZE;
}

static int hexval(unsigned char ch)
{
    if (ch >= '0' && ch <= '9') {
        return ch - '0';
    }
    ch |= 0x20;
    return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

static bool is_ctl(unsigned char ch)
{
    return (ch < 32 && ch != '\t') || ch == 127;
}

/* Takes one byte of framing (any state but C_DATA and C_DONE): returns what it completed
 * (EV_*), or -1 with *why. */
static int step(struct msg_chunked *c, unsigned char ch, const char **why)
{
    if (c->state >= C_TRAILER && ++c->trailers > MSG_TRAILERS_MAX) {
        *why = "trailers too long";
        return -1;
    }
    if (++c->line > MSG_CHUNK_LINE_MAX) {
        *why = c->state >= C_TRAILER ? "trailer line too long" : "chunk size line too long";
        return -1;
    }
    switch (c->state) {
    case C_SIZE: {
        int v = hexval(ch);
        if (v >= 0) {
            if (++c->digits > 15) {
                *why = "chunk size too large";
                return -1;
            }
            c->left = c->left * 16 + (uint64_t)v;
            return EV_NONE;
        }
        if (c->digits == 0) {
            *why = "bad chunk size";
            return -1;
        }
        if (ch == '\n') {
            *why = "bare LF in a chunk size line";
            return -1;
        }
        c->state = ch == '\r' ? C_SIZE_LF : ch == ';' ? C_EXT : is_blank((char)ch) ? C_BWS : -1;
        if (c->state < 0) {
            *why = "bad chunk size";
            return -1;
        }
        return EV_NONE;
    }
    case C_BWS:
        if (ch == '\r' || ch == ';' || is_blank((char)ch)) {
            c->state = ch == '\r' ? C_SIZE_LF : ch == ';' ? C_EXT : C_BWS;
            return EV_NONE;
        }
        *why = "bad chunk extension";
        return -1;
    case C_EXT:
        if (ch == '\r') {
            c->state = C_SIZE_LF;
        } else if (is_ctl(ch)) {
            *why = "control character in a chunk extension";
            return -1;
        }
        return EV_NONE;
    case C_SIZE_LF:
        if (ch != '\n') {
            *why = "bare CR in a chunk size line";
            return -1;
        }
        c->digits = 0;
        c->line = 0;
        c->state = c->left > 0 ? C_DATA : C_TRAILER;
        return c->left > 0 ? EV_CHUNK : EV_NONE;
    case C_DATA_CR:
    case C_DATA_LF:
        if (ch != (c->state == C_DATA_CR ? '\r' : '\n')) {
            *why = "chunk data longer than its size";
            return -1;
        }
        c->state = c->state == C_DATA_CR ? C_DATA_LF : C_SIZE;
        c->line = 0;
        return c->state == C_SIZE ? EV_CHUNK_END : EV_NONE;
    case C_TRAILER:
        if (ch == '\r') {
            c->state = C_END_LF;
        } else if (is_token_char(ch)) {
            c->state = C_TRAILER_NAME;
        } else {
            *why = "bad trailer line";
            return -1;
        }
        return EV_NONE;
    case C_TRAILER_NAME:
        if (ch == ':') {
            c->state = C_TRAILER_LINE;
        } else if (!is_token_char(ch)) {
            *why = "bad trailer line";
            return -1;
        }
        return EV_NONE;
    case C_TRAILER_LINE:
        if (ch == '\r') {
            c->state = C_TRAILER_LF;
        } else if (is_ctl(ch)) {
            *why = "control character in a trailer";
            return -1;
        }
        return EV_NONE;
    case C_TRAILER_LF:
        if (ch != '\n') {
            *why = "bare CR in a trailer";
            return -1;
        }
        c->state = C_TRAILER;
        c->line = 0;
        return EV_NONE;
    default: /* C_END_LF */
        if (ch != '\n') {
            *why = "bare CR at the end of a chunked body";
            return -1;
        }
        c->state = C_DONE;
        return EV_LAST;
    }
}

ssize_t msg_chunked_scan(struct msg_chunked *c, const char *in, size_t len, bool *done,
                         const char **why)
{
    size_t i = 0;
    while (i < len && c->state != C_DONE) {
        if (c->state == C_DATA) {
            uint64_t n = len - i < c->left ? len - i : c->left;
            i += (size_t)n;
            c->left -= n;
            c->state = c->left == 0 ? C_DATA_CR : C_DATA;
            continue;
        }
        if (step(c, (unsigned char)in[i], why) < 0) {
            return MSG_ERROR;
        }
        i++;
    }
    *done = c->state == C_DONE;
    return (ssize_t)i;
}

ssize_t msg_chunked_reframe(struct msg_chunked *c, const char *in, size_t len, char *out,
                            size_t room, size_t *out_len, bool *done, const char **why)
{
    size_t i = 0, o = 0;
    while (i < len && c->state != C_DONE) {
        if (c->state == C_DATA) {
            uint64_t n = len - i < c->left ? len - i : c->left;
            n = n < room - o ? n : room - o;
            if (n == 0) {
                break;
            }
            memcpy(out + o, in + i, (size_t)n);
            i += (size_t)n;
            o += (size_t)n;
            c->left -= n;
            c->state = c->left == 0 ? C_DATA_CR : C_DATA;
            continue;
        }
        if (room - o < 24) {
            break; /* room for what this byte may complete: a size line, or the end */
        }
        int ev = step(c, (unsigned char)in[i], why);
        if (ev < 0) {
            return MSG_ERROR;
        }
        i++;
        if (ev == EV_CHUNK) {
            int n = snprintf(out + o, room - o, "%llx\r\n", (unsigned long long)c->left);
            o += n > 0 ? (size_t)n : 0;
        } else if (ev == EV_CHUNK_END) {
            memcpy(out + o, "\r\n", 2);
            o += 2;
        } else if (ev == EV_LAST) {
            memcpy(out + o, "0\r\n\r\n", 5);
            o += 5;
        }
    }
    *out_len = o;
    *done = c->state == C_DONE;
    return (ssize_t)i;
}
