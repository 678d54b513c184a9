/* Diffusion training (`d2c train`): DDPM epsilon loss with classifier-free-guidance label
 * dropout, Adam with linear warm-up and gradient clipping, an EMA of the weights, periodic
 * atomic checkpoints, bit-identical --resume, progress and a JSON-lines log. */
#ifndef D2C_DIFFUSION_TRAIN_H
#define D2C_DIFFUSION_TRAIN_H

#include <stdint.h>

#include "diffusion/schedule.h"
#include "model/unet.h"

typedef struct {
    const char *data;          /* data source (INTERFACE.md SRC) */
    const char *out;           /* model file, also the checkpoint */
    const char *log_path;      /* JSON lines; NULL = "<out>.log.jsonl" */
    long steps;
    int batch;
    double lr;
    long warmup;               /* steps of linear learning-rate warm-up */
    double grad_clip;          /* max global gradient norm, <= 0 = off */
    double cond_drop;          /* probability of the null label (classifier-free guidance) */
    double ema_decay;
    long ckpt_every;           /* steps between checkpoints */
    UNetConfig cfg;            /* num_classes and in_channels are taken from the data */
    ScheduleKind schedule;
    uint64_t seed;
    int resume;
    int quiet;
    Engine *engine;            /* the backend to train on; NULL = engine_cpu_default() */
} TrainOptions;

TrainOptions train_default_options(void);
/* Runs training; *final_loss gets the mean loss over the last 50 steps. D2C_ERR_INPUT
 * for bad data or options (naming them: every option is range-checked first, as `d2c
 * train` checks its flags; a class without images included), D2C_ERR_FAIL
 * when the loss becomes non-finite (naming the step; the checkpoint at opt->out stays the
 * last good one) or a file cannot be written. */
int train_run(const TrainOptions *opt, double *final_loss);

#endif
