/* The CPU backend's thread count: OpenMP's and OpenBLAS's (the only BLAS call outside the
 * kernels, kept here in engine/cpu). */
#include <cblas.h>
#include <omp.h>

#include "engine/backend.h"

static int g_threads; /* 0 until engine_set_num_threads: OpenMP's default */

void engine_set_num_threads(int n) {
    if (n < 1) n = 1;
    g_threads = n;
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
}

int engine_get_num_threads(void) { return g_threads ? g_threads : omp_get_max_threads(); }
