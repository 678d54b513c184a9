/* The CUDA backend's device state: creation (one clear D2C_ERR_INPUT without a GPU), the
 * first-failure error record, device memory on the engine's stream, scratch buffers, the
 * row-major cuBLAS GEMMs and the fixed-order reductions in double.
 *
 * TF32 is off: cuBLAS runs CUBLAS_DEFAULT_MATH (full fp32 products), so results match the
 * CPU to float rounding; D2C_CUDA_TF32=1 in the environment turns the tensor-core TF32
 * mode on (about 1e-3 relative error, much faster GEMMs). Atomics are not allowed in
 * cuBLAS (its default), and everything runs on one stream, so GEMMs are deterministic
 * run to run on one GPU model. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>

#include "engine/cuda/cuda_private.cuh"

extern "C" {
#include "engine/algo_cache.h"
}

/* ---------------------------------------------------------------- errors */

int cu_fail(CudaEngine *e, int status, const char *fmt, ...) {
    if (e->status == D2C_OK) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
        e->status = status;
    }
    return d2c_error(e->status, "%s", e->msg);
}

int cu_check(CudaEngine *e, cudaError_t err, const char *what) {
    if (err == cudaSuccess) return 0;
    return cu_fail(e, D2C_ERR_FAIL, "cuda: %s: %s", what, cudaGetErrorString(err));
}

int cu_check_blas(CudaEngine *e, cublasStatus_t st, const char *what) {
    if (st == CUBLAS_STATUS_SUCCESS) return 0;
    return cu_fail(e, D2C_ERR_FAIL, "cublas: %s: %s", what, cublasGetStatusString(st));
}

extern "C" int cu_status(const CudaEngine *e) { return e->status; }

extern "C" int cu_sync(CudaEngine *e) {
    if (e->status == D2C_OK) cu_check(e, cudaStreamSynchronize(e->stream), "synchronising the stream");
    if (e->status != D2C_OK) return d2c_error(e->status, "%s", e->msg);
    return D2C_OK;
}

/* ---------------------------------------------------------------- lifetime */

static int create_events(CudaEngine *e) {
    for (int k = 0; k < CU_STAGE_SLOTS; k++)
        if (cu_check(e, cudaEventCreateWithFlags(&e->stage[k].done, cudaEventDisableTiming), "creating events"))
            return -1;
    return 0;
}

/* FP32 lanes per SM by compute capability (the CUDA programming guide's arithmetic
 * throughput table: 64 on 7.x and 8.0, 128 on 8.6, 8.9, 9.0 and later), times 2 for the
 * FMA, times the SMs and the SM clock; 0 when the architecture is not in the table. */
static double fp32_peak_gflops(int device, int major, int minor, int sms) {
    int lanes = major >= 9 || (major == 8 && minor >= 6) ? 128 : major >= 7 ? 64 : 0, khz = 0;
    if (!lanes || cudaDeviceGetAttribute(&khz, cudaDevAttrClockRate, device) != cudaSuccess) return 0;
    return 2.0 * lanes * sms * khz * 1e-6;
}

