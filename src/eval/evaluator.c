/* The evaluator networks' instances: buffers, forward and backward of the encoder, the
 * three heads (pool, spatial, ae bottleneck + probe) and the ae decoder, on the engine
 * kernels; softmax cross-entropy; batched feature extraction; the content hash. The
 * architectures and parameter layout live in evaluator_arch.c, files in evaluator_io.c,
 * training in evaluator_train.c.
 *
 * Shape letters as in evaluator.h: B batch, Cl stage channels, Nl stage positions,
 * G groups, F hidden width, D features, K classes, Cd_u / n_u decoder map u. */
#include "eval/evaluator.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/progress.h"
#include "core/util.h"

/* ---------------------------------------------------------------- instance */

static float *alloc_zero(size_t n) {
    float *p = xmalloc_floats(n ? n : 1);
    vec_zero(p, n);
    return p;
}

int evaluator_create(Evaluator *net, const EvalArch *a, int max_batch) {
    D2C_TRY(eval_arch_validate(a));
    if (max_batch < 1) return d2c_error(D2C_ERR_INPUT, "evaluator: batch must be >= 1, got %d", max_batch);
    memset(net, 0, sizeof *net);
    eval_layout_build(&net->lay, a);
    const EvalLayout *lay = &net->lay;
    net->max_batch = max_batch;
    net->params = alloc_zero(lay->n_params);
    net->grads = alloc_zero(lay->n_params);
    size_t B = (size_t)max_batch, biggest = (size_t)a->in_channels * a->height * a->width * B;
    for (int l = 0; l < a->num_stages; l++) {
        size_t n = B * a->channels[l] * lay->h[l] * lay->w[l];
        net->z[l] = alloc_zero(n);
        net->a[l] = alloc_zero(n);
        net->mean[l] = alloc_zero(B * a->groups);
        net->rstd[l] = alloc_zero(B * a->groups);
        if (n > biggest) biggest = n;
    }
    int D = lay->feature_dim;
    if (a->kind == EVAL_KIND_SPATIAL) net->hpre = alloc_zero(B * D);
    if (a->kind == EVAL_KIND_AE) {
        for (int u = 0; u <= a->num_up; u++) {
            size_t n = B * a->dec_channels[u] * lay->dec_h[u] * lay->dec_w[u];
            net->dz[u] = alloc_zero(n);
            net->da[u] = alloc_zero(n);
            net->dmean[u] = alloc_zero(B * a->groups);
            net->drstd[u] = alloc_zero(B * a->groups);
            if (n > biggest) biggest = n;
            if (u > 0) {
                size_t m = B * a->dec_channels[u - 1] * lay->dec_h[u] * lay->dec_w[u];
                net->up[u] = alloc_zero(m);
                if (m > biggest) biggest = m;
            }
        }
        net->recon = alloc_zero(B * a->in_channels * a->height * a->width);
    }
    for (int i = 0; i < 3; i++) net->dbuf[i] = alloc_zero(biggest);
    net->feats = alloc_zero(B * D);
    net->dfeats = alloc_zero(B * D);
    net->dhid = alloc_zero(B * D);
    net->logits = alloc_zero(B * a->num_classes);
    net->probs = alloc_zero(B * a->num_classes);
    return D2C_OK;
}

void evaluator_destroy(Evaluator *net) {
    for (int l = 0; l < EVAL_MAX_STAGES; l++) {
        free(net->z[l]);
        free(net->a[l]);
        free(net->mean[l]);
        free(net->rstd[l]);
    }
    for (int u = 0; u <= EVAL_MAX_STAGES; u++) {
        free(net->dz[u]);
        free(net->da[u]);
        free(net->up[u]);
        free(net->dmean[u]);
        free(net->drstd[u]);
    }
    for (int i = 0; i < 3; i++) free(net->dbuf[i]);
    free(net->recon);
    free(net->hpre);
    free(net->feats);
    free(net->dfeats);
    free(net->dhid);
    free(net->logits);
    free(net->probs);
    free(net->params);
    free(net->grads);
    workspace_free(&net->ws);
    memset(net, 0, sizeof *net);
}

/* ---------------------------------------------------------------- forward */

static ConvShape stage_shape(const EvalLayout *lay, int l, int B) {
    const EvalArch *a = &lay->arch;
    ConvShape s = {B, l ? a->channels[l - 1] : a->in_channels, l ? lay->h[l - 1] : a->height,
                   l ? lay->w[l - 1] : a->width, a->channels[l], 3, a->strides[l]};
    return s;
}

