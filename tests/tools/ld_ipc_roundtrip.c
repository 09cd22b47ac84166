/* ld_ipc_roundtrip: Arrow IPC stream on stdin -> ot_ipc_read_stream ->
 * ot_ipc_write_stream -> stdout. For tests/node/arrow_ipc.test.mjs, which
 * checks the output with apache-arrow.
 *
 *   ld_ipc_roundtrip [--describe] [--batch-rows N] [--compress lz4|zstd]
 *
 * --describe prints the decoded schema and row count as JSON instead:
 *   {"rows": N, "columns": [{"name": .., "type": "timestamp[us, tz=UTC]",
 *    "nullable": true, "null_count": N}], "metadata": {"k": "v"}}
 * Errors go to stderr as "<CODE>: <message>", exit status 1. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ld_buf.h"
#include "ld_status.h"
#include "ot_ipc.h"

static void describe(const ot_table *t, ld_buf *out)
{
    ld_buf_printf(out, "{\"rows\": %lld, \"columns\": [", (long long)t->n_rows);
    for (size_t i = 0; i < t->n_cols; i++) {
        const ot_column *c = &t->cols[i];
        ld_buf type = LD_BUF_INIT;
        ot_type_format(&c->type, &type);
        ld_buf_puts(out, i ? ", {\"name\": " : "{\"name\": ");
        ld_buf_json_str(out, c->name ? c->name : "", c->name ? strlen(c->name) : 0, 0);
        ld_buf_puts(out, ", \"type\": ");
        ld_buf_json_str(out, type.data ? type.data : "", type.len, 0);
        ld_buf_printf(out, ", \"nullable\": %s, \"null_count\": %lld}",
                      c->not_null ? "false" : "true", (long long)c->null_count);
        ld_buf_free(&type);
    }
    ld_buf_puts(out, "], \"metadata\": {");
    for (size_t i = 0; i < t->n_meta; i++) {
        if (i)
            ld_buf_puts(out, ", ");
        ld_buf_json_str(out, t->meta_keys[i], strlen(t->meta_keys[i]), 0);
        ld_buf_puts(out, ": ");
        ld_buf_json_str(out, t->meta_values[i], strlen(t->meta_values[i]), 0);
    }
    ld_buf_puts(out, "}}\n");
}

int main(int argc, char **argv)
{
    int want_describe = 0;
    long long batch_rows = 0;
    ot_ipc_codec codec = OT_IPC_UNCOMPRESSED;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--describe") == 0) {
            want_describe = 1;
        } else if (strcmp(argv[i], "--batch-rows") == 0 && i + 1 < argc) {
            batch_rows = atoll(argv[++i]);
        } else if (strcmp(argv[i], "--compress") == 0 && i + 1 < argc) {
            const char *c = argv[++i];
            if (strcmp(c, "lz4") == 0) {
                codec = OT_IPC_LZ4_FRAME;
            } else if (strcmp(c, "zstd") == 0) {
                codec = OT_IPC_ZSTD;
            } else {
                fprintf(stderr, "unknown codec %s\n", c);
                return 2;
            }
        } else {
            fprintf(stderr, "usage: %s [--describe] [--batch-rows N] [--compress lz4|zstd]\n",
                    argv[0]);
            return 2;
        }
    }
    ld_buf in = LD_BUF_INIT;
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, stdin)) > 0)
        ld_buf_append(&in, chunk, n);
    ld_status st = LD_STATUS_INIT;
    ot_table *t = NULL;
    if (ot_ipc_read_stream((const uint8_t *)(in.data ? in.data : ""), in.len, &t, &st) != 0) {
        fprintf(stderr, "%s: %s\n", ld_status_code_name(st.code), st.msg);
        ld_buf_free(&in);
        return 1;
    }
    ld_buf_free(&in);
    ld_buf out = LD_BUF_INIT;
    int rc = 0;
    if (want_describe) {
        describe(t, &out);
    } else if (ot_ipc_write_stream_ex(t, batch_rows, codec, &out, &st) != 0) {
        fprintf(stderr, "%s: %s\n", ld_status_code_name(st.code), st.msg);
        rc = 1;
    }
    if (rc == 0 && out.len && fwrite(out.data, 1, out.len, stdout) != out.len)
        rc = 1;
    ld_buf_free(&out);
    ot_table_free(t);
    return rc;
}
