/* The evaluator ConvNet: architecture description, parameter layout, initialisation,
 * forward and backward on the engine kernels, softmax cross-entropy, batched feature
 * extraction and the content hash. Saving, loading and finding the committed files live
 * in evaluator_io.c; training in evaluator_train.c.
 *
 * Shape letters as in evaluator.h: B batch, Cl stage channels, Nl stage positions,
 * G groups, D features, K classes. */
#include "eval/evaluator.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/progress.h"
#include "core/rng.h"
#include "core/util.h"

/* ---------------------------------------------------------------- architecture */

EvalArch eval_arch_default(int in_channels, int height, int width, int num_classes) {
    static const int CH[] = {32, 64, 64, 96, 128}, ST[] = {1, 2, 1, 2, 2};
    EvalArch a = {.in_channels = in_channels, .height = height, .width = width,
                  .num_stages = 5, .groups = 8, .num_classes = num_classes};
    for (int l = 0; l < 5; l++) a.channels[l] = CH[l], a.strides[l] = ST[l];
    return a;
}

int eval_arch_validate(const EvalArch *a, char *why, size_t n) {
    if (a->in_channels < 1 || a->in_channels > 4)
        return snprintf(why, n, "image channels must be 1..4, got %d", a->in_channels), -1;
    if (a->height < 4 || a->width < 4 || a->height > 1024 || a->width > 1024)
        return snprintf(why, n, "image size must be 4..1024 per side, got %dx%d", a->height, a->width), -1;
    if (a->num_stages < 1 || a->num_stages > EVAL_MAX_STAGES)
        return snprintf(why, n, "the network needs 1..%d stages, got %d", EVAL_MAX_STAGES, a->num_stages), -1;
    if (a->num_classes < 2 || a->num_classes > 100000)
        return snprintf(why, n, "num_classes must be 2..100000, got %d", a->num_classes), -1;
    if (a->groups < 1) return snprintf(why, n, "groups must be >= 1, got %d", a->groups), -1;
    int h = a->height, w = a->width;
    for (int l = 0; l < a->num_stages; l++) {
        if (a->channels[l] < 1 || a->channels[l] > 4096)
            return snprintf(why, n, "stage %d: channels must be 1..4096, got %d", l, a->channels[l]), -1;
        if (a->channels[l] % a->groups)
            return snprintf(why, n, "stage %d: %d channels not divisible by %d groups", l, a->channels[l], a->groups), -1;
        if (a->strides[l] != 1 && a->strides[l] != 2)
            return snprintf(why, n, "stage %d: stride must be 1 or 2, got %d", l, a->strides[l]), -1;
        h = conv_out_size(h, 3, a->strides[l]);
        w = conv_out_size(w, 3, a->strides[l]);
    }
    if (h < 1 || w < 1) return snprintf(why, n, "too many stride-2 stages for %dx%d images", a->height, a->width), -1;
    return 0;
}

char *eval_arch_to_json(const EvalArch *a) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", EVAL_ARCH_NAME);
    cJSON_AddNumberToObject(o, "in_channels", a->in_channels);
    cJSON_AddNumberToObject(o, "height", a->height);
    cJSON_AddNumberToObject(o, "width", a->width);
    cJSON *ch = cJSON_AddArrayToObject(o, "channels"), *st = cJSON_AddArrayToObject(o, "strides");
    for (int l = 0; l < a->num_stages; l++) {
        cJSON_AddItemToArray(ch, cJSON_CreateNumber(a->channels[l]));
        cJSON_AddItemToArray(st, cJSON_CreateNumber(a->strides[l]));
    }
    cJSON_AddNumberToObject(o, "groups", a->groups);
    cJSON_AddNumberToObject(o, "num_classes", a->num_classes);
    cJSON_AddStringToObject(o, "block", "conv3x3+groupnorm+silu");
    cJSON_AddStringToObject(o, "head", "global-avg-pool+linear+softmax");
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static int json_int(const cJSON *v, int *out) {
    /* the range check first: converting a double outside int's range is undefined */
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= INT_MIN && v->valuedouble <= INT_MAX) ||
        v->valuedouble != (double)(int)v->valuedouble)
        return -1;
    *out = (int)v->valuedouble;
    return 0;
}

