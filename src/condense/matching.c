/* The gradient-matching loss and its finite-difference Hessian-vector hypergradient, through
 * the engine table (every (P)-sized buffer is device memory of the net's engine). */
#include "condense/matching.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

void match_work_create(MatchWork *w, const UNet *net, int max_real, int max_syn) {
    memset(w, 0, sizeof *w);
    const size_t P = net->lay.n_params, D = (size_t)net->lay.cfg.in_channels * net->H * net->W;
    int Cm, hm, wm;
    unet_mid(net, &Cm, &hm, &wm);
    Engine *e = net->eng;
    w->eng = e;
    /* scratch, written before it is read (as the malloc'd buffers before the engine) */
    w->g_real = engine_xalloc_floats_raw(e, P);
    w->g_syn = engine_xalloc_floats_raw(e, P);
    w->v = engine_xalloc_floats_raw(e, P);
    w->theta = engine_xalloc_floats_raw(e, P);
    w->dtheta = engine_xalloc_floats_raw(e, P);
    w->v_real = engine_xalloc_floats_raw(e, P);
    w->feat_real = engine_xalloc_floats_raw(e, (size_t)Cm);
    w->feat_syn = engine_xalloc_floats_raw(e, (size_t)Cm);
    w->dm_vals = engine_xalloc_floats_raw(e, (size_t)Cm);
    w->feat_host = xcalloc(2 * (size_t)Cm, sizeof(float));
    w->dmid = engine_xalloc_floats_raw(e, (size_t)max_syn * Cm * hm * wm);
    w->t_real = xcalloc((size_t)max_real, sizeof(int64_t));
    w->t_syn = xcalloc((size_t)max_syn, sizeof(int64_t));
    w->rows = xcalloc((size_t)net->lay.n_tensors, sizeof(EngineRows));
    w->nrows = layerwise_rows(&net->lay, w->rows);
    ddpm_scratch_create(&w->real, e, max_real, D);
    ddpm_scratch_create(&w->syn, e, max_syn, D);
}

void match_work_free(MatchWork *w) {
    Engine *e = w->eng;
    if (!e) return;
    engine_free(e, w->g_real);
    engine_free(e, w->g_syn);
    engine_free(e, w->v);
    engine_free(e, w->theta);
    engine_free(e, w->dtheta);
    engine_free(e, w->v_real);
    engine_free(e, w->feat_real);
    engine_free(e, w->feat_syn);
    engine_free(e, w->dm_vals);
    engine_free(e, w->dmid);
    free(w->feat_host);
    free(w->rows);
    free(w->t_real);
    free(w->t_syn);
    ddpm_scratch_free(&w->real);
    ddpm_scratch_free(&w->syn);
}

int layerwise_rows(const UNetLayout *lay, EngineRows *rows) {
    int n = 0;
    for (int i = 0; i < lay->n_tensors; i++) {
        const ParamTensor *t = &lay->tensors[i];
        if (!t->matrix) continue;
        rows[n].offset = t->offset;
        rows[n].rows = (int)t->shape[0];
        rows[n].cols = t->count / (size_t)t->shape[0];
        n++;
    }
    return n;
}

double layerwise_distance2(Engine *e, const UNetLayout *lay, const float *g_real, const float *g_syn, float *v_syn,
                           float *v_real) {
    EngineRows *rows = xcalloc((size_t)lay->n_tensors, sizeof *rows);
    int n = layerwise_rows(lay, rows);
    double d = e->ops->layerwise_distance(e, rows, n, g_real, g_syn, v_real, v_syn, lay->n_params);
    free(rows);
    return d;
}

double layerwise_distance(Engine *e, const UNetLayout *lay, const float *g_real, const float *g_syn, float *v) {
    return layerwise_distance2(e, lay, g_real, g_syn, v, NULL);
}

static float fd_step(Engine *e, const float *v, size_t P) {
    double n = sqrt(e->ops->sum_sq(e, v, P));
    return n > 0 ? (float)(0.003 / n) : 0.0f;
}

void ddpm_hessian_vector(UNet *net, const Schedule *s, DdpmScratch *w, float *theta_tmp, const float *x,
                         const int64_t *t, const int64_t *y, const float *cond, const float *noise, int B,
                         const float *v, float scale, float *out) {
    Engine *e = net->eng;
    const size_t P = net->lay.n_params;
    const float eps = fd_step(e, v, P);
    if (eps == 0) return;
    e->ops->copy(e, theta_tmp, net->params, P * sizeof(float));
    engine_zero_floats(e, net->grads, P);
    for (int sign = 1; sign >= -1; sign -= 2) {
        e->ops->waxpy(e, net->params, (float)sign * eps, v, theta_tmp, P);
        ddpm_pass(net, s, w, x, t, y, cond, noise, B, 1, (float)sign / (2.0f * eps), NULL, NULL);
    }
    e->ops->copy(e, net->params, theta_tmp, P * sizeof(float));
    e->ops->axpy(e, out, scale, net->grads, P);
}

