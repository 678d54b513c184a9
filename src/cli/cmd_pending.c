/* Subcommands still being built in this tree. */
#include "cli/commands.h"
#include "core/util.h"

int cmd_eval(int argc, char **argv) { (void)argc; (void)argv; die_fail("eval: not built yet"); }
int cmd_bench(int argc, char **argv) { (void)argc; (void)argv; die_fail("bench: not built yet"); }
int cmd_evaluator(int argc, char **argv) { (void)argc; (void)argv; die_fail("evaluator: not built yet"); }
int cmd_experiment(int argc, char **argv) { (void)argc; (void)argv; die_fail("experiment: not built yet"); }
