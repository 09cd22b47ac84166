/* CSV reader of larder-offline (offline_server/ot_csv.c): reading a subset
 * of the columns (ot_csv_opts.columns) gives exactly those columns of a
 * full read, whatever the other columns hold; the file's structure is still
 * checked; a file bigger than the drop-behind step reads the same. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ld_buf.h"
#include "ld_test.h"
#include "ot_csv.h"

LD_TEST_MAIN

static int columns_equal(const ot_column *a, const ot_column *b)
{
    if (strcmp(a->name, b->name) || !ot_type_equal(&a->type, &b->type) || a->length != b->length ||
        a->null_count != b->null_count)
        return 0;
    for (int64_t i = 0; i < a->length; i++) {
        int va = ot_column_valid(a, i);
        if (va != ot_column_valid(b, i))
            return 0;
        if (!va)
            continue;
        switch (a->type.id) {
        case OT_INT64:
        case OT_FLOAT64:
        case OT_TIMESTAMP:
            if (memcmp((const int64_t *)a->values + i, (const int64_t *)b->values + i, 8))
                return 0;
            break;
        case OT_BOOL:
            if (ot_bit_get(a->values, i) != ot_bit_get(b->values, i))
                return 0;
            break;
        case OT_UTF8: {
            int32_t la = a->offsets[i + 1] - a->offsets[i], lb = b->offsets[i + 1] - b->offsets[i];
            if (la != lb || memcmp(a->data + a->offsets[i], b->data + b->offsets[i], (size_t)la))
                return 0;
            break;
        }
        default:
            return 0;
        }
    }
    return 1;
}

/* got == the columns of full named in names (in full's order). */
static int is_subset(const ot_table *full, const ot_table *got, const char *const *names, size_t n)
{
    size_t k = 0;
    if (got->n_rows != full->n_rows)
        return 0;
    for (size_t i = 0; i < full->n_cols; i++) {
        int want = 0;
        for (size_t j = 0; j < n; j++)
            want |= names[j] && !strcmp(names[j], full->cols[i].name);
        if (!want)
            continue;
        if (k >= got->n_cols || !columns_equal(&full->cols[i], &got->cols[k]))
            return 0;
        k++;
    }
    return k == got->n_cols;
}

static const char TEXT[] =
        "id,blob,ts,note,x,flag,\"q,name\"\n"
        "1,\"a,b\",2021-04-12T10:00:00Z,\"multi\nline \"\"quoted\"\"\",1.5,true,x\n"
        "2,,2021-04-12 11:00:00+02:00,,2,false,\"\"\n"
        "3,\"\",2021-04-12,plain,-3e2,,y\r\n"
        "\n"
        "4,zzz,,\"\",nan,TRUE,z";

LD_TEST(subsets_of_a_parsed_text)
{
    const char *sets[][3] = {
            {"id", NULL, NULL},     {"ts", "x", NULL}, {"q,name", "blob", "flag"},
            {"note", NULL, "nope"}, {"x", "id", "ts"}, {"nope", NULL, NULL},
    };
    ot_table *full = NULL;
    ld_status st = LD_STATUS_INIT;
    LD_CHECK(ot_csv_parse(TEXT, strlen(TEXT), "t", NULL, &full, &st) == 0);
    LD_CHECK(full && full->n_cols == 7 && full->n_rows == 4);
    for (size_t s = 0; full && s < sizeof sets / sizeof sets[0]; s++) {
        ot_csv_opts o = {.columns = sets[s], .n_columns = 3};
        ot_table *got = NULL;
        LD_CHECK(ot_csv_parse(TEXT, strlen(TEXT), "t", &o, &got, &st) == 0);
        LD_CHECK(got && is_subset(full, got, sets[s], 3));
        ot_table_free(got);
    }
    ot_table_free(full);
}

LD_TEST(structure_is_still_checked)
{
    const char *id[] = {"id"};
    ot_csv_opts o = {.columns = id, .n_columns = 1};
    ot_table *t = NULL;
    ld_status st = LD_STATUS_INIT;
    const char *bad_count = "id,a\n1,2\n3\n";
    LD_CHECK(ot_csv_parse(bad_count, strlen(bad_count), "t", &o, &t, &st) == -1);
    LD_CHECK(strstr(st.msg, "t:3: 1 fields, the header has 2") != NULL);
    const char *dup = "id,a,a\n1,2,3\n";
    LD_CHECK(ot_csv_parse(dup, strlen(dup), "t", &o, &t, &st) == -1);
    LD_CHECK(strstr(st.msg, "duplicate column \"a\"") != NULL);
    const char *noname = "id,,b\n1,2,3\n";
    LD_CHECK(ot_csv_parse(noname, strlen(noname), "t", &o, &t, &st) == -1);
    LD_CHECK(strstr(st.msg, "column 2 has no name") != NULL);
    const char *unterminated = "id,a\n1,\"open\n";
    LD_CHECK(ot_csv_parse(unterminated, strlen(unterminated), "t", &o, &t, &st) == -1);
    LD_CHECK(strstr(st.msg, "unterminated quoted field") != NULL);
}

/* A file over several drop-behind steps (8 MiB): the same as in memory. */
LD_TEST(big_file_reads_the_same)
{
    ld_buf b = LD_BUF_INIT;
    ld_buf_puts(&b, "id,pad,ts,v\n");
    char line[256], pad[121];
    memset(pad, 'p', 120);
    pad[120] = 0;
    int64_t n = 200000; /* ~30 MB */
    for (int64_t i = 0; i < n; i++) {
        snprintf(line, sizeof line, "%lld,\"%s,%lld\",2021-01-01T00:00:%02lldZ,%lld.25\n",
                 (long long)i, pad, (long long)i, (long long)(i % 60), (long long)(i % 1000));
        ld_buf_puts(&b, line);
    }
    char path[] = "/tmp/larder-test-csv-XXXXXX";
    int fd = mkstemp(path);
    LD_CHECK(fd >= 0);
    FILE *f = fdopen(fd, "wb");
    fwrite(b.data, 1, b.len, f);
    fclose(f);
    ot_table *mem = NULL, *file = NULL, *some = NULL;
    ld_status st = LD_STATUS_INIT;
    LD_CHECK(ot_csv_parse(b.data, b.len, "mem", NULL, &mem, &st) == 0);
    LD_CHECK(ot_csv_read(path, NULL, &file, &st) == 0);
    const char *names[] = {"v", "id"};
    ot_csv_opts o = {.columns = names, .n_columns = 2};
    LD_CHECK(ot_csv_read(path, &o, &some, &st) == 0);
    LD_CHECK(mem && file && mem->n_rows == n && file->n_cols == 4);
    for (size_t c = 0; mem && file && c < 4; c++)
        LD_CHECK(columns_equal(&mem->cols[c], &file->cols[c]));
    LD_CHECK(mem && some && is_subset(mem, some, names, 2));
    ot_table_free(mem);
    ot_table_free(file);
    ot_table_free(some);
    unlink(path);
    ld_buf_free(&b);
}
