/* Unit tests: ot_pit (point-in-time join) and ot_csv (CSV reader/writer).
 *
 * Hand-made cases with known answers, then randomized tables checked against
 * a brute-force reference. Built twice (tests/unit/meson.build): as is, and
 * as test_pit_collide, which compiles ot_pit.c into the test with 3-bit key
 * hashes (every lookup goes through exact key comparison) and no scan path
 * (every group is sorted and merged). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef LD_PIT_INCLUDE_IMPL
#include "ot_pit.c"
#define PIT_SMALL 1
#else
#define PIT_SMALL 0
#endif

#include "ld_test.h"
#include "ot_csv.h"
#include "ot_pit.h"
#include "ot_table.h"

#define S(...) ((const char *const[]){__VA_ARGS__})

/* ---- helpers ---------------------------------------------------------- */

static ot_table *csv_opts(const char *text, const ot_csv_opts *o)
{
    ld_status st = LD_STATUS_INIT;
    ot_table *t = NULL;
    if (ot_csv_parse(text, strlen(text), "test", o, &t, &st) < 0) {
        printf("# csv: %s\n", st.msg);
        ld_test_failed_checks++;
    }
    return t;
}

static ot_table *csv(const char *text)
{
    return csv_opts(text, NULL);
}

/* Error message of a parse that must fail ("" if it succeeded). */
static char csv_errbuf[LD_STATUS_MSG_MAX];
static const char *csv_error(const char *text, const ot_csv_opts *o)
{
    ld_status st = LD_STATUS_INIT;
    ot_table *t = NULL;
    csv_errbuf[0] = 0;
    if (ot_csv_parse(text, strlen(text), "test", o, &t, &st) < 0)
        snprintf(csv_errbuf, sizeof csv_errbuf, "%s", st.msg);
    ot_table_free(t);
    return csv_errbuf;
}

/* The values of one column as written by ot_csv_write, joined by '|'.
 * Returns a static buffer. */
static char colbuf[1 << 16];
static const char *col_text(const ot_table *t, const char *name)
{
    const ot_column *c = t ? ot_table_column(t, name) : NULL;
    ld_status st = LD_STATUS_INIT;
    char *mem = NULL;
    size_t n = 0;

    if (!c)
        return "(no column)";
    ot_table one = {.cols = (ot_column *)c, .n_cols = 1, .n_rows = t->n_rows};
    FILE *f = open_memstream(&mem, &n);
    ot_csv_write(&one, f, &st);
    fclose(f);
    char *body = strchr(mem, '\n') + 1, *o = colbuf;
    for (char *p = body; *p && o < colbuf + sizeof colbuf - 1; p++)
        *o++ = *p == '\n' ? '|' : *p;
    if (o > colbuf)
        o--; /* the last record's newline */
    *o = 0;
    free(mem);
    return colbuf;
}

static char *table_text(const ot_table *t)
{
    ld_status st = LD_STATUS_INIT;
    char *mem = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&mem, &n);
    ot_csv_write(t, f, &st);
    fclose(f);
    return mem;
}

static char joinerr[LD_STATUS_MSG_MAX];
static ot_table *join(const ot_table *ent, const ot_pit_view *v, size_t nv)
{
    ld_status st = LD_STATUS_INIT;
    ot_table *out = NULL;
    joinerr[0] = 0;
    if (ot_pit_join(ent, "ts", v, nv, 2, &out, &st) < 0)
        snprintf(joinerr, sizeof joinerr, "%s", st.msg);
    return out;
}

/* A one-key, one-feature view. A macro, not a function: the name arrays are
 * compound literals and must live in the caller's scope. */
#define view1(src, key, feat)                                                                      \
    ((ot_pit_view){.source = (src),                                                                \
                   .join_keys = S(key),                                                            \
                   .entity_keys = S(key),                                                          \
                   .n_keys = 1,                                                                    \
                   .event_ts = "ts",                                                               \
                   .features = S(feat),                                                            \
                   .out_names = S(feat),                                                           \
                   .n_features = 1})

static ot_column *mcol(ot_table *t, const char *name)
{
    return (ot_column *)ot_table_column(t, name);
}

static void to_int32(ot_column *c)
{
    int32_t *v = malloc((size_t)(c->length ? c->length : 1) * 4);
    for (int64_t i = 0; i < c->length; i++)
        v[i] = (int32_t)((int64_t *)c->values)[i];
    free(c->values);
    c->values = v;
    c->type.id = OT_INT32;
}

static void to_large(ot_column *c)
{
    int64_t *o = malloc((size_t)(c->length + 1) * 8);
    for (int64_t i = 0; i <= c->length; i++)
        o[i] = c->offsets[i];
    free(c->offsets);
    c->offsets = NULL;
    c->offsets64 = o;
    c->type.id = OT_LARGE_UTF8;
}

/* ---- point-in-time join: hand-made cases ------------------------------ */

LD_TEST(pit_basic)
{
    ot_table *e = csv("id,ts\n"
                      "1,2024-01-01T00:00:10\n"
                      "1,2024-01-01T00:00:05\n"
                      "2,2024-01-01T00:00:10\n"
                      "1,2024-01-01T00:00:00\n"
                      "3,2024-01-01T00:00:10\n");
    ot_table *f = csv("id,ts,val\n"
                      "1,2024-01-01T00:00:01,a\n"
                      "1,2024-01-01T00:00:05,b\n"
                      "1,2024-01-01T00:00:11,c\n"
                      "2,2024-01-01T00:00:03,d\n");
    ot_pit_view v = view1(f, "id", "val");
    ot_table *o = join(e, &v, 1);
    LD_CHECK(o != NULL);
    /* exact equality matches; rows before any feature row and unknown keys get null */
    LD_CHECK_STR(col_text(o, "val"), "b|b|d||");
    LD_CHECK_INT(o->n_cols, 3);
    LD_CHECK_STR(o->cols[0].name, "id");
    LD_CHECK_STR(o->cols[1].name, "ts");
    LD_CHECK_STR(o->cols[2].name, "val");
    char *a = table_text(e), *b = table_text(o);
    LD_CHECK(strncmp(b, "id,ts,val\n1,2024-01-01T00:00:10,b\n", 33) == 0);
    free(a);
    free(b);
    ot_table_free(o);
    ot_table_free(e);
    ot_table_free(f);
}

