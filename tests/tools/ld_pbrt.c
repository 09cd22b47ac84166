/* ld_pbrt: protobuf-c round-trip filter for tests/integration/test_protos.py.
 *
 * stdin:  records of  u32le name_len, name, u32le payload_len, payload
 *         (name is a full message name such as "feast.core.Entity").
 * stdout: per record  u32le status, u32le len, bytes
 *         status 0: unpacked and re-packed, bytes are the re-packed message;
 *                   unknown fields are dropped first, so a field protobuf-c
 *                   did not decode into its struct cannot survive the trip;
 *         status 1: protobuf_c_message_unpack rejected the payload (len 0);
 *         status 2: no message of that name in the catalog (len 0).
 * Exit status 0 after a clean end of input, 1 on a truncated record or an
 * I/O error. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ld_pb_catalog.h"

enum { PBRT_OK = 0, PBRT_UNPACK_FAILED = 1, PBRT_UNKNOWN_TYPE = 2 };

/* Reads exactly n bytes. Returns 1 on success, 0 on EOF before the first
 * byte, -1 on a short read or error. */
static int read_full(void *buf, size_t n)
{
    if (n == 0)
        return 1;
    size_t got = fread(buf, 1, n, stdin);
    if (got == n)
        return 1;
    return (got == 0 && feof(stdin)) ? 0 : -1;
}

static int read_u32(uint32_t *out)
{
    unsigned char b[4];
    int r = read_full(b, 4);
    if (r == 1)
        *out = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    return r;
}

static int write_reply(uint32_t status, const uint8_t *data, size_t len)
{
    if (len > UINT32_MAX)
        return -1;
    unsigned char hdr[8];
    uint32_t v[2] = {status, (uint32_t)len};
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 4; j++)
            hdr[i * 4 + j] = (unsigned char)(v[i] >> (8 * j));
    if (fwrite(hdr, 1, sizeof(hdr), stdout) != sizeof(hdr))
        return -1;
    if (len && fwrite(data, 1, len, stdout) != len)
        return -1;
    return 0;
}

/* Drops the unknown fields of msg and of every message inside it. The
 * memory came from the default allocator (malloc), so free() releases it. */
static void strip_unknown(ProtobufCMessage *msg)
{
    for (unsigned i = 0; i < msg->n_unknown_fields; i++)
        free(msg->unknown_fields[i].data);
    free(msg->unknown_fields);
    msg->unknown_fields = NULL;
    msg->n_unknown_fields = 0;

    const ProtobufCMessageDescriptor *desc = msg->descriptor;
    char *base = (char *)msg;
    for (unsigned i = 0; i < desc->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &desc->fields[i];
        if (f->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(size_t *)(base + f->quantifier_offset);
            ProtobufCMessage **items = *(ProtobufCMessage ***)(base + f->offset);
            for (size_t j = 0; j < n; j++)
                if (items[j])
                    strip_unknown(items[j]);
            continue;
        }
        /* Members of a oneof share storage: only the selected one is valid. */
        if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
            *(uint32_t *)(base + f->quantifier_offset) != f->id)
            continue;
        ProtobufCMessage *sub = *(ProtobufCMessage **)(base + f->offset);
        if (sub)
            strip_unknown(sub);
    }
}

/* Round-trips one payload and writes the reply. Returns 0 or -1 on I/O error. */
static int round_trip(const char *name, const uint8_t *payload, size_t len)
{
    const ProtobufCMessageDescriptor *desc = ld_pb_catalog_find(name);
    if (!desc)
        return write_reply(PBRT_UNKNOWN_TYPE, NULL, 0);

    ProtobufCMessage *msg = protobuf_c_message_unpack(desc, NULL, len, payload);
    if (!msg)
        return write_reply(PBRT_UNPACK_FAILED, NULL, 0);
    strip_unknown(msg);

    size_t out_len = protobuf_c_message_get_packed_size(msg);
    uint8_t *out = malloc(out_len ? out_len : 1);
    if (!out) {
        protobuf_c_message_free_unpacked(msg, NULL);
        return -1;
    }
    size_t packed = protobuf_c_message_pack(msg, out);
    protobuf_c_message_free_unpacked(msg, NULL);
    int rc = -1;
    if (packed == out_len)
        rc = write_reply(PBRT_OK, out, out_len);
    else
        fprintf(stderr, "ld_pbrt: %s: packed %zu bytes, expected %zu\n", name, packed, out_len);
    free(out);
    return rc;
}

int main(void)
{
    char *name = NULL;
    uint8_t *payload = NULL;
    int rc = 0;

    for (;;) {
        uint32_t name_len, payload_len;
        int r = read_u32(&name_len);
        if (r == 0)
            break; /* clean end of input */
        if (r < 0 || name_len > (1u << 16)) {
            rc = 1;
            break;
        }
        free(name);
        name = malloc((size_t)name_len + 1);
        if (!name || read_full(name, name_len) != 1) {
            rc = 1;
            break;
        }
        name[name_len] = '\0';

        if (read_u32(&payload_len) != 1 || payload_len > (1u << 30)) {
            rc = 1;
            break;
        }
        free(payload);
        payload = malloc(payload_len ? payload_len : 1);
        if (!payload || read_full(payload, payload_len) != 1) {
            rc = 1;
            break;
        }

        if (round_trip(name, payload, payload_len) != 0) {
            rc = 1;
            break;
        }
    }

    free(name);
    free(payload);
    if (fflush(stdout) != 0)
        rc = 1;
    if (rc)
        fprintf(stderr, "ld_pbrt: truncated input or I/O error\n");
    return rc;
}
