/* The matching objective's noise floor (`d2c condense --probe`): how far apart the
 * layer-wise gradient distance puts two disjoint real batches of one class (the floor),
 * a pool of other real images (where a real-initialised pool starts) and a pool of noise
 * (a clearly bad pool), per timestep and per number of noise draws per image. Signal is
 * the noise pool's distance above the floor, in units of the floor's spread. */
#ifndef D2C_CONDENSE_PROBE_H
#define D2C_CONDENSE_PROBE_H

#include "condense/condense.h"

/* Prints a table to stdout and writes JSON lines to the log (opt->log_path or
 * OUT.probe.jsonl). D2C_ERR_INPUT for bad data or an unwritable log. */
int condense_probe(const CondenseOptions *opt);

#endif
