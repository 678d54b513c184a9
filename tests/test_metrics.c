/* Tests of src/eval/metrics: FID, KID, Inception Score, precision/recall/density/coverage
 * and class accuracy against a plain numpy/scipy implementation (tests/metrics_ref.py,
 * FID by pytorch-fid's formula, KID by torch-fidelity's unbiased MMD^2 on the same subset
 * indices), plus properties the metrics must have and the bad-input statuses.
 *
 * Usage: test_metrics PYTHON METRICS_REF_PY */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/rng.h"
#include "core/util.h"
#include "eval/metrics.h"
#include "testing.h"

enum { REF_SCALARS = 12 }; /* leading values of a reference file, see metrics_ref.py */
enum { REF_TRAILING = 2 }; /* KID mean and std after the radii */

/* One comparison case: evaluator outputs on real and fake sets. */
typedef struct {
    const char *name;
    int n_real, n_fake, d, n_classes;
    float *real;     /* (n_real, d) */
    float *fake;     /* (n_fake, d) */
    float *probs;    /* (n_fake, n_classes) */
    int64_t *labels; /* (n_fake) */
    /* FID is not compared: its traces (~5e7) cancel down to ~20, and both scipy's sqrtm
     * and our eigen route miss the exact (60-digit mpmath) value by ~1e-3 relative. */
    int fid_ill_conditioned;
} Case;

/* ---------------------------------------------------------------- data */

/* x (n, d) = z mix + shift with z standard normal and mix (d, d) = I + scale * noise. */
static float *gaussian_set(int n, int d, uint64_t seed, float mix_scale, float shift) {
    Rng r = rng_stream(seed, RNG_EVAL, 0);
    float *mix = xmalloc_floats((size_t)d * d), *z = xmalloc_floats((size_t)d);
    float *x = xmalloc_floats((size_t)n * d);
    for (int i = 0; i < d * d; i++) mix[i] = mix_scale * rng_normal(&r) / sqrtf((float)d);
    for (int i = 0; i < d; i++) mix[i * d + i] += 1.0f;
    for (int i = 0; i < n; i++) {
        rng_fill_normal(&r, z, (size_t)d);
        for (int j = 0; j < d; j++) {
            float acc = shift;
            for (int l = 0; l < d; l++) acc += z[l] * mix[l * d + j];
            x[(size_t)i * d + j] = acc;
        }
    }
    free(mix);
    free(z);
    return x;
}

/* x (n, d): point i drawn around centre (i % n_modes) of 10 fixed centres (seed 7, spread
 * 4 per coordinate) with standard deviation `spread`; the "classes" of the tests. */
static float *cluster_set(int n, int d, int n_modes, uint64_t seed, float spread) {
    Rng rc = rng_stream(7, RNG_EVAL, 1000);
    float *centres = xmalloc_floats((size_t)10 * d);
    for (int i = 0; i < 10 * d; i++) centres[i] = 4.0f * rng_normal(&rc);
    Rng r = rng_stream(seed, RNG_EVAL, 1);
    float *x = xmalloc_floats((size_t)n * d);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < d; j++)
            x[(size_t)i * d + j] = centres[(i % n_modes) * d + j] + spread * rng_normal(&r);
    free(centres);
    return x;
}

/* x (n, d): integer coordinates in [0, range): many duplicates and tied distances. With
 * far > 0, odd rows move by +far and even rows by -far on every coordinate: two groups
 * whose norms dwarf the distances inside them, so a distance from |a|^2 + |b|^2 - 2 a.b
 * alone would break the ties at random. */
static float *lattice_set(int n, int d, int range, float far, uint64_t seed) {
    Rng r = rng_stream(seed, RNG_EVAL, 2);
    float *x = xmalloc_floats((size_t)n * d);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < d; j++)
            x[(size_t)i * d + j] = (float)rng_below(&r, (uint32_t)range) + (i % 2 ? far : -far);
    return x;
}

