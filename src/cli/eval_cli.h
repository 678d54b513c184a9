/* Shared by the evaluation commands (cmd_evaluator.c, cmd_ladder.c). */
#ifndef D2C_CLI_EVAL_CLI_H
#define D2C_CLI_EVAL_CLI_H

/* `d2c evaluator ladder` (cmd_ladder.c); returns a status like every command. */
int cmd_evaluator_ladder(int argc, char **argv);

#endif
