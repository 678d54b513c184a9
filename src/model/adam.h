/* Adam (PyTorch's formulation, no weight decay) and global gradient-norm clipping over
 * a flat parameter buffer, on an engine (the moments live in its memory). */
#ifndef D2C_MODEL_ADAM_H
#define D2C_MODEL_ADAM_H

#include <stddef.h>

#include "engine/backend.h"

typedef struct {
    Engine *eng;      /* where m, v (and the parameters stepped) live */
    float lr, beta1, beta2, eps;
    long step;        /* steps taken so far */
    size_t n;         /* floats */
    float *m, *v;     /* (n) first and second moments, device memory, zeroed */
    float coef_host[2]; /* the step's [lr / (1 - b1^t), sqrt(1 - b2^t)] (adam_prepare) */
    float *coef;      /* (2) their engine copy, which the table's adam_step reads */
} Adam;

/* eng NULL: engine_cpu_default(). */
void adam_create(Adam *opt, Engine *eng, size_t n, float lr);
void adam_destroy(Adam *opt);
/* One step: params -= lr * mhat / (sqrt(vhat) + eps), as torch.optim.Adam (device buffers):
 * adam_prepare, then adam_apply. */
void adam_step(Adam *opt, float *params, const float *grads);
/* The step's host half: counts the step and computes its bias corrections with opt->lr
 * into coef_host. */
void adam_prepare(Adam *opt);
/* The step's engine half: uploads coef_host and runs the update. A record of it replayed
 * by graph_run (engine/backend.h) takes the coef_host of that time, so a caller that
 * replays calls adam_prepare before each replay. */
void adam_apply(Adam *opt, float *params, const float *grads);

/* Global L2 norm of grads (computed in double); if it exceeds max_norm > 0, scales grads
 * by max_norm / (norm + 1e-6) as torch.nn.utils.clip_grad_norm_. Returns the norm
 * before clipping. grads: device memory of eng. */
double clip_grad_norm(Engine *eng, float *grads, size_t n, double max_norm);

#endif
