/* The sanity ladder's image sets (ladder.h) and Spearman's rank correlation. */
#include "eval/ladder.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "core/util.h"
#include "eval/suite.h"
#include "io/safetensors.h"

enum { LADDER_STREAM = 1 << 22 }; /* RNG_EVAL streams of the ladder */

const LadderOrder LADDER_ORDER[LADDER_ORDERS] = {
    {LADDER_REAL, LADDER_NOISE_05},     {LADDER_NOISE_05, LADDER_NOISE_10}, {LADDER_NOISE_10, LADDER_NOISE_20},
    {LADDER_REAL, LADDER_BLUR},         {LADDER_MEM_LARGE, LADDER_MEM_MID}, {LADDER_MEM_MID, LADDER_MEM_SMALL},
    {LADDER_REAL, LADDER_COLLAPSED},
};

static LadderSet *new_set(Ladder *l, const char *name, int n, size_t img) {
    l->sets = xrealloc(l->sets, sizeof *l->sets * (size_t)(l->n_sets + 1));
    LadderSet *s = &l->sets[l->n_sets++];
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    s->n = n;
    s->images = xmalloc_floats((size_t)n * img);
    s->labels = xcalloc((size_t)n, sizeof *s->labels);
    return s;
}

/* dst = src blurred by a separable Gaussian of sigma 1 pixel, 5 taps, edges repeated. */
static void blur_image(float *dst, const float *src, int C, int H, int W, float *tmp /* (H, W) */) {
    double w[5], sum = 0;
    for (int k = -2; k <= 2; k++) sum += w[k + 2] = exp(-0.5 * k * k);
    for (int k = 0; k < 5; k++) w[k] /= sum;
    for (int c = 0; c < C; c++) {
        const float *in = src + (size_t)c * H * W;
        float *out = dst + (size_t)c * H * W;
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                double acc = 0;
                for (int k = -2; k <= 2; k++) acc += w[k + 2] * in[y * W + D2C_MIN(W - 1, D2C_MAX(0, x + k))];
                tmp[y * W + x] = (float)acc;
            }
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                double acc = 0;
                for (int k = -2; k <= 2; k++) acc += w[k + 2] * tmp[D2C_MIN(H - 1, D2C_MAX(0, y + k)) * W + x];
                out[y * W + x] = (float)acc;
            }
    }
}

static int *shuffled(int n, uint64_t stream) {
    int *idx = xcalloc((size_t)n, sizeof *idx);
    for (int i = 0; i < n; i++) idx[i] = i;
    Rng r = rng_stream(0, RNG_EVAL, stream);
    rng_shuffle(&r, idx, n);
    return idx;
}

static void copy_image(LadderSet *s, int i, const Dataset *d, int j, size_t img) {
    memcpy(s->images + (size_t)i * img, d->images + (size_t)j * img, img * sizeof(float));
    s->labels[i] = d->labels[j];
}

