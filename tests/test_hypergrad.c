/* The matching loss and its hypergradient d loss / d x_syn against PyTorch's double
 * backpropagation (the twin's hypergradient in float64, from make_reference.py), for each
 * reference config and each case (K = 1 and 3, with and without distribution matching):
 * cosine similarity >= 0.9999 and relative L2 error <= 5e-3, loss within 1e-4.
 * Cases with an "aug" tensor (hg3, hg4) go through DSA as condense.c does: augment_forward
 * on both batches with the stored parameters, matching_loss_grad on the augmented batches,
 * augment_backward on the gradient; A(x_syn) itself is checked against the twin's first.
 *
 *   test_hypergrad REF.safetensors [...] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "condense/augment.h"
#include "condense/matching.h"
#include "core/util.h"
#include "diffusion/schedule.h"
#include "io/safetensors.h"
#include "model/unet.h"
#include "testing.h"
#include "engine/backend.h"

/* A reference tensor the test cannot go on without (exits naming it when absent). */
static const float *f32(const StFile *f, const char *name, int ndim, const int64_t *shape) {
    const float *p;
    test_require_ok(st_require_f32(f, name, ndim, shape, &p));
    return p;
}

static const int64_t *i64(const StFile *f, const char *name, int ndim, const int64_t *shape) {
    const int64_t *p;
    test_require_ok(st_require_i64(f, name, ndim, shape, &p));
    return p;
}

static void load_params(const StFile *f, const UNetLayout *lay, float *params) {
    char name[128];
    for (int i = 0; i < lay->n_tensors; i++) {
        const ParamTensor *t = &lay->tensors[i];
        snprintf(name, sizeof name, "param.%s", t->name);
        memcpy(params + t->offset, f32(f, name, t->ndim, t->shape), t->count * sizeof(float));
    }
}

/* The F32 tensor prefix + name of the reference file, which must exist (any shape):
 * a missing one ends the test with an error naming it. */
static const float *req(const StFile *f, const char *prefix, const char *name) {
    char full[128];
    snprintf(full, sizeof full, "%s%s", prefix, name);
    const StTensor *t = st_find(f, full);
    if (!t) test_require_ok(d2c_error(D2C_ERR_INPUT, "%s: no tensor '%s'", st_path(f), full));
    return f32(f, full, t->ndim, NULL);
}