/* probs (n, k) = softmax(temperature * normal), labels = argmax except a quarter random. */
static void make_probs(Case *c, uint64_t seed, float temperature) {
    Rng r = rng_stream(seed, RNG_EVAL, 3);
    int n = c->n_fake, k = c->n_classes;
    c->probs = xmalloc_floats((size_t)n * k);
    c->labels = xmalloc((size_t)n * sizeof(int64_t));
    for (int i = 0; i < n; i++) {
        float *row = c->probs + (size_t)i * k, top = -INFINITY, sum = 0;
        int best = 0;
        for (int j = 0; j < k; j++) {
            row[j] = temperature * rng_normal(&r);
            if (row[j] > top) top = row[j], best = j;
        }
        for (int j = 0; j < k; j++) sum += row[j] = expf(row[j] - top);
        for (int j = 0; j < k; j++) row[j] /= sum;
        c->labels[i] = rng_below(&r, 4) ? best : (int64_t)rng_below(&r, (uint32_t)k);
    }
}

static void free_case(Case *c) {
    free(c->real);
    free(c->fake);
    free(c->probs);
    free(c->labels);
}

/* Status-checked wrappers: a failure is a test failure, not an exit. */
static FeatureStats stats_of(const float *x, int n, int d) {
    FeatureStats s;
    CHECK(feature_stats_compute(&s, x, n, d) == D2C_OK);
    return s;
}

static double fid_of(const FeatureStats *a, const FeatureStats *b) {
    double fid;
    CHECK(fid_from_stats(a, b, &fid) == D2C_OK);
    return fid;
}

static PrdcMetrics prdc_of(const float *real, int n, const float *fake, int m, int d) {
    PrdcMetrics p = {0};
    CHECK(prdc_compute(real, n, fake, m, d, METRICS_PRDC_K, &p) == D2C_OK);
    return p;
}

static QualityMetrics quality_of(const QualityInputs *in) {
    QualityMetrics q;
    CHECK(quality_metrics_compute(in, &q) == D2C_OK);
    return q;
}

static double accuracy_of(const float *probs, int n, int k, const int64_t *labels) {
    double a;
    CHECK(class_accuracy(probs, n, k, labels, &a) == D2C_OK);
    return a;
}

/* The KID subsets of a case, as kid_compute draws them with the default options. */
static int kid_m(const Case *c) { return D2C_MIN(KID_SUBSET_SIZE, D2C_MIN(c->n_real, c->n_fake)); }

static int32_t *kid_indices(const Case *c, int which) {
    int m = kid_m(c), n = which ? c->n_fake : c->n_real;
    int32_t *all = xcalloc((size_t)KID_SUBSETS * m, sizeof *all);
    int *idx = xcalloc((size_t)m, sizeof *idx), *scratch = xcalloc((size_t)n, sizeof *scratch);
    char *seen = xcalloc((size_t)n, 1);
    int distinct = 1;
    for (int s = 0; s < KID_SUBSETS; s++) {
        kid_subset_indices(0, s, which, n, m, idx, scratch);
        memset(seen, 0, (size_t)n);
        for (int j = 0; j < m; j++) {
            distinct &= idx[j] >= 0 && idx[j] < n && !seen[idx[j]];
            if (idx[j] >= 0 && idx[j] < n) seen[idx[j]] = 1;
            all[(size_t)s * m + j] = idx[j];
        }
    }
    CHECK(distinct); /* drawn without replacement */
    free(idx);
    free(scratch);
    free(seen);
    return all;
}

/* ---------------------------------------------------------------- reference files */

static void write_case(const Case *c, const char *path) {
    FILE *f = fopen(path, "wb");
    if (!f) test_require_ok(d2c_error(D2C_ERR_FAIL, "cannot write %s", path));
    int32_t header[6] = {0x4D433244, c->n_real, c->n_fake, c->d, c->n_classes, METRICS_PRDC_K};
    fwrite(header, sizeof header, 1, f);
    fwrite(c->real, sizeof(float), (size_t)c->n_real * c->d, f);
    fwrite(c->fake, sizeof(float), (size_t)c->n_fake * c->d, f);
    fwrite(c->probs, sizeof(float), (size_t)c->n_fake * c->n_classes, f);
    fwrite(c->labels, sizeof(int64_t), (size_t)c->n_fake, f);
    int32_t kid_header[2] = {KID_SUBSETS, kid_m(c)};
    fwrite(kid_header, sizeof kid_header, 1, f);
    for (int which = 0; which < 2; which++) {
        int32_t *idx = kid_indices(c, which);
        fwrite(idx, sizeof(int32_t), (size_t)KID_SUBSETS * kid_m(c), f);
        free(idx);
    }
    if (fclose(f) != 0) test_require_ok(d2c_error(D2C_ERR_FAIL, "cannot write %s", path));
}

