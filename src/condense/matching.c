/* The gradient-matching loss and its finite-difference Hessian-vector hypergradient. */
#include "condense/matching.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "engine/kernels.h"

void match_work_create(MatchWork *w, const UNet *net, int max_real, int max_syn) {
    memset(w, 0, sizeof *w);
    const size_t P = net->lay.n_params, D = (size_t)net->lay.cfg.in_channels * net->H * net->W;
    int Cm, hm, wm;
    unet_mid(net, &Cm, &hm, &wm);
    w->g_real = xmalloc_floats(P);
    w->g_syn = xmalloc_floats(P);
    w->v = xmalloc_floats(P);
    w->theta = xmalloc_floats(P);
    w->dtheta = xmalloc_floats(P);
    w->v_real = xmalloc_floats(P);
    w->feat_real = xmalloc_floats((size_t)Cm);
    w->feat_syn = xmalloc_floats((size_t)Cm);
    w->dmid = xmalloc_floats((size_t)max_syn * Cm * hm * wm);
    w->t_real = xcalloc((size_t)max_real, sizeof(int64_t));
    w->t_syn = xcalloc((size_t)max_syn, sizeof(int64_t));
    ddpm_scratch_create(&w->real, max_real, D);
    ddpm_scratch_create(&w->syn, max_syn, D);
}

void match_work_free(MatchWork *w) {
    free(w->g_real);
    free(w->g_syn);
    free(w->v);
    free(w->theta);
    free(w->dtheta);
    free(w->v_real);
    free(w->feat_real);
    free(w->feat_syn);
    free(w->dmid);
    free(w->t_real);
    free(w->t_syn);
    ddpm_scratch_free(&w->real);
    ddpm_scratch_free(&w->syn);
}

double layerwise_distance2(const UNetLayout *lay, const float *g_real, const float *g_syn, float *v_syn,
                           float *v_real) {
    double dist = 0;
    if (v_syn) memset(v_syn, 0, lay->n_params * sizeof(float));
    if (v_real) memset(v_real, 0, lay->n_params * sizeof(float));
    for (int i = 0; i < lay->n_tensors; i++) {
        const ParamTensor *t = &lay->tensors[i];
        if (!t->matrix) continue;
        const int rows = (int)t->shape[0];
        const size_t cols = t->count / (size_t)rows;
        for (int r = 0; r < rows; r++) {
            const size_t o = t->offset + (size_t)r * cols;
            const float *a = g_real + o, *b = g_syn + o;
            double dot = 0, na = 0, nb = 0;
            for (size_t j = 0; j < cols; j++) {
                dot += (double)a[j] * b[j];
                na += (double)a[j] * a[j];
                nb += (double)b[j] * b[j];
            }
            na = sqrt(na);
            nb = sqrt(nb);
            const double den = na * nb + 1e-6;
            dist += 1.0 - dot / den;
            /* d(1 - dot/den)/db = -a/den + dot * na * (b / nb) / den^2, and symmetrically */
            if (v_syn) {
                const double cb = nb > 0 ? dot * na / (nb * den * den) : 0.0;
                for (size_t j = 0; j < cols; j++) v_syn[o + j] = (float)(-(double)a[j] / den + cb * b[j]);
            }
            if (v_real) {
                const double ca = na > 0 ? dot * nb / (na * den * den) : 0.0;
                for (size_t j = 0; j < cols; j++) v_real[o + j] = (float)(-(double)b[j] / den + ca * a[j]);
            }
        }
    }
    return dist;
}

double layerwise_distance(const UNetLayout *lay, const float *g_real, const float *g_syn, float *v) {
    return layerwise_distance2(lay, g_real, g_syn, v, NULL);
}

static float fd_step(const float *v, size_t P) {
    double n = sqrt(vec_sum_sq(v, P));
    return n > 0 ? (float)(0.003 / n) : 0.0f;
}

