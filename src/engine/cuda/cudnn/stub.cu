/* The cuDNN convolutions of a build without cuDNN (cmake/cuda.cmake compiles this file when
 * it finds no cudnn.h): cu_create refuses D2C_CUDA_CONV=cudnn, so these are never reached (and the cached
 * mode finds no cuDNN candidates). */
#include "engine/cuda/cuda_private.cuh"

int cu_cudnn_built(void) { return 0; }
void cu_cudnn_destroy(CudaEngine *e) {}
void cu_cudnn_conv_forward(CudaEngine *e, float *y, const float *x, const float *w, ConvShape s) {
    cu_fail(e, D2C_ERR_FAIL, "cuda: this d2c was built without cuDNN");
}
void cu_cudnn_conv_backward(CudaEngine *e, float *dx, float *dw, const float *dy, const float *x,
                                       const float *w, ConvShape s) {
    cu_fail(e, D2C_ERR_FAIL, "cuda: this d2c was built without cuDNN");
}
size_t cu_cudnn_version(void) { return 0; }
int cu_cudnn_candidates(CudaEngine *e, int dir, ConvShape s, int *algos, int cap) { return 0; }
int cu_cudnn_dir(CudaEngine *e, int dir, int algo, int trial, ConvShape s, float *out, const float *a,
                 const float *b) {
    cu_fail(e, D2C_ERR_FAIL, "cuda: this d2c was built without cuDNN");
    return -1;
}
