/* d2c_model and d2c_train (d2c.h): training through diffusion/train.h's train_run, and a
 * model file loaded into memory (metadata and EMA weights) through diffusion/checkpoint.h. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "core/util.h"
#include "diffusion/train.h"

/* The first version of the struct ends at its last field (d2c.h "ABI"): fields added
 * later are only appended, so older callers' struct_size stays at least this. */
#define D2C_TRAIN_OPTIONS_V1_SIZE (offsetof(d2c_train_options, quiet) + sizeof(int))

_Static_assert(D2C_MAX_LEVELS == UNET_MAX_LEVELS, "d2c.h's D2C_MAX_LEVELS is the UNet's level limit");

void d2c_train_options_init(d2c_train_options *opt) {
    if (!opt) return;
    const TrainOptions t = train_default_options();
    memset(opt, 0, sizeof *opt);
    opt->struct_size = sizeof *opt;
    opt->data = t.data;
    opt->out = NULL;
    opt->log_path = NULL;
    opt->steps = t.steps;
    opt->batch = t.batch;
    opt->lr = t.lr;
    opt->warmup = t.warmup;
    opt->grad_clip = t.grad_clip;
    opt->cond_drop = t.cond_drop;
    opt->ema_decay = t.ema_decay;
    opt->ckpt_every = t.ckpt_every;
    opt->base_channels = t.cfg.base_channels;
    opt->num_levels = t.cfg.num_levels;
    memcpy(opt->channel_mult, t.cfg.channel_mult, sizeof opt->channel_mult);
    memcpy(opt->attn, t.cfg.attn, sizeof opt->attn);
    opt->groups = t.cfg.groups;
    opt->schedule = SCHEDULE_NAMES[t.schedule];
    opt->seed = t.seed;
    opt->resume = t.resume;
    opt->quiet = t.quiet;
    opt->device = NULL;
}

int d2c_train(const d2c_train_options *user, double *final_loss) {
    if (final_loss) *final_loss = 0;
    d2c_train_options o;
    d2c_train_options_init(&o);
    D2C_TRY(api_read_options(&o, sizeof o, D2C_TRAIN_OPTIONS_V1_SIZE, user, "d2c_train_options"));
    TrainOptions t = train_default_options();
    t.data = o.data;
    t.out = o.out;
    t.log_path = o.log_path;
    t.steps = (long)o.steps;
    t.batch = o.batch;
    t.lr = o.lr;
    t.warmup = (long)o.warmup;
    t.grad_clip = o.grad_clip;
    t.cond_drop = o.cond_drop;
    t.ema_decay = o.ema_decay;
    t.ckpt_every = (long)o.ckpt_every;
    if (o.num_levels < 1 || o.num_levels > D2C_MAX_LEVELS)
        return d2c_error(D2C_ERR_INPUT, "d2c_train: num_levels must be 1..%d, got %d", D2C_MAX_LEVELS, o.num_levels);
    t.cfg.base_channels = o.base_channels;
    t.cfg.num_levels = o.num_levels;
    memset(t.cfg.channel_mult, 0, sizeof t.cfg.channel_mult);
    memset(t.cfg.attn, 0, sizeof t.cfg.attn);
    memcpy(t.cfg.channel_mult, o.channel_mult, (size_t)o.num_levels * sizeof(int));
    memcpy(t.cfg.attn, o.attn, (size_t)o.num_levels * sizeof(int));
    t.cfg.groups = o.groups;
    if (o.schedule) D2C_TRY(d2c_error_context(schedule_parse(o.schedule, &t.schedule), "d2c_train: schedule: "));
    t.seed = o.seed;
    t.resume = o.resume != 0;
    t.quiet = o.quiet != 0;
    D2C_TRY(api_open_engine("d2c_train", o.device, &t.engine));
    double loss = 0;
    int st = d2c_error_context(train_run(&t, &loss), "d2c_train: ");
    api_close_engine(t.engine);
    D2C_TRY(st);
    if (final_loss) *final_loss = loss;
    return D2C_OK;
}

int d2c_model_load(d2c_model **out, const char *path) {
    API_NOT_NULL("d2c_model_load", out, "out");
    *out = NULL;
    API_NOT_NULL("d2c_model_load", path, "path");
    d2c_model *m = xcalloc(1, sizeof *m);
    int st;
    D2C_TRY_GOTO(st, checkpoint_read_info(&m->info, path), fail);
    m->lay = xmalloc(sizeof *m->lay);
    unet_layout_build(m->lay, &m->info.cfg);
    m->weights = d2c_try_malloc(m->lay->n_params * sizeof(float));
    if (!m->weights) {
        st = d2c_error(D2C_ERR_FAIL, "%s: out of memory for %zu weights", path, m->lay->n_params);
        goto fail;
    }
    D2C_TRY_GOTO(st, checkpoint_load_weights(path, m->lay, m->weights), fail);
    m->config_json = unet_config_to_json(&m->info.cfg);
    m->path = xstrdup(path);
    *out = m;
    return D2C_OK;
fail:
    d2c_model_free(m);
    return st;
}

void d2c_model_free(d2c_model *m) {
    if (!m) return;
    model_info_free(&m->info);
    free(m->lay);
    free(m->weights);
    free(m->config_json);
    free(m->path);
    free(m);
}

int d2c_model_shape(const d2c_model *m, int *c, int *h, int *w) {
    API_NOT_NULL("d2c_model_shape", m, "the model handle");
    if (c) *c = m->info.cfg.in_channels;
    if (h) *h = m->info.H;
    if (w) *w = m->info.W;
    return D2C_OK;
}

int d2c_model_num_classes(const d2c_model *m, int *k) {
    API_NOT_NULL("d2c_model_num_classes", m, "the model handle");
    API_NOT_NULL("d2c_model_num_classes", k, "k");
    *k = m->info.cfg.num_classes;
    return D2C_OK;
}

int d2c_model_train_steps(const d2c_model *m, int64_t *steps) {
    API_NOT_NULL("d2c_model_train_steps", m, "the model handle");
    API_NOT_NULL("d2c_model_train_steps", steps, "steps");
    *steps = m->info.step;
    return D2C_OK;
}

int d2c_model_num_params(const d2c_model *m, int64_t *n) {
    API_NOT_NULL("d2c_model_num_params", m, "the model handle");
    API_NOT_NULL("d2c_model_num_params", n, "n");
    *n = (int64_t)m->lay->n_params;
    return D2C_OK;
}

int d2c_model_config_json(const d2c_model *m, const char **json) {
    API_NOT_NULL("d2c_model_config_json", m, "the model handle");
    API_NOT_NULL("d2c_model_config_json", json, "json");
    *json = m->config_json;
    return D2C_OK;
}

int d2c_model_schedule(const d2c_model *m, const char **name) {
    API_NOT_NULL("d2c_model_schedule", m, "the model handle");
    API_NOT_NULL("d2c_model_schedule", name, "name");
    *name = schedule_name(m->info.schedule);
    return D2C_OK;
}
