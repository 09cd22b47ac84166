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
    ProtobufCMessage *m = protobuf_c_message_unpack(d, ld_arena_pbc(a), len, data);
    if (!m)
        ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                      "request is not a valid %s message (%zu bytes)", d->name, len);
    return m;
}
