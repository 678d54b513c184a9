/* Tests of the evaluator network (src/eval/evaluator*.c) that need no data: softmax
 * cross-entropy and the whole network's backward against central finite differences,
 * the architecture JSON, determinism across thread counts, and the file round trip with
 * its content hash. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/rng.h"
#include "core/util.h"
#include "eval/evaluator.h"
#include "testing.h"
#include "engine/backend.h"
#include "engine/cpu/kernels.h"

/* Cross-entropy of logits (B, K) against labels, in double (the FD reference). */
static double xent_ref(const float *logits, const int64_t *labels, int B, int K) {
    double loss = 0;
    for (int b = 0; b < B; b++) {
        const float *z = logits + (size_t)b * K;
        double m = z[0], s = 0;
        for (int k = 1; k < K; k++) m = fmax(m, z[k]);
        for (int k = 0; k < K; k++) s += exp(z[k] - m);
        loss += m + log(s) - z[labels[b]];
    }
    return loss / B;
}

static void test_softmax_xent(void) {
    enum { B = 5, K = 7 };
    float logits[B * K], probs[B * K], dlogits[B * K], fd[B * K];
    int64_t labels[B] = {0, 3, 6, 2, 3};
    Rng r = rng_stream(1, RNG_EVAL, 0);
    for (int i = 0; i < B * K; i++) logits[i] = 3.0f * rng_normal(&r);
    logits[K + 1] = 40.0f; /* a confident row: the max subtraction must keep it finite */
    float loss = softmax_xent_forward(probs, logits, labels, B, K);
    CHECK(fabs(loss - xent_ref(logits, labels, B, K)) < 1e-5 * fabs(loss) + 1e-6);
    for (int b = 0; b < B; b++) {
        double s = 0;
        for (int k = 0; k < K; k++) s += probs[b * K + k];
        CHECK(fabs(s - 1.0) < 1e-5);
    }
    /* backward accumulates: start from 1 and subtract it back */
    for (int i = 0; i < B * K; i++) dlogits[i] = 1.0f;
    softmax_xent_backward(dlogits, probs, labels, B, K, 0.5f);
    for (int i = 0; i < B * K; i++) dlogits[i] = (dlogits[i] - 1.0f) * 2.0f;
    const float h = 1e-2f;
    for (int i = 0; i < B * K; i++) {
        float keep = logits[i];
        logits[i] = keep + h;
        double up = xent_ref(logits, labels, B, K);
        logits[i] = keep - h;
        double down = xent_ref(logits, labels, B, K);
        logits[i] = keep;
        fd[i] = (float)((up - down) / (2.0 * h));
    }
    check_close("softmax_xent backward vs finite differences", dlogits, fd, B * K, 1e-3);
}

/* Tiny networks of every kind: 2-channel 8x8 images, 2 groups, 3 classes; encoders
 * (4, s1) (8, s2) (8, s2), spatial hidden 6, ae encoder (4, s1) (4, s2) (4, s2), F = 5,
 * decoder channels 4, 4, 4 (two per group: with one, a conv bias before GroupNorm has
 * no gradient at all). */
static EvalArch tiny_arch_kind(EvalKind kind) {
    EvalArch a = {.kind = kind, .in_channels = 2, .height = 8, .width = 8, .num_stages = 3, .groups = 2, .num_classes = 3};
    int ch[] = {4, 8, 8}, st[] = {1, 2, 2};
    for (int l = 0; l < 3; l++) a.channels[l] = ch[l], a.strides[l] = st[l];
    if (kind == EVAL_KIND_SPATIAL) a.hidden = 6;
    if (kind == EVAL_KIND_AE) {
        a.channels[1] = a.channels[2] = 4;
        a.hidden = 5;
        a.num_up = 2;
        a.dec_channels[0] = 4, a.dec_channels[1] = 4, a.dec_channels[2] = 4;
    }
    return a;
}

enum { LOSS_XENT, LOSS_MSE };

/* The loss the finite differences see: cross-entropy of the logits, or the ae's
 * reconstruction MSE, in double. */
static double net_loss(Evaluator *net, const float *x, const int64_t *y, int B, int which) {
    evaluator_forward(net, x, B);
    if (which == LOSS_XENT) return xent_ref(net->logits, y, B, net->lay.arch.num_classes);
    evaluator_reconstruct(net);
    size_t n = (size_t)B * net->lay.arch.in_channels * net->lay.arch.height * net->lay.arch.width;
    double s = 0;
    for (size_t i = 0; i < n; i++) s += ((double)net->recon[i] - x[i]) * ((double)net->recon[i] - x[i]);
    return s / n;
}

