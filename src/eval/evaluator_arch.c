/* The evaluator architectures: kind names, the committed defaults, validation, the
 * "arch" JSON of the files, the flat parameter layout and its initialisation.
 *
 * Shape letters as in evaluator.h. */
#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "core/util.h"
#include "eval/evaluator.h"

static const char *const ARCH_NAMES[] = {"convnet-v1", "spatial-v1", "ae-v1"};
static const char *const KIND_NAMES[] = {"pool", "spatial", "ae"};

const char *eval_kind_arch_name(EvalKind kind) { return ARCH_NAMES[kind]; }
const char *eval_kind_name(EvalKind kind) { return KIND_NAMES[kind]; }

int eval_kind_parse(const char *name, EvalKind *kind) {
    for (int k = 0; k < 3; k++)
        if (strcmp(name, KIND_NAMES[k]) == 0 || strcmp(name, ARCH_NAMES[k]) == 0) {
            *kind = (EvalKind)k;
            return D2C_OK;
        }
    if (strcmp(name, "autoencoder") == 0) {
        *kind = EVAL_KIND_AE;
        return D2C_OK;
    }
    return d2c_error(D2C_ERR_INPUT, "evaluator kind '%s' is not pool, spatial or ae", name);
}

EvalArch eval_arch_default(EvalKind kind, int in_channels, int height, int width, int num_classes) {
    EvalArch a = {.kind = kind, .in_channels = in_channels, .height = height, .width = width, .groups = 8,
                  .num_classes = num_classes};
    static const int POOL[] = {32, 64, 64, 96, 128}, SPATIAL[] = {32, 64, 64, 96, 32}, ST5[] = {1, 2, 1, 2, 2};
    static const int AE[] = {32, 64, 64, 16}, ST4[] = {1, 2, 1, 2}, DEC[] = {16, 32, 16};
    if (kind == EVAL_KIND_AE) {
        a.num_stages = 4;
        for (int l = 0; l < 4; l++) a.channels[l] = AE[l], a.strides[l] = ST4[l];
        a.hidden = 128;
        a.num_up = 2;
        for (int u = 0; u < 3; u++) a.dec_channels[u] = DEC[u];
        return a;
    }
    a.num_stages = 5;
    for (int l = 0; l < 5; l++) a.channels[l] = kind == EVAL_KIND_POOL ? POOL[l] : SPATIAL[l], a.strides[l] = ST5[l];
    a.hidden = kind == EVAL_KIND_SPATIAL ? 256 : 0;
    return a;
}

