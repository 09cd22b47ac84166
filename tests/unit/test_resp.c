/* test_resp: the incremental RESP2 reply reader (online_server/ol_resp.c).
 *
 * Valid streams are checked against hiredis's own reply reader (the oracle:
 * Redis's C client, not written here), fed the same bytes; every stream is
 * also fed cut at every byte, and one byte at a time, and must give the same
 * items. Malformed streams and streams over the limits must be refused with
 * RESP_PROTO whatever the cut, never read past the bytes given. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "ld_buf.h"
#include "ld_test.h"
#include "ol_resp.h"

/* An item, with its bytes copied out of the buffer. */
typedef struct titem {
    resp_type type;
    char *str;
    size_t len;
    int64_t n;
    int in_array;
    int end;
} titem;

typedef struct tlist {
    titem *v;
    size_t n, cap;
} tlist;

static void tl_push(tlist *l, const resp_item *it)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->v = realloc(l->v, l->cap * sizeof(*l->v));
    }
    titem *t = &l->v[l->n++];
    t->type = it->type;
    t->len = it->len;
    t->str = NULL;
    if (it->str) {
        t->str = malloc(it->len + 1);
        memcpy(t->str, it->str, it->len);
    }
    t->n = it->n;
    t->in_array = it->in_array;
    t->end = it->end;
}

static void tl_push_raw(tlist *l, resp_type type, const char *s, size_t len, int64_t n,
                        int in_array, int end)
{
    resp_item it = {.type = type, .str = s, .len = len, .n = n, .in_array = in_array, .end = end};
    tl_push(l, &it);
}

static void tl_free(tlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].str);
    free(l->v);
    memset(l, 0, sizeof(*l));
}

static int tl_equal(const tlist *a, const tlist *b)
{
    if (a->n != b->n) {
        printf("# %zu items, expected %zu\n", a->n, b->n);
        return 0;
    }
    for (size_t i = 0; i < a->n; i++) {
        const titem *x = &a->v[i], *y = &b->v[i];
        if (x->type != y->type || x->len != y->len || x->n != y->n || x->in_array != y->in_array ||
            x->end != y->end || (!x->str) != (!y->str) ||
            (x->str && memcmp(x->str, y->str, x->len) != 0)) {
            printf("# item %zu differs: type %d/%d len %zu/%zu n %lld/%lld end %d/%d\n", i, x->type,
                   y->type, x->len, y->len, (long long)x->n, (long long)y->n, x->end, y->end);
            return 0;
        }
    }
    return 1;
}

/* Read everything in buf[0..len) at once. Returns the last rc (RESP_MORE
 * when all complete items were read). */
static int read_all(resp_reader *r, const char *buf, size_t len, size_t *pos, tlist *out)
{
    resp_item it;
    for (;;) {
        int rc = resp_next(r, buf, len, pos, &it);
        if (rc != RESP_OK)
            return rc;
        LD_CHECK(*pos <= len);
        tl_push(out, &it);
    }
}

/* The same, taking array elements in runs (resp_run, at most runmax at a
 * time) wherever it gives any, as the Redis store reads HMGET replies. */
static int read_all_runs(resp_reader *r, const char *buf, size_t len, size_t *pos, tlist *out,
                         size_t runmax)
{
    resp_item it;
    for (;;) {
        if (resp_in_reply(r)) {
            resp_span sp[64];
            size_t k = resp_run(r, buf, len, pos, sp, runmax);
            LD_CHECK(k <= runmax && *pos <= len);
            for (size_t j = 0; j < k; j++)
                tl_push_raw(out, sp[j].str ? RESP_BULK : RESP_NIL, sp[j].str, sp[j].len, 0, 1, 0);
            if (k)
                continue;
        }
        int rc = resp_next(r, buf, len, pos, &it);
        if (rc != RESP_OK)
            return rc;
        tl_push(out, &it);
    }
}