LD_TEST(pit_created_ties)
{
    const char *T5 = "2024-01-01T00:00:05";
    char src[1024];
    snprintf(src, sizeof src,
             "id,ts,created,val\n"
             "1,%s,2024-01-02T00:00:00,x\n"
             "1,%s,2024-01-03T00:00:00,y\n"
             "1,%s,2024-01-01T00:00:00,z\n"
             "2,%s,,p\n"
             "2,%s,2024-01-01T00:00:00,q\n"
             "2,%s,,r\n"
             "3,%s,2024-01-01T00:00:00,s\n"
             "3,%s,2024-01-01T00:00:00,t\n"
             "4,%s,,u\n"
             "4,%s,,v\n"
             "5,2024-01-01T00:00:04,2030-01-01T00:00:00,old\n"
             "5,%s,2020-01-01T00:00:00,new\n",
             T5, T5, T5, T5, T5, T5, T5, T5, T5, T5, T5);
    ot_table *f = csv(src);
    ot_table *e = csv("id,ts\n1,2024-01-01T00:00:10\n2,2024-01-01T00:00:10\n"
                      "3,2024-01-01T00:00:10\n4,2024-01-01T00:00:10\n5,2024-01-01T00:00:10\n");
    ot_pit_view v = view1(f, "id", "val");
    v.created_ts = "created";
    ot_table *o = join(e, &v, 1);
    /* greatest created wins; null created loses to any; full ties: last row;
     * created only breaks ties of event_ts, it never beats a later event */
    LD_CHECK_STR(col_text(o, "val"), "y|q|t|v|new");
    ot_table_free(o);
    /* without a created column: the last of the tied rows */
    v.created_ts = NULL;
    o = join(e, &v, 1);
    LD_CHECK_STR(col_text(o, "val"), "z|r|t|v|new");
    ot_table_free(o);
    ot_table_free(e);
    ot_table_free(f);
}

LD_TEST(pit_ttl_edges)
{
    ot_table *f = csv("id,ts,val\n"
                      "1,2024-01-01T00:00:05,in\n"
                      "2,2024-01-01T00:00:04.999999,out\n"
                      "3,2000-01-01T00:00:00,ancient\n"
                      "4,2024-01-01T00:00:01,older\n"
                      "4,2024-01-01T00:00:09,newer\n");
    ot_table *e = csv("id,ts\n1,2024-01-01T00:00:10\n2,2024-01-01T00:00:10\n"
                      "3,2024-01-01T00:00:10\n4,2024-01-01T00:00:10\n4,2024-01-01T00:00:15\n"
                      "4,2024-01-01T00:00:14\n");
    ot_pit_view v = view1(f, "id", "val");
    v.ttl_us = 5000000;
    ot_table *o = join(e, &v, 1);
    /* exactly ttl back: included; ttl + 1 µs: null; the latest row outside
     * the window hides nothing (an older row is further out still) */
    LD_CHECK_STR(col_text(o, "val"), "in|||newer||newer");
    ot_table_free(o);
    v.ttl_us = 0; /* unbounded */
    o = join(e, &v, 1);
    LD_CHECK_STR(col_text(o, "val"), "in|out|ancient|newer|newer|newer");
    ot_table_free(o);
    v.ttl_us = -1;
    o = join(e, &v, 1);
    LD_CHECK(o == NULL);
    LD_CHECK(strstr(joinerr, "negative ttl") != NULL);
    ot_table_free(e);
    ot_table_free(f);
}

LD_TEST(pit_null_features_and_types)
{
    ot_table *f = csv("id,ts,i,d,b,s,t\n"
                      "1,2024-01-01T00:00:01,7,1.5,true,x,2023-05-05T01:02:03.000004Z\n"
                      "1,2024-01-01T00:00:02,,,,,\n"
                      "2,2024-01-01T00:00:01,8,-0.25,false,\"\",2023-05-05T00:00:00Z\n");
    ot_table *e = csv("id,ts\n1,2024-01-01T00:00:01\n1,2024-01-01T00:00:09\n"
                      "2,2024-01-01T00:00:09\n9,2024-01-01T00:00:09\n");
    ot_pit_view v = {
            .source = f,
            .join_keys = S("id"),
            .entity_keys = S("id"),
            .n_keys = 1,
            .event_ts = "ts",
            .features = S("i", "d", "b", "s", "t"),
            .out_names = S("i", "d", "b", "s", "t"),
            .n_features = 5,
    };
    ot_table *o = join(e, &v, 1);
    LD_CHECK_STR(col_text(o, "i"), "7||8|");
    LD_CHECK_STR(col_text(o, "d"), "1.5||-0.25|");
    LD_CHECK_STR(col_text(o, "b"), "true||false|");
    LD_CHECK_STR(col_text(o, "s"), "x||\"\"|");
    LD_CHECK_STR(col_text(o, "t"), "2023-05-05T01:02:03.000004Z||2023-05-05T00:00:00Z|");
    const char *names[] = {"i", "d", "b", "s", "t"};
    for (int k = 0; k < 5; k++) {
        const ot_column *oc = ot_table_column(o, names[k]), *sc = ot_table_column(f, names[k]);
        LD_CHECK(ot_type_equal(&oc->type, &sc->type));
        LD_CHECK_INT(oc->null_count, 2);
        LD_CHECK_INT(oc->length, 4);
    }
    ot_table_free(o);
    ot_table_free(e);
    ot_table_free(f);
}

