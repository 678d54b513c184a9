/* Adam and gradient clipping, flat loops over the parameter buffer. */
#include "model/adam.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "engine/kernels.h"

void adam_create(Adam *opt, size_t n, float lr) {
    memset(opt, 0, sizeof *opt);
    opt->lr = lr;
    opt->beta1 = 0.9f;
    opt->beta2 = 0.999f;
    opt->eps = 1e-8f;
    opt->n = n;
    opt->m = xmalloc_floats(n);
    opt->v = xmalloc_floats(n);
    memset(opt->m, 0, n * sizeof(float));
    memset(opt->v, 0, n * sizeof(float));
}

void adam_destroy(Adam *opt) {
    free(opt->m);
    free(opt->v);
    memset(opt, 0, sizeof *opt);
}

void adam_step(Adam *opt, float *params, const float *grads) {
    opt->step++;
    const float b1 = opt->beta1, b2 = opt->beta2, eps = opt->eps;
    const double bc1 = 1.0 - pow((double)b1, (double)opt->step);
    const double bc2 = 1.0 - pow((double)b2, (double)opt->step);
    const float step_size = (float)(opt->lr / bc1);
    const float bc2_sqrt = (float)sqrt(bc2);
    float *m = opt->m, *v = opt->v;
    const long n = (long)opt->n;
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) {
        float g = grads[i];
        m[i] = m[i] * b1 + g * (1.0f - b1);
        v[i] = v[i] * b2 + g * g * (1.0f - b2);
        float denom = sqrtf(v[i]) / bc2_sqrt + eps;
        params[i] -= step_size * (m[i] / denom);
    }
}

double clip_grad_norm(float *grads, size_t n, double max_norm) {
    double norm = sqrt(vec_sum_sq(grads, n));
    if (max_norm > 0 && norm > max_norm) {
        float coef = (float)(max_norm / (norm + 1e-6));
        for (size_t i = 0; i < n; i++) grads[i] *= coef;
    }
    return norm;
}
