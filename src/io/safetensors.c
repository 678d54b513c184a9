/* safetensors reader and writer (see safetensors.h for the format and the guarantees).
 * The header is parsed with cJSON; every field is checked against the file's length
 * before anything is allocated from it. */
#include "io/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/util.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "d2c reads and writes little-endian safetensors files in place: big-endian hosts are not supported"
#endif

/* The official implementation refuses headers over 100 MB; so do we. */
#define ST_MAX_HEADER_BYTES (100u * 1000u * 1000u)
/* JSON numbers are doubles: integers above 2^53 cannot be represented exactly. */
#define ST_MAX_JSON_INT 9007199254740992.0

struct StFile {
    char *path;
    int count;
    StTensor *tensors;   /* (count), sorted by offset */
    void **data;         /* (count) aligned pointers to each tensor's bytes */
    void **converted;    /* (count) dtype conversions made by st_require_*, or NULL */
    unsigned char *section; /* the data section, 64-byte aligned */
    void **copies;       /* (count) aligned copies of tensors misaligned in the file, or NULL */
    int meta_count;
    char **meta_keys, **meta_values;
};

static const struct { const char *name; size_t size; } DTYPES[] = {
    [ST_F32] = {"F32", 4}, [ST_F64] = {"F64", 8}, [ST_I32] = {"I32", 4},
    [ST_I64] = {"I64", 8}, [ST_U8] = {"U8", 1},
};
#define NUM_DTYPES ((int)(sizeof DTYPES / sizeof DTYPES[0]))

const char *st_dtype_name(StDtype dtype) { return DTYPES[dtype].name; }
size_t st_dtype_size(StDtype dtype) { return DTYPES[dtype].size; }

static void *aligned_alloc64(size_t bytes) {
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 1) != 0) die_fail("out of memory allocating %zu bytes", bytes);
    return p;
}

/* ---------------------------------------------------------------------------------- */
/* Reader                                                                             */

/* A JSON number that is a non-negative integer representable exactly; -1 otherwise. */
static int64_t json_uint(const cJSON *item) {
    if (!cJSON_IsNumber(item)) return -1;
    double v = item->valuedouble;
    if (!(v >= 0.0) || v > ST_MAX_JSON_INT || v != floor(v)) return -1;
    return (int64_t)v;
}

/* Whether s[0..n) is well-formed UTF-8 (the format requires it, as JSON does). */
static int valid_utf8(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        int extra = c < 0x80 ? 0 : (c & 0xE0) == 0xC0 ? 1 : (c & 0xF0) == 0xE0 ? 2 : (c & 0xF8) == 0xF0 ? 3 : -1;
        if (extra < 0 || (extra == 1 && c < 0xC2) || i + (size_t)extra >= n) return 0;
        for (int k = 1; k <= extra; k++)
            if ((s[i + k] & 0xC0) != 0x80) return 0;
        i += (size_t)extra + 1;
    }
    return 1;
}

