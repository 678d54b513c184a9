/* Deterministic sums across a batch on the GPU, shared by the bias and weight gradients.
 *
 * Each sum has a fixed order that depends only on the shape (no atomics), so gradients are
 * identical run to run; every partial sum is in double and the result is rounded to float
 * once, when it is added to the output.
 *
 *   cu_channel_sums: out[c] += sum over b and p of x (B, C, N) -- a convolution's bias
 *     gradient. The batch is cut into S slices of whole images; block (s, c) sums its slice
 *     (flattened over images and positions, so that narrow rows keep every thread busy),
 *     then one thread per channel adds the S partial sums in slice order. S is chosen so
 *     that there are a few blocks per SM (a fixed number, not the card's): one block per channel over the whole batch ran
 *     one SM's worth of loads for 200,000 values (B 256 at 28x28), latency-bound.
 *   cu_column_sums: out[j] += sum over i of x (rows, cols) -- a linear layer's bias
 *     gradient, and the per-image weight-gradient parts of a convolution. A 32 x 32 block
 *     takes 32 columns; its 32 thread rows each sum every 32nd row (in row order), and the
 *     32 partial sums of a column are then added in thread-row order. */
#include "engine/cuda/cuda_private.cuh"

#define SUM_THREADS 256
#define SUM_MIN_VALUES 4096 /* at least this many values per slice block */
#define SUM_BLOCKS 512

__global__ void k_channel_partials(double *part, const float *x, int B, int C, int N, int per_slice, int S) {
    __shared__ double shm[32];
    const int s = blockIdx.x, c = blockIdx.y;
    const int b0 = s * per_slice, nb = min(per_slice, B - b0);
    const unsigned n = (unsigned)nb * (unsigned)N;
    double acc = 0;
    for (unsigned i = threadIdx.x; i < n; i += blockDim.x) {
        unsigned b = i / (unsigned)N, p = i - b * (unsigned)N;
        acc += (double)x[((size_t)(b0 + b) * C + c) * N + p];
    }
    acc = cu_block_sum(acc, shm);
    if (threadIdx.x == 0) part[(size_t)c * S + s] = acc;
}

__global__ void k_channel_finish(float *out, const double *part, int C, int S) {
    CU_FOR(c, (size_t)C) {
        double acc = 0;
        for (int s = 0; s < S; s++) acc += part[c * S + s];
        out[c] += (float)acc;
    }
}

void cu_channel_sums(CudaEngine *e, float *out, const float *x, int B, int C, int N) {
    if (e->status || B <= 0 || C <= 0) return;
    /* slices: about SUM_BLOCKS blocks in all (a few per SM; a constant, so that the order
     * is the same on every card), each with at least SUM_MIN_VALUES values */
    long want = (SUM_BLOCKS + C - 1) / C;
    long most = ((long)B * N) / SUM_MIN_VALUES;
    int S = (int)(want < most ? want : most);
    if (S < 1) S = 1;
    if (S > B) S = B;
    const int per_slice = (B + S - 1) / S;
    S = (B + per_slice - 1) / per_slice; /* no empty slice */
    double *part = cu_red(e, (size_t)C * S);
    if (!part) return;
    k_channel_partials<<<dim3((unsigned)S, (unsigned)C), SUM_THREADS, 0, e->stream>>>(part, x, B, C, N, per_slice, S);
    if (CU_LAUNCHED(e, "channel sums")) return;
    k_channel_finish<<<cu_blocks((size_t)C), CU_THREADS, 0, e->stream>>>(out, part, C, S);
    CU_LAUNCHED(e, "channel sums");
}

__global__ void k_column_sums_fixed(float *out, const float *x, size_t rows, size_t cols) {
    __shared__ double shm[32][33];
    const size_t j = (size_t)blockIdx.x * 32 + threadIdx.x;
    double acc = 0;
    if (j < cols)
        for (size_t i = threadIdx.y; i < rows; i += 32) acc += (double)x[i * cols + j];
    shm[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && j < cols) {
        double s = 0;
        for (int r = 0; r < 32; r++) s += shm[r][threadIdx.x];
        out[j] += (float)s;
    }
}

void cu_column_sums(CudaEngine *e, float *out, const float *x, size_t rows, size_t cols) {
    if (e->status || cols == 0) return;
    const size_t blocks = (cols + 31) / 32;
    if (blocks > 0x7fffffffu) {
        cu_fail(e, D2C_ERR_FAIL, "cuda: column sums over %zu columns", cols);
        return;
    }
    k_column_sums_fixed<<<(unsigned)blocks, dim3(32, 32), 0, e->stream>>>(out, x, rows, cols);
    CU_LAUNCHED(e, "column sums");
}
