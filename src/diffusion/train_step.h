/* One optimisation step of `d2c train` on an engine: the DDPM loss and its backward,
 * gradient clipping, Adam and the EMA, queued without a host wait and issued through the
 * table's graph_run, so that a backend may replay it (the CUDA engine captures the step as
 * one graph on its third call and launches that afterwards). Everything that changes from
 * step to step reaches the ops through buffers and host arrays at fixed addresses, which a
 * replay reads afresh: x0 and the noise (engine), t and y (host), and the step's scalars
 * (Adam's bias-corrected step size, the EMA decay) uploaded from host fields. */
#ifndef D2C_DIFFUSION_TRAIN_STEP_H
#define D2C_DIFFUSION_TRAIN_STEP_H

#include "diffusion/ddpm.h"
#include "model/adam.h"

typedef struct {
    UNet *net;
    Adam *adam;
    float *ema;            /* (P) engine memory, or NULL: no EMA */
    const Schedule *sched;
    DdpmScratch *scratch;
    double grad_clip;      /* > 0: clip the gradient norm to it */
    int with_stats;        /* 1: the loss and the gradient norm are computed */
    float decay_host;      /* this step's EMA decay */
    float *decay;          /* (1) its engine copy */
    double *out;           /* (2) engine: the last step's loss and gradient norm */
} TrainStep;

/* The step's buffers on net->eng; net, adam, ema, s and w must outlive it and keep their
 * buffers (their addresses are part of the replay key). */
void train_step_create(TrainStep *ts, UNet *net, Adam *adam, float *ema, const Schedule *s, DdpmScratch *w,
                       double grad_clip, int with_stats);
void train_step_destroy(TrainStep *ts);

/* One step on x0 and noise (B, D engine memory), t and y (B host arrays), with learning
 * rate lr and EMA decay ema_decay: grads = 0; the DDPM loss's backward; the norm (before
 * clipping) and, with grad_clip > 0, clipping; Adam; ema = decay ema + (1 - decay) params.
 * With with_stats, the loss and the gradient norm are copied to stats (2 engine doubles,
 * NULL: kept in ts->out only). Returns once queued (an asynchronous engine has not run it
 * yet). To be replayed, each argument must stay at the same address from call to call. */
void train_step_run(TrainStep *ts, const float *x0, const float *noise, const int64_t *t, const int64_t *y, int B,
                    float lr, float ema_decay, double *stats);

#endif