void ddpm_hessian_vector(UNet *net, const Schedule *s, DdpmScratch *w, float *theta_tmp, const float *x,
                         const int64_t *t, const int64_t *y, const float *cond, const float *noise, int B,
                         const float *v, float scale, float *out) {
    const size_t P = net->lay.n_params;
    const float eps = fd_step(v, P);
    if (eps == 0) return;
    memcpy(theta_tmp, net->params, P * sizeof(float));
    memset(net->grads, 0, P * sizeof(float));
    for (int sign = 1; sign >= -1; sign -= 2) {
        for (size_t i = 0; i < P; i++) net->params[i] = theta_tmp[i] + (float)sign * eps * v[i];
        ddpm_loss(net, s, w, x, t, y, cond, noise, B, 1, (float)sign / (2.0f * eps), NULL, NULL);
    }
    memcpy(net->params, theta_tmp, P * sizeof(float));
    vec_axpy(out, scale, net->grads, P);
}

void ddpm_mixed_vector(UNet *net, const Schedule *s, DdpmScratch *w, float *theta_tmp, const float *x,
                       const int64_t *t, const int64_t *y, const float *cond, const float *noise, int B,
                       const float *p, float scale, float *grad_x, float *grad_cond) {
    const size_t P = net->lay.n_params;
    const float eps = fd_step(p, P);
    if (eps == 0) return;
    memcpy(theta_tmp, net->params, P * sizeof(float));
    net->input_grads_only = 1;
    for (int sign = 1; sign >= -1; sign -= 2) {
        for (size_t i = 0; i < P; i++) net->params[i] = theta_tmp[i] + (float)sign * eps * p[i];
        ddpm_loss(net, s, w, x, t, y, cond, noise, B, 1, scale * (float)sign / (2.0f * eps), grad_x, grad_cond);
    }
    net->input_grads_only = 0;
    memcpy(net->params, theta_tmp, P * sizeof(float));
}

/* Per-channel mean of the middle features over images and positions: feat (Cm). */
static void mid_mean(const UNet *net, int B, float *feat) {
    int Cm, hm, wm;
    const float *mid = unet_mid(net, &Cm, &hm, &wm);
    const size_t N = (size_t)hm * wm;
    for (int c = 0; c < Cm; c++) {
        double s = 0;
        for (int b = 0; b < B; b++)
            for (size_t i = 0; i < N; i++) s += mid[((size_t)b * Cm + c) * N + i];
        feat[c] = (float)(s / ((double)B * N));
    }
}

/* dmid = scale * d/dmid_syn [dm |fr - fs|^2] for the last synthetic forward. */
static void dm_mid_gradient(const UNet *net, MatchWork *w, int Bs, float dm_weight, float scale) {
    int Cm, hm, wm;
    unet_mid(net, &Cm, &hm, &wm);
    const size_t N = (size_t)hm * wm;
    mid_mean(net, Bs, w->feat_syn);
    for (int c = 0; c < Cm; c++) {
        float g = scale * dm_weight * 2.0f * (w->feat_syn[c] - w->feat_real[c]) / (float)(Bs * N);
        for (int b = 0; b < Bs; b++)
            for (size_t i = 0; i < N; i++) w->dmid[((size_t)b * Cm + c) * N + i] = g;
    }
}

/* One input-gradient pass of the synthetic batch at the current weights: grad_syn +=
 * scale * dL_syn/dx (+ the DM term's gradient times dm_scale), grad_cond likewise. */
static void syn_input_pass(UNet *net, const Schedule *s, MatchWork *w, const float *x_syn, const int64_t *y_syn,
                           const float *cond_syn, int Bs, const float *noise, float scale, float dm_weight,
                           float dm_scale, float *grad_syn, float *grad_cond) {
    DdpmScratch *sc = &w->syn;
    const size_t D = sc->D, n = (size_t)Bs * D;
    q_sample(sc->xt, x_syn, noise, w->t_syn, s, Bs, D);
    unet_forward(net, sc->xt, w->t_syn, y_syn, cond_syn, Bs, sc->eps);
    vec_zero(sc->deps, n);
    mse_backward(sc->deps, sc->eps, noise, n, scale);
    if (dm_weight > 0) dm_mid_gradient(net, w, Bs, dm_weight, dm_scale);
    vec_zero(sc->dxt, n);
    unet_backward(net, sc->deps, dm_weight > 0 ? w->dmid : NULL, sc->dxt, cond_syn ? grad_cond : NULL);
    for (int b = 0; b < Bs; b++)
        vec_axpy(grad_syn + (size_t)b * D, sqrtf(s->alpha_bar[w->t_syn[b]]), sc->dxt + (size_t)b * D, D);
}

