/* The state of one d2c / dsa / dm condensation run, shared by the driver (condense.c)
 * and the measurements of the matching objective (scoring.c). Internal to src/condense.
 * Shapes: n pool images of D = C*H*W floats, P network parameters, K timesteps. */
#ifndef D2C_CONDENSE_CONDENSE_STATE_H
#define D2C_CONDENSE_CONDENSE_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "condense/condense.h"
#include "condense/matching.h"
#include "condense/pool.h"
#include "diffusion/schedule.h"
#include "io/dataset.h"
#include "model/adam.h"
#include "model/unet.h"

typedef struct {
    const CondenseOptions *opt;
    Engine *eng;            /* the network's backend (the options' engine or the CPU) */
    Engine *host;           /* the CPU engine, for loops over the host's pool buffers */
    Dataset data;
    ClassIndex ci;
    Pool pool;
    UNet net;
    Schedule sched;
    MatchWork mw;
    Adam pool_opt;          /* over the pool's learnable floats */
    float *pool_grad;       /* (n_learn) */
    float *base;            /* (n, D) initial images when learning a low-res residual */
    float *residual;        /* (n, C, R, R) the residual when pool_res > 0 */
    size_t n_img_learn;     /* learnable image floats: n*D or n*C*R*R */
    size_t n_learn;         /* + conditioning floats */
    int *timesteps;         /* (topk) */
    int K;
    size_t D;
    int max_batch;
    /* per-class buffers */
    float *xr, *xs, *xr_aug, *xs_aug, *noise_r, *noise_s, *gs, *gs_aug, *gcond;
    float *cond_batch;
    /* their engine mirrors (NULL on an engine of host memory: the host buffers serve) */
    float *d_xr, *d_xs, *d_noise_r, *d_noise_s, *d_gs, *d_gcond, *d_cond;
    int64_t *yr, *ys;
    int *sub;               /* syn subset indices */
    float *neumann_p, *neumann_r;   /* (P) implicit differentiation (engine memory) */
    int *inner_idx;         /* (max_batch) pool images of the implicit batch */
    double implicit_ratio;  /* |implicit part| / |direct part| of the last pool gradient */
    double eval_start;      /* held-out matching loss of the initial pool (-1: not measured) */
} Condenser;

/* The host batch buffers as the engine sees them: the pointers to pass to the network
 * and matching code. condense_stage uploads BR real / BS synthetic images (NULL: none),
 * nK noise rows of each and, with_cond, the BS conditioning vectors of cond_batch; on an
 * engine of host memory it returns the host buffers themselves (no copy). */
typedef struct {
    const float *xr, *xs, *noise_r, *noise_s, *cond;
} EngineBatch;
EngineBatch condense_stage(Condenser *c, const float *xr, int BR, const float *xs, int BS, int nK, int with_cond);
/* An engine-side gradient output of n floats, zeroed: the mirror, or host itself. */
float *condense_engine_out(Condenser *c, float *mirror, float *host, size_t n);
/* Brings an engine-side output back into host (no-op when it is host). */
void condense_from_engine(Condenser *c, float *host, const float *dev, size_t n);

/* Draws Br real images of class k from stream index `stream` into xr (labels into yr). */
void draw_real(Condenser *c, int k, int Br, uint64_t stream, float *xr, int64_t *yr);
/* Scores the candidate timesteps and keeps the best K in c->timesteps; *floor_out and
 * *gap_out get the real-vs-real and real-vs-pool distances at the chosen ones. */
void score_timesteps(Condenser *c, int iter, double *floor_out, double *gap_out);
/* K uniformly random timesteps (dsa, dm). */
void random_timesteps(Condenser *c, int iter);
/* The learnable floats: pixels, or the residual when pool_res > 0 (then conditioning
 * vectors follow in the optimiser's view). */
float *condense_learn_floats(Condenser *c);
/* The pool's images from its learnable floats (only for a residual pool). */
void condense_materialise_pool(Condenser *c);
/* OUT.state.safetensors (caller frees). */
char *condense_state_path(const CondenseOptions *o);
/* Writes the state after iteration iter (condense_checkpoint.c); path unchanged on failure. */
int condense_save_state(Condenser *c, int iter);
/* --resume: reads the state into c (buffers allocated for this run's shapes) and the
 * iteration it was saved after; D2C_ERR_INPUT naming the file if it is missing, corrupt
 * or of another run. */
int condense_load_state(Condenser *c, int *iter);

/* ---------------------------------------------------------------- condense_select.c */
/* Held-out matching losses for the pool's metadata (values < 0: not measured). */
typedef struct {
    double start, end, subset;
} EvalSummary;

/* Extra metadata of a pool: key/value pairs, the values formatted in place. */
enum { POOL_META_MAX = 24 };
typedef struct {
    const char *key[POOL_META_MAX]; /* static strings */
    char value[POOL_META_MAX][200];
    int n;
} PoolMeta;
void pool_meta_add(PoolMeta *m, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The real images (idx, K * ipc class-major) that subset method m keeps, with its
 * parameters and result added to meta (NULL: not recorded); m is a selection method (the
 * learned methods' --init maps onto one). Errors as the method's (baselines.h,
 * distmatch.h). */
int condense_select(const CondenseOptions *o, CondenseMethod m, Dataset *data, ClassIndex *ci, int ipc, int *idx,
                    PoolMeta *meta);
/* Writes the pool with its metadata (method, ratio, ipc, source, seed, iterations, ...,
 * then extra) and its figure. */
int condense_write_outputs(const CondenseOptions *o, const Pool *pool, const Dataset *data, double seconds, int iters,
                           const int *timesteps, int K, EvalSummary ev, const PoolMeta *extra);
/* A selection method's whole run (o->method is not a learned one). */
int condense_run_selection(const CondenseOptions *o, Dataset *data, ClassIndex *ci, int ipc, double *seconds);

/* The held-out matching loss of the pool (and of a random real subset, unless
 * subset_out is NULL); see scoring.c. */
void eval_matching(Condenser *c, double *pool_out, double *subset_out);

#endif