int ladder_build(Ladder *l, const char *data, int n, int n_ref) {
    memset(l, 0, sizeof *l);
    char base[1024], src[1100];
    snprintf(base, sizeof base, "%s", data);
    size_t len = strlen(base);
    if (len > 6 && strcmp(base + len - 6, ":train") == 0) base[len - 6] = 0;
    if (len > 5 && strcmp(base + len - 5, ":test") == 0) base[len - 5] = 0;
    snprintf(src, sizeof src, "%s:test", base);
    int st = dataset_load(&l->test, src);
    if (st != D2C_OK) return st;
    snprintf(src, sizeof src, "%s:train", base);
    if ((st = dataset_load(&l->train, src)) != D2C_OK) {
        dataset_free(&l->test);
        return st;
    }
    l->n = n;
    if (n < 100 || n > l->test.n) {
        st = d2c_error(D2C_ERR_INPUT, "ladder: --n %d must be 100..%d (the test split's size)", n, l->test.n);
        goto fail;
    }
    if (n_ref < 100 || n_ref > l->train.n / 2) {
        st = d2c_error(D2C_ERR_INPUT, "ladder: --n-ref %d must be 100..%d (half the training split)", n_ref, l->train.n / 2);
        goto fail;
    }
    l->ref = eval_limit_dataset(&l->train, n_ref, &l->ref_store);
    const Dataset *t = &l->test;
    const size_t img = (size_t)t->c * t->h * t->w;

    int *order = shuffled(t->n, LADDER_STREAM);
    LadderSet *real = new_set(l, "real", n, img);
    for (int i = 0; i < n; i++) copy_image(real, i, t, order[i], img);
    free(order);
    const float sigmas[] = {0.05f, 0.1f, 0.2f};
    const char *noise_names[] = {"noise-0.05", "noise-0.1", "noise-0.2"};
    for (int k = 0; k < 3; k++) {
        LadderSet *s = new_set(l, noise_names[k], n, img);
        memcpy(s->images, l->sets[LADDER_REAL].images, (size_t)n * img * sizeof(float));
        memcpy(s->labels, l->sets[LADDER_REAL].labels, (size_t)n * sizeof(int64_t));
        eval_add_noise(s->images, (size_t)n * img, sigmas[k], 0, LADDER_STREAM + 1 + (uint64_t)k);
    }
    LadderSet *blur = new_set(l, "blur", n, img);
    float *tmp = xmalloc_floats((size_t)t->h * t->w);
    for (int i = 0; i < n; i++) {
        blur_image(blur->images + (size_t)i * img, l->sets[LADDER_REAL].images + (size_t)i * img, t->c, t->h, t->w, tmp);
        blur->labels[i] = l->sets[LADDER_REAL].labels[i];
    }
    free(tmp);
    const double fractions[] = {0.6, 0.06, 0.006};
    for (int k = 0; k < 3; k++) {
        int m = D2C_MAX(2, (int)lround(fractions[k] * n));
        char name[64];
        snprintf(name, sizeof name, "memorised-%d", m);
        LadderSet *s = new_set(l, name, n, img);
        const LadderSet *r = &l->sets[LADDER_REAL];
        for (int i = 0; i < n; i++) {
            memcpy(s->images + (size_t)i * img, r->images + (size_t)(i % m) * img, img * sizeof(float));
            s->labels[i] = r->labels[i % m];
        }
    }
    /* collapsed: training images outside the reference, of classes 0 .. K/2 - 1 only */
    char *in_ref = xcalloc((size_t)l->train.n, 1);
    if (l->ref == &l->train) memset(in_ref, 1, (size_t)l->train.n);
    else {
        /* the reference subset is the one eval_limit_dataset keeps: the first n_ref of its shuffle */
        int *pick = shuffled(l->train.n, 0);
        for (int i = 0; i < n_ref; i++) in_ref[pick[i]] = 1;
        free(pick);
    }
    int *cand = shuffled(l->train.n, LADDER_STREAM + 10), nc = 0, half = D2C_MAX(1, l->train.num_classes / 2);
    for (int i = 0; i < l->train.n; i++)
        if (!in_ref[cand[i]] && l->train.labels[cand[i]] < half) cand[nc++] = cand[i];
    free(in_ref);
    if (nc < n) {
        free(cand);
        st = d2c_error(D2C_ERR_INPUT, "ladder: the training split has only %d images of the first %d classes outside "
                                      "the reference, fewer than --n %d", nc, half, n);
        goto fail;
    }
    char name[64];
    snprintf(name, sizeof name, "collapsed-%d-classes", half);
    LadderSet *col = new_set(l, name, n, img);
    for (int i = 0; i < n; i++) copy_image(col, i, &l->train, cand[i], img);
    free(cand);
    return D2C_OK;
fail:
    ladder_free(l);
    return st;
}

