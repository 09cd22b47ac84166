/* ld_regclient: fetch the whole registry (feast.core.Registry) the way a
 * server's feature_store.yaml says: `registry_type: remote` asks a registry
 * server (larder-registry or Feast's) for Proto(); `file` reads the
 * serialized Registry. Used by the online and offline servers, which keep
 * their own indexes on top. Blocking: call it from a background thread. */
#pragma once

#include "feast/core/Registry.pb-c.h"
#include "ld_config.h"
#include "ld_status.h"

typedef struct ld_regclient ld_regclient;

ld_regclient *ld_regclient_new(const ld_config *cfg, ld_status *st);
void ld_regclient_free(ld_regclient *r);
/* The serialized registry (malloc'd; caller frees). */
int ld_regclient_fetch_bytes(ld_regclient *r, uint8_t **out, size_t *len, ld_status *st);
/* "remote 127.0.0.1:6570" or "file /path/registry.db", for messages. */
const char *ld_regclient_describe(const ld_regclient *r);
