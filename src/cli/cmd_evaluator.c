/* `d2c evaluator train|info`: trains the ConvNet classifier `d2c eval` measures images
 * with, or prints what an evaluator file says about itself (and verifies its hash). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/eval_cli.h"
#include "core/util.h"
#include "eval/evaluator.h"
#include "eval/suite.h"
#include "eval/train.h"
#include "io/safetensors.h"

static const char *USAGE =
    "usage: d2c evaluator train --data SRC --out EVALUATOR.safetensors [--kind pool|spatial|ae] [options]\n"
    "       d2c evaluator info EVALUATOR.safetensors\n"
    "       d2c evaluator calibrate EVALUATOR.safetensors --data SRC\n"
    "       d2c evaluator ladder --data SRC --out LADDER.json [options]\n"
    "train: fits the evaluator ConvNet (conv3x3+GroupNorm+SiLU stages, global average pool,\n"
    "linear) on SRC's training split minus --val images (the last of every class), held out\n"
    "for validation; the test split is measured once, at the end, and recorded in the file.\n"
    "Deterministic: the same options give the same weights and hash.\n"
    "calibrate: measures the consensus anchor (FID and KID of 10000 training images + N(0, 0.1^2)\n"
    "noise against the test split) and stores it in the file's metadata (weights untouched).\n"
    "ladder: the sanity ladder every evaluator must order correctly (d2c evaluator ladder --help).";

static char *join_command(int argc, char **argv) {
    size_t n = 4;
    for (int i = 1; i < argc; i++) n += strlen(argv[i]) + 3;
    char *s = xmalloc(n);
    strcpy(s, "d2c");
    for (int i = 1; i < argc; i++) {
        strcat(s, " ");
        strcat(s, argv[i]);
    }
    return s;
}

static int evaluator_train_cmd(int argc, char **argv) {
    EvalTrainOptions o = eval_train_default_options();
    const char *channels = NULL, *strides = NULL, *device = "cpu", *kind = "pool", *dec = NULL;
    int threads = 2, no_flip = 0, no_test = 0;
    double lr = o.lr;
    Option opts[] = {
        {"data", OPT_STRING, &o.data, 1, 0, "data source, training split (default fashion-mnist)", 0},
        {"out", OPT_STRING, &o.out, 1, 0, "evaluator file to write (required)", 0},
        {"epochs", OPT_INT, &o.epochs, 1, 10000, "passes over the training images (default 12)", 0},
        {"batch", OPT_INT, &o.batch, 1, 4096, "images per step (default 128)", 0},
        {"lr", OPT_FLOAT, &lr, 1e-6, 1.0, "Adam peak learning rate, cosine decay (default 2e-3)", 0},
        {"seed", OPT_INT, &o.seed, 0, 2147483647, "random seed (default 0)", 0},
        {"val", OPT_INT, &o.val, 0, 1e9, "held-out validation images, the last of every class (default 5000)", 0},
        {"limit", OPT_INT, &o.limit, 1, 1e9, "use only about N images, the first of every class", 0},
        {"kind", OPT_STRING, &kind, 1, 0, "pool (convnet-v1), spatial (spatial-v1) or ae (ae-v1) (default pool)", 0},
        {"channels", OPT_STRING, &channels, 1, 0, "per-stage channels (default per kind, e.g. 32,64,64,96,128)", 0},
        {"strides", OPT_STRING, &strides, 1, 0, "per-stage strides, 1 or 2 (default per kind, e.g. 1,2,1,2,2)", 0},
        {"hidden", OPT_INT, &o.hidden, 1, 65536, "spatial: fc width; ae: bottleneck width (default 256 / 128)", 0},
        {"decoder-channels", OPT_STRING, &dec, 1, 0, "ae: decoder map channels, smallest map first (default 16,32,16)", 0},
        {"crop-pad", OPT_INT, &o.crop_pad, 0, 16, "random-shift augmentation in pixels (default 0)", 0},
        {"no-flip", OPT_FLAG, &no_flip, 1, 0, "no random horizontal flips", 0},
        {"no-test", OPT_FLAG, &no_test, 1, 0, "skip the final test-split accuracy", 0},
        {"tag", OPT_STRING, &o.tag, 1, 0, "evaluator id prefix (default from the data: fmnist, cifar10, ...)", 0},
        {"threads", OPT_INT, &threads, 1, 256, "CPU threads (default 2)", 0},
        {"device", OPT_STRING, &device, 1, 0, "cpu or cuda (default cpu)", 0},
        {"quiet", OPT_FLAG, &o.quiet, 1, 0, "no progress output", 0},
        {NULL, 0, NULL, 0, 0, NULL, 0},
    };
    D2C_TRY(parse_options("evaluator train", USAGE, opts, argc, argv, 3));
    D2C_TRY(require_option("evaluator train", opts, "out"));
    D2C_TRY(open_device("evaluator train", device, &o.engine));
    o.lr = lr;
    o.flip = !no_flip;
    o.test = !no_test;
    D2C_TRY(d2c_error_context(eval_kind_parse(kind, &o.kind), "--kind: "));
    if (channels || strides) {
        EvalArch def = eval_arch_default(o.kind, 1, 28, 28, 10);
        int L = channels ? parse_int_list(channels, o.channels, EVAL_MAX_STAGES) : def.num_stages;
        int Ls = strides ? parse_int_list(strides, o.strides, EVAL_MAX_STAGES) : def.num_stages;
        for (int l = 0; !channels && l < L; l++) o.channels[l] = def.channels[l];
        for (int l = 0; !strides && l < Ls; l++) o.strides[l] = def.strides[l];
        if (L < 1) return d2c_error(D2C_ERR_INPUT, "evaluator train: --channels must be 1..%d comma-separated integers", EVAL_MAX_STAGES);
        if (Ls != L) return d2c_error(D2C_ERR_INPUT, "evaluator train: --strides must list one stride per --channels entry (%d)", L);
        o.num_stages = L;
    }
    if (dec) {
        o.num_dec = parse_int_list(dec, o.dec_channels, EVAL_MAX_STAGES + 1);
        if (o.num_dec < 2) return d2c_error(D2C_ERR_INPUT, "evaluator train: --decoder-channels must be 2..%d comma-separated integers", EVAL_MAX_STAGES + 1);
        if (o.kind != EVAL_KIND_AE) return d2c_error(D2C_ERR_INPUT, "evaluator train: --decoder-channels is for --kind ae");
    }
    if (o.hidden && o.kind == EVAL_KIND_POOL) return d2c_error(D2C_ERR_INPUT, "evaluator train: --hidden is for --kind spatial or ae");
    apply_threads(threads);
    char *command = join_command(argc, argv);
    o.command = command;
    EvaluatorInfo info;
    int st = evaluator_train(&o, &info);
    free(command);
    D2C_TRY(st);
    printf("%s\t%s\ttest_accuracy %.4f", info.id, info.path, info.test_accuracy);
    if (!isnan(info.test_mse)) printf("\ttest_mse %.6f", info.test_mse);
    printf("\n");
    return 0;
}

static int evaluator_info_cmd(int argc, char **argv) {
    if (argc != 4 || argv[3][0] == '-') return d2c_error(D2C_ERR_INPUT, "evaluator info: give one evaluator file (d2c evaluator info FILE)");
    Evaluator net;
    EvaluatorInfo info;
    D2C_TRY(evaluator_load(&net, NULL, &info, argv[3], 1)); /* verifies the hash */
    StFile *f;
    int st = st_open(&f, argv[3]);
    if (st != D2C_OK) {
        evaluator_destroy(&net);
        return st;
    }
    printf("%-15s%s\n%-15s%s\n%-15s%s (verified)\n%-15s%zu\n%-15s%d\n", "file", info.path, "id", info.id,
           "hash", info.hash, "parameters", net.lay.n_params, "features", net.lay.feature_dim);
    for (int i = 0; i < st_meta_count(f); i++) {
        const char *v, *k = st_meta_at(f, i, &v);
        if (strcmp(k, "hash") && strcmp(k, "id")) printf("%-15s%s\n", k, v);
    }
    st_close(f);
    evaluator_destroy(&net);
    return 0;
}

