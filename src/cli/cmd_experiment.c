/* `d2c experiment`: the headline table. For every (method, budget, seed) cell it runs
 * condense -> train -> sample -> eval as child processes of this same executable, plus the
 * full-data cell, and writes the cells of INTERFACE.md "Experiment results" to a JSON file
 * after each one (atomically), so an interrupted table resumes where it stopped: a cell
 * whose metrics file exists is read back, not recomputed. Each cell carries every
 * evaluator's metrics, CAS and the consensus; at the end the table says where the
 * evaluators disagree on method vs random (experiment_table.c). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/experiment_table.h"
#include "core/util.h"
#include "condense/condense.h"
#include "io/dataset.h"

static const char *USAGE =
    "usage: d2c experiment --out RESULTS.json [--data SRC] [--methods random,d2c,...]\n"
    "                      [--budgets 0.003,0.01,0.03,0.1] [--seeds 0,1] [--steps N] [--batch B]\n"
    "                      [--samples N] [--iters N] [--no-full] [--work DIR] [--threads T]\n"
    "                      [--device cpu|cuda]\n"
    "Runs condense, train, sample and eval for every (method, budget, seed) and the full data\n"
    "(method 'full', budget 1.0), and writes one JSON cell per run.";

static char g_self[4096];

/* Runs this executable with argv (NULL-terminated); *seconds gets the wall seconds.
 * D2C_ERR_FAIL naming the step if the child fails (which printed its own error). */
