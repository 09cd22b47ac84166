#include "ld_status.h"

#include <stdio.h>
#include <string.h>

#include "google/rpc/status.pb-c.h"
#include "google/rpc/error_details.pb-c.h"

void ld_status_clear(ld_status *st)
{
    st->code = GRPC_STATUS_OK;
    st->err_module = NULL;
    st->err_class = NULL;
    st->msg[0] = '\0';
}

int ld_status_setv(ld_status *st, grpc_status_code code, const char *err_class, const char *fmt,
                   va_list ap)
{
    st->code = code;
    st->err_module = NULL;
    st->err_class = err_class;
    vsnprintf(st->msg, sizeof st->msg, fmt, ap);
    return -1;
}

int ld_status_set(ld_status *st, grpc_status_code code, const char *err_class, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ld_status_setv(st, code, err_class, fmt, ap);
    va_end(ap);
    return -1;
}

int ld_status_set_module(ld_status *st, grpc_status_code code, const char *err_module,
                         const char *err_class, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ld_status_setv(st, code, err_class, fmt, ap);
    va_end(ap);
    st->err_module = err_module;
    return -1;
}

void ld_status_prefix(ld_status *st, const char *fmt, ...)
{
    char prefix[256], old[LD_STATUS_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, st->msg, sizeof old);
    size_t n = strlen(prefix);
    if (n > sizeof st->msg - 3)
        n = sizeof st->msg - 3;
    memcpy(st->msg, prefix, n);
    memcpy(st->msg + n, ": ", 2);
    size_t room = sizeof st->msg - n - 3;
    size_t m = strnlen(old, room);
    memcpy(st->msg + n + 2, old, m);
    st->msg[n + 2 + m] = '\0';
}

const char *ld_status_module(const ld_status *st)
{
    return st->err_module ? st->err_module : "feast.errors";
}

const char *ld_status_class(const ld_status *st)
{
    return st->err_class ? st->err_class : "FeastError";
}

const char *ld_status_code_name(grpc_status_code code)
{
    static const char *const names[] = {
            "OK",
            "CANCELLED",
            "UNKNOWN",
            "INVALID_ARGUMENT",
            "DEADLINE_EXCEEDED",
            "NOT_FOUND",
            "ALREADY_EXISTS",
            "PERMISSION_DENIED",
            "RESOURCE_EXHAUSTED",
            "FAILED_PRECONDITION",
            "ABORTED",
            "OUT_OF_RANGE",
            "UNIMPLEMENTED",
            "INTERNAL",
            "UNAVAILABLE",
            "DATA_LOSS",
            "UNAUTHENTICATED",
    };
    if ((unsigned)code < sizeof names / sizeof names[0])
        return names[code];
    return "UNKNOWN";
}

void ld_status_feast_json(const ld_status *st, ld_buf *out)
{
    const char *m = ld_status_module(st), *c = ld_status_class(st);
    ld_buf_puts(out, "{\"module\": ");
    ld_buf_json_str(out, m, strlen(m), 1);
    ld_buf_puts(out, ", \"class\": ");
    ld_buf_json_str(out, c, strlen(c), 1);
    ld_buf_puts(out, ", \"message\": ");
    ld_buf_json_str(out, st->msg, strlen(st->msg), 1);
    ld_buf_putc(out, '}');
}

void ld_status_details_bin(const ld_status *st, const char *json, size_t json_len, ld_buf *out)
{
    Google__Rpc__ErrorInfo info = GOOGLE__RPC__ERROR_INFO__INIT;
    info.reason = (char *)ld_status_class(st);
    info.domain = (char *)ld_status_module(st);
    size_t info_len = google__rpc__error_info__get_packed_size(&info);
    uint8_t info_bytes[512];
    uint8_t *ib = info_len <= sizeof info_bytes ? info_bytes : NULL;
    if (!ib) {
        info.reason = "FeastError";
        info.domain = "feast.errors";
        info_len = google__rpc__error_info__get_packed_size(&info);
        ib = info_bytes;
    }
    google__rpc__error_info__pack(&info, ib);

    Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
    any.type_url = "type.googleapis.com/google.rpc.ErrorInfo";
    any.value.data = ib;
    any.value.len = info_len;
    Google__Protobuf__Any *anys[1] = {&any};

    /* The message is NUL-terminated inside `json` only if the caller made it
     * so; copy into a buffer that is. */
    ld_buf msg = LD_BUF_INIT;
    ld_buf_append(&msg, json, json_len);

    Google__Rpc__Status s = GOOGLE__RPC__STATUS__INIT;
    s.code = (int32_t)st->code;
    s.message = msg.data;
    s.n_details = 1;
    s.details = anys;
    size_t n = google__rpc__status__get_packed_size(&s);
    google__rpc__status__pack(&s, (uint8_t *)ld_buf_reserve(out, n));
    out->len += n;
    out->data[out->len] = '\0';
    ld_buf_free(&msg);
}