int eval_arch_from_json(const char *json, EvalArch *a, char *why, size_t n) {
    memset(a, 0, sizeof *a);
    cJSON *o = cJSON_Parse(json);
    int rc = -1;
    if (!cJSON_IsObject(o)) {
        snprintf(why, n, "arch is not a JSON object");
        goto done;
    }
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
    if (!cJSON_IsString(name) || strcmp(name->valuestring, EVAL_ARCH_NAME) != 0) {
        snprintf(why, n, "arch name is not '%s'", EVAL_ARCH_NAME);
        goto done;
    }
    const char *keys[] = {"in_channels", "height", "width", "groups", "num_classes"};
    int *dst[] = {&a->in_channels, &a->height, &a->width, &a->groups, &a->num_classes};
    for (int i = 0; i < 5; i++)
        if (json_int(cJSON_GetObjectItemCaseSensitive(o, keys[i]), dst[i])) {
            snprintf(why, n, "arch lacks an integer '%s'", keys[i]);
            goto done;
        }
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(o, "channels");
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(o, "strides");
    int L = cJSON_GetArraySize(ch);
    if (!cJSON_IsArray(ch) || !cJSON_IsArray(st) || L != cJSON_GetArraySize(st) || L < 1 || L > EVAL_MAX_STAGES) {
        snprintf(why, n, "arch needs arrays 'channels' and 'strides' of equal length 1..%d", EVAL_MAX_STAGES);
        goto done;
    }
    a->num_stages = L;
    for (int l = 0; l < L; l++)
        if (json_int(cJSON_GetArrayItem(ch, l), &a->channels[l]) || json_int(cJSON_GetArrayItem(st, l), &a->strides[l])) {
            snprintf(why, n, "arch 'channels'/'strides' hold a non-integer");
            goto done;
        }
    rc = eval_arch_validate(a, why, n);
done:
    cJSON_Delete(o);
    return rc;
}

/* ---------------------------------------------------------------- layout */

