/* D2C_CUDA_PROFILE=1: where a run's GPU time goes, op by op, from CUDA events.
 *
 * backend_cuda.c brackets every table entry with cu_prof_begin / cu_prof_end: a pair of
 * events recorded on the engine's stream around the op's kernels and copies, labelled by
 * the op (convolutions also by their shape, direction and path). The pairs are read back
 * in batches (when the pool of pairs is full, and when the engine is destroyed) and summed
 * per label; cu_prof_report prints the table to stderr, largest first, with the sum of the
 * ops' times against the span from the first op's start to the last one's end, so the
 * share of the span in which the GPU ran none of d2c's work (launch latency, host work,
 * synchronisations) shows too. An op's time is from its start event to its end event, so
 * an idle gap falls between ops, not inside one, except host work inside the op (the GPU
 * waits for it): the first call of each label carries one-time costs of that kind (lazy
 * loading of the kernels, cuBLAS's and cuDNN's set-up, the algorithm choice), so it is kept
 * apart: the table's totals and shares are of the later calls (the steady state), and the
 * first call's time has a column of its own. The events themselves cost a few
 * microseconds of host time per op: profile to see where the time goes, time without it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/cuda/cuda_private.cuh"

#define PROF_PAIRS 4096
#define PROF_ROWS 256

typedef struct {
    char label[64];
    long calls;
    double first_ms; /* the first call's time */
    double ms;       /* the later calls' time */
} ProfRow;

struct CuProfile {
    cudaEvent_t start[PROF_PAIRS], end[PROF_PAIRS];
    int row[PROF_PAIRS];   /* label row of each pending pair */
    char first[PROF_PAIRS]; /* 1: the pair is its label's first call */
    int pending;
    ProfRow rows[PROF_ROWS];
    int nrows;
    double busy_ms, span_ms, first_ms; /* the ops' time (later calls), the spans, the first calls' time */
};

static int wanted(void) {
    const char *v = getenv("D2C_CUDA_PROFILE");
    return v && strcmp(v, "1") == 0;
}

/* made on the first op when D2C_CUDA_PROFILE=1; NULL otherwise (and after a failure) */
static CuProfile *profile(CudaEngine *e) {
    if (e->prof || e->prof_off) return e->prof;
    if (!wanted() || !(e->prof = (CuProfile *)calloc(1, sizeof *e->prof))) {
        e->prof_off = 1;
        return NULL;
    }
    for (int i = 0; i < PROF_PAIRS; i++)
        if (cudaEventCreate(&e->prof->start[i]) != cudaSuccess || cudaEventCreate(&e->prof->end[i]) != cudaSuccess) {
            fprintf(stderr, "d2c: warning: D2C_CUDA_PROFILE: could not create CUDA events; no profile\n");
            cudaGetLastError();
            cu_prof_free(e);
            e->prof_off = 1;
            return NULL;
        }
    return e->prof;
}

/* reads every pending pair back (waiting for the last) and sums them per label */
static void harvest(CuProfile *p) {
    if (!p->pending) return;
    cudaEventSynchronize(p->end[p->pending - 1]);
    float span = 0;
    cudaEventElapsedTime(&span, p->start[0], p->end[p->pending - 1]);
    p->span_ms += span;
    for (int i = 0; i < p->pending; i++) {
        float ms = 0;
        cudaEventElapsedTime(&ms, p->start[i], p->end[i]);
        if (p->first[i]) {
            p->rows[p->row[i]].first_ms += ms;
            p->first_ms += ms;
        } else {
            p->rows[p->row[i]].ms += ms;
            p->busy_ms += ms;
        }
    }
    p->pending = 0;
}

extern "C" int cu_prof_begin(CudaEngine *e) {
    CuProfile *p = profile(e);
    if (!p) return -1;
    if (p->pending == PROF_PAIRS) harvest(p);
    cudaEventRecord(p->start[p->pending], e->stream);
    return p->pending;
}

extern "C" void cu_prof_end(CudaEngine *e, int slot, const char *label) {
    CuProfile *p = e->prof;
    if (slot < 0 || !p) return;
    int r = 0;
    while (r < p->nrows && strcmp(p->rows[r].label, label) != 0) r++;
    if (r == p->nrows) {
        if (p->nrows == PROF_ROWS) r = PROF_ROWS - 1; /* more labels than rows: the last row gathers them */
        else snprintf(p->rows[p->nrows++].label, sizeof p->rows[0].label, "%s", label);
    }
    p->first[slot] = p->rows[r].calls++ == 0;
    p->row[slot] = r;
    cudaEventRecord(p->end[slot], e->stream);
    p->pending = slot + 1;
}

static int by_time(const void *a, const void *b) {
    double d = ((const ProfRow *)b)->ms - ((const ProfRow *)a)->ms;
    return (d > 0) - (d < 0);
}

extern "C" void cu_prof_report(CudaEngine *e) {
    CuProfile *p = e->prof;
    if (!p) return;
    harvest(p);
    qsort(p->rows, (size_t)p->nrows, sizeof p->rows[0], by_time);
    const double steady_span = p->span_ms - p->first_ms;
    fprintf(stderr,
            "d2c: CUDA profile (D2C_CUDA_PROFILE=1) of %s: first calls %.3f ms; later calls %.3f ms of the %.3f ms "
            "span left (%.1f%% of it idle)\n",
            e->name, p->first_ms, p->busy_ms, steady_span,
            steady_span > 0 ? 100 * (1 - p->busy_ms / steady_span) : 0.0);
    fprintf(stderr, "  %-44s %9s %12s %10s %7s %10s\n", "op", "calls", "total ms", "us/call", "share", "first ms");
    for (int r = 0; r < p->nrows; r++) {
        const ProfRow *w = &p->rows[r];
        fprintf(stderr, "  %-44s %9ld %12.3f %10.2f %6.1f%% %10.3f\n", w->label, w->calls - 1, w->ms,
                w->calls > 1 ? 1e3 * w->ms / (double)(w->calls - 1) : 0.0, p->busy_ms > 0 ? 100 * w->ms / p->busy_ms : 0.0,
                w->first_ms);
    }
}

extern "C" void cu_prof_free(CudaEngine *e) {
    CuProfile *p = e->prof;
    if (!p) return;
    for (int i = 0; i < PROF_PAIRS; i++) {
        if (p->start[i]) cudaEventDestroy(p->start[i]);
        if (p->end[i]) cudaEventDestroy(p->end[i]);
    }
    free(p);
    e->prof = NULL;
}