static size_t ref_count(const Case *c) {
    return REF_SCALARS + (size_t)c->d + (size_t)c->d * c->d + c->n_real + c->n_fake + REF_TRAILING;
}

/* Runs metrics_ref.py once on all cases; returns one array of ref_count doubles per case. */
static double **run_reference(const Case *cases, int n_cases, const char *python,
                               const char *script) {
    char dir[] = "/tmp/d2c_test_metrics_XXXXXX";
    if (!mkdtemp(dir)) test_require_ok(d2c_error(D2C_ERR_FAIL, "mkdtemp failed"));
    size_t cap = strlen(python) + strlen(script) + 16 + (size_t)n_cases * (2 * sizeof dir + 32);
    char *cmd = xmalloc(cap);
    int len = snprintf(cmd, cap, "'%s' '%s'", python, script);
    for (int i = 0; i < n_cases; i++) {
        char path[256];
        snprintf(path, sizeof path, "%s/case%d.bin", dir, i);
        write_case(&cases[i], path);
        len += snprintf(cmd + len, cap - (size_t)len, " %s %s/ref%d.bin", path, dir, i);
    }
    int rc = system(cmd);
    CHECK(rc == 0);
    double **refs = xcalloc((size_t)n_cases, sizeof(double *));
    for (int i = 0; i < n_cases; i++) {
        char path[256];
        size_t count = ref_count(&cases[i]), got = 0;
        refs[i] = xcalloc(count, sizeof(double));
        snprintf(path, sizeof path, "%s/ref%d.bin", dir, i);
        FILE *f = fopen(path, "rb");
        if (f) {
            got = fread(refs[i], sizeof(double), count, f);
            fclose(f);
        }
        if (got != count) {
            printf("FAIL reference %s: read %zu of %zu values\n", cases[i].name, got, count);
            CHECK(got == count);
        }
        remove(path);
        snprintf(path, sizeof path, "%s/case%d.bin", dir, i);
        remove(path);
    }
    rmdir(dir);
    free(cmd);
    return refs;
}

/* ---------------------------------------------------------------- comparisons */

static int agrees(double value, double ref, double rel_limit) {
    return isfinite(value) && fabs(value - ref) <= rel_limit * fmax(fabs(ref), 1e-300);
}

static void check_value(const char *case_name, const char *what, double value, double ref,
                        double limit) {
    char name[128];
    snprintf(name, sizeof name, "%s %s", case_name, what);
    check_close_d(name, &value, &ref, 1, limit);
}

/* Fractions of counts must match exactly. */
static void check_exact(const char *case_name, const char *what, double value, double ref) {
    int ok = fabs(value - ref) <= 1e-12;
    printf("%-4s %s %-40s %.10f (ref %.10f)\n", ok ? "ok" : "FAIL", case_name, what, value, ref);
    CHECK(ok);
}

