/* lineage: the registry's derived views — GetRegistryLineage,
 * GetObjectRelationships, ListFeatures and GetFeature — computed from a
 * snapshot the way Feast's registry_lineage.py and registry_server.py do
 * (same relation order, no dedup, same type strings). */
#pragma once

#include "catalog.h"
#include "ld_server.h"

void lineage_serve_registry(ld_call *c, const ProtobufCMessage *req, const catalog *snap);
void lineage_serve_object(ld_call *c, const ProtobufCMessage *req, const catalog *snap);
void lineage_serve_list_features(ld_call *c, const ProtobufCMessage *req, const catalog *snap);
void lineage_serve_get_feature(ld_call *c, const ProtobufCMessage *req, const catalog *snap);

/* Feast's type string for a ValueType enum number ("Int64", "Array(Float32)"). */
const char *lineage_type_string(int value_type);
