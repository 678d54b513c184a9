/* d2c's public header: the version and the library's main entry points. The library is
 * organised as one directory per concern under src/ (engine, model, diffusion, condense,
 * eval, io, cli); programs embedding d2c include the headers named here. */
#ifndef D2C_H
#define D2C_H

#define D2C_VERSION "0.1.0"

#include "core/util.h"
#include "diffusion/checkpoint.h"
#include "diffusion/ddpm.h"
#include "diffusion/schedule.h"
#include "diffusion/train.h"
#include "model/adam.h"
#include "model/unet.h"

#endif
