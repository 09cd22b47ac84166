/* cli_defs: feature definitions from declarative YAML files (cli/README.md
 * documents the schema) into Feast's protobuf objects, built as Feast's
 * Python SDK builds them for `feast apply` (FeatureView.to_proto(),
 * FileSource.to_proto(), ...).
 *
 * Every problem is reported as "FILE:LINE: key 'path': problem" and checking
 * goes on, so one run shows all of them. References (a view's entities and
 * source, a service's views, an on-demand view's sources) resolve against
 * the files first, then against the registry's current objects of the
 * project, as Feast resolves entities applied earlier. */
#pragma once

#include <stddef.h>

#include "feast/core/Registry.pb-c.h"
#include "ld_arena.h"
#include "ld_buf.h"
#include "ld_config.h"

typedef enum {
    CD_PROJECT,
    CD_DATA_SOURCE,
    CD_ENTITY,
    CD_FEATURE_VIEW,
    CD_ODFV,
    CD_FEATURE_SERVICE,
    CD_PERMISSION,
    CD_NKINDS,
} cd_kind;

/* "project", "data source", ... as Feast's plan prints them. */
extern const char *const cd_kind_label[CD_NKINDS];

typedef struct cd_obj {
    cd_kind kind;
    const char *name;
    /* feast.core.Project, DataSource, Entity, FeatureView,
     * OnDemandFeatureView, FeatureService or Permission */
    ProtobufCMessage *msg;
    const char *file; /* where it is defined; NULL for implicit objects */
    int line;
    int hidden; /* Feast's __dummy entity: applied, never printed */
} cd_obj;

typedef struct cd_defs {
    cd_obj *v;
    size_t n, cap;
    ld_arena arena; /* owns every message and string */
} cd_defs;

/* Maximum size of one definitions file. */
#define CD_MAX_FILE_BYTES (16 * 1024 * 1024)
/* Problems listed before the rest are only counted. */
#define CD_MAX_ERRORS 50

/* Parse and check the files. reg (may be NULL) is the registry as Proto()
 * returns it; only the project's objects are used. On success returns 0 and
 * fills out in apply order (project, data sources, entities, feature views,
 * on-demand views, feature services, permissions). Otherwise returns the
 * number of problems, each a line in errs. Free out with cd_free either way. */
int cd_load(const char *const *files, size_t nfiles, const ld_config *cfg,
            const Feast__Core__Registry *reg, cd_defs *out, ld_buf *errs);
void cd_free(cd_defs *d);
