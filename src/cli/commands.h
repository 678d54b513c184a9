/* The d2c subcommands; each parses its own options and returns the exit status. */
#ifndef D2C_CLI_COMMANDS_H
#define D2C_CLI_COMMANDS_H

int cmd_train(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_condense(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_evaluator(int argc, char **argv);
int cmd_experiment(int argc, char **argv);

/* Parses "1,2,2" into up to max ints; returns the count or -1 if malformed. */
int parse_int_list(const char *s, int *out, int max);
/* Applies --threads (>= 1) to OpenMP and OpenBLAS. */
void apply_threads(int threads);
/* Checks --device: "cpu" is always available; "cuda" only in a CUDA build. */
void check_device(const char *command, const char *device);

#endif
