/* UNet configuration, parameter layout (offsets named by the spec's state_dict keys, in
 * its order) and PyTorch-style initialisation. */
#include "model/unet.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>

#include "core/rng.h"
#include "core/util.h"

UNetConfig unet_default_config(void) {
    UNetConfig c = {0};
    c.in_channels = 1;
    c.base_channels = 32;
    c.num_levels = 3;
    c.channel_mult[0] = 1;
    c.channel_mult[1] = 2;
    c.channel_mult[2] = 2;
    c.attn[2] = 1;
    c.num_classes = 10;
    c.groups = 8;
    return c;
}

int unet_config_validate(const UNetConfig *c, int H, int W) {
    const int E = D2C_ERR_INPUT;
    if (c->in_channels < 1 || c->in_channels > 4) return d2c_error(E, "in_channels must be 1..4, got %d", c->in_channels);
    if (c->base_channels < 1 || c->base_channels > 1024)
        return d2c_error(E, "base channels must be 1..1024, got %d", c->base_channels);
    if (c->base_channels % 2)
        return d2c_error(E, "base channels must be even (sinusoidal embedding), got %d", c->base_channels);
    if (c->num_levels < 1 || c->num_levels > UNET_MAX_LEVELS)
        return d2c_error(E, "channel_mult must have 1..%d levels", UNET_MAX_LEVELS);
    if (c->num_classes < 1 || c->num_classes > D2C_MAX_CLASSES)
        return d2c_error(E, "num_classes must be 1..%d, got %d", D2C_MAX_CLASSES, c->num_classes);
    if (c->groups < 1) return d2c_error(E, "groups must be >= 1, got %d", c->groups);
    for (int l = 0; l < c->num_levels; l++) {
        if (c->channel_mult[l] < 1 || c->channel_mult[l] > 64) return d2c_error(E, "channel_mult[%d] must be 1..64", l);
        int ch = c->base_channels * c->channel_mult[l];
        if (ch % c->groups)
            return d2c_error(E, "level %d has %d channels, not divisible by %d groups", l, ch, c->groups);
        if (c->attn[l] != 0 && c->attn[l] != 1) return d2c_error(E, "attn flags must be 0 or 1");
    }
    /* the up path concatenates cur + Cl channels and normalises them too */
    int cur = c->base_channels * c->channel_mult[c->num_levels - 1];
    for (int l = c->num_levels - 1; l >= 0; l--) {
        int ch = c->base_channels * c->channel_mult[l];
        if ((cur + ch) % c->groups)
            return d2c_error(E, "up level %d has %d input channels, not divisible by %d groups", l, cur + ch, c->groups);
        cur = ch;
    }
    int f = 1 << (c->num_levels - 1);
    if (H < 1 || W < 1 || H > 65535 || W > 65535 || H % f || W % f)
        return d2c_error(E, "image size %dx%d must be divisible by %d for %d levels", H, W, f, c->num_levels);
    return D2C_OK;
}

char *unet_config_to_json(const UNetConfig *c) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "in_channels", c->in_channels);
    cJSON_AddNumberToObject(o, "base_channels", c->base_channels);
    cJSON *mult = cJSON_AddArrayToObject(o, "channel_mult");
    cJSON *attn = cJSON_AddArrayToObject(o, "attn_levels");
    for (int l = 0; l < c->num_levels; l++) {
        cJSON_AddItemToArray(mult, cJSON_CreateNumber(c->channel_mult[l]));
        if (c->attn[l]) cJSON_AddItemToArray(attn, cJSON_CreateNumber(l));
    }
    cJSON_AddNumberToObject(o, "num_classes", c->num_classes);
    cJSON_AddNumberToObject(o, "groups", c->groups);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* An integer JSON number in [lo, hi] (checked before any conversion to int). */
static int json_int_in(const cJSON *v, int lo, int hi, int *out) {
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= lo && v->valuedouble <= hi) || v->valuedouble != floor(v->valuedouble))
        return -1;
    *out = (int)v->valuedouble;
    return 0;
}