static void compare_case(const Case *c, const double *ref) {
    const int n = c->n_real, m = c->n_fake, d = c->d;
    FeatureStats real_stats = stats_of(c->real, n, d);
    QualityInputs in = {.real_feats = c->real, .n_ref = n, .fake_feats = c->fake,
                        .fake_probs = c->probs, .fake_labels = c->labels, .n_samples = m,
                        .d = d, .n_classes = c->n_classes};
    QualityMetrics q = quality_of(&in);
    printf("-- %s: N %d, M %d, D %d: fid %.6f is %.4f +- %.4f P %.4f R %.4f D %.4f C %.4f "
           "acc %.4f\n",
           c->name, n, m, d, q.fid, q.is_mean, q.is_std, q.precision, q.recall, q.density,
           q.coverage, q.class_accuracy);

    const double *ref_mean = ref + REF_SCALARS, *ref_cov = ref_mean + d;
    const double *ref_real_radii = ref_cov + (size_t)d * d, *ref_fake_radii = ref_real_radii + n;
    char name[128];
    snprintf(name, sizeof name, "%s mean", c->name);
    check_close_d(name, real_stats.mean, ref_mean, (size_t)d, 1e-10);
    snprintf(name, sizeof name, "%s covariance", c->name);
    check_close_d(name, real_stats.cov, ref_cov, (size_t)d * d, 1e-10);

    if (c->fid_ill_conditioned) printf("     %s: FID not compared (ill-conditioned)\n", c->name);
    else check_value(c->name, "FID", q.fid, ref[0], 1e-4);
    check_value(c->name, "IS mean", q.is_mean, ref[1], 1e-6);
    check_value(c->name, "IS std", q.is_std, ref[2], 1e-6);
    check_exact(c->name, "precision", q.precision, ref[3]);
    check_exact(c->name, "recall", q.recall, ref[4]);
    check_exact(c->name, "density", q.density, ref[5]);
    check_exact(c->name, "coverage", q.coverage, ref[6]);
    check_exact(c->name, "class accuracy", q.class_accuracy, ref[7]);
    const double *ref_kid = ref + ref_count(c) - REF_TRAILING;
    printf("     %s KID %.9f +- %.9f (reference %.9f +- %.9f)\n", c->name, q.kid, q.kid_std, ref_kid[0], ref_kid[1]);
    check_value(c->name, "KID mean", q.kid, ref_kid[0], 1e-6);
    check_value(c->name, "KID std", q.kid_std, ref_kid[1], 1e-6);
    CHECK(q.n_samples == m && q.n_ref == n);

    double *radii = xmalloc((size_t)D2C_MAX(n, m) * sizeof(double));
    CHECK(knn_radii(c->real, n, d, METRICS_PRDC_K, radii) == D2C_OK);
    snprintf(name, sizeof name, "%s real k-NN radii", c->name);
    check_close_d(name, radii, ref_real_radii, (size_t)n, 1e-9);
    CHECK(knn_radii(c->fake, m, d, METRICS_PRDC_K, radii) == D2C_OK);
    snprintf(name, sizeof name, "%s fake k-NN radii", c->name);
    check_close_d(name, radii, ref_fake_radii, (size_t)m, 1e-9);
    free(radii);

    /* The same FID from cached reference statistics. */
    in.real_stats = &real_stats;
    QualityMetrics cached = quality_of(&in);
    CHECK(cached.fid == q.fid && cached.precision == q.precision);
    feature_stats_free(&real_stats);
}

/* The tolerances are meaningful: a plausible formula slip on the gaussian case (covariance with
 * 1/N instead of 1/(N-1), or a 3e-4 relative error) is caught by the 1e-4 FID check, and
 * on the lattice case open balls (strict <) give other numbers than closed ones. */
static void check_detection(const Case *a, const double *ref_a, const Case *lattice,
                            const double *ref_lattice) {
    FeatureStats s1 = stats_of(a->real, a->n_real, a->d);
    FeatureStats s2 = stats_of(a->fake, a->n_fake, a->d);
    double fid = fid_of(&s1, &s2);
    CHECK(agrees(fid, ref_a[0], 1e-4));
    CHECK(!agrees(fid * (1 + 3e-4), ref_a[0], 1e-4));
    for (int i = 0; i < a->d * a->d; i++) {
        s1.cov[i] *= (a->n_real - 1.0) / a->n_real;
        s2.cov[i] *= (a->n_fake - 1.0) / a->n_fake;
    }
    double biased = fid_of(&s1, &s2);
    printf("     FID with biased covariance %.6f vs reference %.6f: rel diff %.2e "
           "(must exceed 1e-4)\n",
           biased, ref_a[0], fabs(biased - ref_a[0]) / ref_a[0]);
    CHECK(!agrees(biased, ref_a[0], 1e-4));
    feature_stats_free(&s1);
    feature_stats_free(&s2);

    int differs = 0;
    for (int i = 0; i < 4; i++) differs |= ref_lattice[3 + i] != ref_lattice[8 + i];
    PrdcMetrics p = prdc_of(lattice->real, lattice->n_real, lattice->fake, lattice->n_fake, lattice->d);
    printf("     lattice open-ball P/R/D/C %.4f %.4f %.4f %.4f vs closed %.4f %.4f %.4f %.4f\n",
           ref_lattice[8], ref_lattice[9], ref_lattice[10], ref_lattice[11], p.precision, p.recall,
           p.density, p.coverage);
    CHECK(differs);
}