int eval_arch_validate(const EvalArch *a) {
    const int E = D2C_ERR_INPUT;
    if ((int)a->kind < 0 || (int)a->kind > 2) return d2c_error(E, "evaluator: unknown kind %d", (int)a->kind);
    if (a->in_channels < 1 || a->in_channels > 4)
        return d2c_error(E, "evaluator: image channels must be 1..4, got %d", a->in_channels);
    if (a->height < 4 || a->width < 4 || a->height > 1024 || a->width > 1024)
        return d2c_error(E, "evaluator: image size must be 4..1024 per side, got %dx%d", a->height, a->width);
    if (a->num_stages < 1 || a->num_stages > EVAL_MAX_STAGES)
        return d2c_error(E, "evaluator: the network needs 1..%d stages, got %d", EVAL_MAX_STAGES, a->num_stages);
    if (a->num_classes < 2 || a->num_classes > 100000)
        return d2c_error(E, "evaluator: num_classes must be 2..100000, got %d", a->num_classes);
    if (a->groups < 1) return d2c_error(E, "evaluator: groups must be >= 1, got %d", a->groups);
    int h = a->height, w = a->width, down = 0;
    for (int l = 0; l < a->num_stages; l++) {
        if (a->channels[l] < 1 || a->channels[l] > 4096)
            return d2c_error(E, "evaluator: stage %d: channels must be 1..4096, got %d", l, a->channels[l]);
        if (a->channels[l] % a->groups)
            return d2c_error(E, "evaluator: stage %d: %d channels not divisible by %d groups", l, a->channels[l],
                             a->groups);
        if (a->strides[l] != 1 && a->strides[l] != 2)
            return d2c_error(E, "evaluator: stage %d: stride must be 1 or 2, got %d", l, a->strides[l]);
        h = conv_out_size(h, 3, a->strides[l]);
        w = conv_out_size(w, 3, a->strides[l]);
        down += a->strides[l] == 2;
    }
    if (h < 1 || w < 1) return d2c_error(E, "evaluator: too many stride-2 stages for %dx%d images", a->height, a->width);
    long flat = (long)a->channels[a->num_stages - 1] * h * w;
    if (a->kind == EVAL_KIND_POOL) {
        if (a->hidden != 0 || a->num_up != 0) return d2c_error(E, "evaluator: a pool network has no hidden layer or decoder");
        return D2C_OK;
    }
    if (a->hidden < 1 || a->hidden > 65536) return d2c_error(E, "evaluator: hidden width must be 1..65536, got %d", a->hidden);
    if (flat * a->hidden > 64L * 1024 * 1024)
        return d2c_error(E, "evaluator: the %ld x %d hidden layer is too large", flat, a->hidden);
    if (a->kind == EVAL_KIND_SPATIAL) {
        if (a->num_up != 0) return d2c_error(E, "evaluator: a spatial network has no decoder");
        return D2C_OK;
    }
    /* ae: the decoder doubles the smallest map U times back to H x W */
    if (a->num_up != down)
        return d2c_error(E, "evaluator: the decoder needs one upsampling per stride-2 stage (%d), got %d", down, a->num_up);
    if ((a->height >> down) << down != a->height || (a->width >> down) << down != a->width)
        return d2c_error(E, "evaluator: an autoencoder needs H and W divisible by 2^%d, got %dx%d", down, a->height,
                         a->width);
    for (int u = 0; u <= a->num_up; u++) {
        if (a->dec_channels[u] < 1 || a->dec_channels[u] > 4096 || a->dec_channels[u] % a->groups)
            return d2c_error(E, "evaluator: decoder map %d: channels must be 1..4096 and divisible by %d groups, got %d",
                             u, a->groups, a->dec_channels[u]);
    }
    long dec0 = (long)a->dec_channels[0] * (a->height >> down) * (a->width >> down);
    if (dec0 * a->hidden > 64L * 1024 * 1024) return d2c_error(E, "evaluator: the decoder's first layer is too large");
    return D2C_OK;
}

/* ---------------------------------------------------------------- arch JSON */

static void add_int_array(cJSON *o, const char *key, const int *v, int n) {
    cJSON *arr = cJSON_AddArrayToObject(o, key);
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(arr, cJSON_CreateNumber(v[i]));
}

char *eval_arch_to_json(const EvalArch *a) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", eval_kind_arch_name(a->kind));
    cJSON_AddStringToObject(o, "kind", eval_kind_name(a->kind));
    cJSON_AddNumberToObject(o, "in_channels", a->in_channels);
    cJSON_AddNumberToObject(o, "height", a->height);
    cJSON_AddNumberToObject(o, "width", a->width);
    add_int_array(o, "channels", a->channels, a->num_stages);
    add_int_array(o, "strides", a->strides, a->num_stages);
    cJSON_AddNumberToObject(o, "groups", a->groups);
    cJSON_AddNumberToObject(o, "num_classes", a->num_classes);
    cJSON_AddStringToObject(o, "block", "conv3x3+groupnorm+silu");
    if (a->kind == EVAL_KIND_POOL) {
        cJSON_AddStringToObject(o, "head", "global-avg-pool+linear+softmax");
    } else if (a->kind == EVAL_KIND_SPATIAL) {
        cJSON_AddNumberToObject(o, "hidden", a->hidden);
        cJSON_AddStringToObject(o, "head", "flatten+linear+silu (features)+linear+softmax");
    } else {
        cJSON_AddNumberToObject(o, "hidden", a->hidden);
        add_int_array(o, "decoder_channels", a->dec_channels, a->num_up + 1);
        cJSON_AddStringToObject(o, "head", "flatten+linear bottleneck (features); linear probe+softmax on detached features");
        cJSON_AddStringToObject(o, "decoder", "linear+groupnorm+silu, [upsample2x+conv3x3+groupnorm+silu] x U, conv3x3");
    }
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static int json_int(const cJSON *v, int *out) {
    /* the range check first: converting a double outside int's range is undefined */
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= INT_MIN && v->valuedouble <= INT_MAX) ||
        v->valuedouble != (double)(int)v->valuedouble)
        return -1;
    *out = (int)v->valuedouble;
    return 0;
}

