/* The subset side of `d2c condense`: which real images a selection method (or a learned
 * method's --init) keeps, the selection methods' run (and jitter's perturbation), and the
 * pool's outputs shared with the learned methods (the file with its metadata, the figure). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "condense/baselines.h"
#include "condense/condense_state.h"
#include "condense/distmatch.h"
#include "condense/pool.h"
#include "core/rng.h"
#include "core/util.h"

void pool_meta_add(PoolMeta *m, const char *key, const char *fmt, ...) {
    D2C_CHECK(m->n < POOL_META_MAX);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->value[m->n], sizeof m->value[0], fmt, ap);
    va_end(ap);
    m->key[m->n++] = key;
}

static DistMatchOptions distmatch_options(const CondenseOptions *o) {
    return (DistMatchOptions){o->pca_dim, o->bandwidth, o->gadc_lambda, o->gadc_passes, o->seed, o->mmd_weight};
}

/* The metadata of a distribution-matching selection: feature space, parameters, result. */
static void distmatch_meta(const CondenseOptions *o, CondenseMethod m, const Dataset *data, const DistMatchReport *r,
                           PoolMeta *meta) {
    pool_meta_add(meta, "features", "pca");
    pool_meta_add(meta, "pca_dim", "%d", o->pca_dim);
    pool_meta_add(meta, "pca_fit", "%s", data->source);
    pool_meta_add(meta, "pca_explained_variance", "%.6g", r->explained);
    if (m == CONDENSE_KHERDING || m == CONDENSE_FACILITY) {
        pool_meta_add(meta, "kernel", "rbf exp(-|x-y|^2 / (2 sigma^2)), sigma = bandwidth x the class's median pairwise "
                                      "distance over at most %d evenly spaced members", (int)KHERDING_MEDIAN_SAMPLE);
        pool_meta_add(meta, "bandwidth", "%.6g", o->bandwidth);
        pool_meta_add(meta, "kernel_sigma_mean", "%.6g", r->bandwidth);
    }
    if (m == CONDENSE_KHERDING) {
        pool_meta_add(meta, "selection_objective_name", "mmd2 (V-statistic, to the class, mean over classes)");
    } else if (m == CONDENSE_FACILITY) {
        pool_meta_add(meta, "selection_objective_name",
                      o->mmd_weight > 0 ? "1 - (1/n) sum_i max_{s in S} k(x_i, s) + mmd_weight x mmd2 (mean over classes; "
                                          "greedy)"
                                        : "facility location: 1 - (1/n) sum_i max_{s in S} k(x_i, s) (mean over "
                                          "classes; lazy greedy)");
        pool_meta_add(meta, "mmd_weight", "%.6g", o->mmd_weight);
        pool_meta_add(meta, "selection_facility", "%.6g", r->coverage);
        pool_meta_add(meta, "selection_facility_random", "%.6g", r->coverage_random);
        pool_meta_add(meta, "selection_mmd2", "%.6g", r->mmd2);
        pool_meta_add(meta, "selection_mmd2_random", "%.6g", r->mmd2_random);
        pool_meta_add(meta, "facility_gain_evaluations", "%ld", r->evaluations);
    } else {
        pool_meta_add(meta, "gadc_lambda", "%.6g", o->gadc_lambda);
        pool_meta_add(meta, "gadc_passes", "%d", o->gadc_passes);
        pool_meta_add(meta, "gadc_passes_run", "%d", r->passes);
        pool_meta_add(meta, "gadc_swaps", "%ld", r->swaps);
        pool_meta_add(meta, "selection_objective_name",
                      "|mu_S - mu|^2 + lambda / tr(Sigma) |Sigma_S - Sigma|_F^2 (mean over classes)");
    }
    pool_meta_add(meta, "selection_objective", "%.6g", r->objective);
    pool_meta_add(meta, "selection_objective_random", "%.6g", r->objective_random);
}

int condense_select(const CondenseOptions *o, CondenseMethod m, Dataset *data, ClassIndex *ci, int ipc, int *idx,
                    PoolMeta *meta) {
    const DistMatchOptions dm = distmatch_options(o);
    DistMatchReport rep;
    switch (m) {
    case CONDENSE_RANDOM:
    case CONDENSE_JITTER: return select_random(data, ci, ipc, o->seed, idx);
    case CONDENSE_KCENTER: return select_kcenter(data, ci, ipc, o->seed, idx);
    case CONDENSE_HERDING: return select_herding(data, ci, ipc, idx);
    case CONDENSE_SELECT:
        return select_difficulty(o->engine, data, ci, ipc, &o->cfg, 300, o->select_keep == SELECT_KEEP_HARD, o->seed, idx);
    case CONDENSE_KHERDING:
    case CONDENSE_GADC:
    case CONDENSE_FACILITY:
        D2C_TRY(m == CONDENSE_KHERDING ? select_kherding(data, ci, ipc, &dm, idx, &rep)
                : m == CONDENSE_GADC   ? select_gadc(data, ci, ipc, &dm, idx, &rep)
                                       : select_facility(data, ci, ipc, &dm, idx, &rep));
        if (meta) distmatch_meta(o, m, data, &rep, meta);
        return D2C_OK;
    case CONDENSE_D2C:
    case CONDENSE_DSA:
    case CONDENSE_DM:
    case CONDENSE_METHOD_COUNT: break;
    }
    D2C_CHECK(!"a selection method");
    return D2C_ERR_FAIL;
}

