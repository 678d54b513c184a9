/* The counter-based generator of core/rng.c (Philox4x32-10, Box-Muller in double) on the
 * GPU: cu_fill_normal writes the values rng_fill_normal would write from the same stream
 * state, so a seed draws the same noise on every backend without a host draw and upload.
 * Philox block b of a stream is a pure function of (key, counter + b), so one thread per
 * block computes its four words, i.e. two Box-Muller pairs, i.e. four normals. The double
 * log, sin and cos of the device differ from glibc's by at most an ulp or two of a double,
 * which changes the rounded float in a vanishing fraction of values (~2^-28 each).
 * The table's fill_normal (backend_cuda.c). */
#include "engine/cuda/cuda_private.cuh"

extern "C" {
#include "core/rng.h"
}

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u
#define TWO_PI (2.0 * 3.14159265358979323846) /* 2.0 * D2C_PI, as core/rng.c multiplies */

/* core/rng.c's philox_block, round for round */
__device__ __forceinline__ uint4 philox(uint32_t k0, uint32_t k1, uint4 c) {
    for (int round = 0; round < 10; round++) {
        uint32_t hi0 = __umulhi(PHILOX_M0, c.x), lo0 = PHILOX_M0 * c.x;
        uint32_t hi1 = __umulhi(PHILOX_M1, c.z), lo1 = PHILOX_M1 * c.z;
        c = make_uint4(hi1 ^ c.y ^ k0, lo1, hi0 ^ c.w ^ k1, lo0);
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    return c;
}

/* one Box-Muller pair from two words, as rng_normal: (rad cos th, rad sin th) */
__device__ __forceinline__ void box_muller(uint32_t w1, uint32_t w2, float *a, float *b) {
    double u1 = ((double)w1 + 1.0) / 4294967296.0;
    double u2 = (double)w2 / 4294967296.0;
    double rad = sqrt(-2.0 * log(u1));
    double th = TWO_PI * u2;
    *a = (float)(rad * cos(th));
    *b = (float)(rad * sin(th));
}

/* x[first + 4t ...] from Philox block (counter + t): words 0, 1 give values 0, 1 and words
 * 2, 3 values 2, 3; the last block may be cut short by n */
__global__ void k_fill_normal(float *x, size_t first, size_t n, uint32_t k0, uint32_t k1, uint64_t counter,
                              uint32_t c2, uint32_t c3) {
    const size_t blocks = (n - first + 3) / 4;
    CU_FOR(t, blocks) {
        uint64_t c = counter + t;
        uint4 w = philox(k0, k1, make_uint4((uint32_t)c, (uint32_t)(c >> 32), c2, c3));
        float v[4];
        box_muller(w.x, w.y, &v[0], &v[1]);
        box_muller(w.z, w.w, &v[2], &v[3]);
        size_t o = first + 4 * t;
#pragma unroll 4
        for (int i = 0; i < 4; i++)
            if (o + i < n) x[o + i] = v[i];
    }
}

/* the pair from the two words a stream still buffers (avail == 2) */
__global__ void k_fill_normal_prefix(float *x, size_t n, uint32_t w1, uint32_t w2) {
    float a, b;
    box_muller(w1, w2, &a, &b);
    x[0] = a;
    if (n > 1) x[1] = b;
}

/* x[0..n) = rng_fill_normal(copy of *r, x, n); r is not advanced. D2C_ERR_INPUT-free: a
 * state in the middle of a pair or of a word pair is a caller's bug (D2C_CHECK-like fail). */
extern "C" void cu_fill_normal(CudaEngine *e, float *x, size_t n, const Rng *r) {
    if (e->status || !n) return;
    if (r->has_spare || r->avail % 2) {
        cu_fail(e, D2C_ERR_FAIL, "cuda: fill_normal needs a stream at a pair boundary (has_spare %d, avail %d)",
                r->has_spare, r->avail);
        return;
    }
    size_t first = 0;
    if (r->avail == 2) { /* the stream's buffered words buf[2], buf[3] come first */
        k_fill_normal_prefix<<<1, 1, 0, e->stream>>>(x, n, r->buf[2], r->buf[3]);
        if (CU_LAUNCHED(e, "fill_normal")) return;
        first = 2;
    }
    if (first >= n) return;
    uint64_t counter = (uint64_t)r->ctr[1] << 32 | r->ctr[0];
    k_fill_normal<<<cu_blocks((n - first + 3) / 4), CU_THREADS, 0, e->stream>>>(x, first, n, r->key[0], r->key[1],
                                                                               counter, r->ctr[2], r->ctr[3]);
    CU_LAUNCHED(e, "fill_normal");
}