extern "C" int cu_create(CudaEngine **out) {
    *out = NULL;
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess)
        return d2c_error(D2C_ERR_INPUT, "--device cuda: no CUDA device available (cudaGetDeviceCount: %s)",
                         cudaGetErrorString(err));
    if (count < 1) return d2c_error(D2C_ERR_INPUT, "--device cuda: no CUDA device available (cudaGetDeviceCount found none)");
    CudaEngine *e = (CudaEngine *)calloc(1, sizeof *e);
    if (!e) return d2c_error(D2C_ERR_FAIL, "cuda: out of host memory");
    int st = D2C_OK;
    const char *dev = getenv("D2C_CUDA_DEVICE"); /* which GPU; 0 by default */
    e->device = dev && *dev ? atoi(dev) : 0;
    if (e->device < 0 || e->device >= count) {
        st = d2c_error(D2C_ERR_INPUT, "D2C_CUDA_DEVICE=%s: this machine has %d CUDA device(s)", dev, count);
        free(e);
        return st;
    }
    cudaDeviceProp prop;
    if (cu_check(e, cudaSetDevice(e->device), "selecting the device") ||
        cu_check(e, cudaGetDeviceProperties(&prop, e->device), "reading the device's properties") ||
        cu_check(e, cudaStreamCreateWithFlags(&e->stream, cudaStreamNonBlocking), "creating a stream") ||
        create_events(e) ||
        cu_check_blas(e, cublasCreate(&e->blas), "creating the handle") ||
        cu_check_blas(e, cublasSetStream(e->blas, e->stream), "setting the stream")) {
        st = e->status;
        cu_destroy(e);
        return d2c_error(st == D2C_ERR_FAIL ? D2C_ERR_INPUT : st, "--device cuda: %s", d2c_last_error());
    }
    snprintf(e->name, sizeof e->name, "%.200s (sm_%d%d, %d SMs)", prop.name, prop.major, prop.minor,
             prop.multiProcessorCount);
    e->peak_gflops = fp32_peak_gflops(e->device, prop.major, prop.minor, prop.multiProcessorCount);
    const char *algo = getenv("D2C_CUDA_CONV_ALGO");
    if (algo && *algo && strcmp(algo, "heuristic") != 0 && strcmp(algo, "find") != 0 && strcmp(algo, "cached") != 0) {
        cu_destroy(e);
        return d2c_error(D2C_ERR_INPUT, "D2C_CUDA_CONV_ALGO=%s: must be cached (the default), heuristic or find", algo);
    }
    e->conv_algo = !algo || !*algo || strcmp(algo, "cached") == 0 ? CU_ALGO_CACHED
                   : strcmp(algo, "find") == 0                    ? CU_ALGO_FIND
                                                                  : CU_ALGO_HEURISTIC;
    /* the cached mode's file: D2C_CUDA_ALGO_CACHE (empty: none, measure every run), else the
     * user's cache folder; an existing folder of that name is refused */
    const char *cache = getenv("D2C_CUDA_ALGO_CACHE");
    if (!algo_cache_path(cache, "conv_algos.txt", e->algo_path, sizeof e->algo_path)) e->algo_path[0] = 0;
    struct stat st_path;
    if (cache && *cache && (!e->algo_path[0] || (stat(e->algo_path, &st_path) == 0 && S_ISDIR(st_path.st_mode)))) {
        cu_destroy(e);
        return d2c_error(D2C_ERR_INPUT, "D2C_CUDA_ALGO_CACHE=%s: must name a file (it is a folder, or too long)", cache);
    }
    const char *tf32 = getenv("D2C_CUDA_TF32"), *conv = getenv("D2C_CUDA_CONV");
    e->tf32 = tf32 && strcmp(tf32, "1") == 0;
    if (conv && *conv && strcmp(conv, "gemm") != 0 && strcmp(conv, "cudnn") != 0 && strcmp(conv, "auto") != 0) {
        cu_destroy(e);
        return d2c_error(D2C_ERR_INPUT, "D2C_CUDA_CONV=%s: must be auto (the default), gemm (im2col + cuBLAS) or cudnn",
                         conv);
    }
    if (conv && strcmp(conv, "cudnn") == 0) {
        if (!cu_cudnn_built()) {
            cu_destroy(e);
            return d2c_error(D2C_ERR_INPUT, "D2C_CUDA_CONV=cudnn: this d2c was built without cuDNN");
        }
        e->conv_mode = CU_CONV_CUDNN;
    } else if (conv && strcmp(conv, "gemm") == 0) {
        e->conv_mode = CU_CONV_GEMM;
    } else {
        e->conv_mode = cu_cudnn_built() ? CU_CONV_AUTO : CU_CONV_GEMM;
    }
    const char *graph = getenv("D2C_CUDA_GRAPH"), *prof = getenv("D2C_CUDA_PROFILE");
    if (graph && *graph && strcmp(graph, "0") != 0 && strcmp(graph, "1") != 0) {
        cu_destroy(e);
        return d2c_error(D2C_ERR_INPUT, "D2C_CUDA_GRAPH=%s: must be 1 (the default) or 0", graph);
    }
    e->graph_on = !(graph && strcmp(graph, "0") == 0) && !(prof && strcmp(prof, "1") == 0);
    cublasMath_t math = e->tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH;
    if (cu_check_blas(e, cublasSetMathMode(e->blas, math), "setting the math mode") ||
        cu_check_blas(e, cublasSetAtomicsMode(e->blas, CUBLAS_ATOMICS_NOT_ALLOWED), "disallowing atomics")) {
        st = e->status;
        cu_destroy(e);
        return st;
    }
    *out = e;
    return D2C_OK;
}

extern "C" void cu_destroy(CudaEngine *e) {
    if (!e) return;
    if (e->stream) cudaStreamSynchronize(e->stream);
    cu_prof_report(e);
    cu_prof_free(e);
    cu_graph_destroy(e);
    cu_conv_choice_destroy(e);
    cu_cudnn_destroy(e);
    for (int k = 0; k < CU_STAGE_SLOTS; k++) {
        cudaFreeHost(e->stage[k].buf);
        if (e->stage[k].done) cudaEventDestroy(e->stage[k].done);
    }
    cudaFree(e->scratch);
    cudaFree(e->idx);
    cudaFree(e->red);
    if (e->blas) cublasDestroy(e->blas);
    if (e->stream) cudaStreamDestroy(e->stream);
    free(e);
}