/* Every parameter and input gradient of the loss against central differences. For the
 * ae's cross-entropy only the probe may have gradients (the features are detached). */
static void check_gradients(EvalKind kind, int which) {
    enum { B = 3 };
    EvalArch a = tiny_arch_kind(kind);
    Evaluator net;
    CHECK(evaluator_create(&net, NULL, &a, B) == D2C_OK);
    eval_init_params(&net.lay, net.params, 5);
    /* non-trivial norm affines, so their gradients are tested away from 1/0 */
    Rng r = rng_stream(2, RNG_EVAL, 0);
    for (int t = 0; t < net.lay.n_tensors; t++)
        if (net.lay.tensors[t].fan_in == 0)
            for (size_t c = 0; c < net.lay.tensors[t].count; c++)
                net.params[net.lay.tensors[t].offset + c] =
                    strstr(net.lay.tensors[t].name, ".weight") ? 1.0f + 0.3f * rng_normal(&r) : 0.3f * rng_normal(&r);
    size_t nx = (size_t)B * a.in_channels * a.height * a.width;
    float *x = xmalloc_floats(nx), *dx = xmalloc_floats(nx), *fdx = xmalloc_floats(nx), *drecon = xmalloc_floats(nx);
    rng_fill_normal(&r, x, nx);
    int64_t y[B] = {2, 0, 1};
    int K = a.num_classes;
    float dlogits[B * 3] = {0};

    evaluator_forward(&net, x, B);
    vec_zero(net.grads, net.lay.n_params);
    vec_zero(dx, nx);
    if (which == LOSS_XENT) {
        softmax_xent_forward(net.probs, net.logits, y, B, K);
        softmax_xent_backward(dlogits, net.probs, y, B, K, 1.0f);
        evaluator_backward(&net, dlogits, NULL, dx);
    } else {
        evaluator_reconstruct(&net);
        vec_zero(drecon, nx);
        mse_backward(drecon, net.recon, x, nx, 1.0f);
        evaluator_backward(&net, NULL, drecon, dx);
        for (size_t i = 0; i < nx; i++) dx[i] -= drecon[i]; /* x is also the MSE's target */
    }
    size_t P = net.lay.n_params;
    float *fd = xmalloc_floats(P);
    const float h = 1e-2f;
    for (size_t i = 0; i < P; i++) {
        float keep = net.params[i];
        net.params[i] = keep + h;
        double up = net_loss(&net, x, y, B, which);
        net.params[i] = keep - h;
        double down = net_loss(&net, x, y, B, which);
        net.params[i] = keep;
        fd[i] = (float)((up - down) / (2.0 * h));
    }
    const char *what = which == LOSS_XENT ? "xent" : "mse";
    for (int t = 0; t < net.lay.n_tensors; t++) {
        const EvalTensor *ts = &net.lay.tensors[t];
        char name[128];
        if (kind == EVAL_KIND_AE && which == LOSS_XENT && strncmp(ts->name, "probe", 5) != 0) {
            int zero = 1; /* detached: nothing but the probe gets the cross-entropy's gradient */
            for (size_t j = 0; j < ts->count; j++) zero &= net.grads[ts->offset + j] == 0.0f;
            snprintf(name, sizeof name, "%s: d%s of the probe loss is exactly 0", eval_kind_arch_name(kind), ts->name);
            test_check(zero, __FILE__, __LINE__, name);
            continue;
        }
        snprintf(name, sizeof name, "%s %s: d%s vs finite differences", eval_kind_arch_name(kind), what, ts->name);
        check_close(name, net.grads + ts->offset, fd + ts->offset, ts->count, 1e-2);
    }
    if (!(kind == EVAL_KIND_AE && which == LOSS_XENT)) {
        for (size_t i = 0; i < nx; i++) {
            float keep = x[i];
            x[i] = keep + h;
            double up = net_loss(&net, x, y, B, which);
            x[i] = keep - h;
            double down = net_loss(&net, x, y, B, which);
            x[i] = keep;
            fdx[i] = (float)((up - down) / (2.0 * h));
        }
        char name[128];
        snprintf(name, sizeof name, "%s %s: dx vs finite differences", eval_kind_arch_name(kind), what);
        check_close(name, dx, fdx, nx, 1e-2);
    }
    free(x);
    free(dx);
    free(fdx);
    free(drecon);
    free(fd);
    evaluator_destroy(&net);
}

static void test_network_gradients(void) {
    check_gradients(EVAL_KIND_POOL, LOSS_XENT);
    check_gradients(EVAL_KIND_SPATIAL, LOSS_XENT);
    check_gradients(EVAL_KIND_AE, LOSS_MSE);
    check_gradients(EVAL_KIND_AE, LOSS_XENT);
}

