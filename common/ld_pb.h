/* ld_pb: protobuf-c <-> gRPC byte buffers. */
#pragma once

#include <grpc/byte_buffer.h>
#include <protobuf-c/protobuf-c.h>

#include "ld_arena.h"
#include "ld_status.h"

/* Pack a message into a new byte buffer (one slice). */
grpc_byte_buffer *ld_pb_pack_bb(const ProtobufCMessage *m);
/* Copy a byte buffer's bytes into the arena (contiguous); NULL on limit. */
uint8_t *ld_pb_flatten(grpc_byte_buffer *bb, ld_arena *a, size_t *len);
/* Unpack a byte buffer into an arena-owned message. On malformed bytes
 * returns NULL with INVALID_ARGUMENT in st; over the arena limit,
 * RESOURCE_EXHAUSTED. bb may be NULL (an absent message is an empty one). */
ProtobufCMessage *ld_pb_unpack_bb(const ProtobufCMessageDescriptor *d, grpc_byte_buffer *bb,
                                  ld_arena *a, ld_status *st);
