/* Subset-selection baselines for the condensation table. */
#include "condense/baselines.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "condense/features.h"
#include "core/rng.h"
#include "core/util.h"
#include "diffusion/ddpm.h"
#include "model/adam.h"

int select_random(const Dataset *d, const ClassIndex *ci, int ipc, uint64_t seed, int *idx) {
    D2C_TRY(features_check_counts(d, ci, ipc));
    for (int k = 0; k < ci->num_classes; k++) {
        int n = class_index_count(ci, k);
        int *perm = xcalloc((size_t)n, sizeof(int));
        memcpy(perm, ci->index + ci->start[k], (size_t)n * sizeof(int));
        Rng r = rng_stream(seed, RNG_POOL, (uint64_t)k);
        rng_shuffle(&r, perm, n);
        memcpy(idx + (size_t)k * ipc, perm, (size_t)ipc * sizeof(int));
        free(perm);
    }
    return D2C_OK;
}

static double sq_dist(const float *a, const float *b, size_t D) {
    double s = 0;
    for (size_t i = 0; i < D; i++) {
        double t = (double)a[i] - b[i];
        s += t * t;
    }
    return s;
}

static void class_mean(const Dataset *d, const int *members, int n, size_t D, double *mean) {
    memset(mean, 0, D * sizeof(double));
    for (int i = 0; i < n; i++)
        for (size_t j = 0; j < D; j++) mean[j] += d->images[(size_t)members[i] * D + j];
    for (size_t j = 0; j < D; j++) mean[j] /= n;
}

int select_kcenter(const Dataset *d, const ClassIndex *ci, int ipc, uint64_t seed, int *idx) {
    D2C_TRY(features_check_counts(d, ci, ipc));
    (void)seed;
    const size_t D = (size_t)d->c * d->h * d->w;
    double *mean = xcalloc(D, sizeof(double));
    float *meanf = xmalloc_floats(D);
    for (int k = 0; k < ci->num_classes; k++) {
        const int *mem = ci->index + ci->start[k];
        const int n = class_index_count(ci, k);
        class_mean(d, mem, n, D, mean);
        for (size_t j = 0; j < D; j++) meanf[j] = (float)mean[j];
        double *mind = xcalloc((size_t)n, sizeof(double));
        int first = 0;
        double best = DBL_MAX;
        for (int i = 0; i < n; i++) {
            double s = sq_dist(d->images + (size_t)mem[i] * D, meanf, D);
            if (s < best) best = s, first = i;
        }
        for (int i = 0; i < n; i++) mind[i] = DBL_MAX;
        int pick = first;
        for (int p = 0; p < ipc; p++) {
            idx[(size_t)k * ipc + p] = mem[pick];
            const float *c = d->images + (size_t)mem[pick] * D;
#pragma omp parallel for schedule(static)
            for (int i = 0; i < n; i++) {
                double s = sq_dist(d->images + (size_t)mem[i] * D, c, D);
                if (s < mind[i]) mind[i] = s;
            }
            double far = -1;
            for (int i = 0; i < n; i++)
                if (mind[i] > far) far = mind[i], pick = i;
        }
        free(mind);
    }
    free(mean);
    free(meanf);
    return D2C_OK;
}

int select_herding(const Dataset *d, const ClassIndex *ci, int ipc, int *idx) {
    D2C_TRY(features_check_counts(d, ci, ipc));
    const size_t D = (size_t)d->c * d->h * d->w;
    double *mean = xcalloc(D, sizeof(double)), *sum = xcalloc(D, sizeof(double));
    for (int k = 0; k < ci->num_classes; k++) {
        const int *mem = ci->index + ci->start[k];
        const int n = class_index_count(ci, k);
        class_mean(d, mem, n, D, mean);
        memset(sum, 0, D * sizeof(double));
        char *used = xcalloc((size_t)n, 1);
        for (int p = 0; p < ipc; p++) {
            /* the image that brings the mean of the p+1 picks closest to the class mean */
            double best = DBL_MAX;
            int pick = -1;
#pragma omp parallel
            {
                double lbest = DBL_MAX;
                int lpick = -1;
#pragma omp for schedule(static)
                for (int i = 0; i < n; i++) {
                    if (used[i]) continue;
                    const float *x = d->images + (size_t)mem[i] * D;
                    double s = 0;
                    for (size_t j = 0; j < D; j++) {
                        double t = (sum[j] + x[j]) / (p + 1) - mean[j];
                        s += t * t;
                    }
                    if (s < lbest) lbest = s, lpick = i;
                }
#pragma omp critical
                if (lpick >= 0 && (lbest < best || (lbest == best && lpick < pick))) best = lbest, pick = lpick;
            }
            used[pick] = 1;
            idx[(size_t)k * ipc + p] = mem[pick];
            for (size_t j = 0; j < D; j++) sum[j] += d->images[(size_t)mem[pick] * D + j];
        }
        free(used);
    }
    free(mean);
    free(sum);
    return D2C_OK;
}

typedef struct {
    float loss;
    int index;
} Scored;

