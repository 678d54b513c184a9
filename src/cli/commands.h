/* The d2c subcommands. Each parses its own options and returns a status (core/status.h,
 * or ARGS_HELP after --help); main turns it into the exit status and, for a failure,
 * the one "d2c: error: <message>" line of INTERFACE.md. Nothing below main exits. */
#ifndef D2C_CLI_COMMANDS_H
#define D2C_CLI_COMMANDS_H

#include "engine/backend.h"

int cmd_train(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_condense(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_evaluator(int argc, char **argv);
int cmd_experiment(int argc, char **argv);

/* The exit status for a command's status: 0 after --help (ARGS_HELP), else st; for a
 * failure prints "d2c: error: <this thread's message>" on stderr first. */
int cli_exit_status(int st);

/* Parses "1,2,2" into up to max ints; returns the count or -1 if malformed. */
int parse_int_list(const char *s, int *out, int max);
/* The number of entries of a comma-separated list (1 + commas; 0 for ""). */
int count_list_entries(const char *s);
/* Applies --threads (>= 1) to OpenMP and OpenBLAS. */
void apply_threads(int threads);
/* --device: the engine to run on. "cpu" is always available (the process-wide CPU
 * engine); "cuda" only in a CUDA build with a GPU (D2C_ERR_INPUT with the reason
 * otherwise). The engine lives until close_device, which main calls after the command
 * (so a command's early returns need no clean-up of it). */
int open_device(const char *command, const char *device, Engine **out);
void close_device(void);

#endif