LD_TEST(pit_duplicate_entity_rows)
{
    ot_table *f = csv("id,ts,val\n1,2024-01-01T00:00:01,a\n2,2024-01-01T00:00:01,b\n");
    ot_table *e = csv("id,ts,label\n"
                      "1,2024-01-01T00:00:05,r0\n"
                      "2,2024-01-01T00:00:05,r1\n"
                      "1,2024-01-01T00:00:05,r2\n"
                      "1,2024-01-01T00:00:05,r3\n"
                      "1,2024-01-01T00:00:00,r4\n");
    ot_pit_view v = view1(f, "id", "val");
    ot_table *o = join(e, &v, 1);
    LD_CHECK_INT(o->n_rows, 5);
    LD_CHECK_STR(col_text(o, "label"), "r0|r1|r2|r3|r4");
    LD_CHECK_STR(col_text(o, "val"), "a|b|a|a|");
    ot_table_free(o);
    ot_table_free(e);
    ot_table_free(f);
}

LD_TEST(pit_views_keys_aliases)
{
    ot_table *drv = csv("driver_id,ts,rating\n"
                        "10,2024-01-01T00:00:01,4.5\n"
                        "11,2024-01-01T00:00:01,3.0\n"
                        "10,2024-01-01T00:00:08,4.75\n");
    ot_table *loc = csv("location_id,ts,temp\n"
                        "100,2024-01-01T00:00:02,20\n"
                        "200,2024-01-01T00:00:02,25\n"
                        "100,2024-01-01T00:00:07,21\n");
    ot_table *e = csv("driver,origin,dest,ts\n"
                      "10,100,200,2024-01-01T00:00:05\n"
                      "11,200,100,2024-01-01T00:00:09\n"
                      "10,100,300,2024-01-01T00:00:09\n");
    ot_pit_view v[3] = {
            {.source = drv,
             .join_keys = S("driver_id"),
             .entity_keys = S("driver"),
             .n_keys = 1,
             .event_ts = "ts",
             .features = S("rating"),
             .out_names = S("driver_stats__rating"),
             .n_features = 1},
            {.source = loc,
             .join_keys = S("location_id"),
             .entity_keys = S("origin"),
             .n_keys = 1,
             .event_ts = "ts",
             .features = S("temp"),
             .out_names = S("origin__temp"),
             .n_features = 1},
            {.source = loc,
             .join_keys = S("location_id"),
             .entity_keys = S("dest"),
             .n_keys = 1,
             .event_ts = "ts",
             .features = S("temp"),
             .out_names = S("destination__temp"),
             .n_features = 1},
    };
    ot_table *o = join(e, v, 3);
    LD_CHECK_INT(o->n_cols, 7);
    LD_CHECK_STR(o->cols[4].name, "driver_stats__rating");
    LD_CHECK_STR(o->cols[5].name, "origin__temp");
    LD_CHECK_STR(o->cols[6].name, "destination__temp");
    LD_CHECK_STR(col_text(o, "driver_stats__rating"), "4.5|3|4.75");
    LD_CHECK_STR(col_text(o, "origin__temp"), "20|25|21");
    LD_CHECK_STR(col_text(o, "destination__temp"), "25|21|");
    ot_table_free(o);

    /* the same name twice is a collision */
    v[2].out_names = S("origin__temp");
    o = join(e, v, 3);
    LD_CHECK(o == NULL);
    LD_CHECK(strstr(joinerr, "duplicate output column \"origin__temp\"") != NULL);
    v[2].out_names = S("dest");
    o = join(e, v, 3);
    LD_CHECK(o == NULL);
    ot_table_free(e);
    ot_table_free(drv);
    ot_table_free(loc);
}

LD_TEST(pit_composite_keys)
{
    ot_table *f = csv("store,sku,ts,qty\n"
                      "1,a,2024-01-01T00:00:01,10\n"
                      "1,b,2024-01-01T00:00:01,11\n"
                      "2,a,2024-01-01T00:00:01,12\n"
                      "1,a,2024-01-01T00:00:03,13\n");
    ot_table *e = csv("sku,store,ts\n"
                      "a,1,2024-01-01T00:00:02\n"
                      "b,1,2024-01-01T00:00:02\n"
                      "b,2,2024-01-01T00:00:02\n"
                      "a,2,2024-01-01T00:00:02\n"
                      "a,1,2024-01-01T00:00:03\n");
    ot_pit_view v = {
            .source = f,
            .join_keys = S("store", "sku"),
            .entity_keys = S("store", "sku"),
            .n_keys = 2,
            .event_ts = "ts",
            .features = S("qty"),
            .out_names = S("qty"),
            .n_features = 1,
    };
    ot_table *o = join(e, &v, 1);
    LD_CHECK_STR(col_text(o, "qty"), "10|11||12|13");
    ot_table_free(o);
    /* no keys at all: an entity-less view joins on time only */
    v.n_keys = 0;
    o = join(e, &v, 1);
    LD_CHECK_STR(col_text(o, "qty"), "12|12|12|12|13");
    ot_table_free(o);
    ot_table_free(e);
    ot_table_free(f);
}