static int by_loss(const void *a, const void *b) {
    const Scored *x = a, *y = b;
    if (x->loss != y->loss) return x->loss < y->loss ? -1 : 1;
    return x->index - y->index;
}

int select_difficulty(Engine *eng, const Dataset *d, const ClassIndex *ci, int ipc, const UNetConfig *cfg, int proxy_steps,
                       int hard, uint64_t seed, int *idx) {
    D2C_TRY(features_check_counts(d, ci, ipc));
    const int B = 64;
    const size_t D = (size_t)d->c * d->h * d->w;
    UNetConfig c = *cfg;
    c.in_channels = d->c;
    c.num_classes = d->num_classes;
    UNet net;
    D2C_TRY(d2c_error_context(unet_create(&net, eng, &c, d->h, d->w, B), "select's proxy network: "));
    Engine *e = net.eng;
    unet_init_weights(&net, seed);
    Adam adam;
    adam_create(&adam, e, net.lay.n_params, 1e-3f);
    Schedule s;
    schedule_init(&s, SCHEDULE_LINEAR);
    DdpmScratch w;
    ddpm_scratch_create(&w, e, B, D);
    /* host batches, their engine mirrors (unused on an engine of host memory) */
    float *x = xmalloc_floats((size_t)B * D), *noise = xmalloc_floats((size_t)B * D), *eps = xmalloc_floats((size_t)B * D);
    float *dx = e->host_memory ? NULL : engine_xalloc_floats(e, (size_t)B * D);
    float *dn = e->host_memory ? NULL : engine_xalloc_floats(e, (size_t)B * D);
    int64_t t[64], y[64];
    for (int step = 0; step < proxy_steps; step++) {
        Rng r = rng_stream(seed, RNG_BATCH, (uint64_t)step);
        for (int b = 0; b < B; b++) {
            int i = (int)rng_below(&r, (uint32_t)d->n);
            memcpy(x + (size_t)b * D, d->images + (size_t)i * D, D * sizeof(float));
            y[b] = d->labels[i];
            t[b] = rng_below(&r, (uint32_t)s.T);
        }
        rng_fill_normal(&r, noise, (size_t)B * D);
        engine_zero_floats(e, net.grads, net.lay.n_params);
        ddpm_pass(&net, &s, &w, engine_view(e, dx, x, (size_t)B * D), t, y, NULL, engine_view(e, dn, noise, (size_t)B * D), B,
                  1, 1.0f, NULL, NULL);
        clip_grad_norm(e, net.grads, net.lay.n_params, 1.0);
        adam_step(&adam, net.params, net.grads);
    }
    /* score: mean loss over 4 fixed timesteps with noise keyed by the image index */
    const int ts[4] = {100, 300, 500, 700};
    Scored *sc = xcalloc((size_t)d->n, sizeof(Scored));
    for (int i0 = 0; i0 < d->n; i0 += B / 4) {
        int nb = D2C_MIN(B / 4, d->n - i0);
        for (int j = 0; j < nb; j++)
            for (int q = 0; q < 4; q++) {
                int b = j * 4 + q;
                memcpy(x + (size_t)b * D, d->images + (size_t)(i0 + j) * D, D * sizeof(float));
                y[b] = d->labels[i0 + j];
                t[b] = ts[q];
                Rng r = rng_stream(seed, RNG_EVAL, (uint64_t)(i0 + j) * 4 + q);
                rng_fill_normal(&r, noise + (size_t)b * D, D);
            }
        const size_t n4 = (size_t)nb * 4 * D;
        e->ops->q_sample(e, w.xt, engine_view(e, dx, x, n4), engine_view(e, dn, noise, n4), t, s.alpha_bar, nb * 4, D);
        unet_forward(&net, w.xt, t, y, NULL, nb * 4, w.eps);
        engine_download_floats(e, eps, w.eps, n4);
        for (int j = 0; j < nb; j++) {
            double l = 0;
            for (size_t k = 0; k < 4 * D; k++) {
                double err = eps[(size_t)j * 4 * D + k] - noise[(size_t)j * 4 * D + k];
                l += err * err;
            }
            sc[i0 + j].loss = (float)(l / (4 * D));
            sc[i0 + j].index = i0 + j;
        }
    }
    for (int k = 0; k < ci->num_classes; k++) {
        const int n = class_index_count(ci, k);
        Scored *cls = xcalloc((size_t)n, sizeof(Scored));
        for (int i = 0; i < n; i++) cls[i] = sc[ci->index[ci->start[k] + i]];
        qsort(cls, (size_t)n, sizeof(Scored), by_loss);
        for (int p = 0; p < ipc; p++) idx[(size_t)k * ipc + p] = cls[hard ? n - 1 - p : p].index;
        free(cls);
    }
    free(sc);
    free(x);
    free(noise);
    free(eps);
    engine_free(e, dx);
    engine_free(e, dn);
    ddpm_scratch_free(&w);
    adam_destroy(&adam);
    unet_destroy(&net);
    return D2C_OK;
}