extern "C" const char *cu_device_name(const CudaEngine *e) { return e->name; }
extern "C" double cu_peak_gflops(const CudaEngine *e) { return e->peak_gflops; }

/* ---------------------------------------------------------------- memory */

extern "C" void *cu_alloc(CudaEngine *e, size_t bytes) {
    void *p = NULL;
    if (cudaMalloc(&p, bytes ? bytes : 1) != cudaSuccess) {
        cudaGetLastError(); /* an allocation failure is not sticky; the caller reports it */
        return NULL;
    }
    return p;
}

/* The stream is drained first: queued kernels may still read p. */
extern "C" void cu_free(CudaEngine *e, void *p) {
    if (!p) return;
    cudaStreamSynchronize(e->stream);
    cu_check(e, cudaFree(p), "freeing device memory");
}

extern "C" void *cu_host_alloc(CudaEngine *e, size_t bytes) {
    void *p = NULL;
    if (cudaMallocHost(&p, bytes ? bytes : 1) != cudaSuccess) {
        cudaGetLastError();
        return NULL;
    }
    return p;
}

extern "C" void cu_host_free(CudaEngine *e, void *p) {
    if (p) cu_check(e, cudaFreeHost(p), "freeing pinned host memory");
}

/* The table's contract: the host source may be reused when upload returns. Uploads of up
 * to CU_STAGE_MAX bytes are copied (memcpy) into the next of CU_STAGE_SLOTS pinned staging
 * slots and DMA'd from there asynchronously; a slot is reused once the event recorded
 * after its previous copy has passed, so the host rarely waits and never drains the
 * stream. Larger uploads are copied directly and waited for. */
static int stage_upload(CudaEngine *e, void *dst, const void *src, size_t bytes, const char *what) {
    if (e->graph_mode && cu_graph_upload(e, dst, src, bytes)) return e->status ? -1 : 0;
    if (bytes > CU_STAGE_MAX) {
        if (cu_check(e, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, e->stream), what)) return -1;
        return cu_check(e, cudaStreamSynchronize(e->stream), what) ? -1 : 0;
    }
    int k = e->stage_next;
    e->stage_next = (k + 1) % CU_STAGE_SLOTS;
    if (e->stage[k].used && cu_check(e, cudaEventSynchronize(e->stage[k].done), what)) return -1;
    if (e->stage[k].cap < bytes) {
        size_t cap = bytes < ((size_t)1 << 20) ? (size_t)1 << 20 : bytes;
        cudaFreeHost(e->stage[k].buf);
        e->stage[k].buf = NULL;
        e->stage[k].cap = 0;
        if (cu_check(e, cudaMallocHost(&e->stage[k].buf, cap), "allocating pinned staging memory")) return -1;
        e->stage[k].cap = cap;
    }
    memcpy(e->stage[k].buf, src, bytes);
    if (cu_check(e, cudaMemcpyAsync(dst, e->stage[k].buf, bytes, cudaMemcpyHostToDevice, e->stream), what) ||
        cu_check(e, cudaEventRecord(e->stage[k].done, e->stream), what))
        return -1;
    e->stage[k].used = 1;
    return 0;
}

extern "C" void cu_upload(CudaEngine *e, void *dst, const void *src, size_t bytes) {
    if (e->status || !bytes) return;
    stage_upload(e, dst, src, bytes, "copying to the device");
}

/* Waits for the copy: the host buffer is the caller's as soon as this returns. */
extern "C" void cu_download(CudaEngine *e, void *dst, const void *src, size_t bytes) {
    if (e->status || !bytes) return;
    if (!cu_check(e, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, e->stream), "copying from the device"))
        cu_check(e, cudaStreamSynchronize(e->stream), "copying from the device");
}

extern "C" void cu_copy(CudaEngine *e, void *dst, const void *src, size_t bytes) {
    if (e->status || !bytes || dst == src) return;
    cu_check(e, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, e->stream), "copying on the device");
}

extern "C" void cu_memzero(CudaEngine *e, void *dst, size_t bytes) {
    if (e->status || !bytes) return;
    cu_check(e, cudaMemsetAsync(dst, 0, bytes, e->stream), "zeroing device memory");
}

/* Grows a device buffer; the old contents are not kept. The stream is drained first, so a
 * buffer that queued kernels still read is not freed under them. */