/* The stream as hiredis's reader sees it, flattened into our items. */
static void oracle_flatten(const redisReply *rep, int in_array, int end, tlist *out)
{
    switch (rep->type) {
    case REDIS_REPLY_STRING:
        tl_push_raw(out, RESP_BULK, rep->str, rep->len, 0, in_array, end);
        break;
    case REDIS_REPLY_NIL:
        tl_push_raw(out, RESP_NIL, NULL, 0, 0, in_array, end);
        break;
    case REDIS_REPLY_STATUS:
        tl_push_raw(out, RESP_SIMPLE, rep->str, rep->len, 0, in_array, end);
        break;
    case REDIS_REPLY_ERROR:
        tl_push_raw(out, RESP_ERROR, rep->str, rep->len, 0, in_array, end);
        break;
    case REDIS_REPLY_INTEGER:
        tl_push_raw(out, RESP_INTEGER, NULL, 0, rep->integer, in_array, end);
        break;
    case REDIS_REPLY_ARRAY:
        tl_push_raw(out, RESP_ARRAY, NULL, 0, (int64_t)rep->elements, 0, rep->elements == 0);
        for (size_t i = 0; i < rep->elements; i++)
            oracle_flatten(rep->element[i], 1, i + 1 == rep->elements, out);
        break;
    default:
        LD_CHECK(!"a reply type the oracle should not produce here");
    }
}

static void oracle(const char *buf, size_t len, tlist *out)
{
    redisReader *rd = redisReaderCreate();
    rd->maxbuf = 0;
    LD_CHECK_INT(redisReaderFeed(rd, buf, len), REDIS_OK);
    void *rep;
    while (redisReaderGetReply(rd, &rep) == REDIS_OK && rep) {
        oracle_flatten(rep, 0, 1, out);
        freeReplyObject(rep);
    }
    LD_CHECK(rd->err == 0);
    redisReaderFree(rd);
}

/* Check a valid stream: whole, cut at every byte, and grown a byte at a
 * time, against hiredis. The buffer is copied into exactly len bytes of
 * heap, so reading past what was given shows up under ASan. */
static void check_stream(const char *stream, size_t len)
{
    char *buf = malloc(len ? len : 1);
    memcpy(buf, stream, len);
    tlist want = {0};
    oracle(buf, len, &want);

    resp_reader r;
    resp_init(&r, 0, 0, 0);
    tlist got = {0};
    size_t pos = 0;
    LD_CHECK_INT(read_all(&r, buf, len, &pos, &got), RESP_MORE);
    LD_CHECK_INT(pos, len);
    LD_CHECK(tl_equal(&got, &want));
    tl_free(&got);

    /* cut at every byte: the first part, then the rest */
    int bad = 0;
    for (size_t cut = 0; cut <= len && !bad; cut++) {
        resp_init(&r, 0, 0, 0);
        pos = 0;
        if (read_all(&r, buf, cut, &pos, &got) != RESP_MORE || pos > cut)
            bad = 1;
        /* when the pending item is a bulk string whose header is in, `need`
         * says how much of the stream it takes */
        if (r.need && pos + r.need > len)
            bad = 1;
        if (read_all(&r, buf, len, &pos, &got) != RESP_MORE || pos != len)
            bad = 1;
        if (!bad && !tl_equal(&got, &want)) {
            printf("# cut at %zu\n", cut);
            bad = 1;
        }
        tl_free(&got);
    }
    LD_CHECK(!bad);

    /* in runs, whole and cut at every byte */
    static const size_t runmax[] = {1, 3, 64};
    for (size_t m = 0; m < 3 && !bad; m++) {
        for (size_t cut = 0; cut <= len && !bad; cut++) {
            resp_init(&r, 0, 0, 0);
            pos = 0;
            if (read_all_runs(&r, buf, cut, &pos, &got, runmax[m]) != RESP_MORE || pos > cut)
                bad = 1;
            if (read_all_runs(&r, buf, len, &pos, &got, runmax[m]) != RESP_MORE || pos != len)
                bad = 1;
            if (!bad && !tl_equal(&got, &want)) {
                printf("# runs of %zu, cut at %zu\n", runmax[m], cut);
                bad = 1;
            }
            tl_free(&got);
        }
    }
    LD_CHECK(!bad);

    /* one byte more per call */
    resp_init(&r, 0, 0, 0);
    pos = 0;
    for (size_t have = 0; have <= len; have++)
        if (read_all(&r, buf, have, &pos, &got) != RESP_MORE)
            bad = 1;
    LD_CHECK(!bad);
    LD_CHECK_INT(pos, len);
    LD_CHECK(tl_equal(&got, &want));
    tl_free(&got);
    tl_free(&want);
    free(buf);
}

static void check_str(const char *s)
{
    check_stream(s, strlen(s));
}