/* ---------------------------------------------------------------- properties */

static void check_properties(void) {
    const int n = 500, d = 32;
    float *real = cluster_set(n, d, 10, 11, 1.0f);

    /* FID(x, x) = 0 up to round-off of the traces. */
    FeatureStats s = stats_of(real, n, d);
    double trace = 0;
    for (int i = 0; i < d; i++) trace += s.cov[i * d + i];
    double self_fid = fid_of(&s, &s);
    printf("     FID(x, x) = %.3e (trace %.1f)\n", self_fid, trace);
    CHECK(fabs(self_fid) <= 1e-9 * trace);

    /* FID grows with the strength of added noise. So does KID, measured against an
     * independent draw of the same distribution (its unbiased estimate assumes the two
     * sets independent: noisy copies of the very points it is compared with would bias
     * it), here a correlated Gaussian of moderate norms like a feature network's. */
    float *noisy = xmalloc_floats((size_t)n * d);
    float *g = gaussian_set(2 * n, d, 31, 1.0f, 0.0f), *g_other = g + (size_t)n * d;
    float *g_noisy = xmalloc_floats((size_t)n * d);
    double previous = 0, previous_kid = -INFINITY, kid_far = 0;
    const float sigmas[] = {0.05f, 0.1f, 0.2f, 0.4f, 0.8f, 1.6f};
    KidOptions ko = kid_default_options();
    ko.subset_size = 200; /* subsets smaller than the sets, so the std means something */
    double kid_base, kid_base_std;
    CHECK(kid_compute(g_other, n, g, n, d, &ko, &kid_base, &kid_base_std, NULL) == D2C_OK);
    printf("     two draws of one Gaussian: KID %.5f +- %.5f\n", kid_base, kid_base_std);
    for (int t = 0; t < 6; t++) {
        Rng r = rng_stream(12, RNG_EVAL, (uint64_t)t);
        for (int i = 0; i < n * d; i++) noisy[i] = real[i] + sigmas[t] * rng_normal(&r);
        Rng rg = rng_stream(13, RNG_EVAL, (uint64_t)t);
        for (int i = 0; i < n * d; i++) g_noisy[i] = g[i] + sigmas[t] * rng_normal(&rg);
        FeatureStats ns = stats_of(noisy, n, d);
        double fid = fid_of(&s, &ns), kid, kid_std;
        CHECK(kid_compute(g_other, n, g_noisy, n, d, &ko, &kid, &kid_std, NULL) == D2C_OK);
        printf("     noise %.2f: FID %.5f; Gaussian + noise: KID %.5f +- %.5f\n", sigmas[t], fid, kid, kid_std);
        CHECK(fid > previous);
        if (sigmas[t] >= 0.8f) CHECK(kid > previous_kid); /* below, the change is inside KID's noise at n = 500 */
        previous = fid;
        previous_kid = kid;
        kid_far = kid;
        feature_stats_free(&ns);
    }
    /* the same distribution scores near 0 next to a clearly different one */
    CHECK(fabs(kid_base) < 0.05 * kid_far);
    CHECK(fabs(kid_base) < 3 * kid_base_std);
    free(noisy);
    free(g);
    free(g_noisy);
    feature_stats_free(&s);

    /* Precision falls as fakes are replaced by far-away noise, which no real ball holds. */
    const int m = 400;
    float *fake = cluster_set(m, d, 10, 13, 1.0f);
    double previous_p = 2;
    for (int quarter = 0; quarter < 4; quarter++) {
        int replaced = quarter * m / 4;
        Rng r = rng_stream(14, RNG_EVAL, 0);
        for (int i = 0; i < replaced * d; i++) fake[i] = 1000.0f + 5.0f * rng_normal(&r);
        PrdcMetrics p = prdc_of(real, n, fake, m, d);
        printf("     %d%% far fakes: precision %.4f recall %.4f density %.4f coverage %.4f\n",
               25 * quarter, p.precision, p.recall, p.density, p.coverage);
        CHECK(p.precision < previous_p);
        CHECK(p.precision <= 1.0 - 0.25 * quarter + 1e-12);
        previous_p = p.precision;
    }
    free(fake);

    /* Recall and coverage fall as fakes collapse onto fewer modes. */
    double previous_r = 2, previous_c = 2;
    const int modes[] = {10, 5, 2, 1};
    for (int t = 0; t < 4; t++) {
        float *collapsed = cluster_set(m, d, modes[t], 15, 1.0f);
        PrdcMetrics p = prdc_of(real, n, collapsed, m, d);
        printf("     %2d modes: precision %.4f recall %.4f coverage %.4f\n", modes[t], p.precision,
               p.recall, p.coverage);
        CHECK(p.recall < previous_r);
        CHECK(p.coverage < previous_c);
        previous_r = p.recall;
        previous_c = p.coverage;
        free(collapsed);
    }

    /* The same set against itself: every point sits in its own ball. */
    PrdcMetrics same = prdc_of(real, n, real, n, d);
    CHECK(same.precision == 1.0 && same.recall == 1.0 && same.coverage == 1.0);
    CHECK(same.density >= 1.0);
    free(real);

    /* IS: uniform predictions give 1; confident predictions spread evenly over K classes
     * in every split give K. */
    const int k = 10, ni = 200;
    float *probs = xcalloc((size_t)ni * k, sizeof(float));
    for (int i = 0; i < ni * k; i++) probs[i] = 1.0f / k;
    double is_mean, is_std;
    CHECK(inception_score(probs, ni, k, METRICS_IS_SPLITS, &is_mean, &is_std) == D2C_OK);
    CHECK(fabs(is_mean - 1.0) < 1e-6 && fabs(is_std) < 1e-6);
    memset(probs, 0, (size_t)ni * k * sizeof(float));
    int64_t labels[200];
    for (int i = 0; i < ni; i++) probs[i * k + i % k] = 1.0f, labels[i] = i % k;
    CHECK(inception_score(probs, ni, k, METRICS_IS_SPLITS, &is_mean, &is_std) == D2C_OK);
    CHECK(fabs(is_mean - k) < 1e-9 && fabs(is_std) < 1e-9);
    CHECK(accuracy_of(probs, ni, k, labels) == 1.0);
    for (int i = 0; i < ni; i += 4) labels[i] = (labels[i] + 1) % k;
    CHECK(accuracy_of(probs, ni, k, labels) == 0.75);
    free(probs);
}