static int json_int_array(const cJSON *arr, int *out, int max, int *n) {
    if (!cJSON_IsArray(arr)) return -1;
    *n = cJSON_GetArraySize(arr);
    if (*n < 1 || *n > max) return -1;
    for (int i = 0; i < *n; i++)
        if (json_int(cJSON_GetArrayItem(arr, i), &out[i])) return -1;
    return 0;
}

int eval_arch_from_json(const char *json, EvalArch *a) {
    memset(a, 0, sizeof *a);
    cJSON *o = cJSON_Parse(json);
    int st = D2C_ERR_INPUT;
    if (!cJSON_IsObject(o)) {
        d2c_error(st, "arch is not a JSON object");
        goto done;
    }
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(o, "kind");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
    a->kind = EVAL_KIND_POOL; /* files from before kinds existed */
    if (kind && (!cJSON_IsString(kind) || eval_kind_parse(kind->valuestring, &a->kind))) {
        d2c_error(st, "arch 'kind' is not pool, spatial or ae");
        goto done;
    }
    if (!cJSON_IsString(name) || strcmp(name->valuestring, eval_kind_arch_name(a->kind)) != 0) {
        d2c_error(st, "arch name is not '%s'", eval_kind_arch_name(a->kind));
        goto done;
    }
    const char *keys[] = {"in_channels", "height", "width", "groups", "num_classes"};
    int *dst[] = {&a->in_channels, &a->height, &a->width, &a->groups, &a->num_classes};
    for (int i = 0; i < 5; i++)
        if (json_int(cJSON_GetObjectItemCaseSensitive(o, keys[i]), dst[i])) {
            d2c_error(st, "arch lacks an integer '%s'", keys[i]);
            goto done;
        }
    int L = 0, Ls = 0;
    if (json_int_array(cJSON_GetObjectItemCaseSensitive(o, "channels"), a->channels, EVAL_MAX_STAGES, &L) ||
        json_int_array(cJSON_GetObjectItemCaseSensitive(o, "strides"), a->strides, EVAL_MAX_STAGES, &Ls) || L != Ls) {
        d2c_error(st, "arch needs integer arrays 'channels' and 'strides' of equal length 1..%d", EVAL_MAX_STAGES);
        goto done;
    }
    a->num_stages = L;
    if (a->kind != EVAL_KIND_POOL && json_int(cJSON_GetObjectItemCaseSensitive(o, "hidden"), &a->hidden)) {
        d2c_error(st, "arch lacks an integer 'hidden'");
        goto done;
    }
    if (a->kind == EVAL_KIND_AE) {
        int n = 0;
        if (json_int_array(cJSON_GetObjectItemCaseSensitive(o, "decoder_channels"), a->dec_channels,
                           EVAL_MAX_STAGES + 1, &n) || n < 2) {
            d2c_error(st, "arch needs an integer array 'decoder_channels' of 2..%d entries", EVAL_MAX_STAGES + 1);
            goto done;
        }
        a->num_up = n - 1;
    }
    st = eval_arch_validate(a);
done:
    cJSON_Delete(o);
    return st;
}

/* ---------------------------------------------------------------- layout */

