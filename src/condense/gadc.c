/* GADC-style moment matching (`--method gadc`, distmatch.h): per class, the m images whose
 * mean and covariance in the PCA feature space are closest to the class's:
 *
 *   J(S) = ||mu_S - mu||^2 + lam ||Sigma_S - Sigma||_F^2,   lam = lambda / tr(Sigma)
 *
 * with 1/|S| and 1/n covariances. The scale of lam makes the two terms comparable: for a
 * random subset of size m both are about tr(Sigma) / m (the covariance term times (1 + a
 * kurtosis factor)), so lambda = 1 weighs them equally. The idea of greedy selection
 * against class statistics followed by swap refinement is GADC's
 * (github.com/2018cx/GADC, selection/); its objective (partial optimal transport plus
 * diagonal moments on ResNet features) is replaced here by full first and second moments
 * in the PCA space of the pixels.
 *
 * Greedy start: step t adds the x minimising J(S + {x}). Writing Q = sum_S s s^T,
 * c = mu_S and P_x = Q x (kept for every image, updated in O(n d) per pick), J(S + {x})
 * is a closed form in a few dot products of x with c, P_x and Sigma c, so a step costs
 * O(n d), not O(n d^2). Swap refinement: for each selected a in turn, every unselected b
 * is scored by the exact change of J when b replaces a,
 *   Delta mu = delta = (b - a) / m,
 *   Delta Sigma = (b b^T - a a^T) / m - c delta^T - delta c^T - delta delta^T = U W U^T,
 * U = [a b c] and W a fixed 3 x 3 matrix, so with E = Sigma_S - Sigma
 *   Delta J = 2 c.delta + |delta|^2 + lam (2 <E, Delta Sigma> + ||Delta Sigma||_F^2)
 * needs U^T E U and U^T U: a.b and (E a).b per pair, the rest per image; one evaluation
 * is O(d) and a whole pass O(m n d). The best b replaces a when that lowers J (by more
 * than a relative 1e-10); then Q, c, E and E x for every x are updated (O(n d) plus O(d^2)).
 * Every pass starts from sums recomputed from S, so rounding does not accumulate. At most
 * `passes` passes; one without a swap ends the refinement. Features are centred at the
 * class mean (J is translation invariant) and everything is double. Ties go to the lowest
 * index and per-candidate scores are computed alike on every thread, so the loops do not
 * depend on the thread count (the BLAS calls, here and in the PCA, may round differently
 * with another one). */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "condense/distmatch.h"
#include "condense/features.h"
#include "core/status.h"
#include "core/util.h"

typedef struct {
    int n, d;
    double *x;   /* (n, d) features centred at the class mean */
    double *sx;  /* (n, d) Sigma x_i */
    double *xx;  /* (n) x_i . x_i */
    double *xsx; /* (n) x_i . Sigma x_i */
    double *sig; /* (d, d) the class covariance */
    double lam;  /* lambda / tr Sigma */
    char *in;    /* (n) selected */
    double *sv;  /* (d) sum of the picks */
    double *q;   /* (d, d) sum of pick pick^T */
    double *p;   /* (n, d) Q x_i */
    double *g;   /* (n, d) E x_i (swap phase) */
} Gadc;

static double dot(const double *a, const double *b, int d) {
    double s = 0;
    for (int j = 0; j < d; j++) s += a[j] * b[j];
    return s;
}

/* Deterministic argmin over the candidates of a parallel loop: lowest index on ties. */
#define ARGMIN_MERGE(lv, lb, bestv, best)                                                       \
    do {                                                                                        \
        _Pragma("omp critical") if ((lb) >= 0 && ((lv) < (bestv) || ((lv) == (bestv) && (lb) < (best)))) \
            (bestv) = (lv), (best) = (lb);                                                      \
    } while (0)