/* decoder conv u (1..U): upsampled map u-1 -> map u; u = U + 1 is the output conv. */
static ConvShape dec_shape(const EvalLayout *lay, int u, int B) {
    const EvalArch *a = &lay->arch;
    int U = a->num_up, src = u - 1, hh = lay->dec_h[u <= U ? u : U], ww = lay->dec_w[u <= U ? u : U];
    ConvShape s = {B, a->dec_channels[src], hh, ww, u <= U ? a->dec_channels[u] : a->in_channels, 3, 1};
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
    int L = a->num_stages - 1, D = lay->feature_dim, N = lay->h[L] * lay->w[L];
    if (a->kind == EVAL_KIND_POOL) { /* global average pool of the last stage */
        for (int b = 0; b < B; b++)
            for (int c = 0; c < D; c++) {
                const float *row = net->a[L] + ((size_t)b * D + c) * N;
                double s = 0;
                for (int i = 0; i < N; i++) s += row[i];
                net->feats[(size_t)b * D + c] = (float)(s / N);
            }
    } else if (a->kind == EVAL_KIND_SPATIAL) { /* flatten -> linear -> SiLU */
        linear_forward(net->hpre, net->a[L], P + lay->hidden.w, P + lay->hidden.b, B, lay->flat_dim, D);
        silu_forward(net->feats, net->hpre, (size_t)B * D);
    } else { /* flatten -> linear bottleneck */
        linear_forward(net->feats, net->a[L], P + lay->hidden.w, P + lay->hidden.b, B, lay->flat_dim, D);
    }
    linear_forward(net->logits, net->feats, P + lay->fc.w, P + lay->fc.b, B, D, a->num_classes);
    softmax_rows(net->probs, net->logits, B, a->num_classes);
    net->input = x;
    net->last_batch = B;
}

void evaluator_reconstruct(Evaluator *net) {
    const EvalLayout *lay = &net->lay;
    const EvalArch *a = &lay->arch;
    D2C_CHECK(a->kind == EVAL_KIND_AE && net->last_batch > 0);
    const float *P = net->params;
    int B = net->last_batch, U = a->num_up, G = a->groups;
    int n0 = lay->dec_h[0] * lay->dec_w[0];
    linear_forward(net->dz[0], net->feats, P + lay->dec_fc.w, P + lay->dec_fc.b, B, lay->feature_dim,
                   a->dec_channels[0] * n0);
    groupnorm_forward(net->da[0], net->dmean[0], net->drstd[0], net->dz[0], P + lay->dec_norm[0].w,
                      P + lay->dec_norm[0].b, B, a->dec_channels[0], n0, G, 1);
    for (int u = 1; u <= U; u++) {
        upsample2x_forward(net->up[u], net->da[u - 1], B, a->dec_channels[u - 1], lay->dec_h[u - 1], lay->dec_w[u - 1]);
        conv2d_forward(net->dz[u], net->up[u], P + lay->dec_conv[u].w, P + lay->dec_conv[u].b, dec_shape(lay, u, B),
                       &net->ws);
        groupnorm_forward(net->da[u], net->dmean[u], net->drstd[u], net->dz[u], P + lay->dec_norm[u].w,
                          P + lay->dec_norm[u].b, B, a->dec_channels[u], lay->dec_h[u] * lay->dec_w[u], G, 1);
    }
    conv2d_forward(net->recon, net->da[U], P + lay->out_conv.w, P + lay->out_conv.b, dec_shape(lay, U + 1, B), &net->ws);
}

/* ---------------------------------------------------------------- backward */

