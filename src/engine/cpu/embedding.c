/* Embedding lookups: a learned table (the class embedding) and the fixed sinusoidal
 * timestep embedding of the spec, [sin(t f_j), cos(t f_j)], f_j = exp(-ln(10000) j / half),
 * evaluated in float32 in the same order of operations as PyTorch. */
#include "engine/cpu/kernels.h"

#include <math.h>
#include <string.h>

/* y (B, E) = table[idx[b]] */
void embedding_forward(float *y, const float *table, const int64_t *idx, int B, int E) {
    for (int b = 0; b < B; b++)
        memcpy(y + (size_t)b * E, table + (size_t)idx[b] * E, sizeof(float) * E);
}

/* dtable[idx[b]] += dy[b], in batch order (rows may repeat). */
void embedding_backward(float *dtable, const float *dy, const int64_t *idx, int B, int E) {
    if (!dtable) return;
    for (int b = 0; b < B; b++) {
        float *row = dtable + (size_t)idx[b] * E;
        const float *g = dy + (size_t)b * E;
        for (int e = 0; e < E; e++) row[e] += g[e];
    }
}

void timestep_embedding(float *y, const int64_t *t, int B, int dim) {
    int half = dim / 2;
    const float neg_log_period = (float)-9.210340371976184; /* -ln(10000) */
    for (int b = 0; b < B; b++) {
        float tb = (float)t[b];
        float *row = y + (size_t)b * dim;
        for (int j = 0; j < half; j++) {
            float freq = expf(neg_log_period * (float)j / (float)half);
            float arg = tb * freq;
            row[j] = sinf(arg);
            row[half + j] = cosf(arg);
        }
        if (dim % 2) row[dim - 1] = 0.0f; /* PyTorch's embedding has 2*half columns */
    }
}