LD_TEST(each_type)
{
    check_str("+OK\r\n");
    check_str("-ERR wrong number of arguments for 'hmget' command\r\n");
    check_str(":42\r\n:-7\r\n:0\r\n");
    check_str(":9223372036854775807\r\n:-9223372036854775808\r\n");
    check_str("$3\r\nabc\r\n");
    check_str("$0\r\n\r\n");
    check_str("$-1\r\n");
    check_str("*-1\r\n");
    check_str("*0\r\n");
    check_str("*3\r\n$1\r\na\r\n$-1\r\n$0\r\n\r\n");
    check_str("+\r\n-\r\n"); /* empty lines */

    /* the items themselves */
    const char *s = "*3\r\n$1\r\na\r\n$-1\r\n$0\r\n\r\n:5\r\n";
    resp_reader r;
    resp_init(&r, 0, 0, 0);
    tlist got = {0};
    size_t pos = 0;
    LD_CHECK_INT(read_all(&r, s, strlen(s), &pos, &got), RESP_MORE);
    LD_CHECK_INT(got.n, 5);
    if (got.n == 5) {
        LD_CHECK(got.v[0].type == RESP_ARRAY && got.v[0].n == 3 && !got.v[0].end);
        LD_CHECK(got.v[1].type == RESP_BULK && got.v[1].len == 1 && got.v[1].in_array);
        LD_CHECK(got.v[2].type == RESP_NIL && got.v[2].in_array && !got.v[2].end);
        LD_CHECK(got.v[3].type == RESP_BULK && got.v[3].len == 0 && got.v[3].end);
        LD_CHECK(got.v[4].type == RESP_INTEGER && got.v[4].n == 5 && got.v[4].end &&
                 !got.v[4].in_array);
    }
    tl_free(&got);
}

LD_TEST(binary_bulk)
{
    /* CR, LF, NUL and '$' inside values: lengths, not delimiters, count */
    static const char s[] = "*2\r\n$6\r\n\r\n$\0\r\n\r\n$4\r\n\x08\xf0\x96\xbe\r\n";
    check_stream(s, sizeof(s) - 1);
}

/* An HMGET-shaped stream: arrays of 55 values / nulls, several replies,
 * one value of 3000 bytes, errors and integers between them. */
static void hmget_stream(ld_buf *b, unsigned seed)
{
    for (int rep = 0; rep < 6; rep++) {
        int n = rep == 3 ? 1 : 55;
        ld_buf_printf(b, "*%d\r\n", n);
        for (int e = 0; e < n; e++) {
            seed = seed * 1103515245u + 12345u;
            if ((seed >> 16) % 5 == 0) {
                ld_buf_puts(b, "$-1\r\n");
                continue;
            }
            size_t len = rep == 3 ? 3000 : (seed >> 20) % 12;
            ld_buf_printf(b, "$%zu\r\n", len);
            for (size_t i = 0; i < len; i++)
                ld_buf_putc(b, (char)((seed >> 8) + i * 31));
            ld_buf_puts(b, "\r\n");
        }
        if (rep == 2)
            ld_buf_puts(b,
                        "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n");
        if (rep == 4)
            ld_buf_puts(b, ":1\r\n+OK\r\n$40\r\n0123456789012345678901234567890123456789\r\n");
    }
}

LD_TEST(split_at_every_byte)
{
    ld_buf b = LD_BUF_INIT;
    hmget_stream(&b, 7);
    printf("# stream of %zu bytes\n", b.len);
    check_stream(b.data, b.len);
    ld_buf_free(&b);
}

LD_TEST(need_is_exact)
{
    /* after the header of a bulk string is in, need = the whole item */
    const char *s = "$10\r\n0123456789\r\n";
    resp_reader r;
    resp_init(&r, 0, 0, 0);
    resp_item it;
    size_t pos = 0;
    LD_CHECK_INT(resp_next(&r, s, 6, &pos, &it), RESP_MORE);
    LD_CHECK_INT(r.need, strlen(s));
    LD_CHECK_INT(resp_next(&r, s, strlen(s) - 1, &pos, &it), RESP_MORE);
    LD_CHECK_INT(pos, 0);
    LD_CHECK_INT(resp_next(&r, s, strlen(s), &pos, &it), RESP_OK);
    LD_CHECK_INT(pos, strlen(s));
    LD_CHECK(it.type == RESP_BULK && it.len == 10 && !memcmp(it.str, "0123456789", 10));
}

