#include "ld_pb.h"

#include <string.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/slice.h>

grpc_byte_buffer *ld_pb_pack_bb(const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    grpc_slice s = grpc_slice_malloc(n);
    protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(s));
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

uint8_t *ld_pb_flatten(grpc_byte_buffer *bb, ld_arena *a, size_t *len)
{
    size_t n = grpc_byte_buffer_length(bb);
    uint8_t *out = ld_arena_alloc(a, n);
    if (!out)
        return NULL;
    grpc_byte_buffer_reader r;
    if (!grpc_byte_buffer_reader_init(&r, bb))
        return NULL;
    grpc_slice s;
    size_t off = 0;
    while (grpc_byte_buffer_reader_next(&r, &s)) {
        size_t sl = GRPC_SLICE_LENGTH(s);
        if (off + sl <= n)
            memcpy(out + off, GRPC_SLICE_START_PTR(s), sl);
        off += sl;
        grpc_slice_unref(s);
    }
    grpc_byte_buffer_reader_destroy(&r);
    *len = off < n ? off : n;
    return out;
}

/* protobuf-c keeps strings as C strings: a NUL inside one would silently
 * cut it short (two different entity keys could become one). Walk the wire
 * bytes with the descriptor and refuse such strings. Returns 1 and the
 * field's path ("typed_features[customer_id].string_val") when one is found;
 * 0 when the message is fine (or malformed: unpack reports that). */
static int read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; *p < end && shift < 64; shift += 7) {
        uint8_t b = *(*p)++;
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return 0;
    }
    return -1;
}

/* The string key (field 1) of a map entry's bytes, for messages. */
static void map_key(const uint8_t *p, size_t len, ld_buf *path)
{
    const uint8_t *end = p + len;
    uint64_t tag, n;
    if (read_varint(&p, end, &tag) == 0 && tag == ((1 << 3) | 2) && read_varint(&p, end, &n) == 0 &&
        n <= (uint64_t)(end - p) && !memchr(p, 0, n)) {
        ld_buf_putc(path, '[');
        ld_buf_append(path, p, n);
        ld_buf_putc(path, ']');
    }
}

static int find_nul_string(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t len,
                           int depth, ld_buf *path)
{
    const uint8_t *end = p + len;
    if (depth > 64)
        return 0;
    while (p < end) {
        uint64_t tag, n = 0, skip;
        if (read_varint(&p, end, &tag) != 0)
            return 0;
        switch (tag & 7) {
        case 0:
            if (read_varint(&p, end, &skip) != 0)
                return 0;
            continue;
        case 1:
            p += 8;
            continue;
        case 5:
            p += 4;
            continue;
        case 2:
            if (read_varint(&p, end, &n) != 0 || n > (uint64_t)(end - p))
                return 0;
            break;
        default:
            return 0;
        }
        const ProtobufCFieldDescriptor *f =
                protobuf_c_message_descriptor_get_field(d, (unsigned)(tag >> 3));
        size_t mark = path ? path->len : 0;
        if (path && f &&
            (f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_MESSAGE)) {
            if (mark)
                ld_buf_putc(path, '.');
            ld_buf_puts(path, f->name);
        }
        if (f && f->type == PROTOBUF_C_TYPE_STRING && memchr(p, 0, n))
            return 1;
        if (f && f->type == PROTOBUF_C_TYPE_MESSAGE) {
            const ProtobufCMessageDescriptor *sub = f->descriptor;
            if (path && sub->n_fields == 2 && sub->fields[0].id == 1 &&
                sub->fields[0].type == PROTOBUF_C_TYPE_STRING &&
                !strcmp(sub->fields[0].name, "key"))
                map_key(p, n, path);
            if (find_nul_string(sub, p, n, depth + 1, path))
                return 1;
        }
        if (path) {
            path->len = mark;
            if (path->data)
                path->data[mark] = '\0';
        }
        p += n;
    }
    return 0;
}

ProtobufCMessage *ld_pb_unpack_bb(const ProtobufCMessageDescriptor *d, grpc_byte_buffer *bb,
                                  ld_arena *a, ld_status *st)
{
    const uint8_t *data = (const uint8_t *)"";
    size_t len = 0;
    if (bb) {
        data = ld_pb_flatten(bb, a, &len);
        if (!data) {
            ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL,
                          "request of %zu bytes exceeds the per-call memory limit",
                          grpc_byte_buffer_length(bb));
            return NULL;
        }
    }
    ld_buf path = LD_BUF_INIT;
    /* the fast pass builds no path; only a bad request pays for the second */
    if (find_nul_string(d, data, len, 0, NULL) && find_nul_string(d, data, len, 0, &path)) {
        ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                      "string field %s contains a NUL character, which larder does not accept",
                      path.data ? path.data : "?");
        ld_buf_free(&path);
        return NULL;
    }
    ld_buf_free(&path);
    ProtobufCMessage *m = protobuf_c_message_unpack(d, ld_arena_pbc(a), len, data);
    if (!m)
        ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                      "request is not a valid %s message (%zu bytes)", d->name, len);
    return m;
}
