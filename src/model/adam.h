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
} Adam;

/* eng NULL: engine_cpu_default(). */
void adam_create(Adam *opt, Engine *eng, size_t n, float lr);
void adam_destroy(Adam *opt);
/* One step: params -= lr * mhat / (sqrt(vhat) + eps), as torch.optim.Adam (device buffers). */
void adam_step(Adam *opt, float *params, const float *grads);

/* Global L2 norm of grads (computed in double); if it exceeds max_norm > 0, scales grads
 * by max_norm / (norm + 1e-6) as torch.nn.utils.clip_grad_norm_. Returns the norm
 * before clipping. grads: device memory of eng. */
double clip_grad_norm(Engine *eng, float *grads, size_t n, double max_norm);

#endif