/* ---------------------------------------------------------------- bad input */

typedef enum {
    BAD_EMPTY, BAD_ONE_POINT, BAD_K_TOO_BIG, BAD_K_FAKE, BAD_DIMS, BAD_FEW_FOR_IS,
    BAD_NAN, BAD_LABEL, BAD_CACHE_DIMS, BAD_KID_SUBSET, BAD_KID_NAN, BAD_COUNT
} BadInput;

static int call_with_bad_input(BadInput which) {
    float x[64] = {0}, probs[30] = {0};
    for (int i = 0; i < 64; i++) x[i] = (float)(i * i % 7);
    int64_t labels[3] = {0, 1, 12};
    double r[16], mean, std, v;
    FeatureStats a = stats_of(x, 4, 4), b = stats_of(x, 2, 8), none;
    QualityInputs in = {.real_feats = x, .n_ref = 16, .real_stats = &b, .fake_feats = x,
                        .fake_probs = probs, .fake_labels = labels, .n_samples = 16, .d = 4,
                        .n_classes = 1};
    QualityMetrics q;
    PrdcMetrics p;
    KidOptions ko = kid_default_options();
    int st = D2C_OK;
    switch (which) {
    case BAD_EMPTY: st = feature_stats_compute(&none, x, 0, 4); break;
    case BAD_ONE_POINT: st = feature_stats_compute(&none, x, 1, 4); break;
    case BAD_K_TOO_BIG: st = knn_radii(x, 3, 4, 3, r); break;
    case BAD_K_FAKE: st = prdc_compute(x, 10, x, 3, 4, 3, &p); break;
    case BAD_DIMS: st = fid_from_stats(&a, &b, &v); break;
    case BAD_FEW_FOR_IS: st = inception_score(probs, 9, 3, 10, &mean, &std); break;
    case BAD_NAN: x[5] = NAN; st = prdc_compute(x, 8, x, 8, 4, 3, &p); break;
    case BAD_LABEL: st = class_accuracy(probs, 3, 10, labels, &v); break;
    case BAD_CACHE_DIMS: st = quality_metrics_compute(&in, &q); break;
    case BAD_KID_SUBSET: ko.subset_size = 9; st = kid_compute(x, 8, x, 16, 4, &ko, &mean, &std, NULL); break;
    case BAD_KID_NAN: x[7] = INFINITY; st = kid_compute(x, 16, x, 16, 4, &ko, &mean, &std, NULL); break;
    case BAD_COUNT: break;
    }
    feature_stats_free(&a);
    feature_stats_free(&b);
    return st;
}

