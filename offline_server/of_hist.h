/* of_hist: get_historical_features beyond the entity-dataframe join —
 * resolving the command's feature views the way Feast's offline server does,
 * refusing on-demand feature views (their transformations are Python), and
 * entity-less retrieval (start_date/end_date, no entity dataframe) over file
 * sources.
 *
 * Entity-less semantics (Feast's file offline store, dask.py, in non-entity
 * mode): a snapshot as of end_date. For every entity key that has a row in
 * some view's window, one output row: event_timestamp = end_date, the join
 * keys, then each view's features from its latest row with
 *
 *     max(start_date, end_date - ttl) <= event_ts <= end_date
 *
 * (ttl 0: start_date <= event_ts <= end_date), ties to the greatest created
 * timestamp, then to the row that comes last in the file; null when the
 * view has no such row for the key. Defaults as Feast's
 * compute_non_entity_date_range: end_date = now, start_date = end_date -
 * the largest ttl of the views, or 30 days when none has a ttl. Every view
 * must have the same join keys. Rows come ordered by the join keys. */
#pragma once

#include <jansson.h>

#include "feast/core/Registry.pb-c.h"
#include "ld_arena.h"
#include "ld_status.h"
#include "of_api.h"
#include "ot_pit.h"
#include "ot_table.h"

/* Every feature_refs entry "view:feature" must name one of the command's
 * feature views (by alias or name). A ref to an on-demand feature view is
 * FAILED_PRECONDITION naming it (larder does not run Python); a ref to
 * nothing known is NOT_FOUND (FeatureViewNotFoundException). */
int of_hist_check_refs(const Feast__Core__Registry *r, const char *project, json_t *cmd,
                       ld_status *st);

/* Feature view v of the command (feature_view_names[v], name_aliases[v]) as
 * Feast's offline server resolves it: a feature view or stream feature view
 * of `project`; an alias takes the join-key map of the feature-service
 * projection carrying it; the dummy entity is dropped. Fills everything of
 * *pv but its source (the caller loads *ds, field mapping applied); names
 * live in the registry, the command or `ar`. */
int of_hist_resolve(const Feast__Core__Registry *r, const char *project, json_t *cmd, size_t v,
                    ot_pit_view *pv, const Feast__Core__DataSource **ds, ld_arena *ar,
                    ld_status *st);

/* Entity-less get_historical_features over file sources (see above). */
int of_hist_range(of_api *a, json_t *cmd, ot_table **result, ld_status *st);
