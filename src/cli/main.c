/* d2c: the command-line entry point, dispatching to the subcommands; the one place a
 * status becomes an exit status and a "d2c: error:" line. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "core/util.h"
#include "d2c.h"

static const char *USAGE =
    "d2c " D2C_VERSION ": diffusion dataset condensation\n"
    "\n"
    "usage: d2c COMMAND [options]     (d2c COMMAND --help for its options)\n"
    "\n"
    "commands:\n"
    "  train       train a class-conditional diffusion UNet on a data source or pool\n"
    "  sample      draw images from a model with DDIM or DDPM, with guidance\n"
    "  eval        FID, IS, precision/recall, density/coverage of samples against a dataset\n"
    "  condense    learn a small synthetic pool (d2c method and baselines)\n"
    "  evaluator   train the feature network eval measures with\n"
    "  bench       time d2c's kernels and train step beside PyTorch\n"
    "\n"
    "data sources: fashion-mnist (default), mnist:DIR, idx:PREFIX, folder:DIR, FILE.safetensors;\n"
    "append :train or :test to pick a split.\n";

typedef struct {
    const char *name;
    int (*run)(int, char **);
} Command;

static const Command COMMANDS[] = {
    {"train", cmd_train},   {"sample", cmd_sample}, {"eval", cmd_eval},       {"condense", cmd_condense},
    {"bench", cmd_bench},   {"evaluator", cmd_evaluator}, {"experiment", cmd_experiment},
};

int main(int argc, char **argv) {
    if (argc < 2) {
        fputs(USAGE, stderr);
        return cli_exit_status(d2c_error(D2C_ERR_INPUT, "no command given"));
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        fputs(USAGE, stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("d2c %s\n", D2C_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (strcmp(cmd, COMMANDS[i].name) == 0) {
            int st = COMMANDS[i].run(argc, argv);
            close_device();
            return cli_exit_status(st);
        }
    return cli_exit_status(d2c_error(D2C_ERR_INPUT, "unknown command '%.64s' (see d2c --help)", cmd));
}