static int run_self(const char *step, char *const argv[], double *seconds) {
    double t0 = now_seconds();
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return d2c_error(D2C_ERR_FAIL, "experiment: cannot start %s: %s", step, strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* an interrupted table stops its current step too */
        execv(g_self, argv);
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return d2c_error(D2C_ERR_FAIL, "experiment: step '%s' failed (exit status %d)", step,
                         WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    if (seconds) *seconds = now_seconds() - t0;
    return D2C_OK;
}

static int exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

/* Images in a data source (a pool file or a data set's training split). */
static int count_images(const char *src, int *n) {
    Dataset d;
    D2C_TRY(dataset_load(&d, src));
    *n = d.n;
    dataset_free(&d);
    return D2C_OK;
}

static int split_list(char *s, char **out, int max) {
    int n = 0;
    for (char *tok = strtok(s, ","); tok && n < max; tok = strtok(NULL, ",")) out[n++] = tok;
    return n;
}

/* Reads a JSON file written by an earlier step (cell record or metrics). */
static int read_json(const char *path, cJSON **out) {
    size_t len;
    unsigned char *buf;
    D2C_TRY(read_whole_file(path, 0, &buf, &len));
    *out = cJSON_Parse((const char *)buf);
    free(buf);
    if (!*out) return d2c_error(D2C_ERR_INPUT, "%s: not a JSON file (an earlier step's output, corrupt?)", path);
    return D2C_OK;
}

static int write_json(const char *path, const cJSON *j) {
    char *s = cJSON_Print(j);
    AtomicFile af;
    int st = atomic_open(&af, path);
    if (st == D2C_OK) {
        fputs(s, af.f);
        fputc('\n', af.f);
        st = atomic_commit(&af);
    }
    free(s);
    return st;
}

int cmd_experiment(int argc, char **argv) {
    const char *out = NULL, *data = "fashion-mnist", *work = NULL, *device = "cpu";
    const char *methods_s = "random,d2c", *budgets_s = "0.003,0.01,0.03,0.1", *seeds_s = "0";
    int steps = 2000, batch = 64, samples = 1000, iters = 100, threads = 2, full = 1, no_full = 0;
    Option opts[] = {
        {"out", OPT_STRING, &out, 1, 0, "results JSON (required)", 0},
        {"data", OPT_STRING, &data, 1, 0, "data source (default fashion-mnist)", 0},
        {"methods", OPT_STRING, &methods_s, 1, 0, "condensation methods (default random,d2c)", 0},
        {"budgets", OPT_STRING, &budgets_s, 1, 0, "fractions of the training set (default 0.003,0.01,0.03,0.1)", 0},
        {"seeds", OPT_STRING, &seeds_s, 1, 0, "seeds (default 0)", 0},
        {"steps", OPT_INT, &steps, 1, 1e9, "training steps per model (default 2000)", 0},
        {"batch", OPT_INT, &batch, 1, 65536, "images per training step (default 64, as d2c train)", 0},
        {"samples", OPT_INT, &samples, 10, 1e7, "samples per model for eval (default 1000)", 0},
        {"iters", OPT_INT, &iters, 0, 1e8, "condensation iterations of learned methods (default 100)", 0},
        {"no-full", OPT_FLAG, &no_full, 1, 0, "skip the full-data cell", 0},
        {"work", OPT_STRING, &work, 1, 0, "folder for pools, models and samples (default RESULTS.d)", 0},
        {"threads", OPT_INT, &threads, 1, 256, "CPU threads (default 2)", 0},
        {"device", OPT_STRING, &device, 1, 0, "cpu or cuda, passed to every step (default cpu)", 0},
        {NULL, 0, NULL, 0, 0, NULL, 0},
    };
    D2C_TRY(parse_options("experiment", USAGE, opts, argc, argv, 2));
    D2C_TRY(require_option("experiment", opts, "out"));
    Engine *eng; /* checked here, once, before any child runs; the children open their own */
    D2C_TRY(open_device("experiment", device, &eng));
    close_device();
    char *dev = (char *)device;
    full = !no_full;
    ssize_t n = readlink("/proc/self/exe", g_self, sizeof g_self - 1);
    if (n <= 0) return d2c_error(D2C_ERR_FAIL, "experiment: cannot find this executable");
    g_self[n] = 0;
    char *methods_buf = xstrdup(methods_s), *budgets_buf = xstrdup(budgets_s), *seeds_buf = xstrdup(seeds_s);
    char *methods[16], *budgets[16], *seeds[16];
    int nm = split_list(methods_buf, methods, 16), nb = split_list(budgets_buf, budgets, 16), ns = split_list(seeds_buf, seeds, 16);
    if (nm < 1 || nb < 1 || ns < 1)
        return d2c_error(D2C_ERR_INPUT, "experiment: --methods, --budgets and --seeds need at least one entry each");
    for (int i = 0; i < nm; i++) {
        CondenseMethod m;
        D2C_TRY(d2c_error_context(condense_method_parse(methods[i], &m), "experiment: --methods: "));
    }
    for (int i = 0; i < nb; i++) {
        double b;
        if (parse_double(budgets[i], &b) || b <= 0 || b > 1)
            return d2c_error(D2C_ERR_INPUT, "experiment: budget '%.64s' is not in (0, 1]", budgets[i]);
    }
    for (int i = 0; i < ns; i++) {
        long s;
        if (parse_long(seeds[i], &s) || s < 0)
            return d2c_error(D2C_ERR_INPUT, "experiment: seed '%.64s' is not a non-negative integer", seeds[i]);
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", work ? work : out);
    if (!work) strncat(dir, ".d", sizeof dir - strlen(dir) - 1);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return d2c_error(D2C_ERR_INPUT, "experiment: cannot create '%s': %s", dir, strerror(errno));
    D2C_TRY(d2c_error_context(check_writable(out), "experiment: --out: "));

    char th[16], st[16], sm[16], it[16], bt[16];
    snprintf(th, sizeof th, "%d", threads);
    snprintf(st, sizeof st, "%d", steps);
    snprintf(bt, sizeof bt, "%d", batch);
    snprintf(sm, sizeof sm, "%d", samples);
    snprintf(it, sizeof it, "%d", iters);
    cJSON *cells = cJSON_CreateArray();
    const int total = nm * nb * ns + (full ? ns : 0);
    int done = 0;
    for (int si = 0; si < ns; si++)
        for (int mi = -1; mi < nm; mi++)
            for (int bi = 0; bi < (mi < 0 ? 1 : nb); bi++) {
                if (mi < 0 && !full) continue;
                const char *method = mi < 0 ? "full" : methods[mi];
                const char *budget = mi < 0 ? "1.0" : budgets[bi];
                char tag[256], pool[4600], model[4600], samp[4600], metrics[4600], cellp[4600];
                snprintf(tag, sizeof tag, "%s_b%s_s%s", method, budget, seeds[si]);
                snprintf(pool, sizeof pool, "%s/pool_%s.safetensors", dir, tag);
                snprintf(model, sizeof model, "%s/model_%s.safetensors", dir, tag);
                snprintf(samp, sizeof samp, "%s/samples_%s.safetensors", dir, tag);
                snprintf(metrics, sizeof metrics, "%s/metrics_%s.json", dir, tag);
                snprintf(cellp, sizeof cellp, "%s/cell_%s.json", dir, tag);
                done++;
                fprintf(stderr, "experiment: cell %d/%d: %s\n", done, total, tag);
                if (exists(cellp)) {
                    cJSON *cell;
                    D2C_TRY(read_json(cellp, &cell));
                    cJSON_AddItemToArray(cells, cell);
                    continue;
                }
                double t_condense = 0;
                const char *train_data = data;
                if (mi >= 0) {
                    char *a[] = {"d2c", "condense", "--data", (char *)data, "--ratio", (char *)budget, "--method", (char *)method,
                                 "--iters", it, "--seed", seeds[si], "--threads", th, "--device", dev, "--out", pool,
                                 "--quiet", NULL};
                    D2C_TRY(run_self("condense", a, &t_condense));
                    train_data = pool;
                }
                char *ta[] = {"d2c", "train", "--data", (char *)train_data, "--steps", st, "--batch", bt, "--seed", seeds[si],
                              "--threads", th, "--device", dev, "--out", model, "--quiet", NULL};
                double t_train;
                D2C_TRY(run_self("train", ta, &t_train));
                char *sa[] = {"d2c", "sample", "--model", model, "--n", sm, "--seed", seeds[si], "--threads", th, "--device", dev,
                              "--out", samp, "--quiet", NULL};
                D2C_TRY(run_self("sample", sa, NULL));
                char ref[4200];
                snprintf(ref, sizeof ref, "%s:test", data);
                char *ea[] = {"d2c", "eval", "--samples", samp, "--ref", ref, "--threads", th, "--device", dev, "--out", metrics,
                              NULL};
                D2C_TRY(run_self("eval", ea, NULL));
                cJSON *m;
                D2C_TRY(read_json(metrics, &m));
                cJSON *cell = cJSON_CreateObject();
                cJSON_AddStringToObject(cell, "dataset", data);
                cJSON_AddStringToObject(cell, "method", method);
                cJSON_AddNumberToObject(cell, "budget", atof(budget));
                cJSON_AddNumberToObject(cell, "seed", atof(seeds[si]));
                experiment_copy_metrics(cell, m);
                int n_images;
                D2C_TRY(count_images(train_data, &n_images));
                cJSON_AddNumberToObject(cell, "n_images", n_images);
                cJSON_AddNumberToObject(cell, "condense_seconds", t_condense);
                cJSON_AddNumberToObject(cell, "train_seconds", t_train);
                cJSON_AddNumberToObject(cell, "train_steps", steps);
                cJSON_AddNumberToObject(cell, "train_batch", batch);
                cJSON_AddStringToObject(cell, "device", device);
                cJSON_Delete(m);
                D2C_TRY(write_json(cellp, cell));
                cJSON_AddItemToArray(cells, cell);
                D2C_TRY(write_json(out, cells));
            }
    experiment_annotate_agreement(cells);
    D2C_TRY(write_json(out, cells));
    fprintf(stderr, "experiment: %d cells -> %s\n", total, out);
    cJSON_Delete(cells);
    free(methods_buf);
    free(budgets_buf);
    free(seeds_buf);
    return D2C_OK;
}