static void parse_tensor(const char *path, const cJSON *entry, StTensor *t, size_t section_bytes) {
    const char *name = entry->string;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        if (*p < 0x20 || *p == 0x7F) die_input("%s: a tensor name holds a control character", path);
    if (!cJSON_IsObject(entry)) die_input("%s: header entry '%s' is not an object", path, name);
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(entry, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(entry, "shape");
    const cJSON *offsets = cJSON_GetObjectItemCaseSensitive(entry, "data_offsets");
    if (!cJSON_IsString(dtype) || !cJSON_IsArray(shape) || !cJSON_IsArray(offsets))
        die_input("%s: tensor '%s' lacks a string \"dtype\", an array \"shape\" or an array \"data_offsets\"",
                  path, name);

    int found = -1;
    for (int d = 0; d < NUM_DTYPES; d++)
        if (strcmp(dtype->valuestring, DTYPES[d].name) == 0) found = d;
    if (found < 0)
        die_input("%s: tensor '%s' has dtype %s; d2c reads F32, F64, I32, I64 and U8", path, name,
                  dtype->valuestring);
    t->dtype = (StDtype)found;

    int ndim = cJSON_GetArraySize(shape);
    if (ndim > ST_MAX_DIMS) die_input("%s: tensor '%s' has %d dimensions (at most %d)", path, name, ndim, ST_MAX_DIMS);
    t->ndim = ndim;
    int has_zero = 0;
    for (int d = 0; d < ndim; d++) {
        int64_t s = json_uint(cJSON_GetArrayItem(shape, d));
        if (s < 0) die_input("%s: tensor '%s' has a shape entry that is not a non-negative integer", path, name);
        t->shape[d] = s;
        has_zero |= s == 0;
    }
    /* The product is bounded by the data section's size before it can overflow. */
    uint64_t numel = has_zero ? 0 : 1;
    int impossible = 0;
    for (int d = 0; d < ndim && !has_zero && !impossible; d++) {
        if (numel > section_bytes / (uint64_t)t->shape[d]) impossible = 1;
        else numel *= (uint64_t)t->shape[d];
    }

    if (cJSON_GetArraySize(offsets) != 2) die_input("%s: tensor '%s': data_offsets must hold two numbers", path, name);
    int64_t begin = json_uint(cJSON_GetArrayItem(offsets, 0));
    int64_t end = json_uint(cJSON_GetArrayItem(offsets, 1));
    if (begin < 0 || end < 0) die_input("%s: tensor '%s': data_offsets are not non-negative integers", path, name);
    if (end < begin) die_input("%s: tensor '%s': data_offsets [%lld, %lld] end before they begin", path, name,
                               (long long)begin, (long long)end);
    if ((uint64_t)end > section_bytes)
        die_input("%s: tensor '%s': data_offsets [%lld, %lld] point past the end of the data (%zu bytes); "
                  "the file is truncated or corrupt", path, name, (long long)begin, (long long)end, section_bytes);
    if (impossible)
        die_input("%s: tensor '%s': its shape needs more bytes than the whole data section (%zu)", path, name,
                  section_bytes);
    if (numel * DTYPES[t->dtype].size != (uint64_t)(end - begin))
        die_input("%s: tensor '%s': shape and dtype %s need %llu bytes but data_offsets span %lld", path, name,
                  DTYPES[t->dtype].name, (unsigned long long)(numel * DTYPES[t->dtype].size),
                  (long long)(end - begin));
    t->numel = (int64_t)numel;
    t->offset = (size_t)begin;
    t->nbytes = (size_t)(end - begin);
}

static int compare_by_offset(const void *a, const void *b) {
    const StTensor *x = a, *y = b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

static int compare_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void parse_metadata(StFile *f, const cJSON *meta) {
    if (!cJSON_IsObject(meta)) die_input("%s: __metadata__ is not an object", f->path);
    int n = cJSON_GetArraySize(meta);
    f->meta_keys = xcalloc((size_t)n, sizeof(char *));
    f->meta_values = xcalloc((size_t)n, sizeof(char *));
    const cJSON *item;
    cJSON_ArrayForEach(item, meta) {
        if (!cJSON_IsString(item))
            die_input("%s: __metadata__ value of '%s' is not a string", f->path, item->string);
        f->meta_keys[f->meta_count] = xstrdup(item->string);
        f->meta_values[f->meta_count] = xstrdup(item->valuestring);
        f->meta_count++;
    }
}

StFile *st_open(const char *path) {
    FILE *fp = fopen(path, "rb");
    if (!fp) die_input("%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(fp), &sb) != 0 || !S_ISREG(sb.st_mode)) die_input("%s: not a regular file", path);
    uint64_t file_bytes = (uint64_t)sb.st_size;

    unsigned char len8[8];
    if (file_bytes < 8 || fread(len8, 1, 8, fp) != 8)
        die_input("%s: too short for a safetensors file (%llu bytes)", path, (unsigned long long)file_bytes);
    uint64_t header_bytes = 0;
    for (int i = 7; i >= 0; i--) header_bytes = header_bytes << 8 | len8[i];
    if (header_bytes > file_bytes - 8)
        die_input("%s: header length %llu exceeds the file's %llu bytes; not a safetensors file, or truncated",
                  path, (unsigned long long)header_bytes, (unsigned long long)file_bytes);
    if (header_bytes > ST_MAX_HEADER_BYTES || header_bytes < 2)
        die_input("%s: implausible header length %llu; not a safetensors file", path,
                  (unsigned long long)header_bytes);

    char *header = xmalloc((size_t)header_bytes + 1);
    if (fread(header, 1, (size_t)header_bytes, fp) != header_bytes) die_input("%s: cannot read the header", path);
    header[header_bytes] = 0;
    if (header[0] != '{') die_input("%s: header does not start with '{'; not a safetensors file", path);
    if (!valid_utf8((const unsigned char *)header, (size_t)header_bytes))
        die_input("%s: header is not valid UTF-8; the file is corrupt", path);
    const char *json_end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(header, (size_t)header_bytes, &json_end, 0);
    if (!root || !cJSON_IsObject(root))
        die_input("%s: header is not valid JSON (near byte %td)", path,
                  (cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() : header) - header);
    for (const char *p = json_end; p < header + header_bytes; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
            die_input("%s: unexpected bytes after the JSON header", path);

    StFile *f = xcalloc(1, sizeof *f);
    f->path = xstrdup(path);
    size_t section_bytes = (size_t)(file_bytes - 8 - header_bytes);

    int entries = cJSON_GetArraySize(root);
    f->tensors = xcalloc((size_t)entries, sizeof(StTensor));
    const cJSON *entry;
    cJSON_ArrayForEach(entry, root) {
        if (strcmp(entry->string, "__metadata__") == 0) {
            if (f->meta_keys) die_input("%s: two __metadata__ entries", path);
            parse_metadata(f, entry);
            continue;
        }
        StTensor *t = &f->tensors[f->count++];
        parse_tensor(path, entry, t, section_bytes);
        t->name = xstrdup(entry->string);
    }
    cJSON_Delete(root);
    free(header);

    char **names = xmalloc((size_t)(f->count ? f->count : 1) * sizeof(char *));
    for (int i = 0; i < f->count; i++) names[i] = f->tensors[i].name;
    qsort(names, (size_t)f->count, sizeof(char *), compare_names);
    for (int i = 1; i < f->count; i++)
        if (strcmp(names[i - 1], names[i]) == 0) die_input("%s: tensor '%s' appears twice", path, names[i]);
    free(names);

    /* The tensors must tile the data section: no overlap, no gap, nothing after. */
    qsort(f->tensors, (size_t)f->count, sizeof(StTensor), compare_by_offset);
    size_t pos = 0;
    for (int i = 0; i < f->count; i++) {
        const StTensor *t = &f->tensors[i];
        if (t->offset < pos) die_input("%s: tensor '%s' overlaps the tensor before it", path, t->name);
        if (t->offset > pos) die_input("%s: %zu unused bytes before tensor '%s'", path, t->offset - pos, t->name);
        pos = t->offset + t->nbytes;
    }
    if (pos != section_bytes)
        die_input("%s: %zu bytes of data after the last tensor; the header does not describe the file",
                  path, section_bytes - pos);

    f->section = aligned_alloc64(section_bytes);
    if (section_bytes && fread(f->section, 1, section_bytes, fp) != section_bytes)
        die_input("%s: cannot read the data: %s", path, ferror(fp) ? strerror(errno) : "file shrank while reading");
    fclose(fp);

    f->data = xcalloc((size_t)(f->count ? f->count : 1), sizeof(void *));
    f->copies = xcalloc((size_t)(f->count ? f->count : 1), sizeof(void *));
    f->converted = xcalloc((size_t)(f->count ? f->count : 1), sizeof(void *));
    for (int i = 0; i < f->count; i++) {
        const StTensor *t = &f->tensors[i];
        unsigned char *p = f->section + t->offset;
        if (t->offset % DTYPES[t->dtype].size != 0) { /* legal in the format, not for C */
            f->copies[i] = aligned_alloc64(t->nbytes);
            memcpy(f->copies[i], p, t->nbytes);
            p = f->copies[i];
        }
        f->data[i] = p;
    }
    return f;
}

void st_close(StFile *f) {
    if (!f) return;
    for (int i = 0; i < f->count; i++) {
        free(f->tensors[i].name);
        free(f->copies[i]);
        free(f->converted[i]);
    }
    for (int i = 0; i < f->meta_count; i++) {
        free(f->meta_keys[i]);
        free(f->meta_values[i]);
    }
    free(f->meta_keys);
    free(f->meta_values);
    free(f->tensors);
    free(f->data);
    free(f->copies);
    free(f->converted);
    free(f->section);
    free(f->path);
    free(f);
}

const char *st_path(const StFile *f) { return f->path; }
int st_count(const StFile *f) { return f->count; }

const StTensor *st_tensor(const StFile *f, int i) {
    D2C_CHECK(i >= 0 && i < f->count);
    return &f->tensors[i];
}

const StTensor *st_find(const StFile *f, const char *name) {
    for (int i = 0; i < f->count; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

const void *st_data(const StFile *f, const StTensor *t) {
    ptrdiff_t i = t - f->tensors;
    D2C_CHECK(i >= 0 && i < f->count);
    return f->data[i];
}

const char *st_meta(const StFile *f, const char *key) {
    for (int i = 0; i < f->meta_count; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_values[i];
    return NULL;
}

int st_meta_count(const StFile *f) { return f->meta_count; }

const char *st_meta_at(const StFile *f, int i, const char **value) {
    D2C_CHECK(i >= 0 && i < f->meta_count);
    *value = f->meta_values[i];
    return f->meta_keys[i];
}

/* Writes "(2, 3, any)" style text for error messages. */
static void format_shape(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t n = (size_t)snprintf(buf, cap, "(");
    for (int d = 0; d < ndim && n < cap; d++) {
        if (shape[d] < 0) n += (size_t)snprintf(buf + n, cap - n, "%sany", d ? ", " : "");
        else n += (size_t)snprintf(buf + n, cap - n, "%s%lld", d ? ", " : "", (long long)shape[d]);
    }
    if (n < cap) snprintf(buf + n, cap - n, ")");
}

static const StTensor *require(const StFile *f, const char *name, int ndim, const int64_t *shape,
                               const char *wanted_dtypes, int dtype_ok) {
    const StTensor *t = st_find(f, name);
    if (!t) die_input("%s: no tensor '%s'", f->path, name);
    if (!dtype_ok) die_input("%s: tensor '%s' is %s, expected %s", f->path, name, DTYPES[t->dtype].name, wanted_dtypes);
    int ok = t->ndim == ndim;
    for (int d = 0; ok && shape && d < ndim; d++) ok = shape[d] < 0 || shape[d] == t->shape[d];
    if (!ok) {
        char want[160], have[160];
        int64_t any[ST_MAX_DIMS];
        for (int d = 0; d < ST_MAX_DIMS; d++) any[d] = -1;
        format_shape(want, sizeof want, ndim, shape ? shape : any);
        format_shape(have, sizeof have, t->ndim, t->shape);
        die_input("%s: tensor '%s' has shape %s, expected %s", f->path, name, have, want);
    }
    return t;
}

const float *st_require_f32(const StFile *f, const char *name, int ndim, const int64_t *shape) {
    const StTensor *t = st_find(f, name);
    int dtype_ok = t && (t->dtype == ST_F32 || t->dtype == ST_F64);
    t = require(f, name, ndim, shape, "F32 (or F64)", dtype_ok);
    ptrdiff_t i = t - f->tensors;
    if (t->dtype == ST_F32) return f->data[i];
    if (!f->converted[i]) {
        float *out = aligned_alloc64((size_t)t->numel * sizeof(float));
        const double *in = f->data[i];
        for (int64_t k = 0; k < t->numel; k++) out[k] = (float)in[k];
        f->converted[i] = out;
    }
    return f->converted[i];
}

const int64_t *st_require_i64(const StFile *f, const char *name, int ndim, const int64_t *shape) {
    const StTensor *t = st_find(f, name);
    int dtype_ok = t && (t->dtype == ST_I64 || t->dtype == ST_I32 || t->dtype == ST_U8);
    t = require(f, name, ndim, shape, "I64 (or I32, U8)", dtype_ok);
    ptrdiff_t i = t - f->tensors;
    if (t->dtype == ST_I64) return f->data[i];
    if (!f->converted[i]) {
        int64_t *out = aligned_alloc64((size_t)t->numel * sizeof(int64_t));
        if (t->dtype == ST_I32) {
            const int32_t *in = f->data[i];
            for (int64_t k = 0; k < t->numel; k++) out[k] = in[k];
        } else {
            const uint8_t *in = f->data[i];
            for (int64_t k = 0; k < t->numel; k++) out[k] = in[k];
        }
        f->converted[i] = out;
    }
    return f->converted[i];
}

/* ---------------------------------------------------------------------------------- */
/* Writer                                                                             */

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
    D2C_CHECK((int)dtype >= 0 && (int)dtype < NUM_DTYPES && ndim >= 0 && ndim <= ST_MAX_DIMS);
    for (int i = 0; i < w->count; i++)
        if (strcmp(w->entries[i].name, name) == 0) die_fail("safetensors writer: tensor '%s' added twice", name);
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
    e->nbytes = numel * DTYPES[dtype].size;
    D2C_CHECK(data || e->nbytes == 0);
    e->data = data;
}

void st_set_meta(StWriter *w, const char *key, const char *value) {
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
static char *build_header(const StWriter *w) {
    cJSON *root = cJSON_CreateObject();
    if (w->meta_count) {
        cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
        for (int i = 0; i < w->meta_count; i++) cJSON_AddStringToObject(meta, w->meta_keys[i], w->meta_values[i]);
    }
    size_t offset = 0;
    for (int i = 0; i < w->count; i++) {
        const StEntry *e = &w->entries[i];
        cJSON *t = cJSON_AddObjectToObject(root, e->name);
        cJSON_AddStringToObject(t, "dtype", DTYPES[e->dtype].name);
        cJSON *shape = cJSON_AddArrayToObject(t, "shape");
        for (int d = 0; d < e->ndim; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)e->shape[d]));
        cJSON *offsets = cJSON_AddArrayToObject(t, "data_offsets");
        cJSON_AddItemToArray(offsets, cJSON_CreateNumber((double)offset));
        cJSON_AddItemToArray(offsets, cJSON_CreateNumber((double)(offset + e->nbytes)));
        offset += e->nbytes;
    }
    D2C_CHECK((double)offset < ST_MAX_JSON_INT);
    char *text = cJSON_PrintUnformatted(root);
    if (!text) die_fail("out of memory printing a safetensors header");
    cJSON_Delete(root);
    return text;
}

void st_write(StWriter *w, const char *path) {
    char *json = build_header(w);
    size_t json_len = strlen(json);
    size_t header_bytes = (json_len + 7) / 8 * 8;
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)header_bytes >> (8 * i));

    AtomicFile af = atomic_open(path);
    fwrite(len8, 1, 8, af.f);
    fwrite(json, 1, json_len, af.f);
    for (size_t i = json_len; i < header_bytes; i++) fputc(' ', af.f);
    for (int i = 0; i < w->count; i++)
        if (w->entries[i].nbytes) fwrite(w->entries[i].data, 1, w->entries[i].nbytes, af.f);
    free(json);
    atomic_commit(&af); /* checks every write above through ferror and fsync */
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
