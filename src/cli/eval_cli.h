/* Shared by the evaluation commands (eval, evaluator, experiment's tables): turning a
 * library status into the command line's one "d2c: error:" line and exit status. */
#ifndef D2C_CLI_EVAL_CLI_H
#define D2C_CLI_EVAL_CLI_H

#include "core/status.h"
#include "core/util.h"

/* Ends the process with the status of a failed library call and its message. */
#define CLI_TRY(expr)                                                           \
    do {                                                                        \
        int cli_try_status_ = (expr);                                           \
        if (cli_try_status_ == D2C_ERR_INPUT) die_input("%s", d2c_last_error()); \
        if (cli_try_status_ != D2C_OK) die_fail("%s", d2c_last_error());         \
    } while (0)

/* `d2c evaluator ladder` (cmd_ladder.c). */
int cmd_evaluator_ladder(int argc, char **argv);

#endif
