/* placeholder until the PostgreSQL backend lands */
#include "catalog_store.h"

cat_store *cat_store_sql_new(const char *dsn, ld_status *st)
{
    (void)dsn;
    ld_status_set(st, GRPC_STATUS_UNIMPLEMENTED, NULL, "the sql registry backend is not built yet");
    return NULL;
}
