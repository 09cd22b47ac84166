/* cli_json: protobuf-c -> proto3 JSON (see cli_json.h). */
#include "cli_json.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

void cj_json_name(const char *name, char *out, size_t n)
{
    size_t j = 0;
    int up = 0;
    for (const char *p = name; *p && j + 1 < n; p++) {
        if (*p == '_') {
            up = 1;
            continue;
        }
        out[j++] = up && *p >= 'a' && *p <= 'z' ? (char)(*p - 'a' + 'A') : *p;
        up = 0;
    }
    out[j] = 0;
}

static json_t *base64(const uint8_t *p, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t olen = (n + 2) / 3 * 4;
    char *s = malloc(olen + 1);
    if (!s)
        return NULL;
    size_t j = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        s[j++] = tab[(v >> 18) & 63];
        s[j++] = tab[(v >> 12) & 63];
        s[j++] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
        s[j++] = i + 2 < n ? tab[v & 63] : '=';
    }
    s[j] = 0;
    json_t *r = json_string(s);
    free(s);
    return r;
}

/* ".123", ".123456" or ".123456789" for non-zero nanos, "" otherwise. */
static void frac(int32_t nanos, char *out, size_t n)
{
    if (nanos == 0)
        out[0] = 0;
    else if (nanos % 1000000 == 0)
        snprintf(out, n, ".%03d", nanos / 1000000);
    else if (nanos % 1000 == 0)
        snprintf(out, n, ".%06d", nanos / 1000);
    else
        snprintf(out, n, ".%09d", nanos);
}

static json_t *timestamp_json(const ProtobufCMessage *m)
{
    const ProtobufCFieldDescriptor *fs =
            protobuf_c_message_descriptor_get_field_by_name(m->descriptor, "seconds");
    const ProtobufCFieldDescriptor *fn =
            protobuf_c_message_descriptor_get_field_by_name(m->descriptor, "nanos");
    int64_t secs = *(const int64_t *)((const char *)m + fs->offset);
    int32_t nanos = *(const int32_t *)((const char *)m + fn->offset);
    char f[16], buf[64];
    frac(nanos < 0 ? 0 : nanos, f, sizeof f);
    if (strcmp(m->descriptor->name, "google.protobuf.Duration") == 0) {
        int neg = secs < 0 || nanos < 0;
        frac(nanos < 0 ? -nanos : nanos, f, sizeof f);
        snprintf(buf, sizeof buf, "%s%lld%ss", neg ? "-" : "", (long long)(secs < 0 ? -secs : secs),
                 f);
        return json_string(buf);
    }
    time_t t = (time_t)secs;
    struct tm tm;
    if (!gmtime_r(&t, &tm))
        return json_string("invalid timestamp");
    snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d%sZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, f);
    return json_string(buf);
}

static json_t *real_json(double d)
{
    if (isnan(d))
        return json_string("NaN");
    if (isinf(d))
        return json_string(d > 0 ? "Infinity" : "-Infinity");
    return json_real(d);
}

/* One value of field f stored at p. */
static json_t *value_json(const ProtobufCFieldDescriptor *f, const void *p, int flags)
{
    char buf[32];
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        return json_integer(*(const int32_t *)p);
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return json_integer(*(const uint32_t *)p);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        snprintf(buf, sizeof buf, "%lld", (long long)*(const int64_t *)p);
        return json_string(buf);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        snprintf(buf, sizeof buf, "%llu", (unsigned long long)*(const uint64_t *)p);
        return json_string(buf);
    case PROTOBUF_C_TYPE_FLOAT:
        return real_json(*(const float *)p);
    case PROTOBUF_C_TYPE_DOUBLE:
        return real_json(*(const double *)p);
    case PROTOBUF_C_TYPE_BOOL:
        return json_boolean(*(const protobuf_c_boolean *)p);
    case PROTOBUF_C_TYPE_ENUM: {
        int v = *(const int *)p;
        const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(f->descriptor, v);
        return ev ? json_string(ev->name) : json_integer(v);
    }
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        json_t *j = json_string(s ? s : "");
        return j ? j : json_string("\xef\xbf\xbd"); /* not UTF-8 */
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *b = p;
        return base64(b->data, b->len);
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *m = *(ProtobufCMessage *const *)p;
        if (!m)
            return json_null();
        const char *full = m->descriptor->name;
        if (!strcmp(full, "google.protobuf.Timestamp") || !strcmp(full, "google.protobuf.Duration"))
            return timestamp_json(m);
        return cj_message(m, flags);
    }
    }
    return json_null();
}

