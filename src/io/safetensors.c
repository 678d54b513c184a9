/* safetensors reader (see safetensors.h for the format and the guarantees; the writer is
 * safetensors_write.c). The header is parsed with cJSON; every field is checked against
 * the file's length before anything is allocated from it. */
#include "io/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/util.h"
#include "io/st_checksum.h"

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

static int parse_tensor(const char *path, const cJSON *entry, StTensor *t, size_t section_bytes) {
    const char *name = entry->string;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        if (*p < 0x20 || *p == 0x7F) return d2c_error(D2C_ERR_INPUT, "%s: a tensor name holds a control character", path);
    if (!*name) return d2c_error(D2C_ERR_INPUT, "%s: a tensor has an empty name", path);
    if (!cJSON_IsObject(entry)) return d2c_error(D2C_ERR_INPUT, "%s: header entry '%s' is not an object", path, name);
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(entry, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(entry, "shape");
    const cJSON *offsets = cJSON_GetObjectItemCaseSensitive(entry, "data_offsets");
    if (!cJSON_IsString(dtype) || !cJSON_IsArray(shape) || !cJSON_IsArray(offsets))
        return d2c_error(D2C_ERR_INPUT,
                         "%s: tensor '%s' lacks a string \"dtype\", an array \"shape\" or an array \"data_offsets\"",
                         path, name);

    int found = -1;
    for (int d = 0; d < NUM_DTYPES; d++)
        if (strcmp(dtype->valuestring, DTYPES[d].name) == 0) found = d;
    if (found < 0)
        return d2c_error(D2C_ERR_INPUT, "%s: tensor '%s' has dtype %.32s; d2c reads F32, F64, I32, I64 and U8", path,
                         name, dtype->valuestring);
    t->dtype = (StDtype)found;

    int ndim = cJSON_GetArraySize(shape);
    if (ndim > ST_MAX_DIMS)
        return d2c_error(D2C_ERR_INPUT, "%s: tensor '%s' has %d dimensions (at most %d)", path, name, ndim, ST_MAX_DIMS);
    t->ndim = ndim;
    int has_zero = 0;
    for (int d = 0; d < ndim; d++) {
        int64_t s = json_uint(cJSON_GetArrayItem(shape, d));
        if (s < 0)
            return d2c_error(D2C_ERR_INPUT, "%s: tensor '%s' has a shape entry that is not a non-negative integer", path,
                             name);
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

    if (cJSON_GetArraySize(offsets) != 2)
        return d2c_error(D2C_ERR_INPUT, "%s: tensor '%s': data_offsets must hold two numbers", path, name);
    int64_t begin = json_uint(cJSON_GetArrayItem(offsets, 0));
    int64_t end = json_uint(cJSON_GetArrayItem(offsets, 1));
    if (begin < 0 || end < 0)
        return d2c_error(D2C_ERR_INPUT, "%s: tensor '%s': data_offsets are not non-negative integers", path, name);
    if (end < begin)
        return d2c_error(D2C_ERR_INPUT, "%s: tensor '%s': data_offsets [%lld, %lld] end before they begin", path, name,
                         (long long)begin, (long long)end);
    if ((uint64_t)end > section_bytes)
        return d2c_error(D2C_ERR_INPUT,
                         "%s: tensor '%s': data_offsets [%lld, %lld] point past the end of the data (%zu bytes); "
                         "the file is truncated or corrupt",
                         path, name, (long long)begin, (long long)end, section_bytes);
    if (impossible)
        return d2c_error(D2C_ERR_INPUT, "%s: tensor '%s': its shape needs more bytes than the whole data section (%zu)",
                         path, name, section_bytes);
    /* numel <= section_bytes, so numel * 8 cannot overflow 64 bits */
    if (numel * DTYPES[t->dtype].size != (uint64_t)(end - begin))
        return d2c_error(D2C_ERR_INPUT, "%s: tensor '%s': shape and dtype %s need %llu bytes but data_offsets span %lld",
                         path, name, DTYPES[t->dtype].name, (unsigned long long)(numel * DTYPES[t->dtype].size),
                         (long long)(end - begin));
    t->numel = (int64_t)numel;
    t->offset = (size_t)begin;
    t->nbytes = (size_t)(end - begin);
    return D2C_OK;
}

static int compare_by_offset(const void *a, const void *b) {
    const StTensor *x = a, *y = b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

static int compare_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int parse_metadata(StFile *f, const cJSON *meta) {
    if (!cJSON_IsObject(meta)) return d2c_error(D2C_ERR_INPUT, "%s: __metadata__ is not an object", f->path);
    int n = cJSON_GetArraySize(meta);
    f->meta_keys = xcalloc((size_t)n, sizeof(char *));
    f->meta_values = xcalloc((size_t)n, sizeof(char *));
    const cJSON *item;
    cJSON_ArrayForEach(item, meta) {
        if (!cJSON_IsString(item))
            return d2c_error(D2C_ERR_INPUT, "%s: __metadata__ value of '%s' is not a string", f->path, item->string);
        for (int i = 0; i < f->meta_count; i++)
            if (strcmp(f->meta_keys[i], item->string) == 0)
                return d2c_error(D2C_ERR_INPUT, "%s: __metadata__ key '%s' appears twice", f->path, item->string);
        f->meta_keys[f->meta_count] = xstrdup(item->string);
        f->meta_values[f->meta_count] = xstrdup(item->valuestring);
        f->meta_count++;
    }
    return D2C_OK;
}

/* Reads the 8-byte length and the header; *header is NUL-terminated. */
static int read_header(FILE *fp, const char *path, uint64_t file_bytes, char **header, uint64_t *header_bytes) {
    unsigned char len8[8];
    if (file_bytes < 8 || fread(len8, 1, 8, fp) != 8)
        return d2c_error(D2C_ERR_INPUT, "%s: too short for a safetensors file (%llu bytes)", path,
                         (unsigned long long)file_bytes);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | len8[i];
    if (n > file_bytes - 8)
        return d2c_error(D2C_ERR_INPUT,
                         "%s: header length %llu exceeds the file's %llu bytes; not a safetensors file, or truncated",
                         path, (unsigned long long)n, (unsigned long long)file_bytes);
    if (n > ST_MAX_HEADER_BYTES || n < 2)
        return d2c_error(D2C_ERR_INPUT, "%s: implausible header length %llu (the format allows 2..%u); not a safetensors file",
                         path, (unsigned long long)n, ST_MAX_HEADER_BYTES);
    char *h = xmalloc((size_t)n + 1);
    if (fread(h, 1, (size_t)n, fp) != n) {
        free(h);
        return d2c_error(D2C_ERR_INPUT, "%s: cannot read the header", path);
    }
    h[n] = 0;
    *header = h;
    *header_bytes = n;
    return D2C_OK;
}

/* Parses the header JSON into f's tensors and metadata. */
static int parse_header(StFile *f, const char *header, size_t header_bytes, size_t section_bytes) {
    const char *path = f->path;
    if (header[0] != '{') return d2c_error(D2C_ERR_INPUT, "%s: header does not start with '{'; not a safetensors file", path);
    if (!valid_utf8((const unsigned char *)header, header_bytes))
        return d2c_error(D2C_ERR_INPUT, "%s: header is not valid UTF-8; the file is corrupt", path);
    const char *json_end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(header, header_bytes, &json_end, 0);
    if (!root || !cJSON_IsObject(root)) {
        const char *at = cJSON_GetErrorPtr();
        cJSON_Delete(root);
        return d2c_error(D2C_ERR_INPUT, "%s: header is not valid JSON (near byte %td)", path,
                         at && at >= header && at <= header + header_bytes ? at - header : (ptrdiff_t)0);
    }
    int st = D2C_OK;
    for (const char *p = json_end; p < header + header_bytes; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            st = d2c_error(D2C_ERR_INPUT, "%s: unexpected bytes after the JSON header", path);
            goto done;
        }
    int entries = cJSON_GetArraySize(root);
    f->tensors = xcalloc((size_t)(entries ? entries : 1), sizeof(StTensor));
    const cJSON *entry;
    int have_meta = 0;
    cJSON_ArrayForEach(entry, root) {
        if (strcmp(entry->string, "__metadata__") == 0) {
            if (have_meta) {
                st = d2c_error(D2C_ERR_INPUT, "%s: two __metadata__ entries", path);
                goto done;
            }
            have_meta = 1;
            D2C_TRY_GOTO(st, parse_metadata(f, entry), done);
            continue;
        }
        StTensor *t = &f->tensors[f->count];
        D2C_TRY_GOTO(st, parse_tensor(path, entry, t, section_bytes), done);
        t->name = xstrdup(entry->string);
        f->count++;
    }
done:
    cJSON_Delete(root);
    return st;
}

/* Names unique, tensors tiling the data section: no overlap, no gap, nothing after. */
static int check_layout(StFile *f, size_t section_bytes) {
    const char *path = f->path;
    char **names = xmalloc((size_t)(f->count ? f->count : 1) * sizeof(char *));
    for (int i = 0; i < f->count; i++) names[i] = f->tensors[i].name;
    qsort(names, (size_t)f->count, sizeof(char *), compare_names);
    for (int i = 1; i < f->count; i++)
        if (strcmp(names[i - 1], names[i]) == 0) {
            int st = d2c_error(D2C_ERR_INPUT, "%s: tensor '%s' appears twice", path, names[i]);
            free(names);
            return st;
        }
    free(names);
    if (f->count > 1) qsort(f->tensors, (size_t)f->count, sizeof(StTensor), compare_by_offset);
    size_t pos = 0;
    for (int i = 0; i < f->count; i++) {
        const StTensor *t = &f->tensors[i];
        if (t->offset < pos) return d2c_error(D2C_ERR_INPUT, "%s: tensor '%s' overlaps the tensor before it", path, t->name);
        if (t->offset > pos)
            return d2c_error(D2C_ERR_INPUT, "%s: %zu unused bytes before tensor '%s'", path, t->offset - pos, t->name);
        pos = t->offset + t->nbytes;
    }
    if (pos != section_bytes)
        return d2c_error(D2C_ERR_INPUT, "%s: %zu bytes of data after the last tensor; the header does not describe the file",
                         path, section_bytes - pos);
    return D2C_OK;
}

/* The "checksum" metadata, when the file has it, against the file's own content. */
static int verify_checksum(const StFile *f, size_t section_bytes) {
    const char *want = st_meta(f, ST_CHECKSUM_KEY);
    if (!want) return D2C_OK; /* older d2c files and files from other tools: nothing to verify */
    uint32_t recorded;
    if (st_checksum_parse(want, &recorded))
        return d2c_error(D2C_ERR_INPUT, "%s: metadata checksum '%.40s' is not crc32:<8 hex digits>; the file is corrupt",
                         f->path, want);
    StChecksumTensor *t = xmalloc((size_t)(f->count ? f->count : 1) * sizeof *t);
    for (int i = 0; i < f->count; i++)
        t[i] = (StChecksumTensor){f->tensors[i].name, f->tensors[i].dtype, f->tensors[i].ndim, f->tensors[i].shape,
                                  f->tensors[i].offset, f->tensors[i].offset + f->tensors[i].nbytes};
    uint32_t crc = st_checksum_header(t, f->count, f->meta_keys, f->meta_values, f->meta_count);
    free(t);
    crc = st_checksum_data(crc, f->section, section_bytes);
    if (crc != recorded) {
        char have[24];
        st_checksum_format(crc, have, sizeof have);
        return d2c_error(D2C_ERR_INPUT,
                         "%s: checksum mismatch: the file's tensors and metadata hash to %s but it records %s; the file is "
                         "corrupt or was changed after d2c wrote it",
                         f->path, have, want);
    }
    return D2C_OK;
}

int st_open(StFile **out, const char *path) {
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) return d2c_error(D2C_ERR_INPUT, "%s: cannot open: %s", path, strerror(errno));
    StFile *f = xcalloc(1, sizeof *f);
    f->path = xstrdup(path);
    char *header = NULL;
    int st = D2C_OK;
    struct stat sb;
    if (fstat(fileno(fp), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st = d2c_error(D2C_ERR_INPUT, "%s: not a regular file", path);
        goto fail;
    }
    const uint64_t file_bytes = (uint64_t)sb.st_size;
    uint64_t header_bytes = 0;
    D2C_TRY_GOTO(st, read_header(fp, path, file_bytes, &header, &header_bytes), fail);
    const size_t section_bytes = (size_t)(file_bytes - 8 - header_bytes);
    D2C_TRY_GOTO(st, parse_header(f, header, (size_t)header_bytes, section_bytes), fail);
    free(header);
    header = NULL;
    D2C_TRY_GOTO(st, check_layout(f, section_bytes), fail);

    /* Only now, with every size checked against the file's, is the data allocated. */
    f->section = d2c_try_malloc(section_bytes);
    if (!f->section) {
        st = d2c_error(D2C_ERR_FAIL, "%s: out of memory for its %zu bytes of tensor data", path, section_bytes);
        goto fail;
    }
    if (section_bytes && fread(f->section, 1, section_bytes, fp) != section_bytes) {
        st = d2c_error(D2C_ERR_INPUT, "%s: cannot read the data: %s", path,
                       ferror(fp) ? strerror(errno) : "file shrank while reading");
        goto fail;
    }
    fclose(fp);
    fp = NULL;
    D2C_TRY_GOTO(st, verify_checksum(f, section_bytes), fail);

    f->data = xcalloc((size_t)(f->count ? f->count : 1), sizeof(void *));
    f->copies = xcalloc((size_t)(f->count ? f->count : 1), sizeof(void *));
    f->converted = xcalloc((size_t)(f->count ? f->count : 1), sizeof(void *));
    for (int i = 0; i < f->count; i++) {
        const StTensor *t = &f->tensors[i];
        unsigned char *p = f->section + t->offset;
        if (t->offset % DTYPES[t->dtype].size != 0) { /* legal in the format, not for C */
            f->copies[i] = xmalloc(t->nbytes ? t->nbytes : 1);
            memcpy(f->copies[i], p, t->nbytes);
            p = f->copies[i];
        }
        f->data[i] = p;
    }
    *out = f;
    return D2C_OK;

fail:
    if (fp) fclose(fp);
    free(header);
    st_close(f);
    return st;
}

void st_close(StFile *f) {
    if (!f) return;
    for (int i = 0; i < f->count; i++) {
        free(f->tensors[i].name);
        if (f->copies) free(f->copies[i]);
        if (f->converted) free(f->converted[i]);
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

static int require(const StFile *f, const char *name, int ndim, const int64_t *shape, const char *wanted_dtypes,
                   int (*dtype_ok)(StDtype), const StTensor **out) {
    const StTensor *t = st_find(f, name);
    if (!t) return d2c_error(D2C_ERR_INPUT, "%s: no tensor '%s'", f->path, name);
    if (!dtype_ok(t->dtype))
        return d2c_error(D2C_ERR_INPUT, "%s: tensor '%s' is %s, expected %s", f->path, name, DTYPES[t->dtype].name,
                         wanted_dtypes);
    int ok = t->ndim == ndim;
    for (int d = 0; ok && shape && d < ndim; d++) ok = shape[d] < 0 || shape[d] == t->shape[d];
    if (!ok) {
        char want[160], have[160];
        int64_t any[ST_MAX_DIMS];
        for (int d = 0; d < ST_MAX_DIMS; d++) any[d] = -1;
        format_shape(want, sizeof want, ndim, shape ? shape : any);
        format_shape(have, sizeof have, t->ndim, t->shape);
        return d2c_error(D2C_ERR_INPUT, "%s: tensor '%s' has shape %s, expected %s", f->path, name, have, want);
    }
    *out = t;
    return D2C_OK;
}

static int is_float(StDtype d) { return d == ST_F32 || d == ST_F64; }
static int is_int(StDtype d) { return d == ST_I64 || d == ST_I32 || d == ST_U8; }

int st_require_f32(const StFile *f, const char *name, int ndim, const int64_t *shape, const float **out) {
    *out = NULL;
    const StTensor *t;
    D2C_TRY(require(f, name, ndim, shape, "F32 (or F64)", is_float, &t));
    ptrdiff_t i = t - f->tensors;
    if (t->dtype == ST_F32) {
        *out = f->data[i];
        return D2C_OK;
    }
    if (!f->converted[i]) {
        float *conv = d2c_try_malloc((size_t)t->numel * sizeof(float));
        if (!conv) return d2c_error(D2C_ERR_FAIL, "%s: out of memory converting tensor '%s' to F32", f->path, name);
        const double *in = f->data[i];
        for (int64_t k = 0; k < t->numel; k++) conv[k] = (float)in[k];
        f->converted[i] = conv;
    }
    *out = f->converted[i];
    return D2C_OK;
}

int st_require_i64(const StFile *f, const char *name, int ndim, const int64_t *shape, const int64_t **out) {
    *out = NULL;
    const StTensor *t;
    D2C_TRY(require(f, name, ndim, shape, "I64 (or I32, U8)", is_int, &t));
    ptrdiff_t i = t - f->tensors;
    if (t->dtype == ST_I64) {
        *out = f->data[i];
        return D2C_OK;
    }
    if (!f->converted[i]) {
        int64_t *conv = d2c_try_malloc((size_t)t->numel * sizeof(int64_t));
        if (!conv) return d2c_error(D2C_ERR_FAIL, "%s: out of memory converting tensor '%s' to I64", f->path, name);
        if (t->dtype == ST_I32) {
            const int32_t *in = f->data[i];
            for (int64_t k = 0; k < t->numel; k++) conv[k] = in[k];
        } else {
            const uint8_t *in = f->data[i];
            for (int64_t k = 0; k < t->numel; k++) conv[k] = in[k];
        }
        f->converted[i] = conv;
    }
    *out = f->converted[i];
    return D2C_OK;
}
