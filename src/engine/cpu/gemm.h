/* The CPU backend's row-major sgemm calls, cut into column blocks that suit OpenBLAS
 * (engine/cpu/gemm.c). The convolutions' GEMMs are short and wide (M = Cout 32..192
 * rows, N = up to 784 positions per image): OpenBLAS packs both operands of such a GEMM
 * before its kernel runs, and with only M rows to amortise the packing of the wide
 * operand it costs 20-35%. OpenBLAS 0.3's SkylakeX-class cores (SkylakeX, Cooperlake,
 * SapphireRapids) have small-matrix kernels that read the operands in place and run any
 * GEMM of M*N*K <= 1e6; on those cores the wide GEMMs are cut into column blocks under
 * that size. Other cores (e.g. OPENBLAS_CORETYPE=Haswell) have no such kernels, and
 * blocks would only add calls there, so they get one block. The blocking only depends
 * on the shape and the core, so results stay the same for any thread count. */
#ifndef D2C_ENGINE_CPU_GEMM_H
#define D2C_ENGINE_CPU_GEMM_H

/* Blocks of an M x N GEMM of depth K: nb columns and kb of depth per call. One block
 * (nb = N, kb = K) without the small-matrix kernels; with them K in the fewest equal
 * parts of at most 128 (a 64-row panel of the wide operand then stays in L1) and N in the
 * fewest equal blocks, multiples of 16 columns, that keep every call under their size
 * (one block when that would take blocks narrower than 32). kb depends on M and K only,
 * so each output's sum has the same order for any N (e.g. any number of images side by
 * side in a chunk): results do not depend on the batch. */
typedef struct {
    int nb, kb;
} GemmBlocks;
GemmBlocks gemm_blocks(int M, int N, int K);

/* C (M, N; ldc) = alpha A (M, K; lda) @ B (K, N; ldb) + beta C, row-major, in the
 * blocks of gemm_blocks(M, N, K) (the depth parts after the first accumulate); then, if
 * row_bias (M) is not NULL, C[i][j] += row_bias[i], block by block while it is in cache. */
void gemm_nn(int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
             float beta, float *C, int ldc, const float *row_bias);

/* The same with A transposed: A^T (M, K) for A stored (K, M; lda), no bias. */
void gemm_tn(int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
             float beta, float *C, int ldc);

/* C[i][j0, j1) += row_bias[i] for i < M (for callers with their own block loop). */
void gemm_row_bias(float *C, int ldc, int M, int j0, int j1, const float *row_bias);

#endif