static size_t add_tensor(EvalLayout *lay, const char *name, int fan_in, int ndim, int64_t d0, int64_t d1, int64_t d2,
                         int64_t d3) {
    D2C_CHECK(lay->n_tensors < EVAL_MAX_TENSORS);
    EvalTensor *t = &lay->tensors[lay->n_tensors++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    t->fan_in = fan_in;
    int64_t dims[4] = {d0, d1, d2, d3};
    t->count = 1;
    for (int i = 0; i < ndim; i++) t->shape[i] = dims[i], t->count *= (size_t)dims[i];
    t->offset = lay->n_params;
    lay->n_params += t->count;
    return t->offset;
}

static EvalAffine add_conv(EvalLayout *lay, const char *stem, int cout, int cin) {
    char name[32];
    EvalAffine p;
    snprintf(name, sizeof name, "%.20s.weight", stem);
    p.w = add_tensor(lay, name, cin * 9, 4, cout, cin, 3, 3);
    snprintf(name, sizeof name, "%.20s.bias", stem);
    p.b = add_tensor(lay, name, cin * 9, 1, cout, 0, 0, 0);
    return p;
}

static EvalAffine add_linear(EvalLayout *lay, const char *stem, int out, int in) {
    char name[32];
    EvalAffine p;
    snprintf(name, sizeof name, "%.20s.weight", stem);
    p.w = add_tensor(lay, name, in, 2, out, in, 0, 0);
    snprintf(name, sizeof name, "%.20s.bias", stem);
    p.b = add_tensor(lay, name, in, 1, out, 0, 0, 0);
    return p;
}

static EvalAffine add_norm(EvalLayout *lay, const char *stem, int c) {
    char name[32];
    EvalAffine p;
    snprintf(name, sizeof name, "%.20s.weight", stem);
    p.w = add_tensor(lay, name, 0, 1, c, 0, 0, 0);
    snprintf(name, sizeof name, "%.20s.bias", stem);
    p.b = add_tensor(lay, name, 0, 1, c, 0, 0, 0);
    return p;
}

void eval_layout_build(EvalLayout *lay, const EvalArch *a) {
    memset(lay, 0, sizeof *lay);
    lay->arch = *a;
    int cin = a->in_channels, h = a->height, w = a->width;
    char stem[32];
    for (int l = 0; l < a->num_stages; l++) {
        int c = a->channels[l];
        snprintf(stem, sizeof stem, "conv%d", l);
        lay->conv[l] = add_conv(lay, stem, c, cin);
        snprintf(stem, sizeof stem, "norm%d", l);
        lay->norm[l] = add_norm(lay, stem, c);
        h = conv_out_size(h, 3, a->strides[l]);
        w = conv_out_size(w, 3, a->strides[l]);
        lay->h[l] = h, lay->w[l] = w;
        cin = c;
    }
    lay->flat_dim = cin * h * w;
    if (a->kind == EVAL_KIND_POOL) {
        lay->feature_dim = cin;
        lay->fc = add_linear(lay, "fc", a->num_classes, cin);
        return;
    }
    lay->feature_dim = a->hidden;
    lay->hidden = add_linear(lay, a->kind == EVAL_KIND_AE ? "bottleneck" : "hidden", a->hidden, lay->flat_dim);
    lay->fc = add_linear(lay, a->kind == EVAL_KIND_AE ? "probe" : "fc", a->num_classes, a->hidden);
    if (a->kind != EVAL_KIND_AE) return;
    int U = a->num_up;
    for (int u = 0; u <= U; u++) {
        lay->dec_h[u] = a->height >> (U - u);
        lay->dec_w[u] = a->width >> (U - u);
    }
    int c0 = a->dec_channels[0];
    lay->dec_fc = add_linear(lay, "dec_fc", c0 * lay->dec_h[0] * lay->dec_w[0], a->hidden);
    lay->dec_norm[0] = add_norm(lay, "dec_norm0", c0);
    for (int u = 1; u <= U; u++) {
        snprintf(stem, sizeof stem, "dec_conv%d", u);
        lay->dec_conv[u] = add_conv(lay, stem, a->dec_channels[u], a->dec_channels[u - 1]);
        snprintf(stem, sizeof stem, "dec_norm%d", u);
        lay->dec_norm[u] = add_norm(lay, stem, a->dec_channels[u]);
    }
    lay->out_conv = add_conv(lay, "out_conv", a->in_channels, a->dec_channels[U]);
}

void eval_init_params(const EvalLayout *lay, float *params, uint64_t seed) {
    for (int i = 0; i < lay->n_tensors; i++) {
        const EvalTensor *t = &lay->tensors[i];
        float *p = params + t->offset;
        if (t->fan_in == 0) { /* GroupNorm: gamma 1, beta 0 */
            float v = strstr(t->name, ".weight") ? 1.0f : 0.0f;
            for (size_t j = 0; j < t->count; j++) p[j] = v;
            continue;
        }
        float bound = 1.0f / sqrtf((float)t->fan_in);
        Rng r = rng_stream(seed, RNG_INIT, (uint64_t)i);
        for (size_t j = 0; j < t->count; j++) p[j] = bound * (2.0f * rng_uniform(&r) - 1.0f);
    }
}