/* A malformed stream: RESP_PROTO once all of it is given, never RESP_OK for
 * the bad item at any cut, and the reader stays failed until reset. `ok`
 * items precede the bad one. */
static void check_bad(const char *s, size_t len, size_t max_bulk, size_t max_array, size_t max_line,
                      size_t ok, const char *msg_part)
{
    char *buf = malloc(len);
    memcpy(buf, s, len);
    int bad = 0;
    for (size_t cut = 0; cut <= len; cut++) {
        resp_reader r;
        resp_init(&r, max_bulk, max_array, max_line);
        tlist got = {0};
        size_t pos = 0;
        int rc = read_all(&r, buf, cut, &pos, &got);
        if (got.n > ok || (rc == RESP_PROTO && got.n != ok))
            bad = 1;
        if (cut == len) {
            if (rc != RESP_PROTO) {
                printf("# not refused: %.*s\n", (int)len, s);
                bad = 1;
            } else if (msg_part && !strstr(resp_error(&r), msg_part)) {
                printf("# message '%s' lacks '%s'\n", resp_error(&r), msg_part);
                bad = 1;
            }
            resp_item it;
            size_t p2 = 0;
            if (resp_next(&r, buf, len, &p2, &it) != RESP_PROTO) /* stays failed */
                bad = 1;
            resp_reset(&r);
            const char *good = "+OK\r\n";
            p2 = 0;
            if (resp_next(&r, good, 5, &p2, &it) != RESP_OK || it.type != RESP_SIMPLE)
                bad = 1;
        }
        tl_free(&got);
        /* runs never take the bad item either */
        resp_init(&r, max_bulk, max_array, max_line);
        pos = 0;
        rc = read_all_runs(&r, buf, cut, &pos, &got, 64);
        if (got.n > ok || (rc == RESP_PROTO && got.n != ok) || (cut == len && rc != RESP_PROTO))
            bad = 1;
        tl_free(&got);
    }
    LD_CHECK(!bad);
    free(buf);
}

static void bad_str(const char *s, size_t ok, const char *msg_part)
{
    check_bad(s, strlen(s), 0, 0, 0, ok, msg_part);
}

LD_TEST(malformed)
{
    bad_str("%1\r\n$1\r\na\r\n$1\r\nb\r\n", 0, "unknown reply type '%'"); /* RESP3 map */
    bad_str("_\r\n", 0, "unknown");                                       /* RESP3 null */
    bad_str(",1.5\r\n", 0, "unknown");
    bad_str("#t\r\n", 0, "unknown");
    bad_str("~1\r\n$1\r\na\r\n", 0, "unknown");
    check_bad("\0\r\n", 3, 0, 0, 0, 0, "0x00");
    bad_str("*1\r\n*0\r\n", 1, "nested array");
    bad_str("*2\r\n$1\r\na\r\n*-1\r\n", 2, "nested array");
    bad_str("*1\r\n:1\r\n", 1, "integer inside an array");
    bad_str("*1\r\n+OK\r\n", 1, "inside an array");
    bad_str("*1\r\n-ERR\r\n", 1, "inside an array");
    bad_str("*2\r\n$1\r\na\r\n%0\r\n", 2, "unknown");
    /* inside arrays, where the store reads values in runs */
    bad_str("*3\r\n$3\r\nabcXY$-1\r\n$-1\r\n", 1, "not followed by CRLF");
    bad_str("*3\r\n$3\r\nabc\rX$-1\r\n$-1\r\n", 1, "not followed by CRLF");
    bad_str("*3\r\n$1\r\na\r\n$-2\r\n$-1\r\n", 2, "bad bulk string length");
    bad_str("*3\r\n$1x\r\na\r\n$-1\r\n", 1, "malformed number");
    bad_str("*3\r\n$-1\rX$-1\r\n$-1\r\n", 1, "CR without LF");
    bad_str("*3\r\n$-1\r\n$00000000000000000000000000001\r\na\r\n$-1\r\n", 2, NULL);
    check_bad("*3\r\n$5\r\nabcde\r\n$6\r\nabcdef\r\n$-1\r\n", 32, 5, 0, 0, 2, "exceeds");
    bad_str("$-2\r\n", 0, "bad bulk string length");
    bad_str("*-2\r\n", 0, "bad array length");
    bad_str("$abc\r\n", 0, "malformed number");
    bad_str("$\r\n", 0, "malformed number");
    bad_str("$-\r\n", 0, "malformed number");
    bad_str("$1x\r\na\r\n", 0, "malformed number");
    bad_str(":\r\n", 0, "malformed number");
    bad_str("$3\rX", 0, "CR without LF");
    bad_str("+OK\rX", 0, "CR without LF");
    bad_str("$3\r\nabcXY", 0, "not followed by CRLF");
    bad_str("$3\r\nabc\rX", 0, "not followed by CRLF");
    bad_str(":9223372036854775808\r\n", 0, "out of range");
    bad_str(":-9223372036854775809\r\n", 0, "out of range");
    bad_str("$99999999999999999999999\r\n", 0, "out of range");
    bad_str("$00000000000000000000000000001\r\n", 0, NULL); /* too many digits */
    bad_str(":1\r\n+OK\r\n!", 2, "unknown");
}

