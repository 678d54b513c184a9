/* d2c_sampler (d2c.h): DDIM/DDPM images from a model through diffusion/generate.h, the
 * same batch loop and seeded noise as `d2c sample`. The network is made at the first run,
 * sized for min(batch, n) images, and remade only when a later run needs more. */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "core/util.h"
#include "diffusion/generate.h"

/* The first version of the struct ends at its last field (d2c.h "ABI"): fields added
 * later are only appended, so older callers' struct_size stays at least this. */
#define D2C_SAMPLER_OPTIONS_V1_SIZE (offsetof(d2c_sampler_options, batch) + sizeof(int))

#define SAMPLE_MAX_IMAGES 10000000 /* as `d2c sample --n` */

struct d2c_sampler {
    ModelInfo info; /* config and schedule; train_json not kept */
    float *weights; /* (n_params) */
    size_t n_params;
    SamplerKind kind;
    int steps, batch;
    float guidance;
    Generator gen;  /* gen.batch == 0 until the first run */
    Engine *eng;    /* the options' device */
};

void d2c_sampler_options_init(d2c_sampler_options *opt) {
    if (!opt) return;
    memset(opt, 0, sizeof *opt);
    opt->struct_size = sizeof *opt;
    opt->sampler = SAMPLER_NAMES[SAMPLER_DDIM];
    opt->steps = 50;
    opt->guidance = 1.0;
    opt->batch = 128;
}

int d2c_sampler_create(d2c_sampler **out, const d2c_model *model, const d2c_sampler_options *user) {
    const char *fn = "d2c_sampler_create";
    API_NOT_NULL(fn, out, "out");
    *out = NULL;
    API_NOT_NULL(fn, model, "the model handle");
    d2c_sampler_options o;
    d2c_sampler_options_init(&o);
    if (user) D2C_TRY(api_read_options(&o, sizeof o, D2C_SAMPLER_OPTIONS_V1_SIZE, user, "d2c_sampler_options"));
    SamplerKind kind = SAMPLER_DDIM;
    if (o.sampler) D2C_TRY(d2c_error_context(sampler_parse(o.sampler, &kind), "%s: sampler: ", fn));
    D2C_TRY(api_check_count(fn, "steps", o.steps, 1000));
    D2C_TRY(api_check_count(fn, "batch", o.batch, 4096));
    if (!(o.guidance >= -100 && o.guidance <= 100))
        return d2c_error(D2C_ERR_INPUT, "%s: guidance must be in [-100, 100], got %g", fn, o.guidance);
    Engine *eng;
    D2C_TRY(api_open_engine(fn, o.device, &eng));
    d2c_sampler *s = xcalloc(1, sizeof *s);
    s->eng = eng;
    s->info = model->info;
    s->info.train_json = NULL;
    s->n_params = model->lay->n_params;
    s->weights = d2c_try_malloc(s->n_params * sizeof(float));
    if (!s->weights) {
        api_close_engine(s->eng);
        free(s);
        return d2c_error(D2C_ERR_FAIL, "%s: out of memory for %zu weights", fn, model->lay->n_params);
    }
    memcpy(s->weights, model->weights, s->n_params * sizeof(float));
    s->kind = kind;
    s->steps = o.steps;
    s->batch = o.batch;
    s->guidance = (float)o.guidance;
    *out = s;
    return D2C_OK;
}

void d2c_sampler_free(d2c_sampler *s) {
    if (!s) return;
    generator_free(&s->gen);
    api_close_engine(s->eng);
    free(s->weights);
    free(s);
}

int d2c_sampler_shape(const d2c_sampler *s, int *c, int *h, int *w) {
    API_NOT_NULL("d2c_sampler_shape", s, "the sampler handle");
    if (c) *c = s->info.cfg.in_channels;
    if (h) *h = s->info.H;
    if (w) *w = s->info.W;
    return D2C_OK;
}

int d2c_sampler_num_classes(const d2c_sampler *s, int *k) {
    API_NOT_NULL("d2c_sampler_num_classes", s, "the sampler handle");
    API_NOT_NULL("d2c_sampler_num_classes", k, "k");
    *k = s->info.cfg.num_classes;
    return D2C_OK;
}

/* Both runs: checks, the network for n images, the streams (x_T from them when seeded),
 * the batch loop. */
static int run(const char *fn, d2c_sampler *s, const float *noise, int seeded, const int64_t *labels, int n, int c,
               int h, int w, uint64_t seed, float *out) {
    API_NOT_NULL(fn, s, "the sampler handle");
    if (!seeded) API_NOT_NULL(fn, noise, "noise");
    API_NOT_NULL(fn, labels, "labels");
    API_NOT_NULL(fn, out, "out");
    D2C_TRY(api_check_count(fn, "the image count n", n, SAMPLE_MAX_IMAGES));
    D2C_TRY(api_check_shape(fn, c, h, w, s->info.cfg.in_channels, s->info.H, s->info.W));
    D2C_TRY(d2c_error_context(generator_check_labels(labels, n, s->info.cfg.num_classes), "%s: ", fn));
    const int need = D2C_MIN(s->batch, n);
    if (s->gen.batch < need) {
        generator_free(&s->gen);
        D2C_TRY(d2c_error_context(generator_create(&s->gen, s->eng, &s->info, s->info.H, s->info.W, need), "%s: ", fn));
        unet_upload_params(&s->gen.net, s->weights);
    }
    const size_t D = (size_t)c * h * w;
    Rng *rngs = d2c_try_malloc((size_t)n * sizeof(Rng));
    if (!rngs) return d2c_error(D2C_ERR_FAIL, "%s: out of memory for %d random streams", fn, n);
    if (!seeded && noise != out) memmove(out, noise, (size_t)n * D * sizeof(float));
    generator_streams(seed, n, D, rngs, seeded ? out : NULL);
    generator_run(&s->gen, s->kind, out, labels, n, s->steps, s->guidance, rngs, NULL);
    free(rngs);
    return D2C_OK;
}

int d2c_sampler_run(d2c_sampler *s, const float *noise, const int64_t *labels, int n, int c, int h, int w,
                    uint64_t seed, float *out) {
    return run("d2c_sampler_run", s, noise, 0, labels, n, c, h, w, seed, out);
}

int d2c_sampler_run_seeded(d2c_sampler *s, const int64_t *labels, int n, int c, int h, int w, uint64_t seed,
                           float *out) {
    return run("d2c_sampler_run_seeded", s, NULL, 1, labels, n, c, h, w, seed, out);
}
