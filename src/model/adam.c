/* Adam and gradient clipping through the engine table: the host keeps the step count and
 * computes the bias corrections, the engine reads them from its memory and runs the flat
 * loops. */
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
    opt->coef = engine_xalloc_floats(opt->eng, 2);
}

void adam_destroy(Adam *opt) {
    if (opt->eng) {
        engine_free(opt->eng, opt->m);
        engine_free(opt->eng, opt->v);
        engine_free(opt->eng, opt->coef);
    }
    memset(opt, 0, sizeof *opt);
}

void adam_prepare(Adam *opt) {
    opt->step++;
    const double bc1 = 1.0 - pow((double)opt->beta1, (double)opt->step);
    const double bc2 = 1.0 - pow((double)opt->beta2, (double)opt->step);
    opt->coef_host[0] = (float)(opt->lr / bc1);
    opt->coef_host[1] = (float)sqrt(bc2);
}

void adam_apply(Adam *opt, float *params, const float *grads) {
    Engine *e = opt->eng;
    engine_upload_floats(e, opt->coef, opt->coef_host, 2);
    e->ops->adam_step(e, params, grads, opt->m, opt->v, opt->n, opt->beta1, opt->beta2, opt->eps, opt->coef);
}

void adam_step(Adam *opt, float *params, const float *grads) {
    adam_prepare(opt);
    adam_apply(opt, params, grads);
}

double clip_grad_norm(Engine *eng, float *grads, size_t n, double max_norm) {
    return eng->ops->clip_grad_norm(eng, grads, n, max_norm);
}