LD_TEST(pit_empty_tables)
{
    ot_table *f = csv("id,ts,val,n\n1,2024-01-01T00:00:01,a,1\n");
    ot_table *e = csv("id,ts,label\n1,2024-01-01T00:00:05,x\n");
    ld_status st = LD_STATUS_INIT;

    /* zero-row copies of both */
    ot_table *f0 = ot_table_new(f->n_cols, 0), *e0 = ot_table_new(e->n_cols, 0);
    for (size_t c = 0; c < f->n_cols; c++)
        LD_CHECK(ot_column_take(&f->cols[c], NULL, 0, f->cols[c].name, &f0->cols[c], &st) == 0);
    for (size_t c = 0; c < e->n_cols; c++)
        LD_CHECK(ot_column_take(&e->cols[c], NULL, 0, e->cols[c].name, &e0->cols[c], &st) == 0);

    ot_pit_view v = {
            .source = f0,
            .join_keys = S("id"),
            .entity_keys = S("id"),
            .n_keys = 1,
            .event_ts = "ts",
            .features = S("val", "n"),
            .out_names = S("val", "n"),
            .n_features = 2,
    };
    ot_table *o = join(e, &v, 1);
    LD_CHECK_INT(o->n_rows, 1);
    LD_CHECK_STR(col_text(o, "val"), "");
    LD_CHECK_INT(ot_table_column(o, "n")->type.id, OT_INT64);
    LD_CHECK_INT(ot_table_column(o, "n")->null_count, 1);
    ot_table_free(o);

    v.source = f;
    o = join(e0, &v, 1);
    LD_CHECK_INT(o->n_rows, 0);
    LD_CHECK_INT(o->n_cols, 5);
    LD_CHECK_INT(ot_table_column(o, "n")->type.id, OT_INT64);
    LD_CHECK_INT(ot_table_column(o, "val")->type.id, OT_UTF8);
    char *txt = table_text(o);
    LD_CHECK_STR(txt, "id,ts,label,val,n\n");
    free(txt);
    ot_table_free(o);

    /* no views: the entity table itself */
    o = join(e, NULL, 0);
    txt = table_text(o);
    char *want = table_text(e);
    LD_CHECK_STR(txt, want);
    free(txt);
    free(want);
    ot_table_free(o);
    ot_table_free(e0);
    ot_table_free(f0);
    ot_table_free(e);
    ot_table_free(f);
}

LD_TEST(pit_nulls_in_keys_and_times)
{
    ot_table *f = csv("id,ts,val\n"
                      ",2024-01-01T00:00:01,nullkey\n"
                      "1,,nullts\n"
                      "1,2024-01-01T00:00:02,ok\n"
                      "s,2024-01-01T00:00:02,str\n");
    ot_table *e = csv("id,ts\n,2024-01-01T00:00:10\n1,\n1,2024-01-01T00:00:10\n"
                      "s,2024-01-01T00:00:10\n");
    ot_pit_view v = view1(f, "id", "val");
    ot_table *o = join(e, &v, 1);
    LD_CHECK_STR(col_text(o, "val"), "||ok|str");
    ot_table_free(o);
    ot_table_free(e);
    ot_table_free(f);
}

LD_TEST(pit_key_types)
{
    ot_table *f = csv("id,name,ts,val\n1,ab,2024-01-01T00:00:01,x\n2,cd,2024-01-01T00:00:01,y\n");
    ot_table *e = csv("id,name,ts\n2,cd,2024-01-01T00:00:05\n1,ab,2024-01-01T00:00:05\n"
                      "3,ef,2024-01-01T00:00:05\n");
    ot_pit_view v = view1(f, "id", "val");

    to_int32(mcol(e, "id")); /* int32 entity column against int64 source */
    ot_table *o = join(e, &v, 1);
    LD_CHECK_STR(col_text(o, "val"), "y|x|");
    LD_CHECK_INT(ot_table_column(o, "id")->type.id, OT_INT32);
    ot_table_free(o);

    v = view1(f, "name", "val");
    to_large(mcol(e, "name")); /* large_utf8 against utf8 */
    o = join(e, &v, 1);
    LD_CHECK_STR(col_text(o, "val"), "y|x|");
    ot_table_free(o);
    mcol(f, "name")->type.id = OT_BINARY; /* binary against large_utf8 */
    o = join(e, &v, 1);
    LD_CHECK_STR(col_text(o, "val"), "y|x|");
    ot_table_free(o);

    /* an integer key against a string key */
    v.entity_keys = S("id");
    o = join(e, &v, 1);
    LD_CHECK(o == NULL);
    LD_CHECK(strstr(joinerr, "is a string in the source but an integer") != NULL);
    /* not a key type */
    v.join_keys = S("ts");
    o = join(e, &v, 1);
    LD_CHECK(o == NULL);
    LD_CHECK(strstr(joinerr, "unsupported type") != NULL);
    ot_table_free(e);
    ot_table_free(f);
}

LD_TEST(pit_errors)
{
    ot_table *f = csv("id,ts,val\n1,2024-01-01T00:00:01,x\n");
    ot_table *e = csv("id,ts,other\n1,2024-01-01T00:00:05,z\n");
    ot_pit_view v = view1(f, "id", "val");
    ld_status st = LD_STATUS_INIT;
    ot_table *o = NULL;

    v.entity_keys = S("nope");
    LD_CHECK(ot_pit_join(e, "ts", &v, 1, 1, &o, &st) < 0);
    LD_CHECK_STR(ld_status_class(&st), "FeastEntityDFMissingColumnsError");
    LD_CHECK_INT(st.code, GRPC_STATUS_INVALID_ARGUMENT);
    v = view1(f, "id", "missing");
    LD_CHECK(join(e, &v, 1) == NULL);
    LD_CHECK(strstr(joinerr, "source table has no column \"missing\"") != NULL);
    v = view1(f, "id", "val");
    v.event_ts = "val";
    LD_CHECK(join(e, &v, 1) == NULL);
    LD_CHECK(strstr(joinerr, "is not a timestamp") != NULL);
    v.event_ts = "ts";
    v.created_ts = "nope";
    LD_CHECK(join(e, &v, 1) == NULL);
    ld_status_clear(&st);
    v.created_ts = NULL;
    LD_CHECK(ot_pit_join(e, "other", &v, 1, 1, &o, &st) < 0);
    LD_CHECK(strstr(st.msg, "not a timestamp") != NULL);
    ld_status_clear(&st);
    LD_CHECK(ot_pit_join(e, "nots", &v, 1, 1, &o, &st) < 0);
    LD_CHECK(o == NULL);
    ot_table_free(e);
    ot_table_free(f);
}