static void gadc_init(Gadc *s, const float *f, int n, int d, double lambda) {
    memset(s, 0, sizeof *s);
    s->n = n, s->d = d;
    s->x = xcalloc((size_t)n * d, sizeof(double));
    double *mu = xcalloc((size_t)d, sizeof(double));
    for (int i = 0; i < n; i++)
        for (int j = 0; j < d; j++) mu[j] += f[(size_t)i * d + j];
    for (int j = 0; j < d; j++) mu[j] /= n;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < d; j++) s->x[(size_t)i * d + j] = f[(size_t)i * d + j] - mu[j];
    free(mu);
    s->sig = xcalloc((size_t)d * d, sizeof(double));
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, d, d, n, 1.0 / n, s->x, d, s->x, d, 0.0, s->sig, d);
    double tr = 0;
    for (int j = 0; j < d; j++) tr += s->sig[(size_t)j * d + j];
    s->lam = tr > 0 ? lambda / tr : 0;
    s->sx = xcalloc((size_t)n * d, sizeof(double));
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, d, d, 1.0, s->x, d, s->sig, d, 0.0, s->sx, d);
    s->xx = xcalloc((size_t)n, sizeof(double));
    s->xsx = xcalloc((size_t)n, sizeof(double));
    for (int i = 0; i < n; i++) {
        s->xx[i] = dot(s->x + (size_t)i * d, s->x + (size_t)i * d, d);
        s->xsx[i] = dot(s->x + (size_t)i * d, s->sx + (size_t)i * d, d);
    }
    s->in = xcalloc((size_t)n, 1);
    s->sv = xcalloc((size_t)d, sizeof(double));
    s->q = xcalloc((size_t)d * d, sizeof(double));
    s->p = xcalloc((size_t)n * d, sizeof(double));
    s->g = xcalloc((size_t)n * d, sizeof(double));
}

static void gadc_free(Gadc *s) {
    free(s->x), free(s->sx), free(s->xx), free(s->xsx), free(s->sig), free(s->in), free(s->sv), free(s->q), free(s->p),
        free(s->g);
}

/* Adds w * v v^T to Q and w * v (v . x_i) to every P_i. */
static void add_outer(Gadc *s, const double *v, double w) {
    const int n = s->n, d = s->d;
    for (int a = 0; a < d; a++)
        for (int b = 0; b < d; b++) s->q[(size_t)a * d + b] += w * v[a] * v[b];
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++) {
        const double t = w * dot(v, s->x + (size_t)i * d, d);
        for (int j = 0; j < d; j++) s->p[(size_t)i * d + j] += t * v[j];
    }
}

/* The greedy start: m picks. */
static void greedy(Gadc *s, int m, int *pick) {
    const int n = s->n, d = s->d;
    double *c = xcalloc((size_t)d, sizeof(double)), *sc = xcalloc((size_t)d, sizeof(double));
    for (int t = 0; t < m; t++) {
        const double tp = t + 1, al = t / tp, be = 1 / tp, w1 = be - be * be, w2 = -al * be;
        for (int j = 0; j < d; j++) c[j] = t ? s->sv[j] / t : 0;
        cblas_dgemv(CblasRowMajor, CblasNoTrans, d, d, 1.0, s->sig, d, c, 1, 0.0, sc, 1);
        const double cc = dot(c, c, d);
        double a2 = 0; /* ||A||^2, A = Q / t' - Sigma - al^2 c c^T */
        for (int a = 0; a < d; a++)
            for (int b = 0; b < d; b++) {
                const double v = s->q[(size_t)a * d + b] / tp - s->sig[(size_t)a * d + b] - al * al * c[a] * c[b];
                a2 += v * v;
            }
        int best = -1;
        double bestv = INFINITY;
#pragma omp parallel
        {
            int lb = -1;
            double lv = INFINITY;
#pragma omp for schedule(static)
            for (int i = 0; i < n; i++) {
                if (s->in[i]) continue;
                const double *xi = s->x + (size_t)i * d, *pi = s->p + (size_t)i * d;
                const double xx = s->xx[i], cx = dot(c, xi, d);
                const double xax = dot(xi, pi, d) / tp - s->xsx[i] - al * al * cx * cx;
                const double cax = dot(c, pi, d) / tp - dot(sc, xi, d) - al * al * cx * cc;
                const double ar = w1 * xax + 2 * w2 * cax;
                const double rr = w1 * w1 * xx * xx + 2 * w2 * w2 * (cc * xx + cx * cx) + 4 * w1 * w2 * xx * cx;
                const double mean2 = al * al * cc + 2 * al * be * cx + be * be * xx;
                const double v = mean2 + s->lam * (a2 + 2 * ar + rr);
                if (v < lv) lv = v, lb = i;
            }
            ARGMIN_MERGE(lv, lb, bestv, best);
        }
        D2C_CHECK(best >= 0);
        pick[t] = best;
        s->in[best] = 1;
        const double *xb = s->x + (size_t)best * d;
        for (int j = 0; j < d; j++) s->sv[j] += xb[j];
        add_outer(s, xb, 1.0);
    }
    free(c);
    free(sc);
}