static int evaluator_calibrate_cmd(int argc, char **argv) {
    if (argc < 4 || argv[3][0] == '-') return d2c_error(D2C_ERR_INPUT, "evaluator calibrate: give one evaluator file (d2c evaluator calibrate FILE --data SRC)");
    const char *path = argv[3], *data = NULL, *cache_opt = NULL, *device = "cpu";
    int threads = 2, no_cache = 0, quiet = 0;
    Option opts[] = {
        {"data", OPT_STRING, &data, 1, 0, "the evaluator's data source, with train and test splits (required)", 0},
        {"cache-dir", OPT_STRING, &cache_opt, 1, 0, "reference-feature cache (default as d2c eval)", 0},
        {"no-cache", OPT_FLAG, &no_cache, 1, 0, "neither read nor write the reference cache", 0},
        {"threads", OPT_INT, &threads, 1, 256, "CPU threads (default 2)", 0},
        {"device", OPT_STRING, &device, 1, 0, "cpu or cuda (default cpu)", 0},
        {"quiet", OPT_FLAG, &quiet, 1, 0, "no progress output", 0},
        {NULL, 0, NULL, 0, 0, NULL, 0},
    };
    D2C_TRY(parse_options("evaluator calibrate", USAGE, opts, argc, argv, 4));
    D2C_TRY(require_option("evaluator calibrate", opts, "data"));
    Engine *eng;
    D2C_TRY(open_device("evaluator calibrate", device, &eng));
    apply_threads(threads);
    SuiteOptions so = suite_default_options();
    so.engine = eng;
    char *cache_dir = no_cache ? NULL : cache_opt ? xstrdup(cache_opt) : ref_cache_default_dir();
    so.cache_dir = cache_dir;
    so.quiet = quiet;
    double fid, kid;
    int st = evaluator_calibrate(path, data, &so, &fid, &kid);
    free(cache_dir);
    D2C_TRY(st);
    printf("%s\tanchor_fid %.6g\tanchor_kid %.6g\n", path, fid, kid);
    return 0;
}

int cmd_evaluator(int argc, char **argv) {
    const char *sub = argc > 2 ? argv[2] : NULL;
    if (!sub || strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0) {
        fprintf(sub ? stdout : stderr, "%s\n", USAGE);
        if (!sub) return d2c_error(D2C_ERR_INPUT, "evaluator: give a subcommand: train, info, calibrate or ladder");
        return 0;
    }
    if (strcmp(sub, "train") == 0) return evaluator_train_cmd(argc, argv);
    if (strcmp(sub, "info") == 0) return evaluator_info_cmd(argc, argv);
    if (strcmp(sub, "calibrate") == 0) return evaluator_calibrate_cmd(argc, argv);
    if (strcmp(sub, "ladder") == 0) return cmd_evaluator_ladder(argc, argv);
    return d2c_error(D2C_ERR_INPUT, "evaluator: unknown subcommand '%s' (train, info, calibrate or ladder)", sub);
}
