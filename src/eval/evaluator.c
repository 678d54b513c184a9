/* The evaluator networks' instances: buffers, forward and backward of the encoder, the
 * three heads (pool, spatial, ae bottleneck + probe) and the ae decoder, on the engine
 * kernels; softmax cross-entropy; batched feature extraction; the content hash. The
 * architectures and parameter layout live in evaluator_arch.c, files in evaluator_io.c,
 * training in evaluator_train.c. Buffers are device memory of the instance's engine; the
 * batched functions take host images and upload them a batch at a time.
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

static float *alloc_zero(Engine *e, size_t n) { return engine_xalloc_floats(e, n ? n : 1); }

int evaluator_create(Evaluator *net, Engine *eng, const EvalArch *a, int max_batch) {
    D2C_TRY(eval_arch_validate(a));
    if (max_batch < 1) return d2c_error(D2C_ERR_INPUT, "evaluator: batch must be >= 1, got %d", max_batch);
    memset(net, 0, sizeof *net);
    Engine *e = net->eng = eng ? eng : engine_cpu_default();
    eval_layout_build(&net->lay, a);
    const EvalLayout *lay = &net->lay;
    net->max_batch = max_batch;
    net->params = alloc_zero(e, lay->n_params);
    net->grads = alloc_zero(e, lay->n_params);
    size_t B = (size_t)max_batch, img = (size_t)a->in_channels * a->height * a->width, biggest = img * B;
    if (!e->host_memory) net->xin = alloc_zero(e, B * img);
    for (int l = 0; l < a->num_stages; l++) {
        size_t n = B * a->channels[l] * lay->h[l] * lay->w[l];
        net->z[l] = alloc_zero(e, n);
        net->a[l] = alloc_zero(e, n);
        net->mean[l] = alloc_zero(e, B * a->groups);
        net->rstd[l] = alloc_zero(e, B * a->groups);
        if (n > biggest) biggest = n;
    }
    int D = lay->feature_dim;
    if (a->kind == EVAL_KIND_SPATIAL) net->hpre = alloc_zero(e, B * D);
    if (a->kind == EVAL_KIND_AE) {
        for (int u = 0; u <= a->num_up; u++) {
            size_t n = B * a->dec_channels[u] * lay->dec_h[u] * lay->dec_w[u];
            net->dz[u] = alloc_zero(e, n);
            net->da[u] = alloc_zero(e, n);
            net->dmean[u] = alloc_zero(e, B * a->groups);
            net->drstd[u] = alloc_zero(e, B * a->groups);
            if (n > biggest) biggest = n;
            if (u > 0) {
                size_t m = B * a->dec_channels[u - 1] * lay->dec_h[u] * lay->dec_w[u];
                net->up[u] = alloc_zero(e, m);
                if (m > biggest) biggest = m;
            }
        }
        net->recon = alloc_zero(e, B * img);
    }
    for (int i = 0; i < 3; i++) net->dbuf[i] = alloc_zero(e, biggest);
    net->feats = alloc_zero(e, B * D);
    net->dfeats = alloc_zero(e, B * D);
    net->dhid = alloc_zero(e, B * D);
    net->logits = alloc_zero(e, B * a->num_classes);
    net->probs = alloc_zero(e, B * a->num_classes);
    return D2C_OK;
}

void evaluator_destroy(Evaluator *net) {
    Engine *e = net->eng;
    if (!e) {
        memset(net, 0, sizeof *net);
        return;
    }
    for (int l = 0; l < EVAL_MAX_STAGES; l++) {
        engine_free(e, net->z[l]);
        engine_free(e, net->a[l]);
        engine_free(e, net->mean[l]);
        engine_free(e, net->rstd[l]);
    }
    for (int u = 0; u <= EVAL_MAX_STAGES; u++) {
        engine_free(e, net->dz[u]);
        engine_free(e, net->da[u]);
        engine_free(e, net->up[u]);
        engine_free(e, net->dmean[u]);
        engine_free(e, net->drstd[u]);
    }
    for (int i = 0; i < 3; i++) engine_free(e, net->dbuf[i]);
    engine_free(e, net->xin);
    engine_free(e, net->recon);
    engine_free(e, net->hpre);
    engine_free(e, net->feats);
    engine_free(e, net->dfeats);
    engine_free(e, net->dhid);
    engine_free(e, net->logits);
    engine_free(e, net->probs);
    engine_free(e, net->params);
    engine_free(e, net->grads);
    memset(net, 0, sizeof *net);
}

const float *evaluator_stage(Evaluator *net, const float *images, int B) {
    if (net->eng->host_memory) return images;
    const EvalArch *a = &net->lay.arch;
    D2C_CHECK(B >= 1 && B <= net->max_batch);
    engine_upload_floats(net->eng, net->xin, images, (size_t)B * a->in_channels * a->height * a->width);
    return net->xin;
}

void evaluator_upload_params(Evaluator *net, const float *host) {
    engine_upload_floats(net->eng, net->params, host, net->lay.n_params);
}

void evaluator_download_params(const Evaluator *net, float *host) {
    engine_download_floats(net->eng, host, net->params, net->lay.n_params);
}

void evaluator_init_weights(Evaluator *net, uint64_t seed) {
    float *host = xmalloc_floats(net->lay.n_params);
    eval_init_params(&net->lay, host, seed);
    evaluator_upload_params(net, host);
    free(host);
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
    Engine *e = net->eng;
    D2C_CHECK(B >= 1 && B <= net->max_batch);
    const EvalLayout *lay = &net->lay;
    const EvalArch *a = &lay->arch;
    const float *P = net->params;
    const float *in = x;
    for (int l = 0; l < a->num_stages; l++) {
        int C = a->channels[l], N = lay->h[l] * lay->w[l];
        e->ops->conv2d_forward(e, net->z[l], in, P + lay->conv[l].w, P + lay->conv[l].b, stage_shape(lay, l, B));
        e->ops->groupnorm_forward(e, net->a[l], net->mean[l], net->rstd[l], net->z[l], P + lay->norm[l].w,
                          P + lay->norm[l].b, B, C, N, a->groups, 1);
        in = net->a[l];
    }
    int L = a->num_stages - 1, D = lay->feature_dim, N = lay->h[L] * lay->w[L];
    if (a->kind == EVAL_KIND_POOL) { /* global average pool of the last stage */
        e->ops->row_mean(e, net->feats, net->a[L], (size_t)B * D, (size_t)N);
    } else if (a->kind == EVAL_KIND_SPATIAL) { /* flatten -> linear -> SiLU */
        e->ops->linear_forward(e, net->hpre, net->a[L], P + lay->hidden.w, P + lay->hidden.b, B, lay->flat_dim, D);
        e->ops->silu_forward(e, net->feats, net->hpre, (size_t)B * D);
    } else { /* flatten -> linear bottleneck */
        e->ops->linear_forward(e, net->feats, net->a[L], P + lay->hidden.w, P + lay->hidden.b, B, lay->flat_dim, D);
    }
    e->ops->linear_forward(e, net->logits, net->feats, P + lay->fc.w, P + lay->fc.b, B, D, a->num_classes);
    e->ops->softmax_rows(e, net->probs, net->logits, B, a->num_classes);
    net->input = x;
    net->last_batch = B;
}

