/* Sampling from a trained model: the network, schedule and batch loop behind `d2c sample`
 * and the public d2c_sampler, and the seeded noise streams of `d2c sample --seed`.
 * Shapes: n images of D = C*H*W values, labels in 0..K (K = the null label). */
#ifndef D2C_DIFFUSION_GENERATE_H
#define D2C_DIFFUSION_GENERATE_H

#include <stddef.h>
#include <stdint.h>

#include "core/rng.h"
#include "diffusion/checkpoint.h"
#include "diffusion/sample.h"
#include "diffusion/schedule.h"
#include "model/unet.h"

typedef struct {
    UNet net;        /* sized for 2 * batch images (guidance runs both passes at once) */
    Schedule sched;
    int num_classes; /* K; K is the null label */
    int batch;       /* images per sampler call */
    float *x;        /* (batch, D) device batch; NULL on an engine of host memory */
} Generator;

/* The network of info's config for H x W images on eng (NULL: the CPU), the schedule,
 * batches of up to batch images. The weights are zero: load them with
 * generator_load_weights (or unet_upload_params). D2C_ERR_INPUT
 * if the config cannot be built at H x W, D2C_ERR_FAIL without the memory; g is then
 * empty (generator_free is safe on it). */
int generator_create(Generator *g, Engine *eng, const ModelInfo *info, int H, int W, int batch);
/* checkpoint_load_weights of path into the engine's network; its status. */
int generator_load_weights(Generator *g, const char *path);
void generator_free(Generator *g);

/* The random streams of `d2c sample --seed seed`: rngs[i] = stream (seed, RNG_SAMPLE, i).
 * When x is not NULL, x_T of image i (x + i*D, D values) is drawn from stream i first (as
 * --n does; with --noise the streams stay fresh). DDPM continues the streams. */
void generator_streams(uint64_t seed, int n, size_t D, Rng *rngs, float *x);

/* D2C_ERR_INPUT "label L of image i is outside the model's classes 0..K-1 (K = null)"
 * unless every y[i] lies in 0..K. */
int generator_check_labels(const int64_t *y, int n, int K);

/* Samples x (n, D, host memory) in place, x_T on entry: batches of g->batch through sample_run, labels
 * y (n) in 0..K (checked by the caller), rngs (n) from generator_streams. progress names
 * a progress line on stderr ("sample"), NULL for none. */
void generator_run(Generator *g, SamplerKind kind, float *x, const int64_t *y, int n, int steps, float guidance,
                   Rng *rngs, const char *progress);

#endif
