/* Training the evaluator classifier (`d2c evaluator train`): Adam on softmax
 * cross-entropy with random-shift and flip augmentation, a held-out validation split
 * (the last images of every class of the training split, `val` in all: every choice is
 * made on it), and the test split measured once, at the end, only to report.
 *
 * Determinism: epoch e's order is a permutation keyed by (seed, RNG_BATCH, e); the
 * augmentation of step s is drawn from (seed, RNG_AUGMENT, s); the initial weights from
 * (seed, RNG_INIT, tensor). The kernels give the same bits for any thread count, so a
 * rerun with the same options writes the same file (and hash).
 *
 * Shape letters: B batch, C H W image, K classes. */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/progress.h"
#include "core/rng.h"
#include "core/util.h"
#include "eval/evaluator.h"
#include "io/dataset.h"
#include "model/adam.h"

enum { WARMUP_STEPS = 200 };

EvalTrainOptions eval_train_default_options(void) {
    EvalTrainOptions o = {0};
    o.data = "fashion-mnist";
    o.epochs = 12;
    o.batch = 128;
    o.lr = 2e-3;
    o.val = DATASET_HOLDOUT;
    o.crop_pad = 0;
    o.flip = 1;
    o.test = 1;
    return o;
}

/* dst (C, H, W) = src shifted by (dy, dx) in [-pad, pad], maybe mirrored; pixels from
 * outside the image are black (-1). Always draws three numbers, so the stream stays
 * aligned whatever pad and flip are. */
static void augment(float *dst, const float *src, int C, int H, int W, int pad, int flip, Rng *r) {
    int dy = (int)rng_below(r, 2 * (uint32_t)pad + 1) - pad;
    int dx = (int)rng_below(r, 2 * (uint32_t)pad + 1) - pad;
    int mirror = (rng_u32(r) & 1) && flip;
    for (int c = 0; c < C; c++)
        for (int y = 0; y < H; y++) {
            int sy = y + dy;
            float *out = dst + ((size_t)c * H + y) * W;
            if (sy < 0 || sy >= H) {
                for (int x = 0; x < W; x++) out[x] = -1.0f;
                continue;
            }
            const float *in = src + ((size_t)c * H + sy) * W;
            for (int x = 0; x < W; x++) {
                int sx = (mirror ? W - 1 - x : x) + dx;
                out[x] = sx >= 0 && sx < W ? in[sx] : -1.0f;
            }
        }
}

/* "fashion-mnist" -> "fmnist", "folder:/a/cifar10" -> "cifar10", "x/pool.safetensors" -> "pool". */
static void default_tag(const char *src, char *tag, size_t n) {
    char base[256];
    snprintf(base, sizeof base, "%s", src);
    size_t len = strlen(base);
    if (len > 6 && strcmp(base + len - 6, ":train") == 0) base[len - 6] = 0;
    if (strcmp(base, "fashion-mnist") == 0) {
        snprintf(tag, n, "fmnist");
        return;
    }
    if (strncmp(base, "mnist:", 6) == 0) {
        snprintf(tag, n, "mnist");
        return;
    }
    char *p = strchr(base, ':') ? strchr(base, ':') + 1 : base;
    len = strlen(p);
    while (len > 1 && p[len - 1] == '/') p[--len] = 0;
    if (len > 12 && strcmp(p + len - 12, ".safetensors") == 0) p[len - 12] = 0;
    char *slash = strrchr(p, '/');
    if (slash) p = slash + 1;
    size_t j = 0;
    for (; *p && j + 1 < n; p++)
        if (isalnum((unsigned char)*p) || *p == '-' || *p == '_') tag[j++] = (char)tolower((unsigned char)*p);
    tag[j] = 0;
    if (!j) snprintf(tag, n, "custom");
}

/* The SRC of the test split matching a training SRC, or NULL when there is none. */
static char *test_source(const char *src) {
    char base[1024];
    snprintf(base, sizeof base, "%s", src);
    size_t len = strlen(base);
    if (len > 6 && strcmp(base + len - 6, ":train") == 0) base[len - 6] = 0;
    int ok = strcmp(base, "fashion-mnist") == 0 || strncmp(base, "mnist:", 6) == 0;
    if (strncmp(base, "folder:", 7) == 0) {
        char dir[1100];
        struct stat st;
        snprintf(dir, sizeof dir, "%s/test", base + 7);
        ok = stat(dir, &st) == 0 && S_ISDIR(st.st_mode);
    }
    if (!ok) return NULL;
    char *t = xmalloc(strlen(base) + 6);
    sprintf(t, "%s:test", base);
    return t;
}

