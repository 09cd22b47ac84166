/* ld_pb_catalog: every protobuf-c message descriptor larder compiles, found by
 * full proto name ("feast.core.Entity"). The table is generated at build time
 * by gen_catalog.py from the protoc-c headers. */
#pragma once

#include <stddef.h>
#include <protobuf-c/protobuf-c.h>

/* All descriptors, in generation order; *n receives the count. */
const ProtobufCMessageDescriptor *const *ld_pb_catalog(size_t *n);

/* The descriptor of a message by full name, or NULL. Linear scan: for tools
 * and tests, not hot paths. */
const ProtobufCMessageDescriptor *ld_pb_catalog_find(const char *full_name);
