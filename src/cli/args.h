/* Command-line option parsing for the d2c subcommands: a table of options per command,
 * "--name value" or "--name=value", with range checks. Any problem ends the process with
 * status 2 and one "d2c: error:" line naming the option. */
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

/* Parses argv[first..argc) against opts (terminated by an entry with name NULL).
 * "--help" or "-h" prints usage + the option table to stdout and exits 0. */
void parse_options(const char *command, const char *usage, Option *opts, int argc, char **argv,
                   int first);
/* Dies (status 2) unless the option was given. */
void require_option(const char *command, const Option *opts, const char *name);
const Option *find_option(const Option *opts, const char *name);
void print_option_help(const Option *opts);

#endif