LD_TEST(pit_nanoseconds)
{
    ot_csv_opts ns = {.ts_nanos = true};
    ot_table *f = csv_opts("id,ts,val\n"
                           "1,2024-01-01T00:00:10.000000999,late\n"
                           "1,2024-01-01T00:00:10.000000100,early\n"
                           "2,2024-01-01T00:00:10.000000500,edge\n"
                           "3,2024-01-01T00:00:10.000000499,past\n",
                           &ns);
    ot_table *e = csv_opts("id,ts\n"
                           "1,2024-01-01T00:00:10.000000500\n"
                           "2,2024-01-01T00:00:10.000001500\n"
                           "3,2024-01-01T00:00:10.000001500\n",
                           &ns);
    ot_pit_view v = view1(f, "id", "val");
    v.ttl_us = 1;
    ot_table *o = join(e, &v, 1);
    /* 999 ns is after 500 ns although both are the same µs; ttl 1 µs back
     * from ...1500 ns is ...500 ns inclusive */
    LD_CHECK_STR(col_text(o, "val"), "early|edge|");
    LD_CHECK_STR(col_text(o, "ts"), "2024-01-01T00:00:10.000000500|2024-01-01T00:00:10.000001500|"
                                    "2024-01-01T00:00:10.000001500");
    ot_table_free(o);

    /* µs features against ns entities: compared in ns, not truncated */
    ot_table *fu = csv("id,ts,val\n1,2024-01-01T00:00:10.000001,us\n");
    ot_table *en = csv_opts("id,ts\n1,2024-01-01T00:00:10.000000999\n"
                            "1,2024-01-01T00:00:10.000001000\n",
                            &ns);
    v = view1(fu, "id", "val");
    o = join(en, &v, 1);
    LD_CHECK_STR(col_text(o, "val"), "|us");
    ot_table_free(o);

    /* seconds and milliseconds against µs */
    mcol(fu, "ts")->type.unit = OT_MILLI; /* same raw value, now ms */
    ot_table *eu = csv("id,ts\n1,2024-01-01T00:00:00\n");
    ((int64_t *)mcol(eu, "ts")->values)[0] = ((int64_t *)mcol(fu, "ts")->values)[0] * 1000;
    o = join(eu, &v, 1);
    LD_CHECK_STR(col_text(o, "val"), "us");
    ((int64_t *)mcol(eu, "ts")->values)[0] -= 1;
    ot_table_free(o);
    o = join(eu, &v, 1);
    LD_CHECK_STR(col_text(o, "val"), "");
    ot_table_free(o);
    ot_table_free(eu);
    ot_table_free(fu);
    ot_table_free(en);
    ot_table_free(e);
    ot_table_free(f);
}

LD_TEST(pit_column_take_lists)
{
    /* a list<utf8> column gathered with nulls and repeats */
    ot_column src = {0};
    src.name = strdup("l");
    src.type.id = OT_LIST;
    src.type.child = calloc(1, sizeof *src.type.child);
    src.type.child->id = OT_UTF8;
    src.length = 3;
    src.offsets = malloc(4 * sizeof(int32_t));
    int32_t offs[] = {0, 2, 2, 3};
    memcpy(src.offsets, offs, sizeof offs);
    src.child = calloc(1, sizeof *src.child);
    src.child->name = strdup("item");
    src.child->type.id = OT_UTF8;
    src.child->length = 3;
    src.child->offsets = malloc(4 * sizeof(int32_t));
    int32_t coffs[] = {0, 1, 3, 6};
    memcpy(src.child->offsets, coffs, sizeof coffs);
    src.child->data = (uint8_t *)strdup("abcdef");
    src.child->data_len = 6;
    src.validity = calloc(1, 1);
    src.validity[0] = 0x5; /* row 1 null */
    src.null_count = 1;

    int64_t idx[] = {2, -1, 0, 1, 0};
    ot_column dst;
    ld_status st = LD_STATUS_INIT;
    LD_CHECK(ot_column_take(&src, idx, 5, "out", &dst, &st) == 0);
    ot_table t = {.cols = &dst, .n_cols = 1, .n_rows = 5};
    char *txt = table_text(&t);
    LD_CHECK_STR(txt, "out\n[def]\n\n\"[a,bc]\"\n\n\"[a,bc]\"\n");
    LD_CHECK_INT(dst.null_count, 2);
    LD_CHECK_INT(dst.child->length, 5);
    LD_CHECK(ot_type_equal(&dst.type, &src.type));
    free(txt);
    ot_column_clear(&dst);
    ot_column_clear(&src);
}

/* ---- point-in-time join: randomized against brute force --------------- */

