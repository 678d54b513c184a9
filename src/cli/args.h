/* Command-line option parsing for the d2c subcommands: a table of options per command,
 * "--name value" or "--name=value", with range checks. Parsing returns a status (a bad
 * option is D2C_ERR_INPUT with a message naming it) and never exits, so that it can be
 * fuzzed; the command returns the status and main prints the one "d2c: error:" line. */
#ifndef D2C_CLI_ARGS_H
#define D2C_CLI_ARGS_H

typedef enum { OPT_INT, OPT_FLOAT, OPT_STRING, OPT_FLAG } OptKind;

typedef struct {
    const char *name;      /* without the leading "--" */
    OptKind kind;
    void *dst;             /* int*, double*, const char**, int* (flag) */
    double min, max;       /* inclusive range for numbers (ignored when min > max) */
    const char *help;
    int seen;              /* set by the parser */
} Option;

/* What parse_options returns after "--help" or "-h" printed the usage and the option
 * table to stdout: the command stops there and d2c exits 0 (see cli_exit_status). */
#define ARGS_HELP (-1)

/* Parses argv[first..argc) against opts (terminated by an entry with name NULL):
 * D2C_OK, ARGS_HELP, or D2C_ERR_INPUT naming the command and the option. */
int parse_options(const char *command, const char *usage, Option *opts, int argc, char **argv, int first);
/* D2C_ERR_INPUT unless the option was given. */
int require_option(const char *command, const Option *opts, const char *name);
const Option *find_option(const Option *opts, const char *name);
void print_option_help(const Option *opts);

#endif
