/* The gradient-matching loss and its finite-difference Hessian-vector hypergradient, through
 * the engine table (every (P)-sized buffer is device memory of the net's engine). */
#include "condense/matching.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

/* the finite-difference step along a direction v: eps = FD_STEP / |v| (matching.h) */
#define FD_STEP 0.003

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
    w->fd = engine_xalloc_floats_raw(e, 2);
    w->dmid = engine_xalloc_floats_raw(e, (size_t)max_syn * Cm * hm * wm);
    w->max_real = max_real;
    w->max_syn = max_syn;
    match_work_reserve(w, 1);
    w->rows = xcalloc((size_t)net->lay.n_tensors, sizeof(EngineRows));
    w->nrows = layerwise_rows(&net->lay, w->rows);
    ddpm_scratch_create(&w->real, e, max_real, D);
    ddpm_scratch_create(&w->syn, e, max_syn, D);
}

void match_work_reserve(MatchWork *w, int K) {
    if (K <= w->k_cap) return;
    free(w->t_real);
    free(w->t_syn);
    free(w->acc_host);
    engine_free(w->eng, w->acc);
    w->t_real = xcalloc((size_t)K * w->max_real, sizeof(int64_t));
    w->t_syn = xcalloc((size_t)K * w->max_syn, sizeof(int64_t));
    w->acc_host = xcalloc(2 * (size_t)K, sizeof(double));
    w->acc = (double *)engine_xalloc_floats(w->eng, 4 * (size_t)K); /* 2 K doubles */
    w->k_cap = K;
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
    engine_free(e, w->fd);
    engine_free(e, w->acc);
    free(w->acc_host);
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

/* theta_tmp = theta; for sign +1, -1: theta = theta_tmp + sign eps v, then pass(sign);
 * theta restored. eps = w->fd[0] and 2 eps = w->fd[1] are computed on the device (fd_coef:
 * 0.003 / |v|, the step of the header), so nothing is read back. */
static void fd_begin(UNet *net, float *fd, float *theta_tmp, const float *v) {
    Engine *e = net->eng;
    const size_t P = net->lay.n_params;
    e->ops->fd_coef(e, fd, v, P, FD_STEP);
    e->ops->copy(e, theta_tmp, net->params, P * sizeof(float));
}

void ddpm_hessian_vector(UNet *net, const Schedule *s, DdpmScratch *w, float *theta_tmp, float *fd, const float *x,
                         const int64_t *t, const int64_t *y, const float *cond, const float *noise, int B,
                         const float *v, float scale, float *out) {
    Engine *e = net->eng;
    const size_t P = net->lay.n_params;
    fd_begin(net, fd, theta_tmp, v);
    engine_zero_floats(e, net->grads, P);
    for (int sign = 1; sign >= -1; sign -= 2) {
        e->ops->waxpy_at(e, net->params, fd, (float)sign, v, theta_tmp, P);
        ddpm_pass_div(net, s, w, x, t, y, cond, noise, B, (float)sign, fd + 1, NULL, NULL);
    }
    e->ops->copy(e, net->params, theta_tmp, P * sizeof(float));
    e->ops->axpy(e, out, scale, net->grads, P);
}

void ddpm_mixed_vector(UNet *net, const Schedule *s, DdpmScratch *w, float *theta_tmp, float *fd, const float *x,
                       const int64_t *t, const int64_t *y, const float *cond, const float *noise, int B,
                       const float *p, float scale, float *grad_x, float *grad_cond) {
    Engine *e = net->eng;
    const size_t P = net->lay.n_params;
    fd_begin(net, fd, theta_tmp, p);
    net->input_grads_only = 1;
    for (int sign = 1; sign >= -1; sign -= 2) {
        e->ops->waxpy_at(e, net->params, fd, (float)sign, p, theta_tmp, P);
        ddpm_pass_div(net, s, w, x, t, y, cond, noise, B, scale * (float)sign, fd + 1, grad_x, grad_cond);
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

/* dmid = scale * d/dmid_syn [dm |fr - fs|^2] for the last synthetic forward: the Cm
 * per-channel values (feature_gap), broadcast over (Bs, Cm, N) by the engine. */
static void dm_mid_gradient(const UNet *net, MatchWork *w, int Bs, float dm_weight, float scale) {
    Engine *e = net->eng;
    int Cm, hm, wm;
    unet_mid(net, &Cm, &hm, &wm);
    const size_t N = (size_t)hm * wm;
    mid_mean(net, Bs, w->feat_syn);
    e->ops->feature_gap(e, NULL, w->dm_vals, w->feat_real, w->feat_syn, Cm, scale * dm_weight * 2.0f,
                        (float)(Bs * N));
    e->ops->channel_fill(e, w->dmid, w->dm_vals, Bs, Cm, N);
}

/* One input-gradient pass of the synthetic batch at the current weights: grad_syn +=
 * mult / div[0] * dL_syn/dx (div NULL: mult dL_syn/dx) plus the DM term's gradient times
 * dm_scale, grad_cond likewise. */
static void syn_input_pass(UNet *net, const Schedule *s, MatchWork *w, const int64_t *t_syn, const float *x_syn,
                           const int64_t *y_syn, const float *cond_syn, int Bs, const float *noise, float mult,
                           const float *div, float dm_weight, float dm_scale, float *grad_syn, float *grad_cond) {
    Engine *e = net->eng;
    DdpmScratch *sc = &w->syn;
    const size_t D = sc->D, n = (size_t)Bs * D;
    e->ops->q_sample(e, sc->xt, x_syn, noise, t_syn, s->alpha_bar, Bs, D);
    unet_forward(net, sc->xt, t_syn, y_syn, cond_syn, Bs, sc->eps);
    ddpm_scratch_zero(sc, n, 1); /* deps and dxt */
    if (div)
        e->ops->mse_backward_div(e, sc->deps, sc->eps, noise, n, mult, div);
    else
        e->ops->mse_backward(e, sc->deps, sc->eps, noise, n, mult);
    if (dm_weight > 0) dm_mid_gradient(net, w, Bs, dm_weight, dm_scale);
    unet_backward(net, sc->deps, dm_weight > 0 ? w->dmid : NULL, sc->dxt, cond_syn ? grad_cond : NULL);
    e->ops->q_sample_backward(e, grad_syn, sc->dxt, t_syn, s->alpha_bar, Bs, D);
}

typedef struct {
    UNet *net;
    const Schedule *s;
    MatchWork *w;
    const float *x_real, *x_syn, *cond_syn, *noise_real, *noise_syn;
    const int64_t *y_real, *y_syn;
    int Br, Bs, K;
    float dm_weight;
    float *grad_syn, *grad_cond;
} MatchCall;

/* Every op of one matching_loss_grad call, none of which returns a value to the host: per
 * timestep k the distance goes to w->acc[2k] and the DM gap to w->acc[2k + 1] (device). */
static void match_ops(void *ctx) {
    const MatchCall *c = ctx;
    UNet *net = c->net;
    MatchWork *w = c->w;
    const Schedule *s = c->s;
    Engine *e = net->eng;
    const size_t P = net->lay.n_params, D = w->syn.D;
    const int gm = !w->no_gradient_matching, dm = c->dm_weight > 0;
    int Cm;
    unet_mid(net, &Cm, NULL, NULL);
    for (int k = 0; k < c->K; k++) {
        const int64_t *tr = w->t_real + (size_t)k * w->max_real, *ts = w->t_syn + (size_t)k * w->max_syn;
        const float *nr = c->noise_real + (size_t)k * c->Br * D, *ns = c->noise_syn + (size_t)k * c->Bs * D;
        double *acc = w->acc + 2 * (size_t)k;

        /* the two weight gradients straight into g_real and g_syn (net->grads pointed at
         * each in turn: no copies); net->grads is scratch to every caller */
        float *const grads = net->grads;
        net->grads = w->g_real;
        engine_zero_floats(e, w->g_real, P);
        ddpm_pass(net, s, &w->real, c->x_real, tr, c->y_real, NULL, nr, c->Br, gm, 1.0f, NULL, NULL);
        if (dm) mid_mean(net, c->Br, w->feat_real);

        net->grads = w->g_syn;
        engine_zero_floats(e, w->g_syn, P);
        ddpm_pass(net, s, &w->syn, c->x_syn, ts, c->y_syn, c->cond_syn, ns, c->Bs, gm, 1.0f, NULL, NULL);
        net->grads = grads;
        if (dm) {
            mid_mean(net, c->Bs, w->feat_syn);
            e->ops->feature_gap(e, acc + 1, NULL, w->feat_real, w->feat_syn, Cm, 0.0f, 1.0f);
        }
        if (gm)
            e->ops->layerwise_distance_to(e, w->rows, w->nrows, w->g_real, w->g_syn, w->want_dtheta ? w->v_real : NULL,
                                          c->grad_syn || w->want_dtheta ? w->v : NULL, P, acc);
        if (w->want_dtheta && gm) {
            /* d D / d theta = H_real v_real + H_syn v_syn (the DM term's is left out) */
            ddpm_hessian_vector(net, s, &w->real, w->theta, w->fd, c->x_real, tr, c->y_real, NULL, nr, c->Br,
                                w->v_real, 1.0f, w->dtheta);
            ddpm_hessian_vector(net, s, &w->syn, w->theta, w->fd, c->x_syn, ts, c->y_syn, c->cond_syn, ns, c->Bs,
                                w->v, 1.0f, w->dtheta);
        }
        if (!c->grad_syn) continue;

        /* central difference of grad_x L_syn along v (eps = 0 when v = 0: the passes add zeros) */
        net->input_grads_only = 1;
        if (gm) {
            fd_begin(net, w->fd, w->theta, w->v);
            for (int sign = 1; sign >= -1; sign -= 2) {
                e->ops->waxpy_at(e, net->params, w->fd, (float)sign, w->v, w->theta, P);
                syn_input_pass(net, s, w, ts, c->x_syn, c->y_syn, c->cond_syn, c->Bs, ns, (float)sign, w->fd + 1,
                               0.0f, 0.0f, c->grad_syn, c->grad_cond);
            }
            e->ops->copy(e, net->params, w->theta, P * sizeof(float));
        }
        /* the distribution-matching term: an ordinary input gradient at the weights */
        if (dm)
            syn_input_pass(net, s, w, ts, c->x_syn, c->y_syn, c->cond_syn, c->Bs, ns, 0.0f, NULL, c->dm_weight, 1.0f,
                           c->grad_syn, c->grad_cond);
        net->input_grads_only = 0;
    }
}

static uint64_t word_of(const void *p) { return (uint64_t)(uintptr_t)p; }

double matching_loss_grad(UNet *net, const Schedule *s, MatchWork *w, const float *x_real,
                          const int64_t *y_real, int Br, const float *x_syn, const int64_t *y_syn,
                          const float *cond_syn, int Bs, const int64_t *timesteps, int K,
                          const float *noise_real, const float *noise_syn, float dm_weight,
                          float *grad_syn, float *grad_cond) {
    Engine *e = net->eng;
    D2C_CHECK(Br >= 1 && Br <= w->max_real && Bs >= 1 && Bs <= w->max_syn && K >= 1);
    match_work_reserve(w, K);
    /* the host half: each timestep's t arrays (its own, so a replay's uploads read them all) */
    for (int k = 0; k < K; k++) {
        for (int b = 0; b < Br; b++) w->t_real[(size_t)k * w->max_real + b] = timesteps[k];
        for (int b = 0; b < Bs; b++) w->t_syn[(size_t)k * w->max_syn + b] = timesteps[k];
    }
    MatchCall c = {net, s, w, x_real, x_syn, cond_syn, noise_real, noise_syn, y_real, y_syn, Br, Bs, K, dm_weight,
                   grad_syn, grad_cond};
    uint32_t dm_bits;
    memcpy(&dm_bits, &dm_weight, sizeof dm_bits);
    const uint64_t flags = (uint64_t)w->no_gradient_matching | (uint64_t)w->want_dtheta << 1 | (uint64_t)dm_bits << 32;
    /* every buffer and host array the ops use; net's and w's own buffers are fixed while
     * they live (unet_destroy forgets the records; w's t arrays move only with K) */
    const uint64_t key[19] = {0x6d61746368696e67u /* "matching" */, word_of(net->acts), word_of(net->params),
                              word_of(net->grads), word_of(w), word_of(s->alpha_bar), word_of(x_real),
                              word_of(y_real), word_of(x_syn), word_of(y_syn), word_of(cond_syn),
                              word_of(noise_real), word_of(noise_syn), word_of(grad_syn), word_of(grad_cond),
                              word_of(w->t_real), word_of(w->t_syn),
                              (uint64_t)Br | (uint64_t)Bs << 21 | (uint64_t)K << 42, flags};
    e->ops->graph_run(e, key, 19, match_ops, &c);
    /* the one read-back: the K distances and DM gaps, added in timestep order */
    e->ops->download(e, w->acc_host, w->acc, 2 * (size_t)K * sizeof(double));
    double total = 0;
    for (int k = 0; k < K; k++) {
        if (!w->no_gradient_matching) total += w->acc_host[2 * k];
        total += dm_weight * (dm_weight > 0 ? w->acc_host[2 * k + 1] : 0.0);
    }
    return total;
}
