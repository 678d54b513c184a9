/* The safetensors writer (see safetensors.h): tensors in the order added, the header
 * padded to a multiple of 8, the checksum of st_checksum.h in the metadata, written
 * atomically. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "io/safetensors.h"
#include "io/st_checksum.h"

/* JSON numbers are doubles: integers above 2^53 cannot be represented exactly. */
#define ST_MAX_JSON_INT 9007199254740992.0

typedef struct {
    char *name;
    StDtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    size_t nbytes;
    const void *data;
} StEntry;

struct StWriter {
    int count, cap;
    StEntry *entries;
    int meta_count, meta_cap;
    char **meta_keys, **meta_values;
};

StWriter *st_writer_new(void) { return xcalloc(1, sizeof(StWriter)); }

void st_add(StWriter *w, const char *name, StDtype dtype, int ndim, const int64_t *shape, const void *data) {
    D2C_CHECK(name && *name && strcmp(name, "__metadata__") != 0);
    D2C_CHECK((int)dtype >= 0 && (int)dtype <= (int)ST_U8 && ndim >= 0 && ndim <= ST_MAX_DIMS);
    for (int i = 0; i < w->count; i++)
        if (strcmp(w->entries[i].name, name) == 0) d2c_fatal("safetensors writer: tensor '%s' added twice", name);
    if (w->count == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 16;
        w->entries = xrealloc(w->entries, (size_t)w->cap * sizeof(StEntry));
    }
    StEntry *e = &w->entries[w->count++];
    memset(e, 0, sizeof *e);
    e->name = xstrdup(name);
    e->dtype = dtype;
    e->ndim = ndim;
    size_t numel = 1;
    for (int d = 0; d < ndim; d++) {
        D2C_CHECK(shape[d] >= 0 && (shape[d] == 0 || numel <= SIZE_MAX / 8 / (size_t)shape[d]));
        e->shape[d] = shape[d];
        numel *= (size_t)shape[d];
    }
    e->nbytes = numel * st_dtype_size(dtype);
    D2C_CHECK(data || e->nbytes == 0);
    e->data = data;
}

void st_set_meta(StWriter *w, const char *key, const char *value) {
    D2C_CHECK(strcmp(key, ST_CHECKSUM_KEY) != 0); /* st_write computes it */
    for (int i = 0; i < w->meta_count; i++)
        if (strcmp(w->meta_keys[i], key) == 0) {
            free(w->meta_values[i]);
            w->meta_values[i] = xstrdup(value);
            return;
        }
    if (w->meta_count == w->meta_cap) {
        w->meta_cap = w->meta_cap ? 2 * w->meta_cap : 8;
        w->meta_keys = xrealloc(w->meta_keys, (size_t)w->meta_cap * sizeof(char *));
        w->meta_values = xrealloc(w->meta_values, (size_t)w->meta_cap * sizeof(char *));
    }
    w->meta_keys[w->meta_count] = xstrdup(key);
    w->meta_values[w->meta_count] = xstrdup(value);
    w->meta_count++;
}

/* The header JSON, unpadded; the caller frees it. */
/* The checksum of what st_write is about to write (st_checksum.h). */
static uint32_t writer_checksum(const StWriter *w) {
    StChecksumTensor *t = xmalloc((size_t)(w->count ? w->count : 1) * sizeof *t);
    uint64_t offset = 0;
    for (int i = 0; i < w->count; i++) {
        const StEntry *e = &w->entries[i];
        t[i] = (StChecksumTensor){e->name, e->dtype, e->ndim, e->shape, offset, offset + e->nbytes};
        offset += e->nbytes;
    }
    uint32_t crc = st_checksum_header(t, w->count, w->meta_keys, w->meta_values, w->meta_count);
    free(t);
    for (int i = 0; i < w->count; i++)
        if (w->entries[i].nbytes) crc = st_checksum_data(crc, w->entries[i].data, w->entries[i].nbytes);
    return crc;
}

static char *build_header(const StWriter *w) {
    cJSON *root = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
    for (int i = 0; i < w->meta_count; i++) cJSON_AddStringToObject(meta, w->meta_keys[i], w->meta_values[i]);
    char checksum[24];
    st_checksum_format(writer_checksum(w), checksum, sizeof checksum);
    cJSON_AddStringToObject(meta, ST_CHECKSUM_KEY, checksum);
    size_t offset = 0;
    for (int i = 0; i < w->count; i++) {
        const StEntry *e = &w->entries[i];
        cJSON *t = cJSON_AddObjectToObject(root, e->name);
        cJSON_AddStringToObject(t, "dtype", st_dtype_name(e->dtype));
        cJSON *shape = cJSON_AddArrayToObject(t, "shape");
        for (int d = 0; d < e->ndim; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)e->shape[d]));
        cJSON *offsets = cJSON_AddArrayToObject(t, "data_offsets");
        cJSON_AddItemToArray(offsets, cJSON_CreateNumber((double)offset));
        cJSON_AddItemToArray(offsets, cJSON_CreateNumber((double)(offset + e->nbytes)));
        offset += e->nbytes;
    }
    D2C_CHECK((double)offset < ST_MAX_JSON_INT);
    char *text = cJSON_PrintUnformatted(root);
    if (!text) d2c_fatal("out of memory printing a safetensors header");
    cJSON_Delete(root);
    return text;
}

int st_write(StWriter *w, const char *path) {
    char *json = build_header(w);
    size_t json_len = strlen(json);
    size_t header_bytes = (json_len + 7) / 8 * 8;
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)header_bytes >> (8 * i));

    AtomicFile af;
    int st = atomic_open(&af, path);
    if (st) {
        free(json);
        return st;
    }
    fwrite(len8, 1, 8, af.f);
    fwrite(json, 1, json_len, af.f);
    for (size_t i = json_len; i < header_bytes; i++) fputc(' ', af.f);
    for (int i = 0; i < w->count; i++)
        if (w->entries[i].nbytes) fwrite(w->entries[i].data, 1, w->entries[i].nbytes, af.f);
    free(json);
    return atomic_commit(&af); /* checks every write above through ferror and fsync */
}

void st_writer_free(StWriter *w) {
    if (!w) return;
    for (int i = 0; i < w->count; i++) free(w->entries[i].name);
    for (int i = 0; i < w->meta_count; i++) {
        free(w->meta_keys[i]);
        free(w->meta_values[i]);
    }
    free(w->entries);
    free(w->meta_keys);
    free(w->meta_values);
    free(w);
}