void evaluator_reconstruct(Evaluator *net) {
    Engine *e = net->eng;
    const EvalLayout *lay = &net->lay;
    const EvalArch *a = &lay->arch;
    D2C_CHECK(a->kind == EVAL_KIND_AE && net->last_batch > 0);
    const float *P = net->params;
    int B = net->last_batch, U = a->num_up, G = a->groups;
    int n0 = lay->dec_h[0] * lay->dec_w[0];
    e->ops->linear_forward(e, net->dz[0], net->feats, P + lay->dec_fc.w, P + lay->dec_fc.b, B, lay->feature_dim,
                   a->dec_channels[0] * n0);
    e->ops->groupnorm_forward(e, net->da[0], net->dmean[0], net->drstd[0], net->dz[0], P + lay->dec_norm[0].w,
                      P + lay->dec_norm[0].b, B, a->dec_channels[0], n0, G, 1);
    for (int u = 1; u <= U; u++) {
        e->ops->upsample2x_forward(e, net->up[u], net->da[u - 1], B, a->dec_channels[u - 1], lay->dec_h[u - 1], lay->dec_w[u - 1]);
        e->ops->conv2d_forward(e, net->dz[u], net->up[u], P + lay->dec_conv[u].w, P + lay->dec_conv[u].b, dec_shape(lay, u, B));
        e->ops->groupnorm_forward(e, net->da[u], net->dmean[u], net->drstd[u], net->dz[u], P + lay->dec_norm[u].w,
                          P + lay->dec_norm[u].b, B, a->dec_channels[u], lay->dec_h[u] * lay->dec_w[u], G, 1);
    }
    e->ops->conv2d_forward(e, net->recon, net->da[U], P + lay->out_conv.w, P + lay->out_conv.b, dec_shape(lay, U + 1, B));
}