double matching_loss_grad(UNet *net, const Schedule *s, MatchWork *w, const float *x_real,
                          const int64_t *y_real, int Br, const float *x_syn, const int64_t *y_syn,
                          const float *cond_syn, int Bs, const int64_t *timesteps, int K,
                          const float *noise_real, const float *noise_syn, float dm_weight,
                          float *grad_syn, float *grad_cond) {
    const size_t P = net->lay.n_params, D = w->syn.D;
    int Cm;
    unet_mid(net, &Cm, NULL, NULL);
    double total = 0;
    for (int k = 0; k < K; k++) {
        for (int b = 0; b < Br; b++) w->t_real[b] = timesteps[k];
        for (int b = 0; b < Bs; b++) w->t_syn[b] = timesteps[k];
        const float *nr = noise_real + (size_t)k * Br * D, *ns = noise_syn + (size_t)k * Bs * D;

        const int gm = !w->no_gradient_matching;
        memset(net->grads, 0, P * sizeof(float));
        ddpm_loss(net, s, &w->real, x_real, w->t_real, y_real, NULL, nr, Br, gm, 1.0f, NULL, NULL);
        memcpy(w->g_real, net->grads, P * sizeof(float));
        if (dm_weight > 0) mid_mean(net, Br, w->feat_real);

        memset(net->grads, 0, P * sizeof(float));
        ddpm_loss(net, s, &w->syn, x_syn, w->t_syn, y_syn, cond_syn, ns, Bs, gm, 1.0f, NULL, NULL);
        memcpy(w->g_syn, net->grads, P * sizeof(float));
        double dm = 0;
        if (dm_weight > 0) {
            mid_mean(net, Bs, w->feat_syn);
            for (int c = 0; c < Cm; c++) {
                double d = (double)w->feat_real[c] - w->feat_syn[c];
                dm += d * d;
            }
        }
        if (!w->no_gradient_matching)
            total += layerwise_distance2(&net->lay, w->g_real, w->g_syn, grad_syn || w->want_dtheta ? w->v : NULL,
                                         w->want_dtheta ? w->v_real : NULL);
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
        const double vnorm = w->no_gradient_matching ? 0.0 : sqrt(vec_sum_sq(w->v, P));
        if (vnorm == 0 && dm_weight <= 0) continue;
        const float eps = vnorm > 0 ? (float)(0.003 / vnorm) : 0.0f;
        const float inv = vnorm > 0 ? 1.0f / (2.0f * eps) : 0.0f;
        net->input_grads_only = 1;
        if (vnorm > 0) {
            memcpy(w->theta, net->params, P * sizeof(float));
            for (int sign = 1; sign >= -1; sign -= 2) {
                for (size_t i = 0; i < P; i++) net->params[i] = w->theta[i] + (float)sign * eps * w->v[i];
                syn_input_pass(net, s, w, x_syn, y_syn, cond_syn, Bs, ns, (float)sign * inv, 0.0f, 0.0f, grad_syn,
                               grad_cond);
            }
            memcpy(net->params, w->theta, P * sizeof(float));
        }
        /* the distribution-matching term: an ordinary input gradient at the weights */
        if (dm_weight > 0)
            syn_input_pass(net, s, w, x_syn, y_syn, cond_syn, Bs, ns, 0.0f, dm_weight, 1.0f, grad_syn, grad_cond);
        net->input_grads_only = 0;
    }
    return total;
}
