/* Timestep-aware gradient matching (the spec's matching_loss) and its hypergradient
 * d loss / d synthetic images (and conditioning vectors).
 *
 * For each selected timestep t_k: g_real = dL_ddpm/dtheta on the real batch, g_syn the
 * same on the synthetic batch, loss += layerwise_distance(g_real, g_syn), plus
 * dm_weight |mean mid(x_real,t) - mean mid(x_syn,t)|^2.
 *
 * The hypergradient (dD/dg_syn)^T (d g_syn / d x_syn) is a Hessian-vector product:
 * with v = dD/dg_syn in parameter space, it equals d/deps grad_x L_syn(x, theta + eps v)
 * at eps = 0, which we take by a central difference of two input-gradient passes at
 * theta +- eps v. Truncation error grows as eps^2 and float32 rounding as 1/eps; with
 * eps = 0.003 / |v| both stay under 1e-3 relative on the spec model (test_hypergrad
 * measures 2e-4 to 6e-4 against float64 double backpropagation; 0.01 / |v| reached 4e-3
 * and 0.03 / |v| 3e-2 on the most curved case).
 * The distribution-matching term's gradient is folded into the same two passes (half in
 * each), so the whole hypergradient costs one real pass, one synthetic pass and two
 * synthetic input-gradient passes per timestep. Shapes: Br real and Bs synthetic images
 * of D values; K timesteps; P parameters. */
#ifndef D2C_CONDENSE_MATCHING_H
#define D2C_CONDENSE_MATCHING_H

#include <stdint.h>

#include "diffusion/ddpm.h"
#include "diffusion/schedule.h"
#include "model/unet.h"

/* Every float buffer is device memory of the net's engine; the timestep arrays and
 * acc_host are host. */
typedef struct {
    Engine *eng;
    float *g_real;      /* (P) */
    float *g_syn;       /* (P) */
    float *v;           /* (P) dD / dg_syn */
    float *theta;       /* (P) saved weights while perturbed */
    float *feat_real;   /* (Cmid) */
    float *feat_syn;    /* (Cmid) */
    float *dm_vals;     /* (Cmid) the DM term's per-channel gradient */
    float *fd;          /* (2) the finite-difference step [eps, 2 eps] (EngineOps.fd_coef) */
    double *acc;        /* (2 k_cap) per timestep: the layer-wise distance, the DM gap */
    double *acc_host;   /* (2 k_cap) their host copy */
    EngineRows *rows;   /* the layout's matrix tensors, for the layer-wise distance */
    int nrows;
    float *dmid;        /* (Bs, Cmid, h, w) */
    int64_t *t_real, *t_syn; /* (k_cap, max_real) and (k_cap, max_syn): timestep k's rows at
                              * k max_real and k max_syn; callers may use row 0 as scratch */
    int max_real, max_syn, k_cap;
    DdpmScratch real, syn;
    int no_gradient_matching; /* 1: distribution matching alone (the DM baseline) */
    int want_dtheta;    /* 1: also accumulate d loss / d theta into dtheta (implicit path) */
    float *dtheta;      /* (P) */
    float *v_real;      /* (P) dD / dg_real */
} MatchWork;

void match_work_create(MatchWork *w, const UNet *net, int max_real, int max_syn);
void match_work_free(MatchWork *w);
/* Room for K timesteps in t_real, t_syn and acc (they move when K grows). */
void match_work_reserve(MatchWork *w, int K);

/* The matrix tensors (ndim >= 2) of lay as rows (rows: room for lay->n_tensors); returns
 * their count. */
int layerwise_rows(const UNetLayout *lay, EngineRows *rows);
/* Layer-wise distance of the spec over the matrix tensors (ndim >= 2); with v != NULL
 * also writes v = d distance / d g_syn (zeros for 1-d tensors). In double per row.
 * Buffers: device memory of e. */
double layerwise_distance(Engine *e, const UNetLayout *lay, const float *g_real, const float *g_syn, float *v);
/* The same with both derivatives: v_syn = dD/dg_syn and v_real = dD/dg_real (either NULL). */
double layerwise_distance2(Engine *e, const UNetLayout *lay, const float *g_real, const float *g_syn, float *v_syn,
                           float *v_real);

/* out (P) += scale * H v, H the Hessian in the weights of the DDPM loss of this batch,
 * by a central difference of weight gradients at theta +- eps v (eps = 0.003 / |v|,
 * computed on the device into fd (2 floats of engine memory): nothing is read back).
 * net->grads is clobbered; net->params is restored bit for bit (theta_tmp (P) holds the
 * copy). v == 0 adds zeros. */
void ddpm_hessian_vector(UNet *net, const Schedule *s, DdpmScratch *w, float *theta_tmp, float *fd, const float *x,
                         const int64_t *t, const int64_t *y, const float *cond, const float *noise, int B,
                         const float *v, float scale, float *out);
/* grad_x (B, D) += scale * d/dx <dL/dtheta(x, theta), p>: the mixed second derivative of
 * the DDPM loss along p, by input gradients at theta +- eps p; grad_cond likewise. */
void ddpm_mixed_vector(UNet *net, const Schedule *s, DdpmScratch *w, float *theta_tmp, float *fd, const float *x,
                       const int64_t *t, const int64_t *y, const float *cond, const float *noise, int B,
                       const float *p, float scale, float *grad_x, float *grad_cond);

/* One class's matching loss at K timesteps, its ops issued through the engine's graph_run
 * (replayed as one CUDA graph from the third call with the same buffers); the loss is the
 * one value read back. noise_real (K, Br, D), noise_syn (K, Bs, D).
 * y_syn or cond_syn (Bs, E) condition the synthetic batch. When grad_syn != NULL,
 * grad_syn (Bs, D) += d loss / d x_syn and, with cond_syn, grad_cond (Bs, E) += d loss /
 * d cond. net->params is restored bit for bit; net->grads is clobbered. */
double matching_loss_grad(UNet *net, const Schedule *s, MatchWork *w, const float *x_real,
                          const int64_t *y_real, int Br, const float *x_syn, const int64_t *y_syn,
                          const float *cond_syn, int Bs, const int64_t *timesteps, int K,
                          const float *noise_real, const float *noise_syn, float dm_weight,
                          float *grad_syn, float *grad_cond);

#endif