static void test_arch_json(void) {
    for (int k = 0; k < 3; k++) {
        EvalArch a = eval_arch_default((EvalKind)k, 3, 32, 32, 10), b;
        CHECK(eval_arch_validate(&a) == D2C_OK);
        char *s = eval_arch_to_json(&a);
        CHECK(eval_arch_from_json(s, &b) == D2C_OK);
        CHECK(memcmp(&a, &b, sizeof a) == 0);
        free(s);
    }
    EvalArch b;
    /* a file written before kinds existed: no "kind", a pool network */
    const char *old = "{\"name\":\"convnet-v1\",\"in_channels\":1,\"height\":28,\"width\":28,\"channels\":[32,64,64,96,"
                      "128],\"strides\":[1,2,1,2,2],\"groups\":8,\"num_classes\":10,\"block\":\"conv3x3+groupnorm+silu\","
                      "\"head\":\"global-avg-pool+linear+softmax\"}";
    CHECK(eval_arch_from_json(old, &b) == D2C_OK && b.kind == EVAL_KIND_POOL && b.num_stages == 5);
    CHECK(eval_arch_from_json("{\"name\":\"convnet-v1\"}", &b) == D2C_ERR_INPUT);
    CHECK(strstr(d2c_last_error(), "in_channels") != NULL);
    CHECK(eval_arch_from_json("[1,2]", &b) == D2C_ERR_INPUT);
    CHECK(eval_arch_from_json("{\"name\":\"convnet-v1\",\"kind\":\"ae\"}", &b) == D2C_ERR_INPUT);
    EvalArch a = eval_arch_default(EVAL_KIND_POOL, 3, 32, 32, 10);
    a.channels[1] = 12; /* not divisible by 8 groups */
    CHECK(eval_arch_validate(&a) == D2C_ERR_INPUT);
    a = eval_arch_default(EVAL_KIND_AE, 1, 30, 30, 10); /* 30 is not a multiple of 4 */
    CHECK(eval_arch_validate(&a) == D2C_ERR_INPUT);
    a = eval_arch_default(EVAL_KIND_AE, 1, 28, 28, 10);
    a.num_up = 1; /* one upsampling for two stride-2 stages */
    CHECK(eval_arch_validate(&a) == D2C_ERR_INPUT);
    EvalLayout lay;
    eval_layout_build(&lay, &(EvalArch){.in_channels = 1, .height = 28, .width = 28, .num_stages = 4,
                                        .channels = {32, 64, 64, 128}, .strides = {1, 2, 1, 2}, .groups = 8,
                                        .num_classes = 10});
    CHECK(lay.feature_dim == 128 && lay.h[3] == 7 && lay.w[3] == 7);
    CHECK(lay.n_params == (size_t)(32 * 9 + 32 + 64) + (64 * 32 * 9 + 64 + 128) + (64 * 64 * 9 + 64 + 128) +
                              (128 * 64 * 9 + 128 + 256) + (10 * 128 + 10));
    /* the committed kinds' sizes (about 1 MB of float32 each) */
    for (int k = 0; k < 3; k++) {
        eval_layout_build(&lay, &(EvalArch){0});
        EvalArch d = eval_arch_default((EvalKind)k, 1, 28, 28, 10);
        eval_layout_build(&lay, &d);
        printf("%s on 1x28x28: %zu parameters, %d features\n", eval_kind_arch_name(d.kind), lay.n_params, lay.feature_dim);
        CHECK(lay.n_params < 400000);
    }
    eval_layout_build(&lay, &(EvalArch){.kind = EVAL_KIND_SPATIAL, .in_channels = 1, .height = 28, .width = 28,
                                        .num_stages = 5, .channels = {32, 64, 64, 96, 32}, .strides = {1, 2, 1, 2, 2},
                                        .groups = 8, .num_classes = 10, .hidden = 256});
    CHECK(lay.flat_dim == 32 * 4 * 4 && lay.feature_dim == 256);
}

