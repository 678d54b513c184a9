/* Row-major sgemm in blocks sized for OpenBLAS's small-matrix kernels (gemm.h has the
 * why). Whether the kernels are there is read once from OpenBLAS's core name. */
#include "engine/cpu/gemm.h"

#include <cblas.h>
#include <stdatomic.h>
#include <strings.h>

/* OpenBLAS 0.3's limit for its small-matrix path (sgemm_small_kernel_permit_skylakex) */
#define SMALL_MNK 1000000.0
/* depth per call: a 64-row panel of the wide operand, 64 x 128 floats, stays in L1 */
#define KMAX 128
#define MIN_BLOCK 32

static int small_kernels(void) {
    static atomic_int known = -1; /* the core does not change: threads racing store the same */
    int k = atomic_load_explicit(&known, memory_order_relaxed);
    if (k < 0) {
        const char *core = openblas_get_corename();
        k = core && (!strcasecmp(core, "SkylakeX") || !strcasecmp(core, "Cooperlake") ||
                     !strcasecmp(core, "SapphireRapids"));
        atomic_store_explicit(&known, k, memory_order_relaxed);
    }
    return k;
}

static int split(int n, int most, int align) { /* equal parts of at most `most`, aligned */
    int parts = (n + most - 1) / most;
    int w = ((n + parts - 1) / parts + align - 1) / align * align;
    return w < most ? w : most;
}

/* The depth parts depend on M and K only, never on N: a GEMM whose N is the images of a
 * chunk then sums each output in the same order whatever the batch, and the small-matrix
 * kernel's sum for one column does not depend on the other columns of its call. */
GemmBlocks gemm_blocks(int M, int N, int K) {
    GemmBlocks b = {N, K};
    if (!small_kernels()) return b;
    int kb = K > KMAX ? split(K, KMAX, 1) : K;
    int widest = (int)(SMALL_MNK / ((double)M * kb)) / 16 * 16;
    if (widest < MIN_BLOCK) return b; /* OpenBLAS's own choice, as without the blocks */
    b.nb = N <= widest ? N : split(N, widest, 16);
    b.kb = kb;
    return b;
}

/* C[i][j0, j1) += row_bias[i]: a block just written, still in cache */
static void add_row_bias(float *C, int ldc, int M, int j0, int j1, const float *row_bias) {
    for (int i = 0; i < M; i++) {
        float *c = C + (size_t)i * ldc, b = row_bias[i];
        for (int j = j0; j < j1; j++) c[j] += b;
    }
}

static void gemm_blocked(enum CBLAS_TRANSPOSE ta, int M, int N, int K, float alpha, const float *A,
                         int lda, const float *B, int ldb, float beta, float *C, int ldc,
                         const float *row_bias) {
    GemmBlocks g = gemm_blocks(M, N, K);
    for (int j = 0; j < N; j += g.nb) {
        int nb = N - j < g.nb ? N - j : g.nb;
        for (int k = 0; k < K; k += g.kb) {
            const float *a = ta == CblasNoTrans ? A + k : A + (size_t)k * lda;
            cblas_sgemm(CblasRowMajor, ta, CblasNoTrans, M, nb, K - k < g.kb ? K - k : g.kb, alpha,
                        a, lda, B + (size_t)k * ldb + j, ldb, k ? 1.0f : beta, C + j, ldc);
        }
        if (row_bias) add_row_bias(C, ldc, M, j, j + nb, row_bias);
    }
}

void gemm_nn(int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
             float beta, float *C, int ldc, const float *row_bias) {
    gemm_blocked(CblasNoTrans, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, row_bias);
}

void gemm_tn(int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
             float beta, float *C, int ldc) {
    gemm_blocked(CblasTrans, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, NULL);
}

void gemm_row_bias(float *C, int ldc, int M, int j0, int j1, const float *row_bias) {
    add_row_bias(C, ldc, M, j0, j1, row_bias);
}
