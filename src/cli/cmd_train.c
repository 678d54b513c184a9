/* `d2c train`: options -> TrainOptions -> train_run. */
#include <stdio.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "core/util.h"
#include "diffusion/train.h"

static const char *USAGE =
    "usage: d2c train --data SRC --out MODEL.safetensors [options]\n"
    "Trains the class-conditional UNet of the spec with the DDPM epsilon loss. MODEL holds the\n"
    "EMA weights under the spec's names and the training state for --resume.";

int cmd_train(int argc, char **argv) {
    TrainOptions o = train_default_options();
    const char *data = "fashion-mnist", *out = NULL, *log = NULL, *mult = "1,2,2", *attn = "2";
    const char *schedule = "linear", *device = "cpu";
    int steps = (int)o.steps, batch = o.batch, channels = o.cfg.base_channels, groups = o.cfg.groups;
    int seed = 0, threads = 2, warmup = (int)o.warmup, ckpt = (int)o.ckpt_every, resume = 0, quiet = 0;
    double lr = o.lr, clip = o.grad_clip, drop = o.cond_drop, ema = o.ema_decay;
    Option opts[] = {
        {"data", OPT_STRING, &data, 1, 0, "data source (default fashion-mnist)", 0},
        {"out", OPT_STRING, &out, 1, 0, "model file to write (required)", 0},
        {"steps", OPT_INT, &steps, 1, 1e9, "training steps (default 2000)", 0},
        {"batch", OPT_INT, &batch, 1, 4096, "images per step (default 64)", 0},
        {"lr", OPT_FLOAT, &lr, 1e-8, 1.0, "peak learning rate (default 1e-3)", 0},
        {"warmup", OPT_INT, &warmup, 0, 1e9, "linear warm-up steps (default 100)", 0},
        {"grad-clip", OPT_FLOAT, &clip, 0, 1e9, "max gradient norm, 0 = off (default 1)", 0},
        {"channels", OPT_INT, &channels, 2, 512, "base channels C (default 32)", 0},
        {"channel-mult", OPT_STRING, &mult, 1, 0, "per-level channel multipliers (default 1,2,2)", 0},
        {"attn-levels", OPT_STRING, &attn, 0, -1, "levels with self-attention, '' for none (default 2)", 0},
        {"groups", OPT_INT, &groups, 1, 512, "GroupNorm groups (default 8)", 0},
        {"schedule", OPT_STRING, &schedule, 1, 0, "noise schedule: linear or cosine (default linear)", 0},
        {"cond-drop", OPT_FLOAT, &drop, 0, 1, "null-label probability for guidance (default 0.1)", 0},
        {"ema", OPT_FLOAT, &ema, 0, 1, "EMA decay of the weights sampling uses (default 0.999)", 0},
        {"ckpt-every", OPT_INT, &ckpt, 1, 1e9, "steps between checkpoints (default 500)", 0},
        {"resume", OPT_FLAG, &resume, 1, 0, "continue from the checkpoint at --out", 0},
        {"log", OPT_STRING, &log, 1, 0, "JSON-lines log (default MODEL.log.jsonl)", 0},
        {"seed", OPT_INT, &seed, 0, 2147483647, "random seed (default 0)", 0},
        {"threads", OPT_INT, &threads, 1, 256, "CPU threads (default 2)", 0},
        {"device", OPT_STRING, &device, 1, 0, "cpu or cuda (default cpu)", 0},
        {"quiet", OPT_FLAG, &quiet, 1, 0, "no progress output", 0},
        {NULL, 0, NULL, 0, 0, NULL, 0},
    };
    D2C_TRY(parse_options("train", USAGE, opts, argc, argv, 2));
    D2C_TRY(require_option("train", opts, "out"));
    D2C_TRY(open_device("train", device, &o.engine));
    int m[UNET_MAX_LEVELS + 1], a[UNET_MAX_LEVELS + 1];
    int L = parse_int_list(mult, m, UNET_MAX_LEVELS + 1);
    if (L < 1 || L > UNET_MAX_LEVELS)
        return d2c_error(D2C_ERR_INPUT, "train: --channel-mult must be 1..%d comma-separated integers, got '%.64s'",
                         UNET_MAX_LEVELS, mult);
    int na = parse_int_list(attn, a, UNET_MAX_LEVELS + 1);
    if (na < 0)
        return d2c_error(D2C_ERR_INPUT, "train: --attn-levels must be comma-separated level numbers, got '%.64s'", attn);
    o.cfg.num_levels = L;
    memset(o.cfg.attn, 0, sizeof o.cfg.attn);
    for (int l = 0; l < L; l++) o.cfg.channel_mult[l] = m[l];
    for (int i = 0; i < na; i++) {
        if (a[i] < 0 || a[i] >= L)
            return d2c_error(D2C_ERR_INPUT, "train: --attn-levels entry %d is not a level (0..%d)", a[i], L - 1);
        o.cfg.attn[a[i]] = 1;
    }
    o.cfg.base_channels = channels;
    o.cfg.groups = groups;
    D2C_TRY(d2c_error_context(schedule_parse(schedule, &o.schedule), "train: --schedule: "));
    o.data = data;
    o.out = out;
    o.log_path = log;
    o.steps = steps;
    o.batch = batch;
    o.lr = lr;
    o.warmup = warmup;
    o.grad_clip = clip;
    o.cond_drop = drop;
    o.ema_decay = ema;
    o.ckpt_every = ckpt;
    o.seed = (uint64_t)seed;
    o.resume = resume;
    o.quiet = quiet;
    apply_threads(threads);
    double loss;
    D2C_TRY(d2c_error_context(train_run(&o, &loss), "train: "));
    if (!quiet) fprintf(stderr, "train: done, final loss %.4f, model in %s\n", loss, out);
    return D2C_OK;
}
