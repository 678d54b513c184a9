/* Philox4x32-10 (Salmon et al., SC'11) with buffered output, uniform and normal draws. */
#include "core/rng.h"

#include <math.h>

#include "core/util.h"

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

static uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static void philox_block(const uint32_t key_in[2], const uint32_t ctr_in[4], uint32_t out[4]) {
    uint32_t k0 = key_in[0], k1 = key_in[1];
    uint32_t c0 = ctr_in[0], c1 = ctr_in[1], c2 = ctr_in[2], c3 = ctr_in[3];
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        uint32_t n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        uint32_t n3 = (uint32_t)p0;
        c0 = n0; c1 = n1; c2 = n2; c3 = n3;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

Rng rng_stream(uint64_t seed, uint64_t purpose, uint64_t index) {
    Rng r = {0};
    uint64_t key = splitmix64(seed ^ splitmix64(purpose * 0x100000001B3ull));
    r.key[0] = (uint32_t)key;
    r.key[1] = (uint32_t)(key >> 32);
    r.ctr[2] = (uint32_t)index;
    r.ctr[3] = (uint32_t)(index >> 32);
    return r;
}

uint32_t rng_u32(Rng *r) {
    if (r->avail == 0) {
        philox_block(r->key, r->ctr, r->buf);
        if (++r->ctr[0] == 0) r->ctr[1]++;
        r->avail = 4;
    }
    return r->buf[4 - r->avail--];
}

float rng_uniform(Rng *r) { return (float)(rng_u32(r) >> 8) * (1.0f / 16777216.0f); }

float rng_normal(Rng *r) {
    if (r->has_spare) {
        r->has_spare = 0;
        return r->spare;
    }
    /* u1 in (0, 1] so the log is finite; 32-bit resolution each. */
    double u1 = ((double)rng_u32(r) + 1.0) / 4294967296.0;
    double u2 = (double)rng_u32(r) / 4294967296.0;
    double rad = sqrt(-2.0 * log(u1));
    double th = 2.0 * D2C_PI * u2;
    r->spare = (float)(rad * sin(th));
    r->has_spare = 1;
    return (float)(rad * cos(th));
}

void rng_fill_normal(Rng *r, float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = rng_normal(r);
}

uint32_t rng_below(Rng *r, uint32_t n) {
    uint32_t limit = UINT32_MAX - UINT32_MAX % n;
    uint32_t v;
    do v = rng_u32(r); while (v >= limit);
    return v % n;
}

void rng_shuffle(Rng *r, int *idx, int n) {
    for (int i = n - 1; i > 0; i--) {
        int j = (int)rng_below(r, (uint32_t)i + 1);
        int t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
}