int unet_config_from_json(const char *json, UNetConfig *c) {
    memset(c, 0, sizeof *c);
    cJSON *o = json ? cJSON_Parse(json) : NULL;
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return d2c_error(D2C_ERR_INPUT, "config is not a JSON object");
    }
    int st = D2C_ERR_INPUT;
    const char *keys[] = {"in_channels", "base_channels", "num_classes", "groups"};
    int *dst[] = {&c->in_channels, &c->base_channels, &c->num_classes, &c->groups};
    for (int i = 0; i < 4; i++)
        if (json_int_in(cJSON_GetObjectItemCaseSensitive(o, keys[i]), INT32_MIN, INT32_MAX, dst[i])) {
            d2c_error(st, "config lacks an integer '%s'", keys[i]);
            goto done;
        }
    const cJSON *mult = cJSON_GetObjectItemCaseSensitive(o, "channel_mult");
    const cJSON *attn = cJSON_GetObjectItemCaseSensitive(o, "attn_levels");
    if (!cJSON_IsArray(mult) || !cJSON_IsArray(attn)) {
        d2c_error(st, "config lacks the arrays 'channel_mult' and 'attn_levels'");
        goto done;
    }
    int L = cJSON_GetArraySize(mult);
    if (L < 1 || L > UNET_MAX_LEVELS) {
        d2c_error(st, "channel_mult must have 1..%d entries", UNET_MAX_LEVELS);
        goto done;
    }
    c->num_levels = L;
    for (int l = 0; l < L; l++)
        if (json_int_in(cJSON_GetArrayItem(mult, l), 1, 64, &c->channel_mult[l])) {
            d2c_error(st, "channel_mult entries must be integers 1..64");
            goto done;
        }
    const cJSON *v;
    cJSON_ArrayForEach(v, attn) {
        int level;
        if (json_int_in(v, 0, L - 1, &level)) {
            d2c_error(st, "attn_levels holds an entry outside 0..%d", L - 1);
            goto done;
        }
        c->attn[level] = 1;
    }
    st = D2C_OK;
done:
    cJSON_Delete(o);
    return st;
}

/* ---- layout: walks the modules in the spec's state_dict order */

typedef struct {
    UNetLayout *lay;
    size_t next;
    char prefix[64];
} LayoutBuilder;

static size_t add_tensor(LayoutBuilder *lb, const char *suffix, int ndim, int64_t d0, int64_t d1,
                         int64_t d2, int64_t d3) {
    UNetLayout *lay = lb->lay;
    D2C_CHECK(lay->n_tensors < UNET_MAX_TENSORS);
    ParamTensor *t = &lay->tensors[lay->n_tensors++];
    snprintf(t->name, sizeof t->name, "%s%s", lb->prefix, suffix);
    int64_t dims[4] = {d0, d1, d2, d3};
    t->ndim = ndim;
    t->count = 1;
    for (int i = 0; i < 4; i++) {
        t->shape[i] = i < ndim ? dims[i] : 0;
        if (i < ndim) t->count *= (size_t)dims[i];
    }
    t->matrix = ndim >= 2;
    t->offset = lb->next;
    lb->next += t->count;
    return t->offset;
}

static AffineOff add_conv(LayoutBuilder *lb, const char *name, int cin, int cout, int k) {
    char w[80], b[80];
    snprintf(w, sizeof w, "%s.weight", name);
    snprintf(b, sizeof b, "%s.bias", name);
    AffineOff a;
    a.w = add_tensor(lb, w, 4, cout, cin, k, k);
    a.b = add_tensor(lb, b, 1, cout, 0, 0, 0);
    return a;
}

static AffineOff add_linear(LayoutBuilder *lb, const char *name, int in, int out) {
    char w[80], b[80];
    snprintf(w, sizeof w, "%s.weight", name);
    snprintf(b, sizeof b, "%s.bias", name);
    AffineOff a;
    a.w = add_tensor(lb, w, 2, out, in, 0, 0);
    a.b = add_tensor(lb, b, 1, out, 0, 0, 0);
    return a;
}

static AffineOff add_norm(LayoutBuilder *lb, const char *name, int ch) {
    char w[80], b[80];
    snprintf(w, sizeof w, "%s.weight", name);
    snprintf(b, sizeof b, "%s.bias", name);
    AffineOff a;
    a.w = add_tensor(lb, w, 1, ch, 0, 0, 0);
    a.b = add_tensor(lb, b, 1, ch, 0, 0, 0);
    return a;
}

static void set_prefix(LayoutBuilder *lb, const char *p) { snprintf(lb->prefix, sizeof lb->prefix, "%s", p); }

static ResBlockOff add_resblock(LayoutBuilder *lb, const char *prefix, int cin, int cout, int E) {
    ResBlockOff r = {0};
    r.cin = cin;
    r.cout = cout;
    r.has_skip = cin != cout;
    set_prefix(lb, prefix);
    r.norm1 = add_norm(lb, "norm1", cin);
    r.conv1 = add_conv(lb, "conv1", cin, cout, 3);
    r.emb_proj = add_linear(lb, "emb_proj", E, cout);
    r.norm2 = add_norm(lb, "norm2", cout);
    r.conv2 = add_conv(lb, "conv2", cout, cout, 3);
    if (r.has_skip) r.skip = add_conv(lb, "skip", cin, cout, 1);
    return r;
}

