#include "ol_store.h"

ol_store *ol_store_new(const ld_config *cfg, ld_status *st)
{
    switch (cfg->online_store.type) {
    case LD_ONLINE_REDIS:
        return ol_store_redis_new(cfg, st);
    case LD_ONLINE_POSTGRES:
        return ol_store_postgres_new(cfg, st);
    case LD_ONLINE_SQLITE:
        return ol_store_sqlite_new(cfg, st);
    default:
        ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                      "larder-online serves redis, postgres or sqlite online stores");
        return NULL;
    }
}