static void *grow(CudaEngine *e, void **buf, size_t *cap, size_t want, size_t elem, const char *what) {
    if (e->status) return NULL;
    if (want <= *cap) return *buf;
    size_t n = want + want / 4; /* some headroom, fewer regrowths */
    if (*buf && cu_check(e, cudaStreamSynchronize(e->stream), "growing a buffer")) return NULL;
    cudaFree(*buf);
    *buf = NULL;
    *cap = 0;
    e->buf_gen++; /* graphs that captured the old address are stale (graph.cu) */
    cudaError_t err = cudaMalloc(buf, n * elem);
    if (err != cudaSuccess) {
        *buf = NULL;
        cu_fail(e, D2C_ERR_FAIL, "cuda: allocating %zu MiB of %s: %s", (n * elem) >> 20, what,
                cudaGetErrorString(err));
        return NULL;
    }
    *cap = n;
    return *buf;
}

float *cu_scratch(CudaEngine *e, size_t floats) {
    return (float *)grow(e, (void **)&e->scratch, &e->scratch_cap, floats, sizeof(float), "scratch");
}

double *cu_red(CudaEngine *e, size_t n) {
    return (double *)grow(e, (void **)&e->red, &e->red_cap, n, sizeof(double), "reduction space");
}

const int64_t *cu_upload_idx(CudaEngine *e, const int64_t *host_idx, int B) {
    int64_t *d = (int64_t *)grow(e, (void **)&e->idx, &e->idx_cap, (size_t)B, sizeof(int64_t), "index space");
    if (!d) return NULL;
    return stage_upload(e, d, host_idx, (size_t)B * sizeof(int64_t), "copying indices to the device") ? NULL : d;
}

/* ---------------------------------------------------------------- GEMMs */

static cublasOperation_t op(int t) { return t ? CUBLAS_OP_T : CUBLAS_OP_N; }

/* Row-major C = A B is column-major C^T = B^T A^T: swap the operands and M, N. */
void cu_gemm(CudaEngine *e, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
             const float *B, int ldb, float beta, float *C, int ldc) {
    if (e->status) return;
    cu_check_blas(e, cublasSgemm(e->blas, op(tb), op(ta), N, M, K, &alpha, B, ldb, A, lda, &beta, C, ldc),
                  "sgemm");
}

void cu_gemm_batched(CudaEngine *e, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                     long long sa, const float *B, int ldb, long long sb, float beta, float *C, int ldc,
                     long long sc, int count) {
    if (e->status || count < 1) return;
    cu_check_blas(e,
                  cublasSgemmStridedBatched(e->blas, op(tb), op(ta), N, M, K, &alpha, B, ldb, sb, A, lda, sa,
                                            &beta, C, ldc, sc, count),
                  "sgemm (strided batched)");
}

/* ---------------------------------------------------------------- reductions */

#define RED_BLOCKS 1024 /* first-pass blocks at most: the grid depends on n only */

/* partial[block] = sum over the block's grid-stride share of (x - y)^2 (y may be NULL) */
__global__ void k_sum_sq_diff(double *partial, const float *x, const float *y, size_t n) {
    __shared__ double shm[32];
    double s = 0;
    CU_FOR(i, n) {
        double d = (double)x[i] - (y ? (double)y[i] : 0.0);
        s += d * d;
    }
    s = cu_block_sum(s, shm);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

/* out[0] = sum of partial[0..n) (one block of 1024 threads) */
__global__ void k_sum_partials(double *out, const double *partial, int n) {
    __shared__ double shm[32];
    double s = 0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) s += partial[i];
    s = cu_block_sum(s, shm);
    if (threadIdx.x == 0) out[0] = s;
}

void cu_sum_sq_diff(CudaEngine *e, double *out, const float *x, const float *y, size_t n) {
    if (e->status) return;
    unsigned blocks = cu_blocks(n);
    if (blocks > RED_BLOCKS) blocks = RED_BLOCKS;
    double *partial = cu_red(e, 1 + RED_BLOCKS);
    if (!partial) return;
    partial += 1; /* red[0] may be out */
    k_sum_sq_diff<<<blocks, CU_THREADS, 0, e->stream>>>(partial, x, y, n);
    if (CU_LAUNCHED(e, "sum of squares")) return;
    k_sum_partials<<<1, 1024, 0, e->stream>>>(out, partial, (int)blocks);
    CU_LAUNCHED(e, "sum of squares");
}

