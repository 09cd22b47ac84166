/* ld_status: errors as values. A function that can fail returns 0 or -1 and
 * fills an ld_status; at the RPC edge the status becomes the gRPC code, the
 * message (Feast's error JSON) and the grpc-status-details-bin trailer.
 *
 * Feast clients rebuild the exception from {"module","class","message"}, so
 * `err_class` must be a class that exists in `err_module` (feast.errors by
 * default) for the client to raise the same exception Feast's server would. */
#pragma once

#include <grpc/status.h>
#include <stdarg.h>

#include "ld_buf.h"

#define LD_STATUS_MSG_MAX 1024

typedef struct ld_status {
    grpc_status_code code;
    const char *err_module; /* static string; NULL means "feast.errors" */
    const char *err_class;  /* static string; NULL means "FeastError" */
    char msg[LD_STATUS_MSG_MAX];
} ld_status;

#define LD_STATUS_INIT                                                                             \
    {                                                                                              \
        GRPC_STATUS_OK, NULL, NULL,                                                                \
        {                                                                                          \
            0                                                                                      \
        }                                                                                          \
    }

static inline int ld_status_ok(const ld_status *st)
{
    return st->code == GRPC_STATUS_OK;
}

void ld_status_clear(ld_status *st);

/* Set code, Feast error class and message; always returns -1 so a failing
 * function can `return ld_status_set(st, ...)`. */
int ld_status_set(ld_status *st, grpc_status_code code, const char *err_class, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
int ld_status_setv(ld_status *st, grpc_status_code code, const char *err_class, const char *fmt,
                   va_list ap);
/* As ld_status_set, with an explicit Python module for the error class. */
int ld_status_set_module(ld_status *st, grpc_status_code code, const char *err_module,
                         const char *err_class, const char *fmt, ...)
        __attribute__((format(printf, 5, 6)));

/* Prefix the existing message with context: "<prefix>: <old message>". */
void ld_status_prefix(ld_status *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

const char *ld_status_module(const ld_status *st);
const char *ld_status_class(const ld_status *st);

/* Canonical upper-case name of a gRPC code ("NOT_FOUND"). */
const char *ld_status_code_name(grpc_status_code code);

/* Append Feast's error detail exactly as Python's json.dumps writes it:
 * {"module": "feast.errors", "class": "X", "message": "..."} (ASCII-only). */
void ld_status_feast_json(const ld_status *st, ld_buf *out);

/* Append a packed google.rpc.Status{code, message=<Feast JSON>, details=[
 * Any(google.rpc.ErrorInfo{reason=class, domain=module})]} for the
 * grpc-status-details-bin trailer. */
void ld_status_details_bin(const ld_status *st, const char *json, size_t json_len, ld_buf *out);
