/* Reference-set features for `d2c eval`: the evaluator's features of the real images and
 * their mean and covariance (FID), kept in an on-disk cache so that only the first
 * evaluation against a reference pays for its forward passes.
 *
 * The cache key is FNV-1a 64 over the evaluator's hash, the reference SRC string and the
 * reference images' bytes, so a retrained evaluator, another split or changed data never
 * hit a stale entry. Entry file "<dir>/ref-<evaluator hash>-<key>.bin", little-endian:
 *   "D2CREF01", u64 key, u32 N, u32 D, u32 len, len bytes of SRC (for humans),
 *   f32 feats (N, D), f64 mean (D), f64 cov (D, D), u64 FNV-1a 64 of all bytes before.
 * Written atomically (temporary + rename); an unreadable, truncated, corrupt or
 * mismatched entry is recomputed with a warning, never fatal.
 *
 * Shape letters: N reference images, D feature width. */
#ifndef D2C_EVAL_REFSTATS_H
#define D2C_EVAL_REFSTATS_H

#include "eval/evaluator.h"
#include "eval/metrics.h"
#include "io/dataset.h"

typedef struct {
    int n, d;
    float *feats;        /* (N, D) */
    FeatureStats stats;  /* mean (D), cov (D, D) of feats */
    double *radii;       /* (N) k-NN radii (k = METRICS_PRDC_K) once a caller computed them; NULL before */
    char *cache_path;    /* the entry used or written; NULL with caching off */
    const char *cache;   /* "hit", "miss" (computed and stored), "off" or "unwritable" */
} RefFeatures;

/* The cache folder: $D2C_CACHE_DIR, else $XDG_CACHE_HOME/d2c, else $HOME/.cache/d2c.
 * Caller frees; NULL if none can be named. */
char *ref_cache_default_dir(void);

/* Features and statistics of ref's images under net (whose file info names), read from or
 * stored in cache_dir (NULL: no cache). label names the progress line (NULL: silent).
 * Status (a cache problem is only a warning). */
int ref_features_get(RefFeatures *r, Evaluator *net, const EvaluatorInfo *info, const Dataset *ref,
                      const char *cache_dir, const char *label);
void ref_features_free(RefFeatures *r);

#endif