/* Downloads one double (synchronises); NaN after a failure. */
static double download_double(CudaEngine *e, const double *d) {
    double h = NAN;
    if (e->status) return h;
    if (cu_check(e, cudaMemcpyAsync(&h, d, sizeof h, cudaMemcpyDeviceToHost, e->stream), "copying a result") ||
        cu_check(e, cudaStreamSynchronize(e->stream), "copying a result"))
        return NAN;
    return h;
}

extern "C" double cu_sum_sq(CudaEngine *e, const float *x, size_t n) {
    if (e->status) return NAN;
    if (n == 0) return 0.0;
    double *out = cu_red(e, 1 + RED_BLOCKS);
    if (!out) return NAN;
    cu_sum_sq_diff(e, out, x, NULL, n);
    return download_double(e, out);
}

extern "C" float cu_mse_forward(CudaEngine *e, const float *pred, const float *target, size_t n) {
    if (e->status) return NAN;
    double *out = cu_red(e, 1 + RED_BLOCKS);
    if (!out) return NAN;
    cu_sum_sq_diff(e, out, pred, target, n);
    return (float)(download_double(e, out) / (double)n);
}

/* The asynchronous forms: the same sums, finished on the device into the caller's double.
 * out[0] = (double)(float)(sum / n), the value cu_mse_forward returns */
__global__ void k_mse_finish(double *out, const double *sum, double n) { out[0] = (double)(float)(sum[0] / n); }

extern "C" void cu_mse_forward_to(CudaEngine *e, double *out, const float *pred, const float *target, size_t n) {
    if (e->status) return;
    double *sum = cu_red(e, 1 + RED_BLOCKS);
    if (!sum) return;
    if (n) {
        cu_sum_sq_diff(e, sum, pred, target, n);
    } else if (cu_check(e, cudaMemsetAsync(sum, 0, sizeof *sum, e->stream), "mse")) {
        return;
    }
    k_mse_finish<<<1, 1, 0, e->stream>>>(out, sum, (double)n);
    CU_LAUNCHED(e, "mse");
}

/* norm[0] = sqrt(sum g^2); scale[0] = the clip factor as the host rule computes it (1 when
 * no clipping is due), both in double as op_clip_grad_norm's host code */
__global__ void k_clip_finish(double *norm, double *scale, const double *sumsq, double max_norm) {
    const double v = sqrt(sumsq[0]);
    norm[0] = v;
    scale[0] = max_norm > 0 && v > max_norm ? (double)(float)(max_norm / (v + 1e-6)) : 1.0;
}

__global__ void k_scale_by(float *g, const double *scale, size_t n) {
    const float s = (float)scale[0];
    if (s == 1.0f) return; /* no clipping: leave g as the synchronous rule does */
    CU_FOR(i, n) g[i] *= s;
}

extern "C" void cu_clip_grad_norm_to(CudaEngine *e, float *g, size_t n, double max_norm, double *norm) {
    if (e->status) return;
    double *red = cu_red(e, 1 + RED_BLOCKS);
    if (!red) return;
    if (n) {
        cu_sum_sq_diff(e, red, g, NULL, n);
    } else if (cu_check(e, cudaMemsetAsync(red, 0, sizeof *red, e->stream), "clipping the gradient")) {
        return;
    }
    /* red[1] (a partial sum before) holds the factor: stream order puts it after the sum */
    k_clip_finish<<<1, 1, 0, e->stream>>>(norm, red + 1, red, max_norm);
    if (CU_LAUNCHED(e, "clipping the gradient") || !n) return;
    k_scale_by<<<cu_blocks(n), CU_THREADS, 0, e->stream>>>(g, red + 1, n);
    CU_LAUNCHED(e, "clipping the gradient");
}

/* coef[0] = eps = r > 0 ? (float)(base / r) : 0, coef[1] = 2 eps, r = sqrt(sumsq[0]) */
__global__ void k_fd_finish(float *coef, const double *sumsq, double base) {
    const double r = sqrt(sumsq[0]);
    const float eps = r > 0 ? (float)(base / r) : 0.0f;
    coef[0] = eps;
    coef[1] = 2.0f * eps;
}

extern "C" void cu_fd_coef(CudaEngine *e, float *coef, const float *v, size_t n, double base) {
    if (e->status) return;
    double *red = cu_red(e, 1 + RED_BLOCKS);
    if (!red) return;
    if (n) {
        cu_sum_sq_diff(e, red, v, NULL, n);
    } else if (cu_check(e, cudaMemsetAsync(red, 0, sizeof *red, e->stream), "the finite-difference step")) {
        return;
    }
    k_fd_finish<<<1, 1, 0, e->stream>>>(coef, red, base);
    CU_LAUNCHED(e, "the finite-difference step");
}