/* Each bad input must return D2C_ERR_INPUT with a message, and never end the process. */
static void check_bad_inputs(void) {
    for (int which = 0; which < BAD_COUNT; which++) {
        d2c_clear_error();
        int st = call_with_bad_input((BadInput)which);
        int ok = st == D2C_ERR_INPUT && d2c_last_error()[0] != 0;
        printf("%-4s bad input %d: status %d, %s\n", ok ? "ok" : "FAIL", which, st, d2c_last_error());
        CHECK(ok);
    }
}

/* ---------------------------------------------------------------- main */

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s PYTHON METRICS_REF_PY\n", argv[0]);
        return 2;
    }
    check_bad_inputs();

    enum { N_CASES = 6 };
    Case cases[N_CASES] = {
        /* correlated Gaussians, M not a multiple of the 10 IS splits */
        {.name = "gaussian", .n_real = 500, .n_fake = 437, .d = 48, .n_classes = 10},
        /* D > N: rank-deficient covariances */
        {.name = "rank-deficient", .n_real = 60, .n_fake = 50, .d = 96, .n_classes = 10},
        {.name = "clusters", .n_real = 600, .n_fake = 450, .d = 32, .n_classes = 10},
        /* integer points: duplicates and exactly tied distances */
        {.name = "lattice", .n_real = 300, .n_fake = 200, .d = 3, .n_classes = 5},
        /* the same, in two groups far from the common centre */
        {.name = "far lattice", .n_real = 300, .n_fake = 200, .d = 3, .n_classes = 5,
         .fid_ill_conditioned = 1},
        /* several distance strips and column blocks */
        {.name = "strips", .n_real = 2500, .n_fake = 2100, .d = 8, .n_classes = 10},
    };
    cases[0].real = gaussian_set(500, 48, 1, 1.0f, 0.0f);
    cases[0].fake = gaussian_set(437, 48, 2, 1.5f, 0.3f);
    cases[1].real = gaussian_set(60, 96, 3, 1.0f, 0.0f);
    cases[1].fake = gaussian_set(50, 96, 4, 0.5f, 0.5f);
    cases[2].real = cluster_set(600, 32, 10, 5, 1.0f);
    cases[2].fake = cluster_set(450, 32, 7, 6, 1.3f);
    cases[3].real = lattice_set(300, 3, 4, 0.0f, 8);
    cases[3].fake = lattice_set(200, 3, 5, 0.0f, 9);
    cases[4].real = lattice_set(300, 3, 4, 3000.0f, 8);
    cases[4].fake = lattice_set(200, 3, 5, 3000.0f, 9);
    cases[5].real = cluster_set(2500, 8, 10, 10, 2.0f);
    cases[5].fake = cluster_set(2100, 8, 10, 11, 2.5f);
    for (int i = 0; i < N_CASES; i++) make_probs(&cases[i], 100 + (uint64_t)i, 1.0f + i);

    double **refs = run_reference(cases, N_CASES, argv[1], argv[2]);
    for (int i = 0; i < N_CASES; i++) compare_case(&cases[i], refs[i]);
    check_detection(&cases[0], refs[0], &cases[3], refs[3]);
    check_properties();

    for (int i = 0; i < N_CASES; i++) {
        free_case(&cases[i]);
        free(refs[i]);
    }
    free(refs);
    return test_finish();
}