static uint64_t rng_state;
static uint64_t rnd(void)
{
    rng_state += 0x9e3779b97f4a7c15ULL;
    uint64_t z = rng_state;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static unsigned rndn(unsigned n)
{
    return (unsigned)(rnd() % n);
}

/* A random table: k (int64), s (utf8 "s<k%7>"), ts (µs, small range so
 * ties happen), created (µs, some null), rowid. Some null keys and ts. */
static ot_table *rand_table(int64_t n, unsigned keys, int64_t ts_range, bool created)
{
    ot_table *t = ot_table_new(created ? 5 : 4, n);
    size_t nb = (size_t)(n + 7) / 8 + 1;
    const char *names[] = {"k", "s", "ts", "rowid", "created"};
    for (size_t c = 0; c < t->n_cols; c++) {
        ot_column *col = &t->cols[c];
        col->name = strdup(names[c]);
        col->length = n;
        col->type.id = c == 1 ? OT_UTF8 : (c == 2 || c == 4) ? OT_TIMESTAMP : OT_INT64;
        col->type.unit = OT_MICRO;
        if (c == 1) {
            col->offsets = malloc((size_t)(n + 1) * 4);
            col->data = malloc((size_t)n * 2 + 1);
        } else {
            col->values = malloc((size_t)(n ? n : 1) * 8);
        }
        if (c != 3) {
            col->validity = malloc(nb);
            memset(col->validity, 0xff, nb);
        }
    }
    t->cols[1].offsets[0] = 0;
    for (int64_t r = 0; r < n; r++) {
        int64_t k = rndn(keys);
        ((int64_t *)t->cols[0].values)[r] = k;
        t->cols[1].data[2 * r] = 's';
        t->cols[1].data[2 * r + 1] = (uint8_t)('0' + k % 7);
        t->cols[1].offsets[r + 1] = (int32_t)(2 * r + 2);
        ((int64_t *)t->cols[2].values)[r] = 1700000000000000LL + (int64_t)rndn((unsigned)ts_range);
        ((int64_t *)t->cols[3].values)[r] = r;
        if (created)
            ((int64_t *)t->cols[4].values)[r] = (int64_t)rndn(4);
        for (size_t c = 0; c < t->n_cols; c++)
            if (c != 3 && rndn(100) < 2) {
                ot_bit_set(t->cols[c].validity, r, 0);
                t->cols[c].null_count++;
            }
    }
    t->cols[1].data_len = 2 * n;
    return t;
}

static const ot_table *ref_f;

static int64_t rv(const ot_table *t, size_t c, int64_t r)
{
    return ((const int64_t *)t->cols[c].values)[r];
}

static bool rvalid(const ot_table *t, size_t c, int64_t r)
{
    return ot_column_valid(&t->cols[c], r);
}

static int ref_cmp(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    int64_t kx = rv(ref_f, 0, x), ky = rv(ref_f, 0, y);
    if (kx != ky)
        return kx < ky ? -1 : 1;
    return x < y ? -1 : x > y;
}

/* Brute force: feature rows sorted by key (qsort), then for each entity row
 * a scan of its key's rows keeping the best (ts, created, row). use_s adds
 * the string column to the key. */
static void reference(const ot_table *e, const ot_table *f, int64_t ttl, bool created, bool use_s,
                      int64_t *match)
{
    int64_t n = 0, *ord = malloc((size_t)(f->n_rows + 1) * 8);
    for (int64_t r = 0; r < f->n_rows; r++)
        if (rvalid(f, 0, r) && rvalid(f, 2, r) && (!use_s || rvalid(f, 1, r)))
            ord[n++] = r;
    ref_f = f;
    qsort(ord, (size_t)n, 8, ref_cmp);
    for (int64_t i = 0; i < e->n_rows; i++) {
        match[i] = -1;
        if (!rvalid(e, 0, i) || !rvalid(e, 2, i) || (use_s && !rvalid(e, 1, i)))
            continue;
        int64_t k = rv(e, 0, i), t = rv(e, 2, i), lo = 0, hi = n;
        while (lo < hi) {
            int64_t mid = (lo + hi) / 2;
            if (rv(f, 0, ord[mid]) < k)
                lo = mid + 1;
            else
                hi = mid;
        }
        int64_t best = -1, bts = 0, bcr = 0;
        for (int64_t p = lo; p < n && rv(f, 0, ord[p]) == k; p++) {
            int64_t r = ord[p], ts = rv(f, 2, r);
            if (ts > t || (ttl && ts < t - ttl))
                continue;
            int64_t cr = created && rvalid(f, 4, r) ? rv(f, 4, r) : INT64_MIN;
            if (best < 0 || ts > bts || (ts == bts && cr >= bcr)) {
                best = r;
                bts = ts;
                bcr = cr;
            }
        }
        match[i] = best;
    }
    free(ord);
}

static void random_round(uint64_t seed, int64_t ne, int64_t nf, unsigned keys, int64_t ts_range,
                         int64_t ttl, bool created, bool use_s)
{
    rng_state = seed;
    ot_table *e = rand_table(ne, keys + keys / 10, ts_range, false);
    ot_table *f = rand_table(nf, keys, ts_range, created);
    ot_pit_view v = {
            .source = f,
            .join_keys = use_s ? S("s", "k") : S("k"),
            .entity_keys = use_s ? S("s", "k") : S("k"),
            .n_keys = use_s ? 2 : 1,
            .event_ts = "ts",
            .created_ts = created ? "created" : NULL,
            .ttl_us = ttl,
            .features = S("rowid"),
            .out_names = S("matched"),
            .n_features = 1,
    };
    int64_t *want = malloc((size_t)ne * 8), *got = malloc((size_t)ne * 8);
    ld_status st = LD_STATUS_INIT;
    reference(e, f, ttl, created, use_s, want);
    int threads[] = {1, 4};
    for (int ti = 0; ti < 2; ti++) {
        int64_t *m[1] = {got};
        LD_CHECK(ot_pit_match(e, "ts", &v, 1, threads[ti], m, &st) == 0);
        int64_t bad = 0, hits = 0;
        for (int64_t i = 0; i < ne; i++) {
            bad += got[i] != want[i];
            hits += want[i] >= 0;
        }
        if (bad)
            printf("# seed %llu threads %d: %lld of %lld rows differ\n", (unsigned long long)seed,
                   threads[ti], (long long)bad, (long long)ne);
        LD_CHECK_INT(bad, 0);
        LD_CHECK(hits > ne / 4); /* the data is not degenerate */
    }
    /* the full join agrees with the match array */
    ot_table *o = NULL;
    LD_CHECK(ot_pit_join(e, "ts", &v, 1, 3, &o, &st) == 0);
    const ot_column *mc = ot_table_column(o, "matched");
    int64_t bad = 0;
    for (int64_t i = 0; i < ne; i++)
        bad += want[i] < 0 ? ot_column_valid(mc, i) : ((int64_t *)mc->values)[i] != want[i];
    LD_CHECK_INT(bad, 0);
    ot_table_free(o);
    free(want);
    free(got);
    ot_table_free(e);
    ot_table_free(f);
}

LD_TEST(pit_random_many_keys)
{
    int64_t scale = PIT_SMALL ? 1 : 40;
    random_round(1, 1000 * scale, 5000 * scale, 100 * (unsigned)scale, 5000, 0, true, false);
    random_round(2, 1000 * scale, 5000 * scale, 100 * (unsigned)scale, 5000, 1500, true, false);
    random_round(3, 1000 * scale, 5000 * scale, 100 * (unsigned)scale, 200, 0, false, true);
}

LD_TEST(pit_random_few_keys)
{
    /* big groups: sorted runs, the merge path, and ties everywhere */
    int64_t scale = PIT_SMALL ? 1 : 10;
    random_round(4, 300 * scale, 10000 * scale, 7, 100000, 0, true, false);
    random_round(5, 300 * scale, 10000 * scale, 7, 1000, 300, true, true);
    random_round(6, 2000, 200, 3, 50, 10, true, false);
}

/* ---- CSV -------------------------------------------------------------- */

LD_TEST(csv_inference)
{
    ot_table *t = csv("i,f,mix,ts,tz,b,s,nul,big,date\n"
                      "1,1,1,2024-01-01 00:00:00,2024-01-01T00:00:00Z,true,x,,9223372036854775807,"
                      "2024-03-01\n"
                      "-2,2.5,a,2024-01-01T01:02:03.5,2024-01-01T02:00:00+02:00,False,,,"
                      "9223372036854775808,2024-02-29\n"
                      ",1e3,2,2024-01-01T00:00,2024-01-01 00:00:00.123456789-01:30,TRUE,3,,1,\n");
    LD_CHECK_INT(t->n_rows, 3);
    LD_CHECK_INT(mcol(t, "i")->type.id, OT_INT64);
    LD_CHECK_INT(mcol(t, "f")->type.id, OT_FLOAT64);
    LD_CHECK_INT(mcol(t, "mix")->type.id, OT_UTF8);
    LD_CHECK_INT(mcol(t, "ts")->type.id, OT_TIMESTAMP);
    LD_CHECK_INT(mcol(t, "ts")->type.unit, OT_MICRO);
    LD_CHECK(mcol(t, "ts")->type.tz == NULL);
    LD_CHECK_STR(mcol(t, "tz")->type.tz, "UTC");
    LD_CHECK_INT(mcol(t, "b")->type.id, OT_BOOL);
    LD_CHECK_INT(mcol(t, "s")->type.id, OT_UTF8);
    LD_CHECK_INT(mcol(t, "nul")->type.id, OT_UTF8);
    LD_CHECK_INT(mcol(t, "nul")->null_count, 3);
    LD_CHECK_INT(mcol(t, "big")->type.id, OT_FLOAT64);
    LD_CHECK_INT(mcol(t, "date")->type.id, OT_TIMESTAMP);
    LD_CHECK_STR(col_text(t, "i"), "1|-2|");
    LD_CHECK_STR(col_text(t, "f"), "1|2.5|1000");
    LD_CHECK_STR(col_text(t, "mix"), "1|a|2");
    LD_CHECK_STR(col_text(t, "ts"), "2024-01-01T00:00:00|2024-01-01T01:02:03.500000|"
                                    "2024-01-01T00:00:00");
    LD_CHECK_STR(col_text(t, "tz"), "2024-01-01T00:00:00Z|2024-01-01T00:00:00Z|"
                                    "2024-01-01T01:30:00.123456Z");
    LD_CHECK_STR(col_text(t, "b"), "true|false|true");
    LD_CHECK_STR(col_text(t, "s"), "x||3");
    LD_CHECK_STR(col_text(t, "big"), "9.223372036854776e+18|9.223372036854776e+18|1");
    LD_CHECK_STR(col_text(t, "date"), "2024-03-01T00:00:00|2024-02-29T00:00:00|");
    LD_CHECK_INT(((int64_t *)mcol(t, "tz")->values)[0], 1704067200000000LL);
    ot_table_free(t);

    /* not quite: a bad day, a bad month, 24:00, trailing junk -> utf8 */
    const char *bad[] = {"2023-02-29",
                         "2024-13-01",
                         "2024-01-01T24:00:00",
                         "2024-01-01x",
                         "2024-01-01T00:00:00+",
                         "1.2.3",
                         "1e",
                         "truee",
                         "--1"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char buf[128];
        snprintf(buf, sizeof buf, "c\n%s\n", bad[i]);
        t = csv(buf);
        LD_CHECK_INT(t->cols[0].type.id, OT_UTF8);
        ot_table_free(t);
    }
    t = csv("a,b,c\nnan,-inf,1.5E-3\nInfinity,2,+4\n");
    LD_CHECK_STR(col_text(t, "a"), "nan|inf");
    LD_CHECK_STR(col_text(t, "b"), "-inf|2");
    LD_CHECK_STR(col_text(t, "c"), "0.0015|4");
    ot_table_free(t);
    /* pre-1970 and fractional seconds before the epoch */
    t = csv("t\n1969-12-31T23:59:59.5\n1900-01-01\n");
    LD_CHECK_INT(((int64_t *)t->cols[0].values)[0], -500000);
    LD_CHECK_STR(col_text(t, "t"), "1969-12-31T23:59:59.500000|1900-01-01T00:00:00");
    ot_table_free(t);
}

LD_TEST(csv_quoting)
{
    ot_table *t = csv("\xef\xbb\xbf"
                      "\"a,b\",\"q\"\"\",n\r\n"
                      "\"x,y\",\"he said \"\"hi\"\"\",1\r\n"
                      "\r\n"
                      "\"multi\nline\",\"\",2\r\n"
                      "plain,,\"3\"");
    LD_CHECK(t != NULL);
    LD_CHECK_INT(t->n_rows, 3);
    LD_CHECK_STR(t->cols[0].name, "a,b");
    LD_CHECK_STR(t->cols[1].name, "q\"");
    LD_CHECK_STR(col_text(t, "a,b"),
                 "\"x,y\"|\"multi|line\"|plain"); /* col_text turns every LF into | */
    /* quoted "" is the empty string; unquoted empty is null */
    LD_CHECK_STR(col_text(t, "q\""), "\"he said \"\"hi\"\"\"|\"\"|");
    LD_CHECK_INT(mcol(t, "q\"")->null_count, 1);
    LD_CHECK_INT(mcol(t, "n")->type.id, OT_INT64);
    LD_CHECK_STR(col_text(t, "n"), "1|2|3");
    ot_table_free(t);

    /* a quoted empty field in a number column is null */
    t = csv("n,m\n\"\",1\n5,\n");
    LD_CHECK_INT(mcol(t, "n")->type.id, OT_INT64);
    LD_CHECK_STR(col_text(t, "n"), "|5");
    LD_CHECK_STR(col_text(t, "m"), "1|");
    ot_table_free(t);
    /* only quoted empties: a string column of empty strings */
    t = csv("e\n\"\"\n\"\"\n");
    LD_CHECK_INT(mcol(t, "e")->type.id, OT_UTF8);
    LD_CHECK_INT(mcol(t, "e")->null_count, 0);
    ot_table_free(t);
    /* header only */
    t = csv("a,b\n");
    LD_CHECK_INT(t->n_rows, 0);
    LD_CHECK_INT(t->n_cols, 2);
    ot_table_free(t);
    /* CR-only line ends, no final newline */
    t = csv("a\r1\r2");
    LD_CHECK_STR(col_text(t, "a"), "1|2");
    ot_table_free(t);
}

LD_TEST(csv_errors)
{
    ot_csv_opts small = {.max_cols = 2, .max_record = 16, .max_rows = 2};
    LD_CHECK(strstr(csv_error("", NULL), "no header row") != NULL);
    LD_CHECK(strstr(csv_error("\n\n", NULL), "no header row") != NULL);
    LD_CHECK_STR(csv_error("a,b\n1,2\n3\n", NULL), "test:3: 1 fields, the header has 2");
    LD_CHECK_STR(csv_error("a,b\n1,2,3\n", NULL), "test:2: 3 fields, the header has 2");
    LD_CHECK_STR(csv_error("a\n\"x\n\ny\n", NULL), "test:2: unterminated quoted field");
    LD_CHECK_STR(csv_error("a\n\"x\"y\n", NULL),
                 "test:2: unexpected character after a closing quote");
    LD_CHECK_STR(csv_error("a,a\n", NULL), "test: duplicate column \"a\"");
    LD_CHECK_STR(csv_error("a,\n1,2\n", NULL), "test: column 2 has no name");
    LD_CHECK_STR(csv_error("a,b,c\n", &small), "test:1: more than 2 fields");
    LD_CHECK_STR(csv_error("a\n12345678901234567\n", &small), "test:2: record too long");
    LD_CHECK_STR(csv_error("a\n1\n2\n3\n", &small), "test: more than 2 rows");
    LD_CHECK_STR(csv_error("a\n1\n\"multi\nline\"\n1,2\n", NULL),
                 "test:5: 2 fields, the header has 1");

    ld_status st = LD_STATUS_INIT;
    ot_table *t = NULL;
    LD_CHECK(ot_csv_read("/nonexistent/file.csv", NULL, &t, &st) < 0);
    LD_CHECK_INT(st.code, GRPC_STATUS_NOT_FOUND);
    LD_CHECK(t == NULL);
}

LD_TEST(csv_file_and_round_trip)
{
    char path[] = "/tmp/ld_test_pit_XXXXXX";
    int fd = mkstemp(path);
    LD_CHECK(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs("k,ts,v,w,s\n", f);
    rng_state = 77;
    for (int i = 0; i < 5000; i++) {
        double d = (double)(int64_t)rnd() / 3.0e15;
        fprintf(f, "%d,2024-01-%02dT%02d:%02d:%02d.%06dZ,%.17g,%s,\"s%d,\"\"%d\"\n", i % 97,
                1 + i % 28, i % 24, i % 60, (i * 7) % 60, i * 13 % 1000000, d,
                i % 3 ? "true" : "false", i, i);
    }
    fclose(f);
    ld_status st = LD_STATUS_INIT;
    ot_table *t = NULL, *t2 = NULL;
    LD_CHECK(ot_csv_read(path, NULL, &t, &st) == 0);
    LD_CHECK_INT(t->n_rows, 5000);
    LD_CHECK_STR(mcol(t, "ts")->type.tz, "UTC");
    LD_CHECK_INT(mcol(t, "v")->type.id, OT_FLOAT64);
    LD_CHECK_INT(mcol(t, "w")->type.id, OT_BOOL);
    LD_CHECK_INT(mcol(t, "s")->type.id, OT_UTF8);
    /* write it back and read the copy: the same values, exactly */
    char *txt = table_text(t);
    LD_CHECK(ot_csv_parse(txt, strlen(txt), "copy", NULL, &t2, &st) == 0);
    char *txt2 = table_text(t2);
    LD_CHECK_STR(txt2, txt);
    for (int64_t r = 0; r < 5000; r++)
        if (((double *)mcol(t, "v")->values)[r] != ((double *)mcol(t2, "v")->values)[r]) {
            LD_CHECK(!"float changed in a round trip");
            break;
        }
    free(txt);
    free(txt2);
    ot_table_free(t);
    ot_table_free(t2);
    /* nanoseconds survive a round trip too */
    ot_csv_opts ns = {.ts_nanos = true};
    t = csv_opts("t\n2262-04-11T23:47:16.854775807Z\n1677-09-21T00:12:43.145224192Z\n", &ns);
    LD_CHECK_INT(mcol(t, "t")->type.unit, OT_NANO);
    LD_CHECK_INT(((int64_t *)t->cols[0].values)[0], INT64_MAX);
    LD_CHECK_INT(((int64_t *)t->cols[0].values)[1], INT64_MIN);
    LD_CHECK_STR(col_text(t, "t"), "2262-04-11T23:47:16.854775807Z|1677-09-21T00:12:43.145224192Z");
    ot_table_free(t);
    t = csv_opts("t\n2262-04-11T23:47:16.854775808Z\n", &ns); /* one past: not a timestamp */
    LD_CHECK_INT(t->cols[0].type.id, OT_UTF8);
    ot_table_free(t);
    unlink(path);
}

LD_TEST_MAIN
