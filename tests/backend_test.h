/* Shared pieces of test_backend_ops: result vectors, the normalised error, random inputs
 * uploaded to an engine, the per-op cases (backend_cases.c: layer ops; backend_flat.c:
 * flat-buffer ops) and the whole-model checks (backend_model.c). */
#ifndef D2C_TESTS_BACKEND_TEST_H
#define D2C_TESTS_BACKEND_TEST_H

#include <stddef.h>
#include <stdint.h>

#include "engine/backend.h"

/* A growable vector of doubles: a case's outputs, or their reference. */
typedef struct {
    double *v;
    size_t n, cap;
} Vec;
void vec_put(Vec *o, double x);
void vec_put_f(Vec *o, const float *x, size_t n);
void vec_put_d(Vec *o, const double *x, size_t n);
/* ||a - b|| / ||b||; infinite when a value is not finite or the sizes differ */
double nerr(const Vec *a, const Vec *b);
/* One line "backend what vs against err tol ok|FAIL"; returns 1 on a failure. */
int report(const char *backend, const char *against, const char *what, double err, double tol);

/* Random inputs: every call draws a fresh stream keyed by g_case_seed (then increments
 * it); resetting the seed replays the same inputs on another backend. */
extern uint64_t g_case_seed;
float *rand_host(size_t n, float scale);
/* a device copy of n host floats */
float *to_dev(Engine *e, const float *h, size_t n);
/* appends n floats of device buffer d to out and frees d */
void take(Engine *e, Vec *out, float *d, size_t n);

/* A case runs the ops it names on e and appends their outputs to got; with ref != NULL it
 * also appends the naive double-precision reference of the same outputs. */
typedef void (*CaseFn)(Engine *e, Vec *got, Vec *ref, int variant);
typedef struct {
    const char *label;
    const char *ops; /* comma-separated EngineOps entries the case uses */
    CaseFn fn;
    int variant;
    double tol;
} Case;
extern const Case LAYER_CASES[]; /* backend_cases.c */
extern const int N_LAYER_CASES;
extern const Case FLAT_CASES[];  /* backend_flat.c */
extern const int N_FLAT_CASES;

/* The whole-model checks (a train step, a DDIM run, the hypergradient): returns the number
 * of failures. cuda may be NULL; cuda_graph (a CUDA engine with D2C_CUDA_GRAPH=1, or NULL)
 * runs the checks that go through graph_run (the sampler's). */
int backend_model_checks(Engine *cpu, Engine *cuda, Engine *cuda_graph);
/* The algorithm cache checks (backend_algo.c): setup points D2C_CUDA_ALGO_CACHE at a
 * temporary folder (before the CUDA engine is made; NULL when it cannot); the checks return
 * the number of failures and remove the folder. cuda may be NULL. */
const char *backend_algo_setup(void);
int backend_algo_checks(Engine *cpu, Engine *cuda);

#endif