static size_t add_tensor(EvalLayout *lay, const char *name, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
    D2C_CHECK(lay->n_tensors < EVAL_MAX_TENSORS);
    EvalTensor *t = &lay->tensors[lay->n_tensors++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    int64_t dims[4] = {d0, d1, d2, d3};
    t->count = 1;
    for (int i = 0; i < ndim; i++) t->shape[i] = dims[i], t->count *= (size_t)dims[i];
    t->offset = lay->n_params;
    lay->n_params += t->count;
    return t->offset;
}

void eval_layout_build(EvalLayout *lay, const EvalArch *a) {
    memset(lay, 0, sizeof *lay);
    lay->arch = *a;
    int cin = a->in_channels, h = a->height, w = a->width;
    char name[32];
    for (int l = 0; l < a->num_stages; l++) {
        int c = a->channels[l];
        snprintf(name, sizeof name, "conv%d.weight", l);
        lay->conv[l].w = add_tensor(lay, name, 4, c, cin, 3, 3);
        snprintf(name, sizeof name, "conv%d.bias", l);
        lay->conv[l].b = add_tensor(lay, name, 1, c, 0, 0, 0);
        snprintf(name, sizeof name, "norm%d.weight", l);
        lay->norm[l].w = add_tensor(lay, name, 1, c, 0, 0, 0);
        snprintf(name, sizeof name, "norm%d.bias", l);
        lay->norm[l].b = add_tensor(lay, name, 1, c, 0, 0, 0);
        h = conv_out_size(h, 3, a->strides[l]);
        w = conv_out_size(w, 3, a->strides[l]);
        lay->h[l] = h, lay->w[l] = w;
        cin = c;
    }
    lay->feature_dim = cin;
    lay->fc.w = add_tensor(lay, "fc.weight", 2, a->num_classes, cin, 0, 0);
    lay->fc.b = add_tensor(lay, "fc.bias", 1, a->num_classes, 0, 0, 0);
}

void eval_init_params(const EvalLayout *lay, float *params, uint64_t seed) {
    const EvalArch *a = &lay->arch;
    for (int i = 0; i < lay->n_tensors; i++) {
        const EvalTensor *t = &lay->tensors[i];
        float *p = params + t->offset;
        if (strncmp(t->name, "norm", 4) == 0) { /* GroupNorm: gamma 1, beta 0 */
            float v = strstr(t->name, ".weight") ? 1.0f : 0.0f;
            for (size_t j = 0; j < t->count; j++) p[j] = v;
            continue;
        }
        /* fan_in of the layer the tensor belongs to: conv (Cin*9), fc (D) */
        int fan_in;
        if (t->name[0] == 'f') fan_in = lay->feature_dim;
        else {
            int l = atoi(t->name + 4);
            fan_in = (l == 0 ? a->in_channels : a->channels[l - 1]) * 9;
        }
        float bound = 1.0f / sqrtf((float)fan_in);
        Rng r = rng_stream(seed, RNG_INIT, (uint64_t)i);
        for (size_t j = 0; j < t->count; j++) p[j] = bound * (2.0f * rng_uniform(&r) - 1.0f);
    }
}

/* ---------------------------------------------------------------- instance */

void evaluator_create(Evaluator *net, const EvalArch *a, int max_batch) {
    char why[256];
    if (eval_arch_validate(a, why, sizeof why)) die_input("evaluator: %s", why);
    memset(net, 0, sizeof *net);
    eval_layout_build(&net->lay, a);
    net->max_batch = max_batch;
    net->params = xmalloc_floats(net->lay.n_params);
    net->grads = xmalloc_floats(net->lay.n_params);
    vec_zero(net->params, net->lay.n_params);
    vec_zero(net->grads, net->lay.n_params);
    size_t B = (size_t)max_batch, biggest = 0;
    for (int l = 0; l < a->num_stages; l++) {
        size_t n = B * a->channels[l] * net->lay.h[l] * net->lay.w[l];
        net->z[l] = xmalloc_floats(n);
        net->a[l] = xmalloc_floats(n);
        net->mean[l] = xmalloc_floats(B * a->groups);
        net->rstd[l] = xmalloc_floats(B * a->groups);
        if (n > biggest) biggest = n;
    }
    net->dbuf[0] = xmalloc_floats(biggest);
    net->dbuf[1] = xmalloc_floats(biggest);
    net->feats = xmalloc_floats(B * net->lay.feature_dim);
    net->dfeats = xmalloc_floats(B * net->lay.feature_dim);
    net->logits = xmalloc_floats(B * a->num_classes);
    net->probs = xmalloc_floats(B * a->num_classes);
}

void evaluator_destroy(Evaluator *net) {
    for (int l = 0; l < net->lay.arch.num_stages; l++) {
        free(net->z[l]);
        free(net->a[l]);
        free(net->mean[l]);
        free(net->rstd[l]);
    }
    free(net->dbuf[0]);
    free(net->dbuf[1]);
    free(net->feats);
    free(net->dfeats);
    free(net->logits);
    free(net->probs);
    free(net->params);
    free(net->grads);
    workspace_free(&net->ws);
    memset(net, 0, sizeof *net);
}

/* ---------------------------------------------------------------- forward / backward */

static ConvShape stage_shape(const EvalLayout *lay, int l, int B) {
    const EvalArch *a = &lay->arch;
    ConvShape s = {B, l ? a->channels[l - 1] : a->in_channels, l ? lay->h[l - 1] : a->height,
                   l ? lay->w[l - 1] : a->width, a->channels[l], 3, a->strides[l]};
    return s;
}

void evaluator_forward(Evaluator *net, const float *x, int B) {
    D2C_CHECK(B >= 1 && B <= net->max_batch);
    const EvalLayout *lay = &net->lay;
    const EvalArch *a = &lay->arch;
    const float *P = net->params;
    const float *in = x;
    for (int l = 0; l < a->num_stages; l++) {
        int C = a->channels[l], N = lay->h[l] * lay->w[l];
        conv2d_forward(net->z[l], in, P + lay->conv[l].w, P + lay->conv[l].b, stage_shape(lay, l, B), &net->ws);
        groupnorm_forward(net->a[l], net->mean[l], net->rstd[l], net->z[l], P + lay->norm[l].w,
                          P + lay->norm[l].b, B, C, N, a->groups, 1);
        in = net->a[l];
    }
    /* global average pool: feats (B, D) = mean over positions of the last stage */
    int L = a->num_stages - 1, D = lay->feature_dim, N = lay->h[L] * lay->w[L];
    for (int b = 0; b < B; b++)
        for (int c = 0; c < D; c++) {
            const float *row = net->a[L] + ((size_t)b * D + c) * N;
            double s = 0;
            for (int i = 0; i < N; i++) s += row[i];
            net->feats[(size_t)b * D + c] = (float)(s / N);
        }
    linear_forward(net->logits, net->feats, P + lay->fc.w, P + lay->fc.b, B, D, a->num_classes);
    softmax_rows(net->probs, net->logits, B, a->num_classes);
    net->input = x;
    net->last_batch = B;
}

void evaluator_backward(Evaluator *net, const float *dlogits, float *dx) {
    const EvalLayout *lay = &net->lay;
    const EvalArch *a = &lay->arch;
    const float *P = net->params;
    float *G = net->grads;
    int B = net->last_batch, L = a->num_stages - 1, D = lay->feature_dim;
    vec_zero(net->dfeats, (size_t)B * D);
    linear_backward(net->dfeats, G + lay->fc.w, G + lay->fc.b, dlogits, net->feats, P + lay->fc.w, B, D,
                    a->num_classes);
    /* pool backward: every position of (b, c) gets dfeats[b, c] / N */
    float *da = net->dbuf[0], *dz = net->dbuf[1];
    int N = lay->h[L] * lay->w[L];
    for (int b = 0; b < B; b++)
        for (int c = 0; c < D; c++) {
            float g = net->dfeats[(size_t)b * D + c] / (float)N;
            float *row = da + ((size_t)b * D + c) * N;
            for (int i = 0; i < N; i++) row[i] = g;
        }
    for (int l = L; l >= 0; l--) {
        int C = a->channels[l];
        size_t n = (size_t)B * C * lay->h[l] * lay->w[l];
        vec_zero(dz, n);
        groupnorm_backward(dz, G + lay->norm[l].w, G + lay->norm[l].b, da, net->z[l], net->mean[l], net->rstd[l],
                           P + lay->norm[l].w, P + lay->norm[l].b, B, C, lay->h[l] * lay->w[l], a->groups, 1);
        ConvShape s = stage_shape(lay, l, B);
        float *dprev = NULL;
        if (l > 0) { /* da now receives the previous stage's output gradient */
            dprev = da;
            vec_zero(dprev, (size_t)B * s.Cin * s.H * s.W);
        } else {
            dprev = dx;
        }
        conv2d_backward(dprev, G + lay->conv[l].w, G + lay->conv[l].b, dz, l ? net->a[l - 1] : net->input,
                        P + lay->conv[l].w, s, &net->ws);
    }
}

/* ---------------------------------------------------------------- softmax cross-entropy */

void softmax_rows(float *probs, const float *logits, int B, int K) {
    for (int b = 0; b < B; b++) {
        const float *z = logits + (size_t)b * K;
        float *p = probs + (size_t)b * K;
        float m = z[0];
        for (int k = 1; k < K; k++) m = z[k] > m ? z[k] : m;
        double s = 0;
        for (int k = 0; k < K; k++) s += exp((double)z[k] - m);
        for (int k = 0; k < K; k++) p[k] = (float)(exp((double)z[k] - m) / s);
    }
}

float softmax_xent_forward(float *probs, const float *logits, const int64_t *labels, int B, int K) {
    softmax_rows(probs, logits, B, K);
    double loss = 0;
    for (int b = 0; b < B; b++) { /* -log p = logsumexp(z) - z[label], in double */
        const float *z = logits + (size_t)b * K;
        D2C_CHECK(labels[b] >= 0 && labels[b] < K);
        double m = z[0], s = 0;
        for (int k = 1; k < K; k++) m = z[k] > m ? z[k] : m;
        for (int k = 0; k < K; k++) s += exp((double)z[k] - m);
        loss += m + log(s) - z[labels[b]];
    }
    return (float)(loss / B);
}

void softmax_xent_backward(float *dlogits, const float *probs, const int64_t *labels, int B, int K,
                           float scale) {
    float f = scale / (float)B;
    for (int b = 0; b < B; b++)
        for (int k = 0; k < K; k++)
            dlogits[(size_t)b * K + k] += f * (probs[(size_t)b * K + k] - (k == labels[b] ? 1.0f : 0.0f));
}

/* ---------------------------------------------------------------- batched use */

void evaluator_apply(Evaluator *net, const float *images, int n, float *feats, float *probs,
                     const char *label) {
    const EvalArch *a = &net->lay.arch;
    size_t img = (size_t)a->in_channels * a->height * a->width;
    int D = net->lay.feature_dim, K = a->num_classes;
    Progress prog;
    if (label) progress_begin(&prog, label, 0, n);
    double t0 = now_seconds();
    for (int i = 0; i < n; i += net->max_batch) {
        int B = D2C_MIN(net->max_batch, n - i);
        evaluator_forward(net, images + (size_t)i * img, B);
        if (feats) memcpy(feats + (size_t)i * D, net->feats, sizeof(float) * B * D);
        if (probs) memcpy(probs + (size_t)i * K, net->probs, sizeof(float) * B * K);
        if (label) {
            char status[64];
            snprintf(status, sizeof status, "%.0f img/s", (i + B) / (now_seconds() - t0 + 1e-9));
            progress_update(&prog, i + B, status);
        }
    }
    if (label) progress_end(&prog);
}

double evaluator_accuracy(Evaluator *net, const float *images, const int64_t *labels, int n) {
    const EvalArch *a = &net->lay.arch;
    size_t img = (size_t)a->in_channels * a->height * a->width;
    int K = a->num_classes;
    long correct = 0;
    for (int i = 0; i < n; i += net->max_batch) {
        int B = D2C_MIN(net->max_batch, n - i);
        evaluator_forward(net, images + (size_t)i * img, B);
        for (int b = 0; b < B; b++) {
            const float *z = net->logits + (size_t)b * K;
            int best = 0;
            for (int k = 1; k < K; k++)
                if (z[k] > z[best]) best = k;
            correct += best == labels[i + b];
        }
    }
    return n ? (double)correct / n : 0.0;
}

/* ---------------------------------------------------------------- hash */

uint64_t fnv1a64(uint64_t h, const void *data, size_t len) {
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

uint64_t evaluator_hash(const EvalLayout *lay, const float *params) {
    /* the float32 bytes in tensor order; the host is little-endian like the file */
    return fnv1a64(FNV64_INIT, params, lay->n_params * sizeof(float));
}