int condense_write_outputs(const CondenseOptions *o, const Pool *pool, const Dataset *data, double seconds, int iters,
                           const int *timesteps, int K, EvalSummary ev, const PoolMeta *extra) {
    char ratio[32], ipc[32], seed[32], iters_s[32], secs[32], ts[512] = "", caption[256], e0[32], e1[32], es[32];
    double r = (double)pool->n / data->n;
    snprintf(ratio, sizeof ratio, "%.6g", r);
    snprintf(ipc, sizeof ipc, "%d", pool->ipc);
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)o->seed);
    snprintf(iters_s, sizeof iters_s, "%d", iters);
    snprintf(secs, sizeof secs, "%.1f", seconds);
    size_t len = 0;
    for (int i = 0; i < K && len < sizeof ts - 16; i++) len += (size_t)snprintf(ts + len, sizeof ts - len, "%s%d", i ? "," : "", timesteps[i]);
    snprintf(e0, sizeof e0, "%.6g", ev.start);
    snprintf(e1, sizeof e1, "%.6g", ev.end);
    snprintf(es, sizeof es, "%.6g", ev.subset);
    const char *meta[2 * (POOL_META_MAX + 16) + 1];
    int n = 0;
#define KV(k, v) (meta[n++] = (k), meta[n++] = (v))
    KV("method", CONDENSE_METHOD_NAMES[o->method]);
    KV("ratio", ratio);
    KV("ipc", ipc);
    KV("source", data->source);
    KV("seed", seed);
    KV("iterations", iters_s);
    KV("timesteps", ts);
    KV("wall_seconds", secs);
    KV("format", "d2c-pool-1");
    if (ev.end >= 0) {
        KV("eval_matching_start", e0);
        KV("eval_matching_end", e1);
        KV("eval_matching_random_subset", es);
    }
    for (int i = 0; extra && i < extra->n; i++) KV(extra->key[i], extra->value[i]);
#undef KV
    meta[n] = NULL;
    D2C_TRY(pool_save(pool, o->out, meta));
    snprintf(caption, sizeof caption, "%s: %d images per class = %.2f%% of %s (rows: synthetic, real)",
             CONDENSE_METHOD_NAMES[o->method], pool->ipc, 100.0 * r, data->source);
    char *grid = NULL;
    if (o->grid_path) {
        grid = xstrdup(o->grid_path);
    } else {
        grid = xmalloc(strlen(o->out) + 8);
        sprintf(grid, "%s.png", o->out);
    }
    int st = pool_write_figure(pool, data, grid, caption);
    free(grid);
    return st;
}

int condense_run_selection(const CondenseOptions *o, Dataset *data, ClassIndex *ci, int ipc, double *seconds) {
    double t0 = now_seconds();
    int *idx = xcalloc((size_t)ipc * data->num_classes, sizeof(int));
    PoolMeta meta = {0};
    int st = condense_select(o, o->method, data, ci, ipc, idx, &meta);
    if (st) {
        free(idx);
        return st;
    }
    Pool pool;
    pool_create(&pool, data->num_classes, ipc, data->c, data->h, data->w, 0);
    pool_fill_from(&pool, data, idx);
    if (o->method == CONDENSE_JITTER) {
        /* the control for learned pools: the random subset with its pixels moved by about
         * as much as condensation moves them, in random directions */
        Rng r = rng_stream(o->seed, RNG_POOL, 1ull << 51);
        for (size_t i = 0; i < (size_t)pool.n * pool.c * pool.h * pool.w; i++) {
            float v = pool.images[i] + (float)o->jitter * rng_normal(&r);
            pool.images[i] = v < -1 ? -1 : v > 1 ? 1 : v;
        }
    }
    *seconds = now_seconds() - t0;
    st = condense_write_outputs(o, &pool, data, *seconds, 0, NULL, 0, (EvalSummary){-1, -1, -1}, &meta);
    pool_free(&pool);
    free(idx);
    return st;
}