/* ---------------------------------------------------------------- backward */

/* dfeats (B, D) += d loss / d feats from drecon (B, Cin, H, W) through the decoder. */
static void decoder_backward(Evaluator *net, const float *drecon) {
    Engine *e = net->eng;
    const EvalLayout *lay = &net->lay;
    const EvalArch *a = &lay->arch;
    const float *P = net->params;
    float *Gr = net->grads;
    int B = net->last_batch, U = a->num_up, G = a->groups;
    float *dmap = net->dbuf[0], *dpre = net->dbuf[1], *dup = net->dbuf[2];
    size_t n = (size_t)B * a->dec_channels[U] * lay->dec_h[U] * lay->dec_w[U];
    engine_zero_floats(e, dmap, n);
    e->ops->conv2d_backward(e, dmap, Gr + lay->out_conv.w, Gr + lay->out_conv.b, drecon, net->da[U], P + lay->out_conv.w,
                    dec_shape(lay, U + 1, B));
    for (int u = U; u >= 0; u--) { /* dmap holds d loss / d da[u] */
        int C = a->dec_channels[u], N = lay->dec_h[u] * lay->dec_w[u];
        engine_zero_floats(e, dpre, (size_t)B * C * N);
        e->ops->groupnorm_backward(e, dpre, Gr + lay->dec_norm[u].w, Gr + lay->dec_norm[u].b, dmap, net->dz[u], net->dmean[u],
                           net->drstd[u], P + lay->dec_norm[u].w, P + lay->dec_norm[u].b, B, C, N, G, 1);
        if (u == 0) break;
        ConvShape s = dec_shape(lay, u, B);
        engine_zero_floats(e, dup, (size_t)B * s.Cin * s.H * s.W);
        e->ops->conv2d_backward(e, dup, Gr + lay->dec_conv[u].w, Gr + lay->dec_conv[u].b, dpre, net->up[u], P + lay->dec_conv[u].w,
                        s);
        engine_zero_floats(e, dmap, (size_t)B * a->dec_channels[u - 1] * lay->dec_h[u - 1] * lay->dec_w[u - 1]);
        e->ops->upsample2x_backward(e, dmap, dup, B, a->dec_channels[u - 1], lay->dec_h[u - 1], lay->dec_w[u - 1]);
    }
    e->ops->linear_backward(e, net->dfeats, Gr + lay->dec_fc.w, Gr + lay->dec_fc.b, dpre, net->feats, P + lay->dec_fc.w, B,
                    lay->feature_dim, a->dec_channels[0] * lay->dec_h[0] * lay->dec_w[0]);
}

