#include "pbref.h"

#include <string.h>

#include "google/protobuf/timestamp.pb-c.h"

const ProtobufCFieldDescriptor *pbref_field(const ProtobufCMessage *m, const char *path,
                                            void **member)
{
    char part[64];
    *member = NULL;
    while (m) {
        const char *dot = strchr(path, '.');
        size_t n = dot ? (size_t)(dot - path) : strlen(path);
        if (n == 0 || n >= sizeof part)
            return NULL;
        memcpy(part, path, n);
        part[n] = '\0';
        const ProtobufCFieldDescriptor *f =
                protobuf_c_message_descriptor_get_field_by_name(m->descriptor, part);
        if (!f)
            return NULL;
        void *p = (char *)m + f->offset;
        if (!dot) {
            *member = p;
            return f;
        }
        if (f->type != PROTOBUF_C_TYPE_MESSAGE || f->label == PROTOBUF_C_LABEL_REPEATED)
            return NULL;
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            uint32_t qcase = *(const uint32_t *)((const char *)m + f->quantifier_offset);
            if (qcase != f->id)
                return f; /* another branch of the oneof is set */
        }
        m = *(ProtobufCMessage **)p;
        path = dot + 1;
    }
    return NULL;
}

const char *pbref_string(const ProtobufCMessage *m, const char *path)
{
    void *p;
    const ProtobufCFieldDescriptor *f = pbref_field(m, path, &p);
    if (!f || !p || f->type != PROTOBUF_C_TYPE_STRING || f->label == PROTOBUF_C_LABEL_REPEATED)
        return "";
    const char *s = *(char **)p;
    return s ? s : "";
}

ProtobufCMessage *pbref_message(const ProtobufCMessage *m, const char *path)
{
    void *p;
    const ProtobufCFieldDescriptor *f = pbref_field(m, path, &p);
    if (!f || !p || f->type != PROTOBUF_C_TYPE_MESSAGE || f->label == PROTOBUF_C_LABEL_REPEATED)
        return NULL;
    return *(ProtobufCMessage **)p;
}

int64_t pbref_timestamp_us(const ProtobufCMessage *m, const char *path)
{
    const Google__Protobuf__Timestamp *t = (const void *)pbref_message(m, path);
    if (!t || t->base.descriptor != &google__protobuf__timestamp__descriptor)
        return 0;
    return t->seconds * 1000000 + t->nanos / 1000;
}

ProtobufCMessage **pbref_map(const ProtobufCMessage *m, const char *path, size_t *n)
{
    void *p;
    *n = 0;
    const ProtobufCFieldDescriptor *f = pbref_field(m, path, &p);
    if (!f || !p || f->label != PROTOBUF_C_LABEL_REPEATED || f->type != PROTOBUF_C_TYPE_MESSAGE)
        return NULL;
    *n = *(size_t *)((char *)p - f->offset + f->quantifier_offset);
    return *(ProtobufCMessage ***)p;
}

/* A map<string,string> entry: the generated struct is {base, char *key, char *value}. */
typedef struct str_entry {
    ProtobufCMessage base;
    char *key;
    char *value;
} str_entry;

const char *pbref_map_get(ProtobufCMessage *const *entries, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++) {
        const str_entry *e = (const void *)entries[i];
        if (e->key && strcmp(e->key, key) == 0)
            return e->value ? e->value : "";
    }
    return NULL;
}

ProtobufCMessage *pbref_ensure_message(ProtobufCMessage *m, const char *field,
                                       ProtobufCAllocator *alloc)
{
    const ProtobufCFieldDescriptor *f =
            protobuf_c_message_descriptor_get_field_by_name(m->descriptor, field);
    if (!f || f->type != PROTOBUF_C_TYPE_MESSAGE || f->label == PROTOBUF_C_LABEL_REPEATED)
        return NULL;
    ProtobufCMessage **slot = (ProtobufCMessage **)((char *)m + f->offset);
    if (!*slot) {
        const ProtobufCMessageDescriptor *d = f->descriptor;
        ProtobufCMessage *sub = alloc->alloc(alloc->allocator_data, d->sizeof_message);
        if (!sub)
            return NULL;
        d->message_init(sub);
        *slot = sub;
    }
    return *slot;
}
