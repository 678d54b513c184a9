/* Single-head self-attention core on the GPU, as engine/attention.c: per image (C
 * channels, N positions) with q, k, v the (C, N) blocks of qkv,
 *   attn (N, N) = softmax_j(q^T k / sqrt(C)),   out (C, N) = v @ attn^T,
 * by strided-batched cuBLAS GEMMs over the batch and one block per softmax row. Backward:
 *   dv += dout @ attn;  ds = dout^T v;  ds = attn * (ds - rowsum(ds * attn));
 *   dq += k @ ds^T / sqrt(C);  dk += q @ ds / sqrt(C).
 * attn is kept for backward (B N^2 floats), as on the CPU; no flash-style fusion yet. */
#include "engine/cuda/cuda_private.cuh"

#define SOFTMAX_THREADS 128

/* in place, one block per row of length n: exp(s - max) / sum, the sum in double */
__global__ void k_softmax_rows(float *s, int n) {
    __shared__ double shm[32];
    __shared__ float smax[32];
    float *row = s + (size_t)blockIdx.x * n;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    float mx = -INFINITY;
    for (int j = threadIdx.x; j < n; j += blockDim.x) mx = fmaxf(mx, row[j]);
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_down_sync(0xffffffffu, mx, o));
    if (lane == 0) smax[warp] = mx;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < warps; w++) smax[0] = fmaxf(smax[0], smax[w]);
    }
    __syncthreads();
    mx = smax[0];
    double sum = 0;
    for (int j = threadIdx.x; j < n; j += blockDim.x) {
        float v = expf(row[j] - mx);
        row[j] = v;
        sum += (double)v;
    }
    sum = cu_block_sum(sum, shm);
    const float inv = (float)(1.0 / sum);
    for (int j = threadIdx.x; j < n; j += blockDim.x) row[j] *= inv;
}

/* in place, one block per row: ds = a * (ds - dot(ds, a)), the dot in double */
__global__ void k_softmax_backward_rows(float *ds, const float *a, int n) {
    __shared__ double shm[32];
    float *dr = ds + (size_t)blockIdx.x * n;
    const float *ar = a + (size_t)blockIdx.x * n;
    double dot = 0;
    for (int j = threadIdx.x; j < n; j += blockDim.x) dot += (double)dr[j] * (double)ar[j];
    const float d = (float)cu_block_sum(dot, shm);
    for (int j = threadIdx.x; j < n; j += blockDim.x) dr[j] = ar[j] * (dr[j] - d);
}

extern "C" void cu_attention_forward(CudaEngine *e, float *out, float *attn, const float *qkv, int B, int C,
                                     int N) {
    if (e->status) return;
    const float scale = 1.0f / sqrtf((float)C);
    const long long CN = (long long)C * N, NN = (long long)N * N;
    const float *q = qkv, *k = qkv + CN, *v = qkv + 2 * CN;
    /* attn_b (N, N) = q_b^T (N, C) @ k_b (C, N) * scale */
    cu_gemm_batched(e, 1, 0, N, N, C, scale, q, N, 3 * CN, k, N, 3 * CN, 0.0f, attn, N, NN, B);
    k_softmax_rows<<<(unsigned)((size_t)B * N), SOFTMAX_THREADS, 0, e->stream>>>(attn, N);
    if (CU_LAUNCHED(e, "softmax")) return;
    /* out_b (C, N) = v_b (C, N) @ attn_b^T */
    cu_gemm_batched(e, 0, 1, C, N, N, 1.0f, v, N, 3 * CN, attn, N, NN, 0.0f, out, N, CN, B);
}

extern "C" void cu_attention_backward(CudaEngine *e, float *dqkv, const float *dout, const float *qkv,
                                      const float *attn, int B, int C, int N) {
    if (e->status || !dqkv) return;
    const float scale = 1.0f / sqrtf((float)C);
    const long long CN = (long long)C * N, NN = (long long)N * N;
    const float *q = qkv, *k = qkv + CN, *v = qkv + 2 * CN;
    float *dq = dqkv, *dk = dqkv + CN, *dv = dqkv + 2 * CN;
    float *ds = cu_scratch(e, (size_t)B * N * N);
    if (!ds) return;
    /* dv_b += dout_b (C, N) @ attn_b (N, N) */
    cu_gemm_batched(e, 0, 0, C, N, N, 1.0f, dout, N, CN, attn, N, NN, 1.0f, dv, N, 3 * CN, B);
    /* ds_b (N, N) = dout_b^T (N, C) @ v_b (C, N), then the softmax backward */
    cu_gemm_batched(e, 1, 0, N, N, C, 1.0f, dout, N, CN, v, N, 3 * CN, 0.0f, ds, N, NN, B);
    k_softmax_backward_rows<<<(unsigned)((size_t)B * N), SOFTMAX_THREADS, 0, e->stream>>>(ds, attn, N);
    if (CU_LAUNCHED(e, "softmax backward")) return;
    /* dq_b += k_b @ ds_b^T * scale;  dk_b += q_b @ ds_b * scale */
    cu_gemm_batched(e, 0, 1, C, N, N, scale, k, N, 3 * CN, ds, N, NN, 1.0f, dq, N, 3 * CN, B);
    cu_gemm_batched(e, 0, 0, C, N, N, scale, q, N, 3 * CN, ds, N, NN, 1.0f, dk, N, 3 * CN, B);
}