void evaluator_backward(Evaluator *net, const float *dlogits, const float *drecon, float *dx) {
    Engine *e = net->eng;
    const EvalLayout *lay = &net->lay;
    const EvalArch *a = &lay->arch;
    const float *P = net->params;
    float *G = net->grads;
    int B = net->last_batch, L = a->num_stages - 1, D = lay->feature_dim, K = a->num_classes;
    D2C_CHECK(!drecon || a->kind == EVAL_KIND_AE);
    engine_zero_floats(e, net->dfeats, (size_t)B * D);
    if (dlogits) /* the ae's probe sees detached features: no gradient flows past it */
        e->ops->linear_backward(e, a->kind == EVAL_KIND_AE ? NULL : net->dfeats, G + lay->fc.w, G + lay->fc.b, dlogits,
                        net->feats, P + lay->fc.w, B, D, K);
    if (a->kind == EVAL_KIND_AE) {
        if (!drecon) return;
        decoder_backward(net, drecon);
    }
    float *da = net->dbuf[0], *dz = net->dbuf[1];
    int N = lay->h[L] * lay->w[L];
    if (a->kind == EVAL_KIND_POOL) { /* every position of (b, c) gets dfeats[b, c] / N */
        e->ops->row_mean_backward(e, da, net->dfeats, (size_t)B * D, (size_t)N);
    } else {
        const float *dh = net->dfeats;
        if (a->kind == EVAL_KIND_SPATIAL) {
            engine_zero_floats(e, net->dhid, (size_t)B * D);
            e->ops->silu_backward(e, net->dhid, net->dfeats, net->hpre, (size_t)B * D);
            dh = net->dhid;
        }
        engine_zero_floats(e, da, (size_t)B * lay->flat_dim);
        e->ops->linear_backward(e, da, G + lay->hidden.w, G + lay->hidden.b, dh, net->a[L], P + lay->hidden.w, B, lay->flat_dim, D);
    }
    for (int l = L; l >= 0; l--) {
        int C = a->channels[l];
        size_t n = (size_t)B * C * lay->h[l] * lay->w[l];
        engine_zero_floats(e, dz, n);
        e->ops->groupnorm_backward(e, dz, G + lay->norm[l].w, G + lay->norm[l].b, da, net->z[l], net->mean[l], net->rstd[l],
                           P + lay->norm[l].w, P + lay->norm[l].b, B, C, lay->h[l] * lay->w[l], a->groups, 1);
        ConvShape s = stage_shape(lay, l, B);
        float *dprev = NULL;
        if (l > 0) { /* da now receives the previous stage's output gradient */
            dprev = da;
            engine_zero_floats(e, dprev, (size_t)B * s.Cin * s.H * s.W);
        } else {
            dprev = dx;
        }
        e->ops->conv2d_backward(e, dprev, G + lay->conv[l].w, G + lay->conv[l].b, dz, l ? net->a[l - 1] : net->input,
                        P + lay->conv[l].w, s);
    }
}

/* ---------------------------------------------------------------- softmax cross-entropy */

float softmax_xent_forward(float *probs, const float *logits, const int64_t *labels, int B, int K) {
    Engine *cpu = engine_cpu_default(); /* host buffers: the CPU backend's softmax */
    cpu->ops->softmax_rows(cpu, probs, logits, B, K);
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
        evaluator_forward(net, evaluator_stage(net, images + (size_t)i * img, B), B);
        if (feats) engine_download_floats(net->eng, feats + (size_t)i * D, net->feats, (size_t)B * D);
        if (probs) engine_download_floats(net->eng, probs + (size_t)i * K, net->probs, (size_t)B * K);
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
    float *logits = xmalloc_floats((size_t)net->max_batch * K);
    for (int i = 0; i < n; i += net->max_batch) {
        int B = D2C_MIN(net->max_batch, n - i);
        evaluator_forward(net, evaluator_stage(net, images + (size_t)i * img, B), B);
        engine_download_floats(net->eng, logits, net->logits, (size_t)B * K);
        for (int b = 0; b < B; b++) {
            const float *z = logits + (size_t)b * K;
            int best = 0;
            for (int k = 1; k < K; k++)
                if (z[k] > z[best]) best = k;
            correct += best == labels[i + b];
        }
    }
    free(logits);
    return n ? (double)correct / n : 0.0;
}

double evaluator_recon_mse(Evaluator *net, const float *images, int n) {
    const EvalArch *a = &net->lay.arch;
    if (a->kind != EVAL_KIND_AE || n < 1) return NAN;
    Engine *e = net->eng;
    size_t img = (size_t)a->in_channels * a->height * a->width;
    double sum = 0;
    for (int i = 0; i < n; i += net->max_batch) {
        int B = D2C_MIN(net->max_batch, n - i);
        const float *x = evaluator_stage(net, images + (size_t)i * img, B);
        evaluator_forward(net, x, B);
        evaluator_reconstruct(net);
        sum += (double)e->ops->mse_forward(e, net->recon, x, (size_t)B * img) * B;
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
