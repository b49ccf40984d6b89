#include "message/msg.h"

#include <string.h>
#include <strings.h>

/* ---- pieces ---- */

static bool is_token_char(unsigned char c)
{
    /* RFC 9110 5.6.2 token (RFC 2326 uses RFC 2616's, the same set): no controls, no
     * separators. */
    return c > 32 && c < 127 && strchr("()<>@,;:\\\"/[]?={}", c) == NULL;
}

bool msg_str_ieq(struct msg_str s, const char *lit)
{
    size_t n = strlen(lit);
    return s.n == n && strncasecmp(s.p, lit, n) == 0;
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
    if (ps->http && m->major != 1) {
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
};

static bool coding(struct msg_str el, void *arg)
{
    struct codings *c = arg;
    if (c->last_chunked) {
        c->chunked_before = true;
    }
    c->any = true;
    c->last_chunked = msg_str_ieq(el, "chunked");
    if (!c->last_chunked && !msg_str_ieq(el, "gzip") && !msg_str_ieq(el, "deflate") &&
        !msg_str_ieq(el, "compress") && !msg_str_ieq(el, "x-gzip")) {
        c->unknown = true;
    }
    return false;
}

/* A Host value: a reg-name, IPv4 or bracketed IPv6 literal, and a port; nothing else. */
static bool host_ok(struct msg_str v)
{
    for (size_t i = 0; i < v.n; i++) {
        unsigned char ch = (unsigned char)v.p[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              strchr("-._~!$&'()*+,;=:[]%", ch) != NULL) ||
            ch == '\0') {
            return false;
        }
    }
    return true;
}

/* What the headers say of the body and the host, once all are read. */
static int framing(const struct parse *ps, struct msg *m, const struct codings *te, size_t nlength,
                   size_t nhost)
{
    if (!ps->http) {
        return 0;
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
            fail(&ps, 400, strcmp(bad, "bare CR") == 0 ? "bare CR in the start line"
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
    struct codings te = {0};
    size_t nlength = 0, nhost = 0;
    for (p = next_line(eol);; p = next_line(eol)) {
        eol = line_end(p, end, ps.strict, &bad);
        if (eol == NULL) {
            if (bad != NULL) {
                fail(&ps, 400, strcmp(bad, "bare CR") == 0 ? "bare CR in a header"
                                                           : "bare LF in a header");
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
            list_each(h->value, coding, &te);
        } else if (ps.http && msg_str_ieq(h->name, "Host")) {
            nhost++;
            m->host = h->value;
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
    C_SIZE,      /* hex digits of a chunk size */
    C_EXT,       /* after them, up to the CR: extensions */
    C_SIZE_LF,   /* the LF after the size line */
    C_DATA,      /* chunk data */
    C_DATA_CR,   /* the CRLF after it */
    C_DATA_LF,
    C_TRAILER,   /* the start of a trailer line, or of the final CRLF */
    C_TRAILER_LINE,
    C_TRAILER_LF,
    C_END_LF, /* the LF of the final CRLF */
    C_DONE,
};

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

ssize_t msg_chunked_scan(struct msg_chunked *c, const char *in, size_t len, bool *done,
                         const char **why)
{
    size_t i = 0;
    *done = c->state == C_DONE;
    while (i < len && c->state != C_DONE) {
        unsigned char ch = (unsigned char)in[i];
        if (c->state >= C_TRAILER && ++c->trailers > MSG_TRAILERS_MAX) {
            *why = "trailers too long";
            return MSG_ERROR;
        }
        switch (c->state) {
        case C_DATA: {
            uint64_t n = len - i < c->left ? len - i : c->left;
            i += (size_t)n;
            c->left -= n;
            if (c->left == 0) {
                c->state = C_DATA_CR;
            }
            continue;
        }
        case C_SIZE: {
            int v = hexval(ch);
            if (v >= 0) {
                if (++c->digits > 15) {
                    *why = "chunk size too large";
                    return MSG_ERROR;
                }
                c->left = c->left * 16 + (uint64_t)v;
                break;
            }
            if (c->digits == 0) {
                *why = "bad chunk size";
                return MSG_ERROR;
            }
            if (ch == '\r') {
                c->state = C_SIZE_LF;
            } else if (ch == ';' || ch == ' ' || ch == '\t') {
                c->state = C_EXT;
            } else if (ch == '\n') {
                *why = "bare LF in a chunk size line";
                return MSG_ERROR;
            } else {
                *why = "bad chunk size";
                return MSG_ERROR;
            }
            break;
        }
        case C_EXT:
            if (ch == '\r') {
                c->state = C_SIZE_LF;
            } else if ((ch < 32 && ch != '\t') || ch == 127) {
                *why = "control character in a chunk extension";
                return MSG_ERROR;
            }
            break;
        case C_SIZE_LF:
            if (ch != '\n') {
                *why = "bare CR in a chunk size line";
                return MSG_ERROR;
            }
            c->state = c->left > 0 ? C_DATA : C_TRAILER;
            c->digits = 0;
            c->line = 0;
            break;
        case C_DATA_CR:
            if (ch != '\r') {
                *why = "chunk data longer than its size";
                return MSG_ERROR;
            }
            c->state = C_DATA_LF;
            break;
        case C_DATA_LF:
            if (ch != '\n') {
                *why = "chunk data longer than its size";
                return MSG_ERROR;
            }
            c->state = C_SIZE;
            c->line = 0;
            break;
        case C_TRAILER:
            if (ch == '\r') {
                c->state = C_END_LF;
            } else if (is_token_char(ch)) {
                c->state = C_TRAILER_LINE;
            } else {
                *why = "bad trailer line";
                return MSG_ERROR;
            }
            break;
        case C_TRAILER_LINE:
            if (ch == '\r') {
                c->state = C_TRAILER_LF;
            } else if ((ch < 32 && ch != '\t') || ch == 127) {
                *why = "control character in a trailer";
                return MSG_ERROR;
            }
            break;
        case C_TRAILER_LF:
            if (ch != '\n') {
                *why = "bare CR in a trailer";
                return MSG_ERROR;
            }
            c->state = C_TRAILER;
            c->line = 0;
            break;
        case C_END_LF:
            if (ch != '\n') {
                *why = "bare CR at the end of a chunked body";
                return MSG_ERROR;
            }
            c->state = C_DONE;
            break;
        }
        i++;
        if ((c->state == C_SIZE || c->state == C_EXT || c->state == C_SIZE_LF) &&
            ++c->line > MSG_CHUNK_LINE_MAX) {
            *why = "chunk size line too long";
            return MSG_ERROR;
        }
    }
    *done = c->state == C_DONE;
    return (ssize_t)i;
}