void ddpm_mixed_vector(UNet *net, const Schedule *s, DdpmScratch *w, float *theta_tmp, const float *x,
                       const int64_t *t, const int64_t *y, const float *cond, const float *noise, int B,
                       const float *p, float scale, float *grad_x, float *grad_cond) {
    Engine *e = net->eng;
    const size_t P = net->lay.n_params;
    const float eps = fd_step(e, p, P);
    if (eps == 0) return;
    e->ops->copy(e, theta_tmp, net->params, P * sizeof(float));
    net->input_grads_only = 1;
    for (int sign = 1; sign >= -1; sign -= 2) {
        e->ops->waxpy(e, net->params, (float)sign * eps, p, theta_tmp, P);
        ddpm_pass(net, s, w, x, t, y, cond, noise, B, 1, scale * (float)sign / (2.0f * eps), grad_x, grad_cond);
    }
    net->input_grads_only = 0;
    e->ops->copy(e, net->params, theta_tmp, P * sizeof(float));
}

/* Per-channel mean of the middle features over images and positions: feat (Cm, device). */
static void mid_mean(const UNet *net, int B, float *feat) {
    int Cm, hm, wm;
    const float *mid = unet_mid(net, &Cm, &hm, &wm);
    net->eng->ops->channel_mean(net->eng, feat, mid, B, Cm, (size_t)hm * wm);
}

/* Both feature means on the host: feat_host = [real (Cm), syn (Cm)]. */
static void feats_to_host(const UNet *net, MatchWork *w, int Cm) {
    engine_download_floats(net->eng, w->feat_host, w->feat_real, (size_t)Cm);
    engine_download_floats(net->eng, w->feat_host + Cm, w->feat_syn, (size_t)Cm);
}

/* dmid = scale * d/dmid_syn [dm |fr - fs|^2] for the last synthetic forward: the Cm
 * per-channel values on the host (few), broadcast over (Bs, Cm, N) by the engine. */
static void dm_mid_gradient(const UNet *net, MatchWork *w, int Bs, float dm_weight, float scale) {
    Engine *e = net->eng;
    int Cm, hm, wm;
    unet_mid(net, &Cm, &hm, &wm);
    const size_t N = (size_t)hm * wm;
    mid_mean(net, Bs, w->feat_syn);
    feats_to_host(net, w, Cm);
    float *g = xmalloc_floats((size_t)Cm);
    const float *fr = w->feat_host, *fs = w->feat_host + Cm;
    for (int c = 0; c < Cm; c++) g[c] = scale * dm_weight * 2.0f * (fs[c] - fr[c]) / (float)(Bs * N);
    engine_upload_floats(e, w->dm_vals, g, (size_t)Cm);
    free(g);
    e->ops->channel_fill(e, w->dmid, w->dm_vals, Bs, Cm, N);
}

/* One input-gradient pass of the synthetic batch at the current weights: grad_syn +=
 * scale * dL_syn/dx (+ the DM term's gradient times dm_scale), grad_cond likewise. */
static void syn_input_pass(UNet *net, const Schedule *s, MatchWork *w, const float *x_syn, const int64_t *y_syn,
                           const float *cond_syn, int Bs, const float *noise, float scale, float dm_weight,
                           float dm_scale, float *grad_syn, float *grad_cond) {
    Engine *e = net->eng;
    DdpmScratch *sc = &w->syn;
    const size_t D = sc->D, n = (size_t)Bs * D;
    e->ops->q_sample(e, sc->xt, x_syn, noise, w->t_syn, s->alpha_bar, Bs, D);
    unet_forward(net, sc->xt, w->t_syn, y_syn, cond_syn, Bs, sc->eps);
    ddpm_scratch_zero(sc, n, 1); /* deps and dxt */
    e->ops->mse_backward(e, sc->deps, sc->eps, noise, n, scale);
    if (dm_weight > 0) dm_mid_gradient(net, w, Bs, dm_weight, dm_scale);
    unet_backward(net, sc->deps, dm_weight > 0 ? w->dmid : NULL, sc->dxt, cond_syn ? grad_cond : NULL);
    e->ops->q_sample_backward(e, grad_syn, sc->dxt, w->t_syn, s->alpha_bar, Bs, D);
}