LD_TEST(limits)
{
    /* refused as soon as the header is read, before the payload arrives */
    check_bad("$11\r\n", 5, 10, 0, 0, 0, "exceeds the limit of 10");
    check_bad("$10\r\n0123456789\r\n$11\r\n", 22, 10, 0, 0, 1, "exceeds the limit");
    check_bad("*5\r\n", 4, 0, 4, 0, 0, "array of 5 elements exceeds the limit of 4");
    check_bad("*4\r\n$-1\r\n$-1\r\n$-1\r\n$-1\r\n*5\r\n", 28, 0, 4, 0, 5, "exceeds");
    /* a line longer than the limit is refused without waiting for its CR */
    check_bad("+123456789", 10, 0, 0, 8, 0, "longer than 8");
    check_bad("-123456789\r\n", 12, 0, 0, 8, 0, "longer than 8");
    /* the defaults: 512 MiB bulk, 16M elements */
    bad_str("$999999999999\r\n", 0, "exceeds the limit");
    bad_str("*99999999999\r\n", 0, "exceeds the limit");
    bad_str("$536870913\r\n", 0, "exceeds the limit");
    /* at the limit: fine */
    resp_reader r;
    resp_init(&r, 10, 4, 8);
    resp_item it;
    size_t pos = 0;
    const char *s = "*4\r\n$10\r\n0123456789\r\n$-1\r\n$0\r\n\r\n$1\r\nx\r\n+1234567\r\n";
    int n = 0, rc;
    while ((rc = resp_next(&r, s, strlen(s), &pos, &it)) == RESP_OK)
        n++;
    LD_CHECK_INT(rc, RESP_MORE);
    LD_CHECK_INT(n, 6);
    LD_CHECK_INT(pos, strlen(s));
}

/* Random streams of every valid shape, against hiredis. */
LD_TEST(random_against_hiredis)
{
    unsigned seed = 12345;
#define RND() (seed = seed * 1103515245u + 12345u, seed >> 16)
    for (int round = 0; round < 200; round++) {
        ld_buf b = LD_BUF_INIT;
        int replies = 1 + (int)(RND() % 6);
        for (int i = 0; i < replies; i++) {
            switch (RND() % 7) {
            case 0:
                ld_buf_printf(&b, ":%lld\r\n", (long long)RND() - 30000);
                break;
            case 1:
                ld_buf_puts(&b, "+OK\r\n");
                break;
            case 2:
                ld_buf_printf(&b, "-ERR code %u\r\n", RND());
                break;
            case 3:
                ld_buf_puts(&b, RND() % 2 ? "$-1\r\n" : "*-1\r\n");
                break;
            default: {
                int n = (int)(RND() % 9);
                ld_buf_printf(&b, "*%d\r\n", n);
                for (int e = 0; e < n; e++) {
                    if (RND() % 4 == 0) {
                        ld_buf_puts(&b, "$-1\r\n");
                        continue;
                    }
                    size_t len = RND() % 20;
                    ld_buf_printf(&b, "$%zu\r\n", len);
                    for (size_t k = 0; k < len; k++)
                        ld_buf_putc(&b, (char)RND());
                    ld_buf_puts(&b, "\r\n");
                }
            }
            }
        }
        check_stream(b.data, b.len);
        ld_buf_free(&b);
    }
#undef RND
}

LD_TEST_MAIN
