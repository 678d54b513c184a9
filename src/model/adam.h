/* Adam (PyTorch's formulation, no weight decay) and global gradient-norm clipping over
 * a flat parameter buffer. */
#ifndef D2C_MODEL_ADAM_H
#define D2C_MODEL_ADAM_H

#include <stddef.h>

typedef struct {
    float lr, beta1, beta2, eps;
    long step;        /* steps taken so far */
    size_t n;         /* floats */
    float *m, *v;     /* (n) first and second moments */
} Adam;

void adam_create(Adam *opt, size_t n, float lr);
void adam_destroy(Adam *opt);
/* One step: params -= lr * mhat / (sqrt(vhat) + eps), as torch.optim.Adam. */
void adam_step(Adam *opt, float *params, const float *grads);

/* Global L2 norm of grads (computed in double); if it exceeds max_norm > 0, scales grads
 * by max_norm / (norm + 1e-6) as torch.nn.utils.clip_grad_norm_. Returns the norm
 * before clipping. */
double clip_grad_norm(float *grads, size_t n, double max_norm);

#endif