/* Swap-phase quantities from Q, sv: c, E, E x_i, and the per-image scalars; returns J. */
typedef struct {
    double *c, *e, *cx, *qx, *rx; /* (d), (d, d), (n) c.x_i, (n) x_i.E x_i, (n) c.E x_i */
    double cc;                     /* c.c */
} SwapState;

static double swap_refresh(Gadc *s, int m, SwapState *w) {
    const int n = s->n, d = s->d;
    for (int j = 0; j < d; j++) w->c[j] = s->sv[j] / m;
    double e2 = 0;
    for (int a = 0; a < d; a++)
        for (int b = 0; b < d; b++) {
            const double v = s->q[(size_t)a * d + b] / m - w->c[a] * w->c[b] - s->sig[(size_t)a * d + b];
            w->e[(size_t)a * d + b] = v;
            e2 += v * v;
        }
    w->cc = dot(w->c, w->c, d);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++) {
        const double *xi = s->x + (size_t)i * d, *pi = s->p + (size_t)i * d, *si = s->sx + (size_t)i * d;
        double *gi = s->g + (size_t)i * d;
        const double cx = dot(w->c, xi, d);
        for (int j = 0; j < d; j++) gi[j] = pi[j] / m - w->c[j] * cx - si[j];
        w->cx[i] = cx;
        w->qx[i] = dot(xi, gi, d);
        w->rx[i] = dot(w->c, gi, d);
    }
    return w->cc + s->lam * e2;
}

/* Q, sv and P recomputed from the picks. */
static void sums_from_picks(Gadc *s, const int *pick, int m) {
    const int n = s->n, d = s->d;
    memset(s->sv, 0, (size_t)d * sizeof(double));
    memset(s->q, 0, (size_t)d * d * sizeof(double));
    for (int t = 0; t < m; t++) {
        const double *xt = s->x + (size_t)pick[t] * d;
        for (int j = 0; j < d; j++) s->sv[j] += xt[j];
        for (int a = 0; a < d; a++)
            for (int b = 0; b < d; b++) s->q[(size_t)a * d + b] += xt[a] * xt[b];
    }
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, d, d, 1.0, s->x, d, s->q, d, 0.0, s->p, d);
}

/* tr(W G W G) for symmetric 3 x 3 W and G. */
static double trace_wgwg(const double W[3][3], const double G[3][3]) {
    double M[3][3];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) M[i][j] = W[i][0] * G[0][j] + W[i][1] * G[1][j] + W[i][2] * G[2][j];
    double t = 0;
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) t += M[i][j] * M[j][i];
    return t;
}

/* One swap pass over the m slots; returns the swaps made. */
static int swap_pass(Gadc *s, int m, int *pick, SwapState *w) {
    const int n = s->n, d = s->d;
    const double im = 1.0 / m, im2 = im * im;
    const double W[3][3] = {{-im - im2, im2, im}, {im2, im - im2, -im}, {im, -im, 0}}; /* rows a, b, c */
    sums_from_picks(s, pick, m);
    double J = swap_refresh(s, m, w);
    int swaps = 0;
    for (int slot = 0; slot < m; slot++) {
        const int ia = pick[slot];
        const double *xa = s->x + (size_t)ia * d, *ga = s->g + (size_t)ia * d;
        const double aa = s->xx[ia], ac = w->cx[ia], qa = w->qx[ia], ra = w->rx[ia];
        int best = -1;
        double bestv = INFINITY;
#pragma omp parallel
        {
            int lb = -1;
            double lv = INFINITY;
#pragma omp for schedule(static)
            for (int ib = 0; ib < n; ib++) {
                if (s->in[ib]) continue;
                const double *xb = s->x + (size_t)ib * d;
                const double ab = dot(xa, xb, d), hab = dot(ga, xb, d), bb = s->xx[ib], bc = w->cx[ib];
                const double G[3][3] = {{aa, ab, ac}, {ab, bb, bc}, {ac, bc, w->cc}};
                const double ed = W[0][0] * qa + W[1][1] * w->qx[ib] + 2 * (W[0][1] * hab + W[0][2] * ra + W[1][2] * w->rx[ib]);
                const double mean = 2 * im * (bc - ac) + im2 * (bb - 2 * ab + aa);
                const double v = mean + s->lam * (2 * ed + trace_wgwg(W, G));
                if (v < lv) lv = v, lb = ib;
            }
            ARGMIN_MERGE(lv, lb, bestv, best);
        }
        if (best < 0 || !(bestv < -1e-10 * J)) continue;
        /* b replaces a */
        const double *xb = s->x + (size_t)best * d;
        s->in[ia] = 0, s->in[best] = 1, pick[slot] = best;
        for (int j = 0; j < d; j++) s->sv[j] += xb[j] - xa[j];
        add_outer(s, xb, 1.0);
        add_outer(s, xa, -1.0);
        J = swap_refresh(s, m, w);
        swaps++;
    }
    return swaps;
}

