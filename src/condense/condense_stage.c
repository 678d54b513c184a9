/* The condensation batches as the engine sees them (condense_state.h): the host's batch
 * buffers uploaded into their engine mirrors, or handed through on an engine of host
 * memory; gradient outputs on the engine and back. */
#include "condense/condense_state.h"

EngineBatch condense_stage(Condenser *c, const float *xr, int BR, const float *xs, int BS, int nK, int with_cond) {
    EngineBatch b = {xr, xs, c->noise_r, c->noise_s, with_cond ? c->cond_batch : NULL};
    if (c->eng->host_memory) return b;
    Engine *e = c->eng;
    const size_t D = c->D;
    if (xr) engine_upload_floats(e, c->d_xr, xr, (size_t)BR * D), b.xr = c->d_xr;
    if (xs) engine_upload_floats(e, c->d_xs, xs, (size_t)BS * D), b.xs = c->d_xs;
    if (xr) engine_upload_floats(e, c->d_noise_r, c->noise_r, (size_t)nK * BR * D), b.noise_r = c->d_noise_r;
    if (xs) engine_upload_floats(e, c->d_noise_s, c->noise_s, (size_t)nK * BS * D), b.noise_s = c->d_noise_s;
    if (with_cond) {
        engine_upload_floats(e, c->d_cond, c->cond_batch, (size_t)BS * c->pool.cond_dim);
        b.cond = c->d_cond;
    }
    return b;
}

float *condense_engine_out(Condenser *c, float *mirror, float *host, size_t n) {
    float *p = c->eng->host_memory ? host : mirror;
    engine_zero_floats(c->eng, p, n);
    return p;
}

void condense_from_engine(Condenser *c, float *host, const float *dev, size_t n) {
    if (dev != host) engine_download_floats(c->eng, host, dev, n);
}