/* Same features for 1 and 2 threads, and for one batch of 7 or batches of 3. */
static void test_determinism(EvalKind kind) {
    EvalArch a = eval_arch_default(kind, 1, 28, 28, 10);
    Evaluator big, small;
    CHECK(evaluator_create(&big, NULL, &a, 7) == D2C_OK);
    CHECK(evaluator_create(&small, NULL, &a, 3) == D2C_OK);
    eval_init_params(&big.lay, big.params, 9);
    memcpy(small.params, big.params, big.lay.n_params * sizeof(float));
    size_t nx = (size_t)7 * 28 * 28;
    float *x = xmalloc_floats(nx);
    Rng r = rng_stream(3, RNG_EVAL, 0);
    rng_fill_normal(&r, x, nx);
    int D = big.lay.feature_dim;
    float *f1 = xmalloc_floats((size_t)7 * D), *f2 = xmalloc_floats((size_t)7 * D), *f3 = xmalloc_floats((size_t)7 * D);
    engine_set_num_threads(1);
    evaluator_apply(&big, x, 7, f1, NULL, NULL);
    engine_set_num_threads(2);
    evaluator_apply(&big, x, 7, f2, NULL, NULL);
    evaluator_apply(&small, x, 7, f3, NULL, NULL);
    CHECK(memcmp(f1, f2, sizeof(float) * 7 * D) == 0);
    char name[96];
    snprintf(name, sizeof name, "%s features: batches of 3 vs one batch of 7", eval_kind_arch_name(kind));
    check_close(name, f3, f2, (size_t)7 * D, 1e-5);
    free(x);
    free(f1);
    free(f2);
    free(f3);
    evaluator_destroy(&big);
    evaluator_destroy(&small);
}

static void test_save_load(EvalKind kind) {
    EvalArch a = tiny_arch_kind(kind);
    Evaluator net, back;
    CHECK(evaluator_create(&net, NULL, &a, 4) == D2C_OK);
    eval_init_params(&net.lay, net.params, 11);
    char path[] = "/tmp/d2c_test_evaluator_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    EvaluatorMeta meta = {.tag = "tiny", .dataset = "fashion-mnist:train", .command = "test", .seed = 11,
                          .val_accuracy = NAN, .test_accuracy = 0.5, .val_mse = NAN, .test_mse = NAN};
    EvaluatorInfo saved, loaded;
    CHECK(evaluator_save(&net, path, &meta, &saved) == D2C_OK);
    CHECK(evaluator_load(&back, NULL, &loaded, path, 4) == D2C_OK);
    CHECK(back.lay.n_params == net.lay.n_params && back.lay.arch.kind == kind && loaded.kind == kind);
    CHECK(memcmp(back.params, net.params, net.lay.n_params * sizeof(float)) == 0);
    CHECK(strcmp(saved.hash, loaded.hash) == 0 && strlen(loaded.hash) == 16);
    CHECK(strcmp(saved.id, loaded.id) == 0);
    char prefix[64];
    snprintf(prefix, sizeof prefix, "tiny-%s:", eval_kind_arch_name(kind));
    CHECK(strncmp(loaded.id, prefix, strlen(prefix)) == 0);
    CHECK(fabs(loaded.test_accuracy - 0.5) < 1e-9 && isnan(loaded.anchor_fid));
    /* metadata rewrite (calibration): same weights and hash, the new keys readable */
    const char *keys[] = {"anchor_fid", "anchor_kid"}, *vals[] = {"0.25", "0.001"};
    CHECK(evaluator_set_metadata(path, 2, keys, vals) == D2C_OK);
    evaluator_destroy(&back);
    CHECK(evaluator_load(&back, NULL, &loaded, path, 4) == D2C_OK);
    CHECK(strcmp(saved.hash, loaded.hash) == 0 && loaded.anchor_fid == 0.25 && loaded.anchor_kid == 0.001);
    /* the hash is FNV-1a 64 of the weights: known value for known bytes, sensitive to one bit */
    CHECK(fnv1a64(FNV64_INIT, "a", 1) == 0xaf63dc4c8601ec8cULL);
    uint64_t h0 = evaluator_hash(&net.lay, net.params);
    net.params[5] = nextafterf(net.params[5], 1.0f);
    CHECK(evaluator_hash(&net.lay, net.params) != h0);
    /* a file whose weights no longer match their hash is refused with a status, not an exit */
    CHECK(evaluator_save(&net, path, &meta, &saved) == D2C_OK);
    const char *hk[] = {"hash"}, *hv[] = {"0123456789abcdef"};
    evaluator_destroy(&back);
    CHECK(evaluator_set_metadata(path, 1, hk, hv) == D2C_OK); /* verified before the write, so allowed once */
    CHECK(evaluator_load(&back, NULL, &loaded, path, 4) == D2C_ERR_INPUT);
    CHECK(strstr(d2c_last_error(), "hash") != NULL);
    remove(path);
    evaluator_destroy(&net);
}

int main(void) {
    engine_set_num_threads(2);
    test_softmax_xent();
    test_network_gradients();
    test_arch_json();
    for (int k = 0; k < 3; k++) {
        test_determinism((EvalKind)k);
        test_save_load((EvalKind)k);
    }
    return test_finish();
}
