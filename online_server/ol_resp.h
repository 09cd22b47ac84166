/* ol_resp: an incremental reader of RESP2 replies (Redis's protocol), for
 * the replies larder's Redis store gets: arrays of bulk strings and nulls
 * (HMGET), errors, integers, simple strings and single bulk strings (writes,
 * AUTH, SELECT, SCRIPT LOAD).
 *
 * The reader does no I/O and allocates nothing. The caller keeps the bytes
 * received in one buffer that only grows at its end (or is compacted between
 * items), and calls resp_next() with the buffer, its length and a position:
 * each call returns the next complete item and moves the position past it, or
 * says more bytes are needed (the position does not move, so the same call
 * is repeated once more bytes arrived). An item's bytes point into the
 * caller's buffer: nothing is copied, and they stay valid until the caller
 * moves or overwrites that part of the buffer.
 *
 * An array comes as one RESP_ARRAY item (its element count) followed by its
 * elements, each its own item. Elements may only be bulk strings or nulls:
 * a nested array, or any other type inside an array, is a protocol error, as
 * is a type byte RESP2 does not define (RESP3's maps, sets, doubles...), a
 * malformed length or terminator, a line longer than the reader's line
 * limit, a bulk string longer than max_bulk or an array of more than
 * max_array elements. After a protocol error the stream cannot be trusted:
 * the caller drops the connection (the reader refuses to go on until
 * resp_reset()). */
#pragma once

#include <stddef.h>
#include <stdint.h>

typedef enum resp_type {
    RESP_BULK,    /* $<n>: str, len */
    RESP_NIL,     /* $-1 (or *-1 at the top level) */
    RESP_ARRAY,   /* *<n>: n = element count; the elements follow as items */
    RESP_SIMPLE,  /* +<line>: str, len */
    RESP_ERROR,   /* -<line>: str, len */
    RESP_INTEGER, /* :<n>: n */
} resp_type;

typedef struct resp_item {
    resp_type type;
    const char *str; /* BULK, SIMPLE, ERROR: into the caller's buffer, len bytes */
    size_t len;
    int64_t n;    /* INTEGER: the value; ARRAY: the element count */
    int in_array; /* an element of an array */
    int end;      /* the last item of a top-level reply */
} resp_item;

enum {
    RESP_MORE = 0,   /* no complete item yet: call again with more bytes */
    RESP_OK = 1,     /* *it holds the next item; *pos moved past it */
    RESP_PROTO = -1, /* protocol error: resp_error() says what */
};

typedef struct resp_reader {
    size_t max_bulk;  /* longest bulk string accepted */
    size_t max_array; /* most elements in an array */
    size_t max_line;  /* longest simple-string or error line (without CRLF) */
    size_t left;      /* elements still due in the current array */
    size_t need;      /* after RESP_MORE: bytes from *pos the pending item needs, when known */
    int failed;
    char err[128];
} resp_reader;

/* Limits of 0 take defaults: 512 MiB bulk (Redis's own), 16M elements, 64 KiB lines. */
void resp_init(resp_reader *r, size_t max_bulk, size_t max_array, size_t max_line);
/* Forget any reply in progress and a past error (a new connection). */
void resp_reset(resp_reader *r);
/* The next item of buf[*pos .. len): RESP_OK, RESP_MORE or RESP_PROTO. */
int resp_next(resp_reader *r, const char *buf, size_t len, size_t *pos, resp_item *it);

/* An element of a run: a bulk string, or a null (str NULL). */
typedef struct resp_span {
    const char *str;
    size_t len;
} resp_span;

/* Inside an array: the next elements, up to max of them, as long as they
 * are complete bulk strings or nulls, without ending the array (the last
 * element always comes through resp_next, which reports the end). Returns
 * how many were read into out (0: use resp_next for the next item); *pos
 * moves past them. For a tight loop over an HMGET reply's values. */
size_t resp_run(resp_reader *r, const char *buf, size_t len, size_t *pos, resp_span *out,
                size_t max);

/* Inside an array (elements still due)? Top-level replies start only when not. */
static inline int resp_in_reply(const resp_reader *r)
{
    return r->left != 0;
}
static inline const char *resp_error(const resp_reader *r)
{
    return r->err;
}
