/* Pool construction, files and figure. */
#include "condense/pool.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "io/image.h"
#include "io/safetensors.h"

int pool_ipc_for_ratio(const Dataset *d, double ratio) {
    int ipc = (int)lround(ratio * d->n / d->num_classes);
    return ipc < 1 ? 1 : ipc;
}

void pool_create(Pool *p, int num_classes, int ipc, int c, int h, int w, int cond_dim) {
    memset(p, 0, sizeof *p);
    p->num_classes = num_classes;
    p->ipc = ipc;
    p->n = num_classes * ipc;
    p->c = c;
    p->h = h;
    p->w = w;
    p->images = xmalloc_floats((size_t)p->n * c * h * w);
    p->labels = xcalloc((size_t)p->n, sizeof(int64_t));
    for (int i = 0; i < p->n; i++) p->labels[i] = i / ipc;
    p->cond_dim = cond_dim;
    if (cond_dim > 0) p->cond = xmalloc_floats((size_t)p->n * cond_dim);
}

void pool_free(Pool *p) {
    free(p->images);
    free(p->labels);
    free(p->cond);
    memset(p, 0, sizeof *p);
}

void pool_fill_from(Pool *p, const Dataset *d, const int *idx) {
    const size_t D = (size_t)p->c * p->h * p->w;
    for (int i = 0; i < p->n; i++) {
        memcpy(p->images + (size_t)i * D, d->images + (size_t)idx[i] * D, D * sizeof(float));
        p->labels[i] = d->labels[idx[i]];
    }
}

int pool_save(const Pool *p, const char *path, const char *const *meta) {
    StWriter *w = st_writer_new();
    int64_t shape[4] = {p->n, p->c, p->h, p->w}, n1[1] = {p->n}, cs[2] = {p->n, p->cond_dim};
    st_add(w, "images", ST_F32, 4, shape, p->images);
    st_add(w, "labels", ST_I64, 1, n1, p->labels);
    if (p->cond) st_add(w, "cond", ST_F32, 2, cs, p->cond);
    char buf[32];
    snprintf(buf, sizeof buf, "%d", p->num_classes);
    st_set_meta(w, "num_classes", buf);
    snprintf(buf, sizeof buf, "%d", p->ipc);
    st_set_meta(w, "ipc", buf);
    for (int i = 0; meta && meta[i] && meta[i + 1]; i += 2) st_set_meta(w, meta[i], meta[i + 1]);
    int st = st_write(w, path);
    st_writer_free(w);
    return st;
}

static int read_pool(const StFile *f, const char *path, Pool *p) {
    const StTensor *ti = st_find(f, "images");
    if (!ti || ti->ndim != 4) return d2c_error(D2C_ERR_INPUT, "%s: a pool needs a 4-d 'images' tensor", path);
    if (ti->shape[0] > INT32_MAX || ti->shape[1] < 1 || ti->shape[1] > 4096 || ti->shape[2] < 1 ||
        ti->shape[2] > 65535 || ti->shape[3] < 1 || ti->shape[3] > 65535)
        return d2c_error(D2C_ERR_INPUT, "%s: 'images' of shape (%lld, %lld, %lld, %lld) are not a pool d2c handles", path,
                         (long long)ti->shape[0], (long long)ti->shape[1], (long long)ti->shape[2],
                         (long long)ti->shape[3]);
    const int n = (int)ti->shape[0];
    int64_t n1[1] = {n};
    const float *images;
    const int64_t *labels;
    D2C_TRY(st_require_f32(f, "images", 4, ti->shape, &images));
    D2C_TRY(st_require_i64(f, "labels", 1, n1, &labels));
    const char *nc = st_meta(f, "num_classes"), *ipcs = st_meta(f, "ipc");
    long K = 0, ipc = 0;
    if (!nc || !ipcs || parse_long(nc, &K) || parse_long(ipcs, &ipc) || K < 1 || K > D2C_MAX_CLASSES || ipc < 1 ||
        ipc > n || K * ipc != n)
        return d2c_error(D2C_ERR_INPUT,
                         "%s: not a d2c pool (needs metadata num_classes (1..%d) and ipc with num_classes * ipc = %d)",
                         path, D2C_MAX_CLASSES, n);
    for (int i = 0; i < n; i++)
        if (labels[i] != i / ipc)
            return d2c_error(D2C_ERR_INPUT, "%s: label %lld of image %d breaks the pool's class-major order (%ld per class)",
                             path, (long long)labels[i], i, ipc);
    const StTensor *tc = st_find(f, "cond");
    const int cond_dim = tc && tc->ndim == 2 && tc->shape[1] >= 1 && tc->shape[1] <= 65536 ? (int)tc->shape[1] : 0;
    const float *cond = NULL;
    if (tc) {
        int64_t cs[2] = {n, cond_dim ? cond_dim : -1};
        D2C_TRY(st_require_f32(f, "cond", 2, cs, &cond));
    }
    pool_create(p, (int)K, (int)ipc, (int)ti->shape[1], (int)ti->shape[2], (int)ti->shape[3], cond_dim);
    memcpy(p->images, images, (size_t)ti->numel * sizeof(float));
    memcpy(p->labels, labels, (size_t)n * sizeof(int64_t));
    if (p->cond) memcpy(p->cond, cond, (size_t)n * p->cond_dim * sizeof(float));
    return D2C_OK;
}

int pool_load(Pool *p, const char *path) {
    memset(p, 0, sizeof *p);
    StFile *f;
    D2C_TRY(st_open(&f, path));
    int st = read_pool(f, path, p);
    st_close(f);
    return st;
}

int pool_write_figure(const Pool *p, const Dataset *real, const char *path, const char *caption) {
    const int cols = p->ipc < 10 ? p->ipc : 10, K = p->num_classes;
    const size_t D = (size_t)p->c * p->h * p->w;
    float *g = xmalloc_floats((size_t)2 * K * cols * D);
    for (size_t i = 0; i < (size_t)2 * K * cols * D; i++) g[i] = 1.0f;
    for (int k = 0; k < K; k++) {
        for (int j = 0; j < cols; j++)
            memcpy(g + ((size_t)(2 * k) * cols + j) * D, p->images + ((size_t)k * p->ipc + j) * D, D * sizeof(float));
        int found = 0;
        for (int i = 0; i < real->n && found < cols; i++)
            if (real->labels[i] == k)
                memcpy(g + ((size_t)(2 * k + 1) * cols + found++) * D, real->images + (size_t)i * D, D * sizeof(float));
    }
    int st = png_write_grid_caption(path, g, 2 * K * cols, p->c, p->h, p->w, cols, 2, caption);
    free(g);
    return st;
}
