/* Adam and gradient clipping through the engine table: the host keeps the step count and
 * the bias corrections, the engine runs the flat loops. */
#include "model/adam.h"

#include <math.h>
#include <string.h>

void adam_create(Adam *opt, Engine *eng, size_t n, float lr) {
    memset(opt, 0, sizeof *opt);
    opt->eng = eng ? eng : engine_cpu_default();
    opt->lr = lr;
    opt->beta1 = 0.9f;
    opt->beta2 = 0.999f;
    opt->eps = 1e-8f;
    opt->n = n;
    opt->m = engine_xalloc_floats(opt->eng, n);
    opt->v = engine_xalloc_floats(opt->eng, n);
}

void adam_destroy(Adam *opt) {
    if (opt->eng) {
        engine_free(opt->eng, opt->m);
        engine_free(opt->eng, opt->v);
    }
    memset(opt, 0, sizeof *opt);
}

void adam_step(Adam *opt, float *params, const float *grads) {
    opt->step++;
    const double bc1 = 1.0 - pow((double)opt->beta1, (double)opt->step);
    const double bc2 = 1.0 - pow((double)opt->beta2, (double)opt->step);
    const float step_size = (float)(opt->lr / bc1);
    const float bc2_sqrt = (float)sqrt(bc2);
    opt->eng->ops->adam_step(opt->eng, params, grads, opt->m, opt->v, opt->n, opt->beta1, opt->beta2, opt->eps,
                             step_size, bc2_sqrt);
}

double clip_grad_norm(Engine *eng, float *grads, size_t n, double max_norm) {
    return eng->ops->clip_grad_norm(eng, grads, n, max_norm);
}
