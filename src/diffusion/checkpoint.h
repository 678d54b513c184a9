/* Model files (INTERFACE.md "MODEL"): one safetensors tensor per spec parameter, named by
 * its state_dict key, holding the weights sampling uses (the EMA weights); the raw
 * training state (weights, Adam moments, step) under "train." names for --resume; the
 * config, schedule and image size as JSON in the metadata. */
#ifndef D2C_DIFFUSION_CHECKPOINT_H
#define D2C_DIFFUSION_CHECKPOINT_H

#include "diffusion/schedule.h"
#include "model/unet.h"

typedef struct {
    UNetConfig cfg;
    ScheduleKind schedule;
    int H, W;                 /* image size the model was trained on */
    long step;                /* training steps taken */
    char *train_json;         /* training options as JSON (owned), may be NULL */
} ModelInfo;

typedef struct {
    long step;                /* optimiser steps taken */
    const float *params;      /* (n_params) raw weights */
    const float *adam_m, *adam_v;
    const float *ema;         /* (n_params) EMA weights: the spec-named tensors */
} TrainState;

/* Writes path atomically (path keeps its old content on failure: D2C_ERR_INPUT if it
 * cannot be written there, D2C_ERR_FAIL on an I/O error). weights: what the spec-named
 * tensors hold; state may be NULL. */
int checkpoint_save(const char *path, const UNetLayout *lay, const ModelInfo *info,
                    const float *weights, const TrainState *state);

/* Reads the metadata of a model file into *info (config from "config", defaults where a
 * file written elsewhere has none: the spec's config, linear schedule, 28x28 for 1
 * channel, 32x32 for 3). D2C_ERR_INPUT, naming the file, if it is not a model file. */
int checkpoint_read_info(ModelInfo *info, const char *path);

/* Loads the spec-named weights into weights (lay->n_params floats). D2C_ERR_INPUT naming
 * the file and the tensor when a tensor is missing or has another shape. */
int checkpoint_load_weights(const char *path, const UNetLayout *lay, float *weights);

/* Loads the raw training state for --resume into caller buffers (n_params floats each)
 * and its step into *step. D2C_ERR_INPUT if the file holds no training state. */
int checkpoint_load_state(const char *path, const UNetLayout *lay, float *params, float *adam_m,
                          float *adam_v, float *ema, long *step);

void model_info_free(ModelInfo *info);

#endif
