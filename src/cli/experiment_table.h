/* The evaluation parts of `d2c experiment` (experiment_table.c). */
#ifndef D2C_CLI_EXPERIMENT_TABLE_H
#define D2C_CLI_EXPERIMENT_TABLE_H

#include <cjson/cJSON.h>

/* Copies the METRICS keys a cell carries (every evaluator's, CAS, consensus) into cell. */
void experiment_copy_metrics(cJSON *cell, const cJSON *metrics);
/* Adds "vs_random" (per-evaluator verdicts, evaluators_agree, note) to every learned
 * method's cell and prints the comparison table, marking disagreements. */
void experiment_annotate_agreement(cJSON *cells);

#endif