int ladder_add_samples(Ladder *l, const char *path) {
    StFile *f;
    D2C_TRY(st_open(&f, path));
    const StTensor *it = st_find(f, "images");
    int st = D2C_OK;
    if (!it || it->ndim != 4) {
        st = d2c_error(D2C_ERR_INPUT, "%s: no 'images' tensor of 4 dimensions (N, C, H, W)", path);
        goto done;
    }
    const Dataset *t = &l->test;
    if (it->shape[1] != t->c || it->shape[2] != t->h || it->shape[3] != t->w) {
        st = d2c_error(D2C_ERR_INPUT, "%s: images are %lldx%lldx%lld, the data set's %dx%dx%d", path,
                       (long long)it->shape[1], (long long)it->shape[2], (long long)it->shape[3], t->c, t->h, t->w);
        goto done;
    }
    int n = (int)D2C_MIN(it->shape[0], (int64_t)l->n);
    if (n < 10) {
        st = d2c_error(D2C_ERR_INPUT, "%s: %d images; the metrics need at least 10", path, n);
        goto done;
    }
    if (n < l->n) warn_msg("%s: %d images, fewer than the ladder's %d; its FID is biased upwards against the rungs", path, n, l->n);
    const float *images;
    D2C_TRY_GOTO(st, st_require_f32(f, "images", 4, it->shape, &images), done);
    size_t img = (size_t)t->c * t->h * t->w;
    for (size_t i = 0; i < (size_t)n * img; i++)
        if (!isfinite(images[i])) {
            st = d2c_error(D2C_ERR_INPUT, "%s: 'images' holds a non-finite value at flat index %zu", path, i);
            goto done;
        }
    const char *slash = strrchr(path, '/');
    LadderSet *s = new_set(l, slash ? slash + 1 : path, n, img);
    s->is_samples = 1;
    memcpy(s->images, images, (size_t)n * img * sizeof(float));
    if (st_find(f, "labels")) {
        int64_t shp[1] = {it->shape[0]};
        const int64_t *labels;
        D2C_TRY_GOTO(st, st_require_i64(f, "labels", 1, shp, &labels), done);
        memcpy(s->labels, labels, (size_t)n * sizeof(int64_t));
    } else {
        free(s->labels);
        s->labels = NULL;
    }
done:
    st_close(f);
    return st;
}

void ladder_free(Ladder *l) {
    for (int i = 0; i < l->n_sets; i++) {
        free(l->sets[i].images);
        free(l->sets[i].labels);
    }
    free(l->sets);
    if (l->ref == &l->ref_store) dataset_free(&l->ref_store);
    dataset_free(&l->train);
    dataset_free(&l->test);
    memset(l, 0, sizeof *l);
}

/* ---------------------------------------------------------------- Spearman */

static void ranks_of(const double *x, int n, double *rank) {
    int *idx = xcalloc((size_t)n, sizeof *idx);
    for (int i = 0; i < n; i++) idx[i] = i;
    for (int i = 1; i < n; i++) /* insertion sort: n is the number of sets */
        for (int j = i; j > 0 && x[idx[j - 1]] > x[idx[j]]; j--) {
            int t = idx[j];
            idx[j] = idx[j - 1];
            idx[j - 1] = t;
        }
    for (int i = 0; i < n;) {
        int j = i;
        while (j + 1 < n && x[idx[j + 1]] == x[idx[i]]) j++;
        for (int k = i; k <= j; k++) rank[idx[k]] = 0.5 * (i + j) + 1;
        i = j + 1;
    }
    free(idx);
}

double spearman(const double *x, const double *y, int n) {
    if (n < 3) return NAN;
    for (int i = 0; i < n; i++)
        if (!isfinite(x[i]) || !isfinite(y[i])) return NAN;
    double *rx = xmalloc((size_t)n * sizeof(double)), *ry = xmalloc((size_t)n * sizeof(double));
    ranks_of(x, n, rx);
    ranks_of(y, n, ry);
    double mx = 0, my = 0, sxy = 0, sxx = 0, syy = 0;
    for (int i = 0; i < n; i++) mx += rx[i], my += ry[i];
    mx /= n, my /= n;
    for (int i = 0; i < n; i++) {
        sxy += (rx[i] - mx) * (ry[i] - my);
        sxx += (rx[i] - mx) * (rx[i] - mx);
        syy += (ry[i] - my) * (ry[i] - my);
    }
    free(rx);
    free(ry);
    return sxx > 0 && syy > 0 ? sxy / sqrt(sxx * syy) : NAN;
}