/* Returns 0 when the file has no case c, 1 for a plain case, 2 for a DSA case. */
static int check_case(const StFile *f, const UNetConfig *cfg, int c) {
    char pre[16], name[128];
    snprintf(pre, sizeof pre, "hg%d.", c);
    snprintf(name, sizeof name, "%sx_real", pre);
    const StTensor *xr = st_find(f, name);
    snprintf(name, sizeof name, "%sx_syn", pre);
    const StTensor *xs = st_find(f, name);
    snprintf(name, sizeof name, "%stimesteps", pre);
    const StTensor *ts = st_find(f, name);
    if (!xr || !xs || !ts) return 0;
    const int Br = (int)xr->shape[0], Bs = (int)xs->shape[0], K = (int)ts->shape[0];
    const int H = (int)xr->shape[2], W = (int)xr->shape[3];
    const size_t D = (size_t)xr->shape[1] * H * W;

    UNet net;
    test_require_ok(unet_create(&net, NULL, cfg, H, W, Br > Bs ? Br : Bs));
    load_params(f, &net.lay, net.params);
    Schedule sched;
    schedule_init(&sched, SCHEDULE_LINEAR);
    MatchWork w;
    match_work_create(&w, &net, Br, Bs);
    snprintf(name, sizeof name, "%sy_real", pre);
    const int64_t *y_real = i64(f, name, 1, NULL);
    snprintf(name, sizeof name, "%sy_syn", pre);
    const int64_t *y_syn = i64(f, name, 1, NULL);
    snprintf(name, sizeof name, "%stimesteps", pre);
    const int64_t *timesteps = i64(f, name, 1, NULL);
    const float dm = *req(f, pre, "dm_weight");
    float *grad = xcalloc((size_t)Bs * D, sizeof(float));
    const float *x_real = req(f, pre, "x_real"), *x_syn = req(f, pre, "x_syn");
    /* DSA: one fixed augmentation of both batches */
    snprintf(name, sizeof name, "%saug", pre);
    const int dsa = st_find(f, name) != NULL;
    AugmentParams aug = {0};
    float *xr_aug = NULL, *xs_aug = NULL, *g_aug = NULL;
    const int C = (int)xr->shape[1];
    if (dsa) {
        int64_t nf = 7, ni = 4;
        const float *af = f32(f, name, 1, &nf);
        snprintf(name, sizeof name, "%saug_int", pre);
        const int64_t *ai = i64(f, name, 1, &ni);
        aug.brightness = af[0], aug.saturation = af[1], aug.contrast = af[2], aug.scale = af[3];
        aug.angle = af[4], aug.shift_x = af[5], aug.shift_y = af[6];
        aug.flip = (int)ai[0], aug.cut_x = (int)ai[1], aug.cut_y = (int)ai[2], aug.cut_size = (int)ai[3];
        xr_aug = xmalloc_floats((size_t)Br * D);
        xs_aug = xmalloc_floats((size_t)Bs * D);
        g_aug = xcalloc((size_t)Bs * D, sizeof(float));
        augment_forward(&aug, x_real, xr_aug, Br, C, H, W);
        augment_forward(&aug, x_syn, xs_aug, Bs, C, H, W);
        snprintf(name, sizeof name, "%s augment_forward A(x_syn)", pre);
        check_close(name, xs_aug, req(f, pre, "aug_x_syn"), (size_t)Bs * D, 2e-6);
        x_real = xr_aug;
        x_syn = xs_aug;
    }
    double t0 = now_seconds();
    double loss = matching_loss_grad(&net, &sched, &w, x_real, y_real, Br, x_syn, y_syn, NULL, Bs, timesteps, K,
                                     req(f, pre, "noise_real"), req(f, pre, "noise_syn"), dm, dsa ? g_aug : grad, NULL);
    if (dsa) augment_backward(&aug, g_aug, grad, Bs, C, H, W);
    double dt = now_seconds() - t0;
    float lossf = (float)loss;
    snprintf(name, sizeof name, "%s loss (K=%d, dm=%.2g%s)", pre, K, dm, dsa ? ", DSA" : "");
    check_close(name, &lossf, req(f, pre, "loss"), 1, 1e-4);

    snprintf(name, sizeof name, "%sgrad_x_syn_f64", pre);
    const StTensor *gt = st_find(f, name);
    const int ref_ok = gt && gt->dtype == ST_F64 && (size_t)gt->numel == (size_t)Bs * D;
    CHECK(ref_ok); /* before anything reads it */
    if (!ref_ok) printf("FAIL %s: no F64 tensor '%s' of %d x %zu values\n", st_path(f), name, Bs, D);
    const double *ref = ref_ok ? st_data(f, gt) : NULL;
    double dot = 0, na = 0, nb = 0, diff = 0;
    if (!ref) goto release;
    for (size_t i = 0; i < (size_t)Bs * D; i++) {
        dot += grad[i] * ref[i];
        na += (double)grad[i] * grad[i];
        nb += ref[i] * ref[i];
        diff += (grad[i] - ref[i]) * (grad[i] - ref[i]);
    }
    double cosv = dot / (sqrt(na) * sqrt(nb) + 1e-300), rel = sqrt(diff) / sqrt(nb);
    int ok = isfinite(cosv) && cosv >= 0.9999 && rel <= 5e-3;
    printf("%-4s %s hypergradient%s: cosine %.7f (>= 0.9999), rel L2 %.3e (<= 5e-3), |g| %.3e, %.2f s\n",
           ok ? "ok" : "FAIL", pre, dsa ? " (DSA)" : "", cosv, rel, sqrt(nb), dt);
    CHECK(ok);
    /* the weights are restored exactly */
    float *orig = xmalloc_floats(net.lay.n_params);
    load_params(f, &net.lay, orig);
    CHECK(memcmp(orig, net.params, net.lay.n_params * sizeof(float)) == 0);
    free(orig);
release:
    free(grad);
    free(xr_aug);
    free(xs_aug);
    free(g_aug);
    match_work_free(&w);
    unet_destroy(&net);
    return dsa ? 2 : 1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_hypergrad REF.safetensors [...] (the references of tests/make_reference.py)\n");
        return 2; /* nothing to check is a failure, not a pass */
    }
    for (int i = 1; i < argc; i++)
        if (access(argv[i], R_OK) != 0) {
            char why[1200];
            snprintf(why, sizeof why, "reference %s is missing (made by tests/make_reference.py, CTest reference_*)", argv[i]);
            return test_skip(why);
        }
    engine_set_num_threads(2);
    for (int i = 1; i < argc; i++) {
        StFile *f;
        test_require_ok(st_open(&f, argv[i]));
        UNetConfig cfg;
        if (unet_config_from_json(st_meta(f, "config"), &cfg)) {
            printf("FAIL %s: %s\n", argv[i], d2c_last_error());
            CHECK(0);
            st_close(f);
            continue;
        }
        printf("== %s\n", argv[i]);
        int plain = 0, with_dsa = 0;
        for (int c = 0; c < 8; c++) {
            int kind = check_case(f, &cfg, c);
            plain += kind == 1;
            with_dsa += kind == 2;
        }
        /* make_reference.py writes hg0..hg2 and the DSA cases hg3, hg4 */
        CHECK(plain >= 3 && with_dsa >= 2);
        st_close(f);
    }
    return test_finish();
}
