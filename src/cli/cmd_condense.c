/* `d2c condense`: options -> CondenseOptions -> condense_run. */
#include <stdio.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "condense/condense.h"
#include "condense/probe.h"
#include "core/util.h"

static const char *USAGE =
    "usage: d2c condense --data SRC (--ratio R | --ipc N) --out POOL.safetensors [options]\n"
    "Selects (kherding, gadc, facility, random, kcenter, herding, select, jitter) or learns (d2c, dsa,\n"
    "dm) a pool of images per class. kherding (the default): kernel herding, greedy MMD minimisation\n"
    "per class under an RBF kernel (median-distance bandwidth) on a PCA of the pixels; gadc: greedy +\n"
    "swap matching of each class's mean and covariance in that PCA space; facility: facility location\n"
    "(greedy coverage, sum over the class of the kernel to the nearest pick) under kherding's kernel\n"
    "(--bandwidth; --mmd-weight adds kherding's MMD); d2c: bilevel, timestep-aware gradient\n"
    "matching of the DDPM loss (+ --dm-weight distribution matching; --init kherding starts it from\n"
    "the selection). Writes POOL, POOL.png (pool beside real images) and, for the learned methods,\n"
    "POOL.log.jsonl and POOL.state.safetensors (for --resume).";

int cmd_condense(int argc, char **argv) {
    CondenseOptions o = condense_default_options();
    const char *data = o.data, *out = NULL, *method = CONDENSE_METHOD_NAMES[o.method];
    const char *score = TIMESTEP_SCORE_NAMES[o.score], *opt_img = PIXEL_OPTIMISER_NAMES[o.opt_img];
    const char *init = POOL_INIT_NAMES[o.init], *keep = SELECT_KEEP_NAMES[o.select_keep];
    const char *log = NULL, *grid = NULL, *device = "cpu";
    double ratio = 0, lr_img = o.lr_img, lr_net = o.lr_net, dm = o.dm_weight, budget = 0, jitter = o.jitter;
    double bandwidth = o.bandwidth, gadc_lambda = o.gadc_lambda, mmd_weight = o.mmd_weight;
    int pca_dim = o.pca_dim, gadc_passes = o.gadc_passes;
    int ipc = 0, iters = o.iters, topk = o.topk, cand = o.t_candidates, rescore = o.rescore, inner = o.inner_steps;
    int outer = o.outer_loop, rb = o.real_batch, sb = o.syn_batch, draws = o.noise_draws, res = 0, implicit = 0;
    int learn_cond = 0, dsa = 0, channels = o.cfg.base_channels, seed = 0, threads = 2, resume = 0, ckpt = o.ckpt_every;
    int quiet = 0, probe = 0, eval_nets = o.eval_nets, eval_every = o.eval_every;
    Option opts[] = {
        {"data", OPT_STRING, &data, 1, 0, "data source (default fashion-mnist)", 0},
        {"out", OPT_STRING, &out, 1, 0, "pool file to write (required)", 0},
        {"ratio", OPT_FLOAT, &ratio, 1e-9, 1, "pool size as a fraction of the training set, e.g. 0.01", 0},
        {"ipc", OPT_INT, &ipc, 1, 1000000, "images per class (instead of --ratio)", 0},
        {"method", OPT_STRING, &method, 1, 0, "kherding|gadc|facility|d2c|random|kcenter|herding|dsa|dm|select|jitter (default: kherding below 3% of the data, gadc from 3%)", 0},
        {"iters", OPT_INT, &iters, 0, 1e8, "outer iterations (default 100)", 0},
        {"time-budget", OPT_FLOAT, &budget, 0, 1e9, "stop after the iteration that reaches this many seconds (default 0 = none)", 0},
        {"topk", OPT_INT, &topk, 1, 64, "timesteps matched per iteration, K (default 2)", 0},
        {"t-candidates", OPT_INT, &cand, 1, 1000, "candidate timesteps scored (default 50)", 0},
        {"score", OPT_STRING, &score, 1, 0, "timestep score: grad-norm|gap|loss|excess (gap above the real-real floor) (default excess)", 0},
        {"rescore", OPT_INT, &rescore, 1, 1e8, "iterations between scorings (default 20)", 0},
        {"inner", OPT_INT, &inner, 0, 1000, "unrolled SGD steps of the network per iteration (default 5)", 0},
        {"outer-loop", OPT_INT, &outer, 1, 1e8, "iterations between network re-initialisations (default 10)", 0},
        {"real-batch", OPT_INT, &rb, 1, 4096, "real images per class per step (default 64)", 0},
        {"syn-batch", OPT_INT, &sb, 1, 4096, "synthetic images per class per step (default 16)", 0},
        {"noise-draws", OPT_INT, &draws, 1, 64, "noise draws per image, averaging the gradients (default 2)", 0},
        {"pool-res", OPT_INT, &res, 0, 1024, "learn an RxR residual instead of pixels (default 0 = pixels)", 0},
        {"implicit", OPT_INT, &implicit, 0, 100, "Neumann terms of implicit differentiation (default 0 = off)", 0},
        {"lr-img", OPT_FLOAT, &lr_img, 0, 1e3, "pool learning rate (default 0.01)", 0},
        {"lr-net", OPT_FLOAT, &lr_net, 0, 1e3, "inner SGD learning rate (default 0.01)", 0},
        {"opt-img", OPT_STRING, &opt_img, 1, 0, "pool optimiser: adam or sgd (momentum 0.5) (default adam)", 0},
        {"dm-weight", OPT_FLOAT, &dm, 0, 1e6, "weight of the distribution-matching term (default 0)", 0},
        {"learn-cond", OPT_FLAG, &learn_cond, 1, 0, "learn a conditioning vector per synthetic image", 0},
        {"dsa", OPT_FLAG, &dsa, 1, 0, "differentiable Siamese augmentation", 0},
        {"init", OPT_STRING, &init, 1, 0, "pool initialisation of d2c, dsa, dm: real|noise|kcenter|kherding|gadc|facility (default real)", 0},
        {"jitter", OPT_FLOAT, &jitter, 0, 10, "jitter: SD of the Gaussian pixel noise added to the random subset (default 0.075)", 0},
        {"select-keep", OPT_STRING, &keep, 1, 0, "select: keep the easy or hard images (default easy)", 0},
        {"pca-dim", OPT_INT, &pca_dim, 1, 100000, "kherding, gadc, facility: PCA components of the pixel feature space (default 50)", 0},
        {"bandwidth", OPT_FLOAT, &bandwidth, 1e-6, 1e6, "kherding, facility: RBF bandwidth as a multiple of the class's median pairwise distance (default 1)", 0},
        {"mmd-weight", OPT_FLOAT, &mmd_weight, 0, 1e6, "facility: weight of kherding's squared MMD added to the coverage objective (default 0 = facility location alone)", 0},
        {"gadc-lambda", OPT_FLOAT, &gadc_lambda, 0, 1e6, "gadc: weight of the covariance term, in units of 1/tr(Sigma) (default 1)", 0},
        {"gadc-passes", OPT_INT, &gadc_passes, 0, 1000, "gadc: most swap-refinement passes per class (default 5)", 0},
        {"channels", OPT_INT, &channels, 2, 512, "base channels of the matching UNet (default 16)", 0},
        {"eval-nets", OPT_INT, &eval_nets, 0, 64, "networks of the held-out matching loss measured at the start and end (default 1, 0 = off)", 0},
        {"eval-every", OPT_INT, &eval_every, 0, 1e8, "also measure it every N iterations (default 0 = start and end only)", 0},
        {"ckpt-every", OPT_INT, &ckpt, 1, 1e8, "iterations between checkpoints (default 10)", 0},
        {"resume", OPT_FLAG, &resume, 1, 0, "continue from POOL.state.safetensors", 0},
        {"log", OPT_STRING, &log, 1, 0, "JSON-lines log (default POOL.log.jsonl)", 0},
        {"grid", OPT_STRING, &grid, 1, 0, "figure (default POOL.png)", 0},
        {"seed", OPT_INT, &seed, 0, 2147483647, "random seed (default 0)", 0},
        {"threads", OPT_INT, &threads, 1, 256, "CPU threads (default 2)", 0},
        {"device", OPT_STRING, &device, 1, 0, "cpu or cuda (default cpu)", 0},
        {"quiet", OPT_FLAG, &quiet, 1, 0, "no progress output", 0},
        {"probe", OPT_FLAG, &probe, 1, 0, "measure the matching objective's noise floor instead (table + OUT.probe.jsonl)", 0},
        {NULL, 0, NULL, 0, 0, NULL, 0},
    };
    D2C_TRY(parse_options("condense", USAGE, opts, argc, argv, 2));
    D2C_TRY(require_option("condense", opts, "out"));
    D2C_TRY(open_device("condense", device, &o.engine));
    const int has_ratio = (probe && !find_option(opts, "ipc")->seen) || find_option(opts, "ratio")->seen, has_ipc = find_option(opts, "ipc")->seen;
    if (has_ratio == has_ipc) return d2c_error(D2C_ERR_INPUT, "condense: give exactly one of --ratio R (0 < R <= 1) or --ipc N");
    /* the names, parsed once; the library switches on the enums */
    D2C_TRY(d2c_error_context(condense_method_parse(method, &o.method), "condense: --method: "));
    o.method_by_budget = !find_option(opts, "method")->seen;
    D2C_TRY(d2c_error_context(timestep_score_parse(score, &o.score), "condense: --score: "));
    D2C_TRY(d2c_error_context(pixel_optimiser_parse(opt_img, &o.opt_img), "condense: --opt-img: "));
    D2C_TRY(d2c_error_context(pool_init_parse(init, &o.init), "condense: --init: "));
    D2C_TRY(d2c_error_context(select_keep_parse(keep, &o.select_keep), "condense: --select-keep: "));
    if (topk > cand) return d2c_error(D2C_ERR_INPUT, "condense: --topk %d exceeds --t-candidates %d", topk, cand);
    o.data = data;
    o.out = out;
    o.ratio = ratio;
    o.ipc = ipc;
    o.iters = iters;
    o.topk = topk;
    o.t_candidates = cand;
    o.rescore = rescore;
    o.inner_steps = inner;
    o.outer_loop = outer;
    o.real_batch = rb;
    o.syn_batch = sb;
    o.noise_draws = draws;
    o.pool_res = res;
    o.implicit = implicit;
    o.lr_img = lr_img;
    o.lr_net = lr_net;
    o.dm_weight = dm;
    o.learn_cond = learn_cond;
    o.dsa = dsa;
    condense_options_apply_method(&o, find_option(opts, "dm-weight")->seen);
    o.cfg.base_channels = channels;
    o.seed = (uint64_t)seed;
    o.resume = resume;
    o.ckpt_every = ckpt;
    o.log_path = log;
    o.grid_path = grid;
    o.quiet = quiet;
    o.eval_nets = eval_nets;
    o.time_budget = budget;
    o.jitter = jitter;
    o.eval_every = eval_every;
    o.pca_dim = pca_dim;
    o.bandwidth = bandwidth;
    o.gadc_lambda = gadc_lambda;
    o.mmd_weight = mmd_weight;
    o.gadc_passes = gadc_passes;
    apply_threads(threads);
    if (probe) return d2c_error_context(condense_probe(&o), "condense: ");
    double seconds;
    return d2c_error_context(condense_run(&o, &seconds), "condense: ");
}