double matching_loss_grad(UNet *net, const Schedule *s, MatchWork *w, const float *x_real,
                          const int64_t *y_real, int Br, const float *x_syn, const int64_t *y_syn,
                          const float *cond_syn, int Bs, const int64_t *timesteps, int K,
                          const float *noise_real, const float *noise_syn, float dm_weight,
                          float *grad_syn, float *grad_cond) {
    Engine *e = net->eng;
    const size_t P = net->lay.n_params, D = w->syn.D;
    int Cm;
    unet_mid(net, &Cm, NULL, NULL);
    double total = 0;
    for (int k = 0; k < K; k++) {
        for (int b = 0; b < Br; b++) w->t_real[b] = timesteps[k];
        for (int b = 0; b < Bs; b++) w->t_syn[b] = timesteps[k];
        const float *nr = noise_real + (size_t)k * Br * D, *ns = noise_syn + (size_t)k * Bs * D;

        /* the two weight gradients straight into g_real and g_syn (net->grads pointed at
         * each in turn: no copies); net->grads is scratch to every caller */
        const int gm = !w->no_gradient_matching;
        float *const grads = net->grads;
        net->grads = w->g_real;
        engine_zero_floats(e, w->g_real, P);
        ddpm_pass(net, s, &w->real, x_real, w->t_real, y_real, NULL, nr, Br, gm, 1.0f, NULL, NULL);
        if (dm_weight > 0) mid_mean(net, Br, w->feat_real);

        net->grads = w->g_syn;
        engine_zero_floats(e, w->g_syn, P);
        ddpm_pass(net, s, &w->syn, x_syn, w->t_syn, y_syn, cond_syn, ns, Bs, gm, 1.0f, NULL, NULL);
        net->grads = grads;
        double dm = 0;
        if (dm_weight > 0) {
            mid_mean(net, Bs, w->feat_syn);
            feats_to_host(net, w, Cm);
            for (int c = 0; c < Cm; c++) {
                double d = (double)w->feat_host[c] - w->feat_host[Cm + c];
                dm += d * d;
            }
        }
        if (!w->no_gradient_matching)
            total += e->ops->layerwise_distance(e, w->rows, w->nrows, w->g_real, w->g_syn,
                                                w->want_dtheta ? w->v_real : NULL,
                                                grad_syn || w->want_dtheta ? w->v : NULL, P);
        if (w->want_dtheta && !w->no_gradient_matching) {
            /* d D / d theta = H_real v_real + H_syn v_syn (the DM term's is left out) */
            ddpm_hessian_vector(net, s, &w->real, w->theta, x_real, w->t_real, y_real, NULL, nr, Br, w->v_real, 1.0f,
                                w->dtheta);
            ddpm_hessian_vector(net, s, &w->syn, w->theta, x_syn, w->t_syn, y_syn, cond_syn, ns, Bs, w->v, 1.0f,
                                w->dtheta);
        }
        total += dm_weight * dm;
        if (!grad_syn) continue;

        /* central difference of grad_x L_syn along v */
        const double vnorm = w->no_gradient_matching ? 0.0 : sqrt(e->ops->sum_sq(e, w->v, P));
        if (vnorm == 0 && dm_weight <= 0) continue;
        const float eps = vnorm > 0 ? (float)(0.003 / vnorm) : 0.0f;
        const float inv = vnorm > 0 ? 1.0f / (2.0f * eps) : 0.0f;
        net->input_grads_only = 1;
        if (vnorm > 0) {
            e->ops->copy(e, w->theta, net->params, P * sizeof(float));
            for (int sign = 1; sign >= -1; sign -= 2) {
                e->ops->waxpy(e, net->params, (float)sign * eps, w->v, w->theta, P);
                syn_input_pass(net, s, w, x_syn, y_syn, cond_syn, Bs, ns, (float)sign * inv, 0.0f, 0.0f, grad_syn,
                               grad_cond);
            }
            e->ops->copy(e, net->params, w->theta, P * sizeof(float));
        }
        /* the distribution-matching term: an ordinary input gradient at the weights */
        if (dm_weight > 0)
            syn_input_pass(net, s, w, x_syn, y_syn, cond_syn, Bs, ns, 0.0f, dm_weight, 1.0f, grad_syn, grad_cond);
        net->input_grads_only = 0;
    }
    return total;
}