void gadc_select(const float *f, int n, int d, int m, double lambda, int passes, int *pick, long *swaps, int *passes_run) {
    D2C_CHECK(m >= 1 && m <= n && lambda >= 0);
    Gadc s;
    gadc_init(&s, f, n, d, lambda);
    greedy(&s, m, pick);
    SwapState w = {xcalloc((size_t)d, sizeof(double)), xcalloc((size_t)d * d, sizeof(double)),
                   xcalloc((size_t)n, sizeof(double)), xcalloc((size_t)n, sizeof(double)),
                   xcalloc((size_t)n, sizeof(double)), 0};
    int run = 0;
    long total = 0;
    for (int pass = 0; pass < passes && m < n; pass++) {
        const int made = swap_pass(&s, m, pick, &w);
        run++;
        total += made;
        if (made == 0) break;
    }
    if (swaps) *swaps += total;
    if (passes_run && run > *passes_run) *passes_run = run;
    free(w.c), free(w.e), free(w.cx), free(w.qx), free(w.rx);
    gadc_free(&s);
}

double gadc_objective(const float *f, int n, int d, const int *pick, int m, double lambda) {
    double *mu = xcalloc((size_t)d, sizeof(double)), *ms = xcalloc((size_t)d, sizeof(double));
    double *sig = xcalloc((size_t)d * d, sizeof(double)), *ss = xcalloc((size_t)d * d, sizeof(double));
    for (int i = 0; i < n; i++)
        for (int j = 0; j < d; j++) mu[j] += (double)f[(size_t)i * d + j] / n;
    for (int t = 0; t < m; t++)
        for (int j = 0; j < d; j++) ms[j] += (double)f[(size_t)pick[t] * d + j] / m;
    for (int i = 0; i < n; i++)
        for (int a = 0; a < d; a++)
            for (int b = 0; b < d; b++)
                sig[(size_t)a * d + b] += (f[(size_t)i * d + a] - mu[a]) * (f[(size_t)i * d + b] - mu[b]) / n;
    for (int t = 0; t < m; t++) {
        const float *x = f + (size_t)pick[t] * d;
        for (int a = 0; a < d; a++)
            for (int b = 0; b < d; b++) ss[(size_t)a * d + b] += (x[a] - ms[a]) * (x[b] - ms[b]) / m;
    }
    double tr = 0, mean = 0, cov = 0;
    for (int j = 0; j < d; j++) tr += sig[(size_t)j * d + j], mean += (ms[j] - mu[j]) * (ms[j] - mu[j]);
    for (size_t i = 0; i < (size_t)d * d; i++) cov += (ss[i] - sig[i]) * (ss[i] - sig[i]);
    free(mu), free(ms), free(sig), free(ss);
    return mean + (tr > 0 ? lambda / tr : 0) * cov;
}

int select_gadc(const Dataset *data, const ClassIndex *ci, int ipc, const DistMatchOptions *o, int *idx,
                DistMatchReport *rep) {
    if (!(o->lambda >= 0) || !isfinite(o->lambda))
        return d2c_error(D2C_ERR_INPUT, "--gadc-lambda must be >= 0, got %g", o->lambda);
    if (o->passes < 0) return d2c_error(D2C_ERR_INPUT, "--gadc-passes must be >= 0, got %d", o->passes);
    SelectionSpace s;
    D2C_TRY(selection_space_open(&s, data, ci, ipc, o->pca_dim, o->seed));
    const int d = s.d, K = ci->num_classes;
    DistMatchReport r = {.explained = s.explained};
    for (int k = 0; k < K; k++) {
        const int n = selection_space_class(&s, k);
        gadc_select(s.fc, n, d, ipc, o->lambda, o->passes, s.pick, &r.swaps, &r.passes);
        selection_space_keep(&s, k, idx);
        r.objective += gadc_objective(s.fc, n, d, s.pick, ipc, o->lambda) / K;
        r.objective_random += gadc_objective(s.fc, n, d, s.rnd, ipc, o->lambda) / K;
    }
    selection_space_close(&s);
    if (rep) *rep = r;
    return D2C_OK;
}
