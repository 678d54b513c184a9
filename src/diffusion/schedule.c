/* Noise schedules (q_sample itself is an engine op: EngineOps.q_sample). */
#include "diffusion/schedule.h"

#include "core/util.h"
#include "engine/backend.h"

#include <math.h>
#include <string.h>

_Static_assert(D2C_T_STEPS == ENGINE_T_STEPS, "q_sample reads ENGINE_T_STEPS alpha_bar values");

void schedule_init(Schedule *s, ScheduleKind kind) {
    D2C_CHECK((int)kind >= 0 && kind < SCHEDULE_COUNT);
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->T = D2C_T_STEPS;
    const int T = s->T;
    switch (kind) {
    case SCHEDULE_LINEAR: {
        /* torch.linspace in float64: the first half counts up from the start, the second
         * half down from the end, which makes the endpoints exact. */
        const double start = 1e-4, end = 0.02, step = (end - start) / (T - 1);
        double prod = 1.0;
        for (int i = 0; i < T; i++) {
            double beta = i < T / 2 ? start + step * i : end - step * (T - 1 - i);
            prod *= 1.0 - beta;
            s->alpha_bar[i] = (float)prod;
        }
        break;
    }
    case SCHEDULE_COSINE: {
        const double sh = 0.008;
        double f0 = cos((0.0 / T + sh) / (1 + sh) * (D2C_PI / 2));
        f0 *= f0;
        double prod = 1.0;
        for (int i = 0; i < T; i++) {
            double a1 = cos(((double)i / T + sh) / (1 + sh) * (D2C_PI / 2));
            double a2 = cos(((double)(i + 1) / T + sh) / (1 + sh) * (D2C_PI / 2));
            double beta = 1.0 - (a2 * a2 / f0) / (a1 * a1 / f0);
            if (beta > 0.999) beta = 0.999;
            prod *= 1.0 - beta;
            s->alpha_bar[i] = (float)prod;
        }
        break;
    }
    case SCHEDULE_COUNT: break; /* refused above */
    }
}

const char *const SCHEDULE_NAMES[SCHEDULE_COUNT] = {[SCHEDULE_LINEAR] = "linear", [SCHEDULE_COSINE] = "cosine"};

int schedule_parse(const char *name, ScheduleKind *kind) {
    int k;
    D2C_TRY(name_parse("noise schedule", SCHEDULE_NAMES, SCHEDULE_COUNT, name, &k));
    *kind = (ScheduleKind)k;
    return D2C_OK;
}

const char *schedule_name(ScheduleKind kind) {
    D2C_CHECK((int)kind >= 0 && kind < SCHEDULE_COUNT);
    return SCHEDULE_NAMES[kind];
}

