/* Noise schedules (alpha_bar over T = 1000 steps) and the forward noising process
 * q(x_t | x_0) of reference/d2c_spec.py. */
#ifndef D2C_DIFFUSION_SCHEDULE_H
#define D2C_DIFFUSION_SCHEDULE_H

#include <stddef.h>
#include <stdint.h>

#define D2C_T_STEPS 1000

typedef enum { SCHEDULE_LINEAR = 0, SCHEDULE_COSINE = 1, SCHEDULE_COUNT } ScheduleKind;
/* The names of the kinds ("linear", "cosine"), as options and model metadata spell them. */
extern const char *const SCHEDULE_NAMES[SCHEDULE_COUNT];

typedef struct {
    ScheduleKind kind;
    int T;
    float alpha_bar[D2C_T_STEPS];   /* float32, computed in float64 as the spec does */
} Schedule;

/* linear: betas linspace(1e-4, 0.02, T) in float64, alpha_bar = cumprod(1 - beta).
 * cosine: Nichol & Dhariwal (s = 0.008), betas clipped at 0.999. */
void schedule_init(Schedule *s, ScheduleKind kind);
/* "linear" or "cosine" -> kind; D2C_ERR_INPUT listing the names for anything else. */
int schedule_parse(const char *name, ScheduleKind *kind);
const char *schedule_name(ScheduleKind kind);

/* q(x_t | x_0) itself, xt = sqrt(ab[t_b]) x0 + sqrt(1 - ab[t_b]) noise, runs on the engine:
 * EngineOps.q_sample (engine/backend.h) with alpha_bar. */

#endif
