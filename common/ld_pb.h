/* ld_pb: protobuf-c <-> gRPC byte buffers. */
#pragma once

#include <grpc/byte_buffer.h>
#include <protobuf-c/protobuf-c.h>

#include "ld_arena.h"
#include "ld_status.h"

/* Write v as a protobuf varint at p (at most 10 bytes); returns its length. */
static inline size_t ld_pb_put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

/* Pack a message into a new byte buffer (one slice). */
grpc_byte_buffer *ld_pb_pack_bb(const ProtobufCMessage *m);
/* Copy a byte buffer's bytes into the arena (contiguous); NULL on limit. */
uint8_t *ld_pb_flatten(grpc_byte_buffer *bb, ld_arena *a, size_t *len);
/* Unpack a byte buffer into an arena-owned message. On malformed bytes
 * returns NULL with INVALID_ARGUMENT in st; over the arena limit,
 * RESOURCE_EXHAUSTED. bb may be NULL (an absent message is an empty one). */
ProtobufCMessage *ld_pb_unpack_bb(const ProtobufCMessageDescriptor *d, grpc_byte_buffer *bb,
                                  ld_arena *a, ld_status *st);