static AttentionOff add_attention(LayoutBuilder *lb, const char *prefix, int ch) {
    AttentionOff a = {0};
    a.ch = ch;
    set_prefix(lb, prefix);
    a.norm = add_norm(lb, "norm", ch);
    a.qkv = add_conv(lb, "qkv", ch, 3 * ch, 1);
    a.proj = add_conv(lb, "proj", ch, ch, 1);
    return a;
}

void unet_layout_build(UNetLayout *lay, const UNetConfig *cfg) {
    memset(lay, 0, sizeof *lay);
    lay->cfg = *cfg;
    LayoutBuilder lb = {.lay = lay};
    const int C = cfg->base_channels, E = 4 * C, L = cfg->num_levels;
    lay->E = E;
    for (int l = 0; l < L; l++) lay->ch[l] = C * cfg->channel_mult[l];
    char p[64];

    set_prefix(&lb, "");
    lay->time1 = add_linear(&lb, "time_embed.0", C, E);
    lay->time2 = add_linear(&lb, "time_embed.2", E, E);
    lay->class_embed = add_tensor(&lb, "class_embed.weight", 2, cfg->num_classes + 1, E, 0, 0);
    lay->conv_in = add_conv(&lb, "conv_in", cfg->in_channels, C, 3);

    int prev = C;
    for (int l = 0; l < L; l++) {
        snprintf(p, sizeof p, "down.%d.res.", l);
        lay->down[l] = add_resblock(&lb, p, prev, lay->ch[l], E);
        if (cfg->attn[l]) {
            snprintf(p, sizeof p, "down.%d.attn.", l);
            lay->down_attn[l] = add_attention(&lb, p, lay->ch[l]);
        }
        prev = lay->ch[l];
    }
    set_prefix(&lb, "");
    for (int l = 0; l < L - 1; l++) {
        snprintf(p, sizeof p, "downsample.%d", l);
        lay->downsample[l] = add_conv(&lb, p, lay->ch[l], lay->ch[l], 3);
    }
    lay->mid1 = add_resblock(&lb, "mid1.", prev, prev, E);
    lay->mid_attn = add_attention(&lb, "mid_attn.", prev);
    lay->mid2 = add_resblock(&lb, "mid2.", prev, prev, E);

    /* up levels are built from L-1 down to 0 but registered (state_dict) by index */
    int cur_in[UNET_MAX_LEVELS];
    int cur = prev;
    for (int l = L - 1; l >= 0; l--) {
        cur_in[l] = cur;
        cur = lay->ch[l];
    }
    for (int l = 0; l < L; l++) {
        snprintf(p, sizeof p, "up.%d.res.", l);
        lay->up[l] = add_resblock(&lb, p, cur_in[l] + lay->ch[l], lay->ch[l], E);
        if (cfg->attn[l]) {
            snprintf(p, sizeof p, "up.%d.attn.", l);
            lay->up_attn[l] = add_attention(&lb, p, lay->ch[l]);
        }
    }
    set_prefix(&lb, "");
    for (int l = 1; l < L; l++) {
        snprintf(p, sizeof p, "upsample.%d", l);
        lay->upsample[l] = add_conv(&lb, p, lay->ch[l], lay->ch[l], 3);
    }
    lay->out_norm = add_norm(&lb, "out_norm", C);
    lay->conv_out = add_conv(&lb, "conv_out", C, cfg->in_channels, 3);
    lay->n_params = lb.next;
}

const ParamTensor *unet_find_tensor(const UNetLayout *lay, const char *name) {
    for (int i = 0; i < lay->n_tensors; i++)
        if (strcmp(lay->tensors[i].name, name) == 0) return &lay->tensors[i];
    return NULL;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

void unet_init_params(const UNetLayout *lay, float *params, uint64_t seed) {
    for (int i = 0; i < lay->n_tensors; i++) {
        const ParamTensor *t = &lay->tensors[i];
        float *p = params + t->offset;
        Rng r = rng_stream(seed, RNG_INIT, (uint64_t)i);
        int is_norm = strstr(t->name, "norm") != NULL;
        if (strcmp(t->name, "class_embed.weight") == 0) {
            rng_fill_normal(&r, p, t->count);
        } else if (is_norm) {
            float v = ends_with(t->name, ".weight") ? 1.0f : 0.0f;
            for (size_t j = 0; j < t->count; j++) p[j] = v;
        } else {
            /* kaiming_uniform(a = sqrt 5) for weights and the matching uniform for biases
             * both give U(-1/sqrt(fan_in), 1/sqrt(fan_in)); a bias's fan_in is its weight's. */
            const ParamTensor *w = t->ndim >= 2 ? t : t - 1;
            size_t fan_in = w->count / (size_t)w->shape[0];
            float bound = 1.0f / sqrtf((float)fan_in);
            for (size_t j = 0; j < t->count; j++) p[j] = (2.0f * rng_uniform(&r) - 1.0f) * bound;
        }
    }
}
