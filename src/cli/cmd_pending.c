/* Subcommands still being built in this tree. */
#include "cli/commands.h"
#include "core/util.h"

int cmd_experiment(int argc, char **argv) { (void)argc; (void)argv; die_fail("experiment: not built yet"); }
