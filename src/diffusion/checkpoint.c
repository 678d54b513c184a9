/* Model checkpoints in safetensors: spec-named weights, training state, JSON metadata. */
#include "diffusion/checkpoint.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "io/safetensors.h"

#define STATE_PARAMS "train.params"
#define STATE_ADAM_M "train.adam_m"
#define STATE_ADAM_V "train.adam_v"
#define STATE_EMA "train.ema"

static char *info_to_json(const ModelInfo *info) {
    char *cfg = unet_config_to_json(&info->cfg);
    cJSON *o = cJSON_Parse(cfg);
    free(cfg);
    cJSON_AddStringToObject(o, "schedule", schedule_name(info->schedule));
    cJSON *size = cJSON_AddArrayToObject(o, "image_size");
    cJSON_AddItemToArray(size, cJSON_CreateNumber(info->H));
    cJSON_AddItemToArray(size, cJSON_CreateNumber(info->W));
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

int checkpoint_save(const char *path, const UNetLayout *lay, const ModelInfo *info, const float *weights,
                    const TrainState *state) {
    StWriter *w = st_writer_new();
    for (int i = 0; i < lay->n_tensors; i++) {
        const ParamTensor *t = &lay->tensors[i];
        st_add(w, t->name, ST_F32, t->ndim, t->shape, weights + t->offset);
    }
    int64_t n = (int64_t)lay->n_params;
    if (state) {
        st_add(w, STATE_PARAMS, ST_F32, 1, &n, state->params);
        st_add(w, STATE_ADAM_M, ST_F32, 1, &n, state->adam_m);
        st_add(w, STATE_ADAM_V, ST_F32, 1, &n, state->adam_v);
        if (state->ema) st_add(w, STATE_EMA, ST_F32, 1, &n, state->ema);
    }
    char *cfg = info_to_json(info);
    st_set_meta(w, "config", cfg);
    free(cfg);
    st_set_meta(w, "format", "d2c-model-1");
    char step[32];
    snprintf(step, sizeof step, "%ld", state ? state->step : info->step);
    st_set_meta(w, "step", step);
    if (info->train_json) st_set_meta(w, "train", info->train_json);
    int st = st_write(w, path);
    st_writer_free(w);
    return st;
}

/* A tensor dimension that fits a config field (1..65535). */
static int dim_field(int64_t v) { return v >= 1 && v <= 65535 ? (int)v : -1; }

static int read_info(const StFile *f, const char *path, ModelInfo *info) {
    info->cfg = unet_default_config();
    info->schedule = SCHEDULE_LINEAR;
    const char *cfg = st_meta(f, "config");
    if (cfg) {
        D2C_TRY(d2c_error_context(unet_config_from_json(cfg, &info->cfg), "%s: bad model config: ", path));
        cJSON *o = cJSON_Parse(cfg);
        const cJSON *sch = cJSON_GetObjectItemCaseSensitive(o, "schedule");
        int st = cJSON_IsString(sch) ? schedule_parse(sch->valuestring, &info->schedule) : D2C_OK;
        const cJSON *size = cJSON_GetObjectItemCaseSensitive(o, "image_size");
        if (st == D2C_OK && cJSON_IsArray(size) && cJSON_GetArraySize(size) == 2) {
            const cJSON *h = cJSON_GetArrayItem(size, 0), *w = cJSON_GetArrayItem(size, 1);
            if (!cJSON_IsNumber(h) || !cJSON_IsNumber(w) || !(h->valuedouble >= 1 && h->valuedouble <= 65535) ||
                !(w->valuedouble >= 1 && w->valuedouble <= 65535))
                st = d2c_error(D2C_ERR_INPUT, "image_size must be two numbers 1..65535");
            else
                info->H = (int)h->valuedouble, info->W = (int)w->valuedouble;
        }
        cJSON_Delete(o);
        D2C_TRY(d2c_error_context(st, "%s: bad model config: ", path));
    } else {
        /* a file written elsewhere (e.g. PyTorch): infer the two size-defining fields */
        const StTensor *cin = st_find(f, "conv_in.weight");
        const StTensor *emb = st_find(f, "class_embed.weight");
        if (!cin || !emb || cin->ndim != 4 || emb->ndim != 2)
            return d2c_error(D2C_ERR_INPUT, "%s: not a d2c model (no 'config' metadata and no conv_in/class_embed tensors)",
                             path);
        info->cfg.in_channels = dim_field(cin->shape[1]);
        info->cfg.base_channels = dim_field(cin->shape[0]);
        info->cfg.num_classes = dim_field(emb->shape[0]) - 1;
    }
    if (info->H <= 0 || info->W <= 0) info->H = info->W = info->cfg.in_channels == 3 ? 32 : 28;
    const char *step = st_meta(f, "step");
    long s;
    if (step && parse_long(step, &s) == 0) info->step = s;
    D2C_TRY(d2c_error_context(unet_config_validate(&info->cfg, info->H, info->W), "%s: bad model config: ", path));
    const char *train = st_meta(f, "train");
    if (train) info->train_json = xstrdup(train);
    return D2C_OK;
}

int checkpoint_read_info(ModelInfo *info, const char *path) {
    memset(info, 0, sizeof *info);
    StFile *f;
    D2C_TRY(st_open(&f, path));
    int st = read_info(f, path, info);
    st_close(f);
    if (st) model_info_free(info);
    return st;
}

static int load_tensors(const StFile *f, const UNetLayout *lay, float *weights) {
    for (int i = 0; i < lay->n_tensors; i++) {
        const ParamTensor *t = &lay->tensors[i];
        const StTensor *st = st_find(f, t->name);
        if (!st)
            return d2c_error(D2C_ERR_INPUT, "%s: missing tensor '%s' (a checkpoint of another model config?)", st_path(f),
                             t->name);
        int same = st->ndim == t->ndim;
        for (int d = 0; same && d < t->ndim; d++) same = st->shape[d] == t->shape[d];
        if (!same)
            return d2c_error(D2C_ERR_INPUT,
                             "%s: tensor '%s' has another shape than this model config expects (a checkpoint of another "
                             "config?)",
                             st_path(f), t->name);
        const float *src;
        D2C_TRY(st_require_f32(f, t->name, t->ndim, t->shape, &src));
        memcpy(weights + t->offset, src, t->count * sizeof(float));
    }
    return D2C_OK;
}

int checkpoint_load_weights(const char *path, const UNetLayout *lay, float *weights) {
    StFile *f;
    D2C_TRY(st_open(&f, path));
    int st = load_tensors(f, lay, weights);
    st_close(f);
    return st;
}

static int load_state(const StFile *f, const char *path, const UNetLayout *lay, float *const dst[4], long *step) {
    int64_t n = (int64_t)lay->n_params;
    const char *names[] = {STATE_PARAMS, STATE_ADAM_M, STATE_ADAM_V, STATE_EMA};
    for (int i = 0; i < 4; i++) {
        if (!st_find(f, names[i]))
            return d2c_error(D2C_ERR_INPUT, "%s: holds no training state ('%s'); cannot resume from it", path, names[i]);
        const float *src;
        D2C_TRY(st_require_f32(f, names[i], 1, &n, &src));
        memcpy(dst[i], src, (size_t)n * sizeof(float));
    }
    const char *meta = st_meta(f, "step");
    long s = 0;
    if (!meta || parse_long(meta, &s) || s < 0) return d2c_error(D2C_ERR_INPUT, "%s: bad 'step' metadata", path);
    *step = s;
    return D2C_OK;
}

int checkpoint_load_state(const char *path, const UNetLayout *lay, float *params, float *adam_m, float *adam_v,
                          float *ema, long *step) {
    StFile *f;
    D2C_TRY(st_open(&f, path));
    float *const dst[4] = {params, adam_m, adam_v, ema};
    int st = load_state(f, path, lay, dst, step);
    st_close(f);
    return st;
}

void model_info_free(ModelInfo *info) {
    free(info->train_json);
    info->train_json = NULL;
}