/* dfeats (B, D) += d loss / d feats from drecon (B, Cin, H, W) through the decoder. */
static void decoder_backward(Evaluator *net, const float *drecon) {
    const EvalLayout *lay = &net->lay;
    const EvalArch *a = &lay->arch;
    const float *P = net->params;
    float *Gr = net->grads;
    int B = net->last_batch, U = a->num_up, G = a->groups;
    float *dmap = net->dbuf[0], *dpre = net->dbuf[1], *dup = net->dbuf[2];
    size_t n = (size_t)B * a->dec_channels[U] * lay->dec_h[U] * lay->dec_w[U];
    vec_zero(dmap, n);
    conv2d_backward(dmap, Gr + lay->out_conv.w, Gr + lay->out_conv.b, drecon, net->da[U], P + lay->out_conv.w,
                    dec_shape(lay, U + 1, B), &net->ws);
    for (int u = U; u >= 0; u--) { /* dmap holds d loss / d da[u] */
        int C = a->dec_channels[u], N = lay->dec_h[u] * lay->dec_w[u];
        vec_zero(dpre, (size_t)B * C * N);
        groupnorm_backward(dpre, Gr + lay->dec_norm[u].w, Gr + lay->dec_norm[u].b, dmap, net->dz[u], net->dmean[u],
                           net->drstd[u], P + lay->dec_norm[u].w, P + lay->dec_norm[u].b, B, C, N, G, 1);
        if (u == 0) break;
        ConvShape s = dec_shape(lay, u, B);
        vec_zero(dup, (size_t)B * s.Cin * s.H * s.W);
        conv2d_backward(dup, Gr + lay->dec_conv[u].w, Gr + lay->dec_conv[u].b, dpre, net->up[u], P + lay->dec_conv[u].w,
                        s, &net->ws);
        vec_zero(dmap, (size_t)B * a->dec_channels[u - 1] * lay->dec_h[u - 1] * lay->dec_w[u - 1]);
        upsample2x_backward(dmap, dup, B, a->dec_channels[u - 1], lay->dec_h[u - 1], lay->dec_w[u - 1]);
    }
    linear_backward(net->dfeats, Gr + lay->dec_fc.w, Gr + lay->dec_fc.b, dpre, net->feats, P + lay->dec_fc.w, B,
                    lay->feature_dim, a->dec_channels[0] * lay->dec_h[0] * lay->dec_w[0]);
}

void evaluator_backward(Evaluator *net, const float *dlogits, const float *drecon, float *dx) {
    const EvalLayout *lay = &net->lay;
    const EvalArch *a = &lay->arch;
    const float *P = net->params;
    float *G = net->grads;
    int B = net->last_batch, L = a->num_stages - 1, D = lay->feature_dim, K = a->num_classes;
    D2C_CHECK(!drecon || a->kind == EVAL_KIND_AE);
    vec_zero(net->dfeats, (size_t)B * D);
    if (dlogits) /* the ae's probe sees detached features: no gradient flows past it */
        linear_backward(a->kind == EVAL_KIND_AE ? NULL : net->dfeats, G + lay->fc.w, G + lay->fc.b, dlogits,
                        net->feats, P + lay->fc.w, B, D, K);
    if (a->kind == EVAL_KIND_AE) {
        if (!drecon) return;
        decoder_backward(net, drecon);
    }
    float *da = net->dbuf[0], *dz = net->dbuf[1];
    int N = lay->h[L] * lay->w[L];
    if (a->kind == EVAL_KIND_POOL) { /* every position of (b, c) gets dfeats[b, c] / N */
        for (int b = 0; b < B; b++)
            for (int c = 0; c < D; c++) {
                float g = net->dfeats[(size_t)b * D + c] / (float)N;
                float *row = da + ((size_t)b * D + c) * N;
                for (int i = 0; i < N; i++) row[i] = g;
            }
    } else {
        const float *dh = net->dfeats;
        if (a->kind == EVAL_KIND_SPATIAL) {
            vec_zero(net->dhid, (size_t)B * D);
            silu_backward(net->dhid, net->dfeats, net->hpre, (size_t)B * D);
            dh = net->dhid;
        }
        vec_zero(da, (size_t)B * lay->flat_dim);
        linear_backward(da, G + lay->hidden.w, G + lay->hidden.b, dh, net->a[L], P + lay->hidden.w, B, lay->flat_dim, D);
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

double evaluator_recon_mse(Evaluator *net, const float *images, int n) {
    const EvalArch *a = &net->lay.arch;
    if (a->kind != EVAL_KIND_AE || n < 1) return NAN;
    size_t img = (size_t)a->in_channels * a->height * a->width;
    double sum = 0;
    for (int i = 0; i < n; i += net->max_batch) {
        int B = D2C_MIN(net->max_batch, n - i);
        evaluator_forward(net, images + (size_t)i * img, B);
        evaluator_reconstruct(net);
        sum += (double)mse_forward(net->recon, images + (size_t)i * img, (size_t)B * img) * B;
    }
    return sum / n;
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
