/* The safetensors checksum of d2c's files (see st_checksum.h), on zlib's crc32. */
#include "io/st_checksum.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/util.h"

uint32_t st_checksum_data(uint32_t crc, const void *data, size_t n) {
    return (uint32_t)crc32_z((uLong)crc, (const Bytef *)data, (z_size_t)n);
}

static uint32_t add_text(uint32_t crc, const char *s) { return st_checksum_data(crc, s, strlen(s) + 1); }

typedef struct {
    const char *name;
    int index;
} Named;

static int by_name(const void *a, const void *b) { return strcmp(((const Named *)a)->name, ((const Named *)b)->name); }

/* The permutation that sorts names[0..n) in byte order (caller frees). */
static int *sorted_order(const char *const *names, int n) {
    Named *tmp = xmalloc((size_t)(n ? n : 1) * sizeof(Named));
    for (int i = 0; i < n; i++) tmp[i] = (Named){names[i], i};
    qsort(tmp, (size_t)n, sizeof(Named), by_name);
    int *order = xmalloc((size_t)(n ? n : 1) * sizeof(int));
    for (int i = 0; i < n; i++) order[i] = tmp[i].index;
    free(tmp);
    return order;
}

uint32_t st_checksum_header(const StChecksumTensor *tensors, int n_tensors, char *const *keys, char *const *values,
                            int n_meta) {
    uint32_t crc = 0;
    const char **names = xmalloc((size_t)(n_tensors ? n_tensors : 1) * sizeof(char *));
    for (int i = 0; i < n_tensors; i++) names[i] = tensors[i].name;
    int *order = sorted_order(names, n_tensors);
    for (int j = 0; j < n_tensors; j++) {
        const StChecksumTensor *t = &tensors[order[j]];
        char desc[64 + 24 * ST_MAX_DIMS];
        size_t len = (size_t)snprintf(desc, sizeof desc, "%s ", st_dtype_name(t->dtype));
        for (int d = 0; d < t->ndim; d++)
            len += (size_t)snprintf(desc + len, sizeof desc - len, "%s%lld", d ? "," : "", (long long)t->shape[d]);
        snprintf(desc + len, sizeof desc - len, " %llu %llu", (unsigned long long)t->begin, (unsigned long long)t->end);
        crc = add_text(crc, t->name);
        crc = add_text(crc, desc);
    }
    free(order);
    free(names);
    order = sorted_order((const char *const *)keys, n_meta);
    for (int j = 0; j < n_meta; j++) {
        if (strcmp(keys[order[j]], ST_CHECKSUM_KEY) == 0) continue;
        crc = add_text(crc, keys[order[j]]);
        crc = add_text(crc, values[order[j]]);
    }
    free(order);
    return crc;
}

void st_checksum_format(uint32_t crc, char *buf, size_t cap) { snprintf(buf, cap, ST_CHECKSUM_PREFIX "%08x", crc); }

int st_checksum_parse(const char *value, uint32_t *crc) {
    const size_t n = strlen(ST_CHECKSUM_PREFIX);
    if (strncmp(value, ST_CHECKSUM_PREFIX, n) != 0 || strlen(value) != n + 8) return -1;
    uint32_t v = 0;
    for (const char *p = value + n; *p; p++) {
        int h = *p >= '0' && *p <= '9' ? *p - '0' : *p >= 'a' && *p <= 'f' ? *p - 'a' + 10 : -1;
        if (h < 0) return -1;
        v = v << 4 | (uint32_t)h;
    }
    *crc = v;
    return 0;
}
