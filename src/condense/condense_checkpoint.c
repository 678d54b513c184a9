/* The condensation state file (OUT.state.safetensors): the learnable pool floats, their
 * optimiser moments, the matching network and the matched timesteps after an iteration,
 * so that --resume continues exactly; written atomically with the checksum every d2c
 * safetensors file carries, and verified when read. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "condense/condense_state.h"
#include "core/util.h"
#include "io/safetensors.h"

char *condense_state_path(const CondenseOptions *o) {
    char *s = xmalloc(strlen(o->out) + 32);
    sprintf(s, "%s.state.safetensors", o->out);
    return s;
}

float *condense_learn_floats(Condenser *c) { return c->opt->pool_res > 0 ? c->residual : c->pool.images; }

int condense_save_state(Condenser *c, int iter) {
    char *path = condense_state_path(c->opt);
    StWriter *w = st_writer_new();
    int64_t nl = (int64_t)c->n_learn, np = (int64_t)c->net.lay.n_params, ni = (int64_t)c->n_img_learn, k = c->K;
    int64_t nb = (int64_t)c->pool.n * c->D;
    int64_t nc = (int64_t)c->pool.n * c->pool.cond_dim;
    int64_t *ts = xcalloc((size_t)c->K, sizeof(int64_t));
    for (int i = 0; i < c->K; i++) ts[i] = c->timesteps[i];
    float *params = xmalloc_floats(c->net.lay.n_params); /* the network's weights on the host */
    unet_download_params(&c->net, params);
    st_add(w, "pool.learn_images", ST_F32, 1, &ni, condense_learn_floats(c));
    if (c->pool.cond) st_add(w, "pool.cond", ST_F32, 1, &nc, c->pool.cond);
    if (c->base) st_add(w, "pool.base", ST_F32, 1, &nb, c->base);
    st_add(w, "opt.m", ST_F32, 1, &nl, c->pool_opt.m);
    st_add(w, "opt.v", ST_F32, 1, &nl, c->pool_opt.v);
    st_add(w, "net.params", ST_F32, 1, &np, params);
    st_add(w, "timesteps", ST_I64, 1, &k, ts);
    char buf[64];
    snprintf(buf, sizeof buf, "%d", iter);
    st_set_meta(w, "iteration", buf);
    snprintf(buf, sizeof buf, "%ld", c->pool_opt.step);
    st_set_meta(w, "opt_step", buf);
    snprintf(buf, sizeof buf, "%.17g", c->eval_start);
    st_set_meta(w, "eval_start", buf);
    st_set_meta(w, "format", "d2c-condense-state-1");
    int st = st_write(w, path);
    st_writer_free(w);
    free(params);
    free(ts);
    free(path);
    return st;
}

static int read_state(Condenser *c, const StFile *f, const char *path, float *params, int *iter_out) {
    int64_t nl = (int64_t)c->n_learn, np = (int64_t)c->net.lay.n_params, ni = (int64_t)c->n_img_learn, k = c->K;
    int64_t nb = (int64_t)c->pool.n * c->D, nc = (int64_t)c->pool.n * c->pool.cond_dim;
    struct {
        const char *name;
        int64_t n;
        float *dst;
    } parts[] = {
        {"pool.learn_images", ni, condense_learn_floats(c)}, {"pool.cond", nc, c->pool.cond}, {"pool.base", nb, c->base},
        {"opt.m", nl, c->pool_opt.m},               {"opt.v", nl, c->pool_opt.v},   {"net.params", np, params},
    };
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        if (!parts[i].dst) continue; /* no conditioning vectors, no residual base */
        const float *v;
        D2C_TRY(st_require_f32(f, parts[i].name, 1, &parts[i].n, &v));
        memcpy(parts[i].dst, v, (size_t)parts[i].n * sizeof(float));
    }
    const int64_t *ts;
    D2C_TRY(st_require_i64(f, "timesteps", 1, &k, &ts));
    for (int i = 0; i < c->K; i++) {
        if (ts[i] < 0 || ts[i] >= c->sched.T) return d2c_error(D2C_ERR_INPUT, "%s: timestep %lld out of range", path, (long long)ts[i]);
        c->timesteps[i] = (int)ts[i];
    }
    long iter = -1, step = -1;
    const char *si = st_meta(f, "iteration"), *so = st_meta(f, "opt_step");
    if (!si || !so || parse_long(si, &iter) || parse_long(so, &step) || iter < 0 || iter > INT32_MAX || step < 0)
        return d2c_error(D2C_ERR_INPUT, "%s: bad condensation state metadata", path);
    c->pool_opt.step = step;
    const char *se = st_meta(f, "eval_start");
    double e0 = -1;
    if (se && parse_double(se, &e0)) return d2c_error(D2C_ERR_INPUT, "%s: bad 'eval_start' metadata", path);
    c->eval_start = e0;
    *iter_out = (int)iter;
    return D2C_OK;
}

int condense_load_state(Condenser *c, int *iter) {
    char *path = condense_state_path(c->opt);
    struct stat sb;
    int st;
    if (stat(path, &sb) != 0) {
        st = d2c_error(D2C_ERR_INPUT, "--resume: no condensation state at '%s'", path);
    } else {
        StFile *f;
        st = st_open(&f, path);
        if (st == D2C_OK) {
            float *params = xmalloc_floats(c->net.lay.n_params); /* the weights, then uploaded */
            st = read_state(c, f, path, params, iter);
            if (st == D2C_OK) unet_upload_params(&c->net, params);
            free(params);
            st_close(f);
        }
        d2c_error_context(st, "--resume: ");
    }
    free(path);
    if (st == D2C_OK) condense_materialise_pool(c);
    return st;
}