/* A repeated message field whose messages are map entries {key=1, value=2}. */
static int is_map(const ProtobufCFieldDescriptor *f)
{
    if (f->label != PROTOBUF_C_LABEL_REPEATED || f->type != PROTOBUF_C_TYPE_MESSAGE)
        return 0;
    const ProtobufCMessageDescriptor *d = f->descriptor;
    size_t n = strlen(d->short_name);
    return n > 5 && !strcmp(d->short_name + n - 5, "Entry") && d->n_fields == 2 &&
           !strcmp(d->fields[0].name, "key") && !strcmp(d->fields[1].name, "value");
}

static int is_default(const ProtobufCFieldDescriptor *f, const void *p)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return *(const uint32_t *)p == 0;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return *(const uint64_t *)p == 0;
    case PROTOBUF_C_TYPE_FLOAT:
        return *(const float *)p == 0 && !signbit(*(const float *)p);
    case PROTOBUF_C_TYPE_DOUBLE:
        return *(const double *)p == 0 && !signbit(*(const double *)p);
    case PROTOBUF_C_TYPE_BOOL:
        return !*(const protobuf_c_boolean *)p;
    case PROTOBUF_C_TYPE_ENUM:
        return *(const int *)p == 0;
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        return !s || !*s;
    }
    case PROTOBUF_C_TYPE_BYTES:
        return ((const ProtobufCBinaryData *)p)->len == 0;
    case PROTOBUF_C_TYPE_MESSAGE:
        return *(ProtobufCMessage *const *)p == NULL;
    }
    return 1;
}

static size_t type_size(const ProtobufCFieldDescriptor *f)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return 8;
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_ENUM:
        return sizeof(int);
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(void *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    default:
        return 4;
    }
}

json_t *cj_field(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f, int flags)
{
    const char *base = (const char *)m;
    const void *p = base + f->offset;
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
        size_t n = *(const size_t *)(base + f->quantifier_offset);
        if (n == 0)
            return NULL;
        const char *arr = *(char *const *)p;
        if (is_map(f)) {
            json_t *o = json_object();
            const ProtobufCMessageDescriptor *ed = f->descriptor;
            for (size_t i = 0; i < n; i++) {
                const ProtobufCMessage *e = ((ProtobufCMessage *const *)arr)[i];
                const char *eb = (const char *)e;
                char kbuf[32];
                const char *key = kbuf;
                const ProtobufCFieldDescriptor *kf = &ed->fields[0];
                if (kf->type == PROTOBUF_C_TYPE_STRING) {
                    key = *(char *const *)(eb + kf->offset);
                    if (!key)
                        key = "";
                } else {
                    json_t *kj = value_json(kf, eb + kf->offset, flags);
                    if (json_is_string(kj))
                        snprintf(kbuf, sizeof kbuf, "%s", json_string_value(kj));
                    else if (json_is_integer(kj))
                        snprintf(kbuf, sizeof kbuf, "%lld", (long long)json_integer_value(kj));
                    else
                        snprintf(kbuf, sizeof kbuf, "%s", json_is_true(kj) ? "true" : "false");
                    json_decref(kj);
                }
                json_object_set_new(o, key,
                                    value_json(&ed->fields[1], eb + ed->fields[1].offset, flags));
            }
            return o;
        }
        json_t *a = json_array();
        size_t sz = type_size(f);
        for (size_t i = 0; i < n; i++)
            json_array_append_new(a, value_json(f, arr + i * sz, flags));
        return a;
    }
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
        if (*(const uint32_t *)(base + f->quantifier_offset) != f->id)
            return NULL;
        if (f->type == PROTOBUF_C_TYPE_MESSAGE && !*(ProtobufCMessage *const *)p)
            return NULL;
        return value_json(f, p, flags);
    }
    if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset &&
        f->type != PROTOBUF_C_TYPE_MESSAGE && f->type != PROTOBUF_C_TYPE_STRING) {
        if (!*(const protobuf_c_boolean *)(base + f->quantifier_offset))
            return NULL;
        return value_json(f, p, flags);
    }
    if (is_default(f, p))
        return NULL;
    return value_json(f, p, flags);
}

json_t *cj_message(const ProtobufCMessage *m, int flags)
{
    json_t *o = json_object();
    const ProtobufCMessageDescriptor *d = m->descriptor;
    int skip_meta = (flags & CJ_SKIP_SOURCE_META) && !strcmp(d->name, "feast.core.DataSource");
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (skip_meta && !strcmp(f->name, "meta"))
            continue;
        json_t *v = cj_field(m, f, flags);
        if (!v)
            continue;
        char name[128];
        cj_json_name(f->name, name, sizeof name);
        json_object_set_new(o, name, v);
    }
    return o;
}
