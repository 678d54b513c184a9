/* The whole UNet against PyTorch: reads a reference file written by make_reference.py
 * (the project's PyTorch twin of the spec) and checks, per tensor, max|d2c - torch| /
 * max|torch| <= 1e-4 for the schedule, the epsilon prediction, the middle features, the
 * DDPM loss, every parameter gradient and the gradient to the input images; then five
 * Adam steps track PyTorch's losses and final weights.
 *
 *   test_unet REF.safetensors [REF2.safetensors ...] */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/util.h"
#include "diffusion/ddpm.h"
#include "diffusion/schedule.h"
#include "io/safetensors.h"
#include "model/adam.h"
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

#define TOL 1e-4

static void load_params(const StFile *f, const UNetLayout *lay, float *params, const char *prefix) {
    char name[128];
    for (int i = 0; i < lay->n_tensors; i++) {
        const ParamTensor *t = &lay->tensors[i];
        snprintf(name, sizeof name, "%s%s", prefix, t->name);
        const float *src = f32(f, name, t->ndim, t->shape);
        memcpy(params + t->offset, src, t->count * sizeof(float));
    }
}

/* The inference forward (the sampler's) gives the training forward's eps up to float
 * rounding (its upsample + conv pairs run fused, with summed kernel taps); a training
 * forward then restores what the checks below read (unet_mid). */
static void check_infer_equal(UNet *net, const float *xt, const int64_t *t, const int64_t *y, int B, size_t D,
                              const float *eps) {
    float *eps2 = xmalloc_floats((size_t)B * D);
    unet_forward_infer(net, xt, t, y, NULL, B, eps2);
    check_close("inference forward eps vs training forward eps", eps2, eps, (size_t)B * D, 1e-5);
    unet_forward(net, xt, t, y, NULL, B, eps2);
    free(eps2);
}

static void check_reference(const char *path) {
    printf("== %s\n", path);
    StFile *f;
    test_require_ok(st_open(&f, path));
    UNetConfig cfg;
    const char *cfg_json = st_meta(f, "config");
    CHECK(cfg_json != NULL);
    if (!cfg_json || unet_config_from_json(cfg_json, &cfg)) {
        printf("FAIL bad config: %s\n", cfg_json ? d2c_last_error() : "missing");
        st_close(f);
        return;
    }
    const StTensor *tx = st_find(f, "x0");
    CHECK(tx != NULL && tx->ndim == 4);
    if (!tx || tx->ndim != 4) {
        printf("FAIL %s: no 4-d tensor 'x0'\n", path);
        st_close(f);
        return;
    }
    const int B = (int)tx->shape[0], Cin = (int)tx->shape[1], H = (int)tx->shape[2], W = (int)tx->shape[3];
    const size_t D = (size_t)Cin * H * W;
    CHECK(Cin == cfg.in_channels);

    UNet net;
    test_require_ok(unet_create(&net, NULL, &cfg, H, W, B));
    printf("config %s: %zu parameters in %d tensors, %dx%dx%d, batch %d\n", cfg_json, net.lay.n_params,
           net.lay.n_tensors, Cin, H, W, B);
    /* every tensor of the reference model is one of ours and vice versa */
    int n_ref_params = 0;
    for (int i = 0; i < st_count(f); i++)
        if (strncmp(st_tensor(f, i)->name, "param.", 6) == 0) n_ref_params++;
    CHECK(n_ref_params == net.lay.n_tensors);
    load_params(f, &net.lay, net.params, "param.");

    Schedule sched;
    schedule_init(&sched, SCHEDULE_LINEAR);
    check_close("alpha_bar (linear schedule)", sched.alpha_bar, f32(f, "alpha_bar", 1, NULL), D2C_T_STEPS, 1e-6);

    const float *x0 = f32(f, "x0", 4, NULL);
    const float *noise = f32(f, "noise", 4, tx->shape);
    const int64_t *t = i64(f, "t", 1, NULL);
    const int64_t *y = i64(f, "y", 1, NULL);

    DdpmScratch w;
    ddpm_scratch_create(&w, NULL, B, D);
    float *dx0 = xcalloc((size_t)B * D, sizeof(float));
    memset(net.grads, 0, net.lay.n_params * sizeof(float));
    float loss = ddpm_loss(&net, &sched, &w, x0, t, y, NULL, noise, B, 1, 1.0f, dx0, NULL);

    check_close("eps_pred", w.eps, f32(f, "eps_pred", 4, tx->shape), (size_t)B * D, TOL);
    check_infer_equal(&net, w.xt, t, y, B, D, w.eps);
    int Cm, hm, wm;
    const float *mid = unet_mid(&net, &Cm, &hm, &wm);
    check_close("mid", mid, f32(f, "mid", 4, NULL), (size_t)B * Cm * hm * wm, TOL);
    check_close("loss", &loss, f32(f, "loss", 1, NULL), 1, TOL);
    char name[128];
    double worst = 0;
    for (int i = 0; i < net.lay.n_tensors; i++) {
        const ParamTensor *p = &net.lay.tensors[i];
        snprintf(name, sizeof name, "grad.%s", p->name);
        double e = check_close(name, net.grads + p->offset, f32(f, name, p->ndim, p->shape), p->count, TOL);
        if (e > worst) worst = e;
    }
    printf("worst parameter-gradient error %.3e\n", worst);
    check_close("grad_x0", dx0, f32(f, "grad_x0", 4, tx->shape), (size_t)B * D, TOL);

    /* five Adam steps on the same batch */
    const cJSON *adam_cfg = cJSON_Parse(st_meta(f, "adam") ? st_meta(f, "adam") : "{}");
    const cJSON *lr = cJSON_GetObjectItemCaseSensitive(adam_cfg, "lr");
    CHECK(cJSON_IsNumber(lr));
    Adam opt;
    adam_create(&opt, NULL, net.lay.n_params, cJSON_IsNumber(lr) ? (float)lr->valuedouble : 1e-3f);
    cJSON_Delete((cJSON *)adam_cfg);
    const float *ref_losses = f32(f, "adam_loss", 1, NULL);
    int steps = (int)st_find(f, "adam_loss")->shape[0];
    float losses[16];
    load_params(f, &net.lay, net.params, "param.");
    for (int s = 0; s < steps && s < 16; s++) {
        memset(net.grads, 0, net.lay.n_params * sizeof(float));
        losses[s] = ddpm_loss(&net, &sched, &w, x0, t, y, NULL, noise, B, 1, 1.0f, NULL, NULL);
        adam_step(&opt, net.params, net.grads);
        printf("adam step %d: loss d2c %.7f torch %.7f\n", s + 1, losses[s], ref_losses[s]);
    }
    check_close("adam losses (5 steps)", losses, ref_losses, (size_t)steps, TOL);
    float *ref_after = xmalloc_floats(net.lay.n_params);
    load_params(f, &net.lay, ref_after, "adam.param.");
    check_close("parameters after 5 Adam steps", net.params, ref_after, net.lay.n_params, TOL);

    free(ref_after);
    adam_destroy(&opt);
    free(dx0);
    ddpm_scratch_free(&w);
    unet_destroy(&net);
    st_close(f);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_unet REF.safetensors [...]\n");
        return 2;
    }
    for (int i = 1; i < argc; i++)
        if (access(argv[i], R_OK) != 0) {
            char why[1200];
            snprintf(why, sizeof why, "reference %s is missing (made by tests/make_reference.py, CTest reference_*)", argv[i]);
            return test_skip(why);
        }
    engine_set_num_threads(2);
    for (int i = 1; i < argc; i++) check_reference(argv[i]);
    return test_finish();
}