static char *class_names_json(const Dataset *d) {
    cJSON *a = cJSON_CreateArray();
    for (int k = 0; k < d->num_classes; k++)
        cJSON_AddItemToArray(a, cJSON_CreateString(d->class_names && d->class_names[k] ? d->class_names[k] : ""));
    char *s = cJSON_PrintUnformatted(a);
    cJSON_Delete(a);
    return s;
}

static double lr_at(const EvalTrainOptions *o, long step, long total) {
    if (step < WARMUP_STEPS) return o->lr * (step + 1) / WARMUP_STEPS;
    double t = (double)(step - WARMUP_STEPS) / (double)D2C_MAX(1, total - WARMUP_STEPS);
    return o->lr * 0.5 * (1.0 + cos(D2C_PI * t));
}

void evaluator_train(const EvalTrainOptions *o, EvaluatorInfo *info) {
    size_t dlen = strlen(o->data);
    if (dlen > 5 && strcmp(o->data + dlen - 5, ":test") == 0)
        die_input("evaluator train: --data %s: train on the training split; the test split is only for "
                  "the final report", o->data);
    d2c_die_on_error(check_writable(o->out));
    Dataset d;
    d2c_die_on_error(dataset_load(&d, o->data));
    const int C = d.c, H = d.h, W = d.w, K = d.num_classes;
    const size_t img = (size_t)C * H * W;
    int *train_idx = xcalloc((size_t)d.n, sizeof *train_idx), n_train = 0;
    int *val_idx = xcalloc((size_t)d.n, sizeof *val_idx), n_val = 0;
    int use_total = o->limit > 0 && o->limit < d.n ? o->limit : d.n;
    if (o->val < 0 || o->val > use_total / 2)
        die_input("evaluator train: --val %d must leave at least half of the %d images for training", o->val, use_total);
    dataset_holdout_split(&d, o->limit, o->val, train_idx, &n_train, val_idx, &n_val);
    if (n_train < o->batch)
        die_input("evaluator train: %d training images are fewer than one batch (--batch %d)", n_train, o->batch);
    Dataset val = {0};
    if (n_val > 0) val = dataset_subset(&d, val_idx, n_val);

    EvalArch arch = eval_arch_default(C, H, W, K);
    if (o->num_stages > 0) {
        arch.num_stages = o->num_stages;
        for (int l = 0; l < o->num_stages; l++) arch.channels[l] = o->channels[l], arch.strides[l] = o->strides[l];
    }
    char why[256];
    if (eval_arch_validate(&arch, why, sizeof why)) die_input("evaluator train: %s", why);
    Evaluator net;
    evaluator_create(&net, &arch, D2C_MAX(o->batch, 256));
    eval_init_params(&net.lay, net.params, (uint64_t)o->seed);
    Adam opt;
    adam_create(&opt, net.lay.n_params, (float)o->lr);

    float *xb = xmalloc_floats((size_t)o->batch * img);      /* (B, C, H, W) */
    int64_t *yb = xcalloc((size_t)o->batch, sizeof *yb);      /* (B) */
    float *dlogits = xmalloc_floats((size_t)o->batch * K);   /* (B, K) */
    int *perm = xcalloc((size_t)n_train, sizeof *perm);
    const long steps_per_epoch = n_train / o->batch, total = steps_per_epoch * o->epochs;
    free(val_idx);
    if (!o->quiet)
        fprintf(stderr, "evaluator train: %s, %d train + %d validation images %dx%dx%d, %d classes, %zu params, "
                "%d epochs x %ld steps of %d\n", d.source, n_train, n_val, C, H, W, K, net.lay.n_params,
                o->epochs, steps_per_epoch, o->batch);
    Progress prog;
    char label[48];
    double t0 = now_seconds(), val_acc = NAN;
    long step = 0;
    for (int e = 0; e < o->epochs; e++) {
        memcpy(perm, train_idx, sizeof *perm * (size_t)n_train);
        Rng shuffle = rng_stream((uint64_t)o->seed, RNG_BATCH, (uint64_t)e);
        rng_shuffle(&shuffle, perm, n_train);
        double loss_sum = 0;
        long correct = 0;
        snprintf(label, sizeof label, "evaluator epoch %d/%d", e + 1, o->epochs);
        if (!o->quiet) progress_begin(&prog, label, 0, steps_per_epoch);
        for (long s = 0; s < steps_per_epoch; s++, step++) {
            Rng aug = rng_stream((uint64_t)o->seed, RNG_AUGMENT, (uint64_t)step);
            for (int b = 0; b < o->batch; b++) {
                int idx = perm[s * o->batch + b];
                augment(xb + (size_t)b * img, d.images + (size_t)idx * img, C, H, W, o->crop_pad, o->flip, &aug);
                yb[b] = d.labels[idx];
            }
            evaluator_forward(&net, xb, o->batch);
            float loss = softmax_xent_forward(net.probs, net.logits, yb, o->batch, K);
            if (!isfinite(loss)) die_fail("evaluator train: the loss became %g at step %ld; lower --lr", loss, step);
            for (int b = 0; b < o->batch; b++) {
                const float *p = net.probs + (size_t)b * K;
                int best = 0;
                for (int k = 1; k < K; k++)
                    if (p[k] > p[best]) best = k;
                correct += best == yb[b];
            }
            loss_sum += loss;
            vec_zero(dlogits, (size_t)o->batch * K);
            softmax_xent_backward(dlogits, net.probs, yb, o->batch, K, 1.0f);
            vec_zero(net.grads, net.lay.n_params);
            evaluator_backward(&net, dlogits, NULL);
            opt.lr = (float)lr_at(o, step, total);
            adam_step(&opt, net.params, net.grads);
            if (!o->quiet) {
                char status[96];
                snprintf(status, sizeof status, "loss %.4f lr %.2e %.0f img/s", loss, opt.lr,
                         (double)(step + 1) * o->batch / (now_seconds() - t0));
                progress_update(&prog, s + 1, status);
            }
        }
        if (n_val > 0) val_acc = evaluator_accuracy(&net, val.images, val.labels, n_val);
        if (!o->quiet) {
            progress_end(&prog);
            fprintf(stderr, "evaluator train: epoch %d/%d loss %.4f train acc %.4f val acc %.4f (%.0f s)\n", e + 1,
                    o->epochs, loss_sum / steps_per_epoch, (double)correct / (steps_per_epoch * o->batch), val_acc,
                    now_seconds() - t0);
        }
    }
    double train_seconds = now_seconds() - t0;

    /* the test split, measured once, after every choice is made */
    double test_acc = NAN;
    char *test_src = o->test ? test_source(o->data) : NULL;
    if (test_src) {
        Dataset t;
        d2c_die_on_error(dataset_load(&t, test_src));
        if (t.c != C || t.h != H || t.w != W)
            die_input("evaluator train: %s holds %dx%dx%d images, the training split %dx%dx%d", test_src, t.c, t.h,
                      t.w, C, H, W);
        test_acc = evaluator_accuracy(&net, t.images, t.labels, t.n);
        if (!o->quiet) fprintf(stderr, "evaluator train: test accuracy %.4f on %d images of %s\n", test_acc, t.n, t.source);
        dataset_free(&t);
    }
    char tag[64];
    if (o->tag) snprintf(tag, sizeof tag, "%s", o->tag);
    else default_tag(o->data, tag, sizeof tag);
    char *names = class_names_json(&d);
    EvaluatorMeta meta = {.tag = tag, .dataset = d.source, .command = o->command, .class_names = names,
                          .seed = o->seed, .epochs = o->epochs, .train_images = n_train,
                          .val_accuracy = val_acc, .test_accuracy = test_acc, .train_seconds = train_seconds};
    EvaluatorInfo local;
    evaluator_save(&net, o->out, &meta, info ? info : &local);
    if (!o->quiet)
        fprintf(stderr, "evaluator train: %s -> %s (%.0f s)\n", info ? info->id : local.id, o->out, train_seconds);
    free(names);
    free(test_src);
    free(xb);
    free(yb);
    free(dlogits);
    free(perm);
    free(train_idx);
    dataset_free(&val);
    adam_destroy(&opt);
    evaluator_destroy(&net);
    dataset_free(&d);
}
