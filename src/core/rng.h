/* Counter-based random numbers (Philox4x32-10). A stream is keyed by (seed, purpose,
 * index): e.g. (run seed, RNG_NOISE, step). Any stream can be recreated from its key
 * alone, so a resumed run, or the same work split across threads or ranks, draws the
 * same numbers as an uninterrupted one. */
#ifndef D2C_CORE_RNG_H
#define D2C_CORE_RNG_H

#include <stddef.h>
#include <stdint.h>

/* What a stream is used for; part of its key, so streams never overlap. */
enum RngPurpose {
    RNG_INIT = 1,      /* parameter initialisation */
    RNG_BATCH = 2,     /* picking training examples */
    RNG_TIMESTEP = 3,  /* diffusion timesteps */
    RNG_NOISE = 4,     /* diffusion noise */
    RNG_DROPOUT = 5,   /* classifier-free guidance label dropout */
    RNG_SAMPLE = 6,    /* sampler noise */
    RNG_POOL = 7,      /* condensation pool initialisation and real batches */
    RNG_AUGMENT = 8,   /* differentiable augmentation */
    RNG_EVAL = 9,      /* evaluator and metric subsampling */
};

typedef struct {
    uint32_t key[2];
    uint32_t ctr[4];
    uint32_t buf[4];
    int avail;          /* unread words left in buf */
    int has_spare;      /* Box-Muller gives normals in pairs */
    float spare;
} Rng;

Rng rng_stream(uint64_t seed, uint64_t purpose, uint64_t index);
uint32_t rng_u32(Rng *r);
/* Uniform in [0, 1) with 24 random bits. */
float rng_uniform(Rng *r);
/* Standard normal (Box-Muller in double, rounded to float). */
float rng_normal(Rng *r);
void rng_fill_normal(Rng *r, float *x, size_t n);
/* Uniform integer in [0, n), n > 0, without modulo bias. */
uint32_t rng_below(Rng *r, uint32_t n);
/* Fisher-Yates shuffle of idx[0..n). */
void rng_shuffle(Rng *r, int *idx, int n);

#endif
