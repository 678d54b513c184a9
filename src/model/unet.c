/* The UNet's forward and backward passes over the engine kernels, and the activation
 * arena that connects them. Module semantics follow reference/d2c_spec.py:
 *   ResBlock:  h = conv1(silu(norm1(x))) + emb_proj(silu(emb)); out = conv2(silu(norm2(h))) + skip(x)
 *   Attention: out = x + proj(attend(qkv(norm(x))))
 *   UNet:      conv_in, down levels (+ stride-2 convs), mid1/mid_attn/mid2, up levels on
 *              concat(h, skip) (+ nearest x2 then conv), out_norm, silu, conv_out.
 * Forward saves what backward needs; backward walks the same graph in reverse with a
 * few reusable gradient buffers. The inference forward runs the same code on a second
 * plan of the same arena in which the block-internal tensors share five buffers (the
 * backward's), so the sampler writes into memory that is still in cache, and only the
 * skips keep their own; there each upsampling and the conv after it are one fused op.
 * Shapes: see unet.h. */
#include "model/unet.h"

#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "core/util.h"

typedef struct {
    const float *x;       /* input (B, cin, N), owned by the caller */
    float *a1;            /* silu(norm1(x)) (B, cin, N) */
    float *mean1, *rstd1; /* (B, G) */
    float *ep;            /* emb_proj(silu(emb)) (B, cout) */
    float *h1;            /* conv1(a1) + ep (B, cout, N) */
    float *a2;            /* silu(norm2(h1)) (B, cout, N) */
    float *mean2, *rstd2; /* (B, G) */
    float *out;           /* (B, cout, N) */
} ResBlockActs;

typedef struct {
    const float *x;     /* input (B, C, N) */
    float *n;           /* norm(x) (B, C, N) */
    float *mean, *rstd; /* (B, G) */
    float *qkv;         /* (B, 3C, N) */
    float *attn;        /* (B, N, N) */
    float *o;           /* attention output before proj (B, C, N) */
    float *out;         /* x + proj(o) (B, C, N) */
} AttentionActs;

struct UNetActivations {
    float *arena;
    size_t arena_floats;
    int B;              /* batch of the last forward */
    int hs[UNET_MAX_LEVELS], ws[UNET_MAX_LEVELS];   /* spatial size per level */
    int has_cond;
    const float *x_in;  /* the last forward's images */
    const int64_t *y_in; /* and labels (the caller's arrays, which backward reads) */
    float *temb;        /* (B, C) */
    float *e1, *e1s;    /* (B, E) time MLP hidden, before and after silu */
    float *emb, *semb;  /* (B, E) embedding and silu(embedding) */
    float *h0;          /* conv_in output (B, C, H, W) */
    ResBlockActs down[UNET_MAX_LEVELS], up[UNET_MAX_LEVELS], mid1, mid2;
    AttentionActs down_attn[UNET_MAX_LEVELS], up_attn[UNET_MAX_LEVELS], mid_attn;
    float *level_out_down[UNET_MAX_LEVELS];  /* down level outputs = skips */
    float *downsampled[UNET_MAX_LEVELS];     /* (B, Cl, h/2, w/2) */
    float *cat[UNET_MAX_LEVELS];             /* (B, cur + Cl, n) up-level inputs */
    float *level_out_up[UNET_MAX_LEVELS];
    float *upsampled[UNET_MAX_LEVELS];       /* (B, Cl, 2h, 2w) */
    float *upconv[UNET_MAX_LEVELS];          /* (B, Cl, 2h, 2w) */
    float *mid_out;
    float *on;                               /* silu(out_norm(h)) (B, C, H, W) */
    float *on_mean, *on_rstd;
    float *scratch;                          /* forward scratch, max tensor size */
    /* backward */
    float *g[2];                             /* ping-pong gradients along the main path */
    float *gt[3];                            /* block-internal gradient temporaries */
    float *gskip[UNET_MAX_LEVELS];           /* gradients of the skips */
    float *dsemb, *demb, *de1s, *de1;        /* (B, E) */
    float *dep;                              /* (B, max cout) */
    float *cur_dsemb, *cur_gskip[UNET_MAX_LEVELS]; /* this pass's dsemb and gskip (grad_buf) */
    struct {                                 /* net->one_clear_backward's arena (grad_buf) */
        float *base;
        size_t cap, used;                    /* floats */
        size_t zeroed;                       /* [0, zeroed) is zero in this pass */
        size_t per_image, slots;             /* the first pass's requests, counted */
        int counted, failed;
        int hint_B[4];                       /* the floats a pass of batch hint_B[i] used */
        size_t hint_used[4];
    } ga;
    size_t max_tensor;                       /* floats in the largest (B, C, N) tensor */
    int saved;                               /* 1: the last forward kept what backward needs */
    int fused;                               /* upsample + conv as one op (inference plan) */
    struct UNetActivations *infer;           /* unet_forward_infer's plan (see plan_infer) */
};

/* ---------------------------------------------------------------- arena planning */

typedef struct {
    float *base;   /* NULL while counting */
    size_t used;
} Bump;

static float *bump(Bump *b, size_t n) {
    n = (n + 15) & ~(size_t)15; /* keep every tensor 64-byte aligned */
    float *p = b->base ? b->base + b->used : NULL;
    b->used += n;
    return p;
}

static void plan_resblock(Bump *b, ResBlockActs *r, const ResBlockOff *o, int B, int N, int G) {
    r->a1 = bump(b, (size_t)B * o->cin * N);
    r->mean1 = bump(b, (size_t)B * G);
    r->rstd1 = bump(b, (size_t)B * G);
    r->ep = bump(b, (size_t)B * o->cout);
    r->h1 = bump(b, (size_t)B * o->cout * N);
    r->a2 = bump(b, (size_t)B * o->cout * N);
    r->mean2 = bump(b, (size_t)B * G);
    r->rstd2 = bump(b, (size_t)B * G);
    r->out = bump(b, (size_t)B * o->cout * N);
}

static void plan_attention(Bump *b, AttentionActs *a, int C, int B, int N, int G) {
    a->n = bump(b, (size_t)B * C * N);
    a->mean = bump(b, (size_t)B * G);
    a->rstd = bump(b, (size_t)B * G);
    a->qkv = bump(b, (size_t)B * 3 * C * N);
    a->attn = bump(b, (size_t)B * N * N);
    a->o = bump(b, (size_t)B * C * N);
    a->out = bump(b, (size_t)B * C * N);
}

static size_t max_tensor_floats(const UNetLayout *lay, int B, const int *hs, const int *ws) {
    size_t m = 0;
    const int L = lay->cfg.num_levels;
    for (int l = 0; l < L; l++) {
        size_t n = (size_t)hs[l] * ws[l];
        int c = lay->up[l].cin > 3 * lay->ch[l] ? lay->up[l].cin : 3 * lay->ch[l];
        if (lay->down[l].cin > c) c = lay->down[l].cin;
        m = D2C_MAX(m, (size_t)B * c * n);
        if (l > 0) m = D2C_MAX(m, (size_t)B * lay->ch[l] * hs[l - 1] * ws[l - 1]);
    }
    m = D2C_MAX(m, (size_t)B * lay->cfg.base_channels * hs[0] * ws[0]);
    m = D2C_MAX(m, (size_t)B * 3 * lay->mid_attn.ch * hs[L - 1] * ws[L - 1]);
    return m;
}

static void plan(UNetActivations *a, const UNetLayout *lay, int B, Bump *b) {
    const UNetConfig *cfg = &lay->cfg;
    const int L = cfg->num_levels, G = cfg->groups, C = cfg->base_channels, E = lay->E;
    a->max_tensor = max_tensor_floats(lay, B, a->hs, a->ws);
    a->temb = bump(b, (size_t)B * C);
    a->e1 = bump(b, (size_t)B * E);
    a->e1s = bump(b, (size_t)B * E);
    a->emb = bump(b, (size_t)B * E);
    a->semb = bump(b, (size_t)B * E);
    a->h0 = bump(b, (size_t)B * C * a->hs[0] * a->ws[0]);
    for (int l = 0; l < L; l++) {
        int N = a->hs[l] * a->ws[l];
        plan_resblock(b, &a->down[l], &lay->down[l], B, N, G);
        if (cfg->attn[l]) plan_attention(b, &a->down_attn[l], lay->ch[l], B, N, G);
        if (l < L - 1) a->downsampled[l] = bump(b, (size_t)B * lay->ch[l] * a->hs[l + 1] * a->ws[l + 1]);
    }
    int Nm = a->hs[L - 1] * a->ws[L - 1];
    plan_resblock(b, &a->mid1, &lay->mid1, B, Nm, G);
    plan_attention(b, &a->mid_attn, lay->mid_attn.ch, B, Nm, G);
    plan_resblock(b, &a->mid2, &lay->mid2, B, Nm, G);
    for (int l = L - 1; l >= 0; l--) {
        int N = a->hs[l] * a->ws[l];
        a->cat[l] = bump(b, (size_t)B * lay->up[l].cin * N);
        plan_resblock(b, &a->up[l], &lay->up[l], B, N, G);
        if (cfg->attn[l]) plan_attention(b, &a->up_attn[l], lay->ch[l], B, N, G);
        if (l > 0) {
            size_t n2 = (size_t)B * lay->ch[l] * a->hs[l - 1] * a->ws[l - 1];
            a->upsampled[l] = bump(b, n2);
            a->upconv[l] = bump(b, n2);
        }
    }
    a->on = bump(b, (size_t)B * C * a->hs[0] * a->ws[0]);
    a->on_mean = bump(b, (size_t)B * G);
    a->on_rstd = bump(b, (size_t)B * G);
    a->scratch = bump(b, a->max_tensor);
    for (int i = 0; i < 2; i++) a->g[i] = bump(b, a->max_tensor);
    for (int i = 0; i < 3; i++) a->gt[i] = bump(b, a->max_tensor);
    for (int l = 0; l < L; l++) a->gskip[l] = bump(b, (size_t)B * lay->ch[l] * a->hs[l] * a->ws[l]);
    a->dsemb = bump(b, (size_t)B * E);
    a->demb = bump(b, (size_t)B * E);
    a->de1s = bump(b, (size_t)B * E);
    a->de1 = bump(b, (size_t)B * E);
    int maxc = C;
    for (int l = 0; l < L; l++) maxc = D2C_MAX(maxc, lay->ch[l]);
    a->dep = bump(b, (size_t)B * maxc);
}

/* The inference plan v: a's plan with every tensor that is only read by the next op or
 * two, and by backward, moved into five shared buffers (backward's own, each max_tensor
 * floats): inside a block x -> ta -> tb -> ta -> out (a1 = a2, h1 = the skip's scratch;
 * attention: n = o), the main path alternating between p and q, the concatenations and
 * the upsampled tensors in c. The down levels' outputs (the skips) keep their slots, as
 * do the small tensors (statistics, emb_proj, attention weights). Upsampling and its conv
 * run as the fused upsample2x_conv2d_forward (c its scratch), which nothing downstream of
 * the inference forward can tell from the pair but by float rounding. */
static void plan_resblock_infer(ResBlockActs *r, float *ta, float *tb, float *out) {
    r->a1 = r->a2 = ta;
    r->h1 = tb;
    r->out = out;
}

static void plan_attention_infer(AttentionActs *t, float *ta, float *tb, float *out) {
    t->n = t->o = ta;
    t->qkv = tb;
    t->out = out;
}

static void plan_infer(UNetActivations *v, const UNetActivations *a, const UNetConfig *cfg) {
    const int L = cfg->num_levels;
    float *p = a->g[0], *q = a->g[1], *c = a->gt[0], *ta = a->gt[1], *tb = a->gt[2];
    *v = *a;
    v->infer = NULL;
    v->fused = 1;
    v->scratch = tb; /* the class rows, then each skip conv's output (h1 is dead by then) */
    v->h0 = p;
    for (int l = 0; l < L; l++) { /* level input in p; output (the skip) in its own slot */
        float *skip = cfg->attn[l] ? a->down_attn[l].out : a->down[l].out;
        plan_resblock_infer(&v->down[l], ta, tb, cfg->attn[l] ? q : skip);
        if (cfg->attn[l]) plan_attention_infer(&v->down_attn[l], ta, tb, skip);
        if (l < L - 1) v->downsampled[l] = p;
    }
    plan_resblock_infer(&v->mid1, ta, tb, p);
    plan_attention_infer(&v->mid_attn, ta, tb, q);
    plan_resblock_infer(&v->mid2, ta, tb, p);
    float *h = p, *other = q; /* the up level's input: mid2's output, then each upconv */
    for (int l = L - 1; l >= 0; l--) {
        v->cat[l] = c;
        plan_resblock_infer(&v->up[l], ta, tb, cfg->attn[l] ? h : other);
        if (cfg->attn[l]) plan_attention_infer(&v->up_attn[l], ta, tb, other);
        float *out = other; /* level_out_up[l]; the upconv goes to the other one */
        other = h;
        h = out;
        if (l > 0) {
            v->upsampled[l] = c;
            v->upconv[l] = other;
            other = h;
            h = v->upconv[l];
        }
    }
    v->on = ta;
}

int unet_create(UNet *net, Engine *eng, const UNetConfig *cfg, int H, int W, int max_batch) {
    memset(net, 0, sizeof *net);
    net->eng = eng ? eng : engine_cpu_default();
    Engine *e = net->eng;
    D2C_TRY(d2c_error_context(unet_config_validate(cfg, H, W), "model config: "));
    if (max_batch < 1) return d2c_error(D2C_ERR_INPUT, "model config: batch size must be >= 1, got %d", max_batch);
    unet_layout_build(&net->lay, cfg);
    net->H = H;
    net->W = W;
    net->max_batch = max_batch;
    const size_t n_params = net->lay.n_params;
    if (engine_alloc(e, (void **)&net->params, n_params * sizeof(float)) != D2C_OK ||
        engine_alloc(e, (void **)&net->grads, n_params * sizeof(float)) != D2C_OK) {
        unet_destroy(net);
        return d2c_error(D2C_ERR_FAIL, "out of %s memory for a UNet of %zu parameters", e->name, n_params);
    }
    engine_zero_floats(e, net->params, n_params);
    engine_zero_floats(e, net->grads, n_params);

    UNetActivations *a = xcalloc(1, sizeof *a);
    a->hs[0] = H;
    a->ws[0] = W;
    for (int l = 1; l < cfg->num_levels; l++) {
        a->hs[l] = conv_out_size(a->hs[l - 1], 3, 2);
        a->ws[l] = conv_out_size(a->ws[l - 1], 3, 2);
    }
    Bump count = {0};
    plan(a, &net->lay, max_batch, &count);
    a->arena_floats = count.used;
    net->acts = a;
    if (engine_alloc(e, (void **)&a->arena, count.used * sizeof(float)) != D2C_OK) {
        unet_destroy(net);
        return d2c_error(D2C_ERR_FAIL, "out of %s memory for the UNet's activations (%.1f MiB for batches of %d %dx%d images)",
                         e->name, count.used * 4.0 / (1 << 20), max_batch, H, W);
    }
    Bump real = {a->arena, 0};
    plan(a, &net->lay, max_batch, &real);
    a->infer = xmalloc(sizeof *a->infer);
    plan_infer(a->infer, a, cfg);
    net->one_clear_backward = !e->host_memory;
    return D2C_OK;
}

void unet_destroy(UNet *net) {
    if (net->eng && net->acts) net->eng->ops->graph_reset(net->eng); /* records that name this net's buffers */
    if (net->acts) {
        engine_free(net->eng, net->acts->ga.base);
        engine_free(net->eng, net->acts->arena);
        free(net->acts->infer);
        free(net->acts);
    }
    if (net->eng) {
        engine_free(net->eng, net->params);
        engine_free(net->eng, net->grads);
    }
    memset(net, 0, sizeof *net);
}

/* ---------------------------------------------------------------- forward */

static ConvShape conv_shape(int B, int cin, int h, int w, int cout, int k, int stride) {
    ConvShape s = {B, cin, h, w, cout, k, stride};
    return s;
}

static void resblock_forward(UNet *net, UNetActivations *a, const ResBlockOff *o, ResBlockActs *r,
                             const float *x, int B, int h, int w) {
    Engine *e = net->eng;
    const float *P = net->params;
    const int N = h * w, G = net->lay.cfg.groups, E = net->lay.E;
    r->x = x;
    e->ops->groupnorm_forward(e, r->a1, r->mean1, r->rstd1, x, P + o->norm1.w, P + o->norm1.b, B, o->cin, N, G, 1);
    e->ops->conv2d_forward(e, r->h1, r->a1, P + o->conv1.w, P + o->conv1.b, conv_shape(B, o->cin, h, w, o->cout, 3, 1));
    e->ops->linear_forward(e, r->ep, a->semb, P + o->emb_proj.w, P + o->emb_proj.b, B, E, o->cout);
    e->ops->add_channel_bias_forward(e, r->h1, r->ep, B, o->cout, N);
    e->ops->groupnorm_forward(e, r->a2, r->mean2, r->rstd2, r->h1, P + o->norm2.w, P + o->norm2.b, B, o->cout, N, G, 1);
    e->ops->conv2d_forward(e, r->out, r->a2, P + o->conv2.w, P + o->conv2.b, conv_shape(B, o->cout, h, w, o->cout, 3, 1));
    size_t n = (size_t)B * o->cout * N;
    if (o->has_skip) {
        e->ops->conv2d_forward(e, a->scratch, x, P + o->skip.w, P + o->skip.b, conv_shape(B, o->cin, h, w, o->cout, 1, 1));
        e->ops->add(e, r->out, a->scratch, n);
    } else {
        e->ops->add(e, r->out, x, n);
    }
}

static void attention_block_forward(UNet *net, const AttentionOff *o, AttentionActs *t,
                                    const float *x, int B, int h, int w) {
    Engine *e = net->eng;
    const float *P = net->params;
    const int N = h * w, C = o->ch, G = net->lay.cfg.groups;
    t->x = x;
    e->ops->groupnorm_forward(e, t->n, t->mean, t->rstd, x, P + o->norm.w, P + o->norm.b, B, C, N, G, 0);
    e->ops->conv2d_forward(e, t->qkv, t->n, P + o->qkv.w, P + o->qkv.b, conv_shape(B, C, h, w, 3 * C, 1, 1));
    e->ops->attention_forward(e, t->o, t->attn, t->qkv, B, C, N);
    e->ops->conv2d_forward(e, t->out, t->o, P + o->proj.w, P + o->proj.b, conv_shape(B, C, h, w, C, 1, 1));
    e->ops->add(e, t->out, x, (size_t)B * C * N);
}

static void embed_forward(UNet *net, UNetActivations *a, const int64_t *t, const int64_t *y, const float *cond,
                          int B) {
    Engine *e = net->eng;
    const float *P = net->params;
    const UNetLayout *lay = &net->lay;
    const int C = lay->cfg.base_channels, E = lay->E;
    e->ops->timestep_embedding(e, a->temb, t, B, C);
    e->ops->linear_forward(e, a->e1, a->temb, P + lay->time1.w, P + lay->time1.b, B, C, E);
    e->ops->silu_forward(e, a->e1s, a->e1, (size_t)B * E);
    e->ops->linear_forward(e, a->emb, a->e1s, P + lay->time2.w, P + lay->time2.b, B, E, E);
    if (cond) {
        e->ops->add(e, a->emb, cond, (size_t)B * E);
    } else { /* the class rows, gathered into the scratch, then added */
        e->ops->embedding_forward(e, a->scratch, P + lay->class_embed, y, B, E);
        e->ops->add(e, a->emb, a->scratch, (size_t)B * E);
    }
    e->ops->silu_forward(e, a->semb, a->emb, (size_t)B * E);
}

static void check_inputs(const UNet *net, const int64_t *t, const int64_t *y, const float *cond, int B) {
    D2C_CHECK(B >= 1 && B <= net->max_batch);
    D2C_CHECK(cond != NULL || y != NULL);
    for (int b = 0; b < B; b++) {
        D2C_CHECK(t[b] >= 0);
        if (!cond) D2C_CHECK(y[b] >= 0 && y[b] <= net->lay.cfg.num_classes);
    }
}

/* The forward pass on plan a: net->acts (unet_forward) or its inference plan. */
static void forward_on(UNet *net, UNetActivations *a, const float *x, const int64_t *t, const int64_t *y,
                       const float *cond, int B, float *eps) {
    Engine *e = net->eng;
    const UNetLayout *lay = &net->lay;
    const UNetConfig *cfg = &lay->cfg;
    const float *P = net->params;
    const int L = cfg->num_levels, C = cfg->base_channels;
    a->B = B;
    a->x_in = x;
    a->has_cond = cond != NULL;
    a->y_in = y;
    embed_forward(net, a, t, y, cond, B);

    e->ops->conv2d_forward(e, a->h0, x, P + lay->conv_in.w, P + lay->conv_in.b,
                   conv_shape(B, cfg->in_channels, net->H, net->W, C, 3, 1));
    const float *h = a->h0;
    for (int l = 0; l < L; l++) {
        resblock_forward(net, a, &lay->down[l], &a->down[l], h, B, a->hs[l], a->ws[l]);
        h = a->down[l].out;
        if (cfg->attn[l]) {
            attention_block_forward(net, &lay->down_attn[l], &a->down_attn[l], h, B, a->hs[l], a->ws[l]);
            h = a->down_attn[l].out;
        }
        a->level_out_down[l] = (float *)h;
        if (l < L - 1) {
            e->ops->conv2d_forward(e, a->downsampled[l], h, P + lay->downsample[l].w, P + lay->downsample[l].b,
                           conv_shape(B, lay->ch[l], a->hs[l], a->ws[l], lay->ch[l], 3, 2));
            h = a->downsampled[l];
        }
    }
    const int hm = a->hs[L - 1], wm = a->ws[L - 1];
    resblock_forward(net, a, &lay->mid1, &a->mid1, h, B, hm, wm);
    attention_block_forward(net, &lay->mid_attn, &a->mid_attn, a->mid1.out, B, hm, wm);
    resblock_forward(net, a, &lay->mid2, &a->mid2, a->mid_attn.out, B, hm, wm);
    a->mid_out = a->mid2.out;
    h = a->mid_out;
    int cur = lay->mid2.cout;
    for (int l = L - 1; l >= 0; l--) {
        const int N = a->hs[l] * a->ws[l];
        e->ops->concat_channels_forward(e, a->cat[l], h, a->level_out_down[l], B, cur, lay->ch[l], N);
        resblock_forward(net, a, &lay->up[l], &a->up[l], a->cat[l], B, a->hs[l], a->ws[l]);
        h = a->up[l].out;
        if (cfg->attn[l]) {
            attention_block_forward(net, &lay->up_attn[l], &a->up_attn[l], h, B, a->hs[l], a->ws[l]);
            h = a->up_attn[l].out;
        }
        a->level_out_up[l] = (float *)h;
        cur = lay->ch[l];
        if (l > 0) {
            const ConvShape us = conv_shape(B, cur, a->hs[l - 1], a->ws[l - 1], cur, 3, 1);
            const float *uw = P + lay->upsample[l].w, *ub = P + lay->upsample[l].b;
            if (a->fused) { /* upsampled[l] is only the composition's scratch */
                e->ops->upsample2x_conv2d_forward(e, a->upconv[l], h, uw, ub, us, a->upsampled[l]);
            } else {
                e->ops->upsample2x_forward(e, a->upsampled[l], h, B, cur, a->hs[l], a->ws[l]);
                e->ops->conv2d_forward(e, a->upconv[l], a->upsampled[l], uw, ub, us);
            }
            h = a->upconv[l];
        }
    }
    e->ops->groupnorm_forward(e, a->on, a->on_mean, a->on_rstd, h, P + lay->out_norm.w, P + lay->out_norm.b, B, C,
                      net->H * net->W, cfg->groups, 1);
    e->ops->conv2d_forward(e, eps, a->on, P + lay->conv_out.w, P + lay->conv_out.b,
                   conv_shape(B, C, net->H, net->W, cfg->in_channels, 3, 1));
}

void unet_forward(UNet *net, const float *x, const int64_t *t, const int64_t *y, const float *cond,
                  int B, float *eps) {
    check_inputs(net, t, y, cond, B);
    forward_on(net, net->acts, x, t, y, cond, B, eps);
    net->acts->saved = 1;
}

typedef struct {
    UNet *net;
    const float *x, *cond;
    const int64_t *t, *y;
    int B;
    float *eps;
} InferCall;

static void infer_call(void *ctx) {
    InferCall *c = ctx;
    forward_on(c->net, c->net->acts->infer, c->x, c->t, c->y, c->cond, c->B, c->eps);
}

/* Through the table's graph_run: a backend may replay the ops of earlier calls with the same
 * buffers (CUDA graphs); the key names every buffer and host array the forward uses (the
 * weights' values and t's and y's may change; unet_destroy forgets the records). The
 * forward's host work (the batch size, the input pointers) is what the inference plan's
 * backward-less callers never read. */
void unet_forward_infer(UNet *net, const float *x, const int64_t *t, const int64_t *y, const float *cond,
                        int B, float *eps) {
    check_inputs(net, t, y, cond, B);
    Engine *e = net->eng;
    InferCall c = {net, x, cond, t, y, B, eps};
    const uint64_t key[9] = {(uint64_t)(uintptr_t)net->acts, (uint64_t)(uintptr_t)net->acts->arena,
                             (uint64_t)(uintptr_t)net->params, (uint64_t)(uintptr_t)x, (uint64_t)(uintptr_t)t,
                             (uint64_t)(uintptr_t)y, (uint64_t)(uintptr_t)cond, (uint64_t)B,
                             (uint64_t)(uintptr_t)eps};
    e->ops->graph_run(e, key, 9, infer_call, &c);
    net->acts->saved = 0;
}

const float *unet_mid(const UNet *net, int *Cmid, int *h, int *w) {
    const int L = net->lay.cfg.num_levels;
    if (Cmid) *Cmid = net->lay.mid2.cout;
    if (h) *h = net->acts->hs[L - 1];
    if (w) *w = net->acts->ws[L - 1];
    return net->acts->mid_out;
}

/* ---------------------------------------------------------------- backward */

/* Where a parameter's gradient goes: into net->grads, or nowhere when the caller only
 * wants gradients to the inputs (the kernels then skip the weight-gradient work). */
static float *PG(const UNet *net, size_t offset) { return net->input_grads_only ? NULL : net->grads + offset; }

/* A zeroed gradient buffer of n floats (n a multiple of the batch) for one use in this
 * backward pass. Per-buffer mode: reuse, cleared now (the planned buffer whose previous
 * contents are dead by now). One-clear mode (net->one_clear_backward, once the first pass
 * has counted the requests and the arena is there): the next slot of the arena, which the
 * pass's one memzero cleared (a slot past what it cleared is cleared here). Both give the
 * same values: every gradient op accumulates into zeros either way. */
static float *grad_buf(UNet *net, float *reuse, size_t n) {
    UNetActivations *a = net->acts;
    Engine *e = net->eng;
    const size_t r = (n + 15) & ~(size_t)15;
    if (a->ga.base && a->ga.used + r <= a->ga.cap) {
        float *p = a->ga.base + a->ga.used;
        const size_t end = a->ga.used + r;
        if (end > a->ga.zeroed) {
            const size_t from = a->ga.used > a->ga.zeroed ? a->ga.used : a->ga.zeroed;
            engine_zero_floats(e, a->ga.base + from, end - from);
            a->ga.zeroed = end;
        }
        a->ga.used = end;
        return p;
    }
    if (!a->ga.counted) {
        a->ga.per_image += n / (size_t)a->B;
        a->ga.slots++;
        a->ga.used += r; /* what the arena would have used */
    }
    engine_zero_floats(e, reuse, n);
    return reuse;
}

/* The start of a backward pass: one memzero over what the last pass of this batch size
 * used (one-clear mode). */
static void grad_pass_begin(UNet *net) {
    UNetActivations *a = net->acts;
    a->ga.used = a->ga.zeroed = 0;
    if (!a->ga.base) return;
    for (int i = 0; i < 4; i++)
        if (a->ga.hint_B[i] == a->B) a->ga.zeroed = a->ga.hint_used[i];
    if (a->ga.zeroed) engine_zero_floats(net->eng, a->ga.base, a->ga.zeroed);
}

/* The end of a pass: the first one sizes the arena (for the largest batch) from its
 * counted requests; later ones record what they used for their batch size. */
static void grad_pass_end(UNet *net) {
    UNetActivations *a = net->acts;
    if (!a->ga.counted) {
        a->ga.counted = 1;
        const size_t cap = (size_t)net->max_batch * a->ga.per_image + 16 * a->ga.slots;
        if (net->one_clear_backward && !a->ga.failed) {
            a->ga.base = net->eng->ops->alloc(net->eng, cap * sizeof(float));
            a->ga.cap = a->ga.base ? cap : 0;
            a->ga.failed = !a->ga.base; /* then the per-buffer mode stays */
        }
    }
    if (!a->ga.base) return;
    int slot = -1;
    for (int i = 0; i < 4 && slot < 0; i++)
        if (a->ga.hint_B[i] == a->B || a->ga.hint_B[i] == 0) slot = i;
    if (slot < 0) { /* more batch sizes than slots: the oldest goes */
        memmove(a->ga.hint_B, a->ga.hint_B + 1, 3 * sizeof a->ga.hint_B[0]);
        memmove(a->ga.hint_used, a->ga.hint_used + 1, 3 * sizeof a->ga.hint_used[0]);
        slot = 3;
        a->ga.hint_used[3] = 0;
    }
    if (a->ga.hint_B[slot] != a->B) a->ga.hint_used[slot] = 0;
    a->ga.hint_B[slot] = a->B;
    if (a->ga.used > a->ga.hint_used[slot]) a->ga.hint_used[slot] = a->ga.used;
}

/* dx += d/dx of the block, given dout. Uses gt[0..2] as temporaries. */
static void resblock_backward(UNet *net, const ResBlockOff *o, const ResBlockActs *r, const float *dout,
                              float *dx, int B, int h, int w) {
    Engine *e = net->eng;
    const float *P = net->params;
    UNetActivations *a = net->acts;
    const int N = h * w, G = net->lay.cfg.groups, E = net->lay.E;
    float *da2 = a->gt[0], *dh1 = a->gt[1], *da1 = a->gt[2];
    if (o->has_skip)
        e->ops->conv2d_backward(e, dx, PG(net, o->skip.w), PG(net, o->skip.b), dout, r->x, P + o->skip.w,
                        conv_shape(B, o->cin, h, w, o->cout, 1, 1));
    else
        e->ops->add(e, dx, dout, (size_t)B * o->cout * N);
    da2 = grad_buf(net, da2, (size_t)B * o->cout * N);
    e->ops->conv2d_backward(e, da2, PG(net, o->conv2.w), PG(net, o->conv2.b), dout, r->a2, P + o->conv2.w,
                    conv_shape(B, o->cout, h, w, o->cout, 3, 1));
    dh1 = grad_buf(net, dh1, (size_t)B * o->cout * N);
    e->ops->groupnorm_backward(e, dh1, PG(net, o->norm2.w), PG(net, o->norm2.b), da2, r->h1, r->mean2, r->rstd2,
                       P + o->norm2.w, P + o->norm2.b, B, o->cout, N, G, 1);
    float *dep = grad_buf(net, a->dep, (size_t)B * o->cout);
    e->ops->add_channel_bias_backward(e, dep, dh1, B, o->cout, N);
    e->ops->linear_backward(e, a->cur_dsemb, PG(net, o->emb_proj.w), PG(net, o->emb_proj.b), dep, a->semb,
                            P + o->emb_proj.w, B, E, o->cout);
    da1 = grad_buf(net, da1, (size_t)B * o->cin * N);
    e->ops->conv2d_backward(e, da1, PG(net, o->conv1.w), PG(net, o->conv1.b), dh1, r->a1, P + o->conv1.w,
                    conv_shape(B, o->cin, h, w, o->cout, 3, 1));
    e->ops->groupnorm_backward(e, dx, PG(net, o->norm1.w), PG(net, o->norm1.b), da1, r->x, r->mean1, r->rstd1,
                       P + o->norm1.w, P + o->norm1.b, B, o->cin, N, G, 1);
}

static void attention_block_backward(UNet *net, const AttentionOff *o, const AttentionActs *t,
                                     const float *dout, float *dx, int B, int h, int w) {
    Engine *e = net->eng;
    const float *P = net->params;
    UNetActivations *a = net->acts;
    const int N = h * w, C = o->ch, G = net->lay.cfg.groups;
    float *dob = a->gt[0], *dqkv = a->gt[1], *dn = a->gt[2];
    e->ops->add(e, dx, dout, (size_t)B * C * N);
    dob = grad_buf(net, dob, (size_t)B * C * N);
    e->ops->conv2d_backward(e, dob, PG(net, o->proj.w), PG(net, o->proj.b), dout, t->o, P + o->proj.w,
                    conv_shape(B, C, h, w, C, 1, 1));
    dqkv = grad_buf(net, dqkv, (size_t)B * 3 * C * N);
    e->ops->attention_backward(e, dqkv, dob, t->qkv, t->attn, B, C, N);
    dn = grad_buf(net, dn, (size_t)B * C * N);
    e->ops->conv2d_backward(e, dn, PG(net, o->qkv.w), PG(net, o->qkv.b), dqkv, t->n, P + o->qkv.w,
                    conv_shape(B, C, h, w, 3 * C, 1, 1));
    e->ops->groupnorm_backward(e, dx, PG(net, o->norm.w), PG(net, o->norm.b), dn, t->x, t->mean, t->rstd, P + o->norm.w,
                       P + o->norm.b, B, C, N, G, 0);
}

/* A level's blocks (resblock, then attention if any) backward: from the gradient of the
 * level output (in gout) to the gradient of the level input (accumulated into gin).
 * gmid is a buffer the size of the resblock output for the attention's input gradient. */
static void level_backward(UNet *net, const ResBlockOff *ro, const ResBlockActs *ra, const AttentionOff *ao,
                           const AttentionActs *aa, int has_attn, const float *gout, float *gmid,
                           float *gin, int B, int h, int w) {
    const float *g = gout;
    if (has_attn) {
        gmid = grad_buf(net, gmid, (size_t)B * ao->ch * h * w);
        attention_block_backward(net, ao, aa, gout, gmid, B, h, w);
        g = gmid;
    }
    resblock_backward(net, ro, ra, g, gin, B, h, w);
}

static void backward_body(UNet *net, const float *deps, const float *dmid, float *dx, float *dcond) {
    Engine *e = net->eng;
    const UNetLayout *lay = &net->lay;
    const UNetConfig *cfg = &lay->cfg;
    UNetActivations *a = net->acts;
    const float *P = net->params;
    const int B = a->B, L = cfg->num_levels, C = cfg->base_channels, E = lay->E;
    float *gA = a->g[0], *gB = a->g[1];

    a->cur_dsemb = grad_buf(net, a->dsemb, (size_t)B * E);
    for (int l = 0; l < L; l++)
        a->cur_gskip[l] = grad_buf(net, a->gskip[l], (size_t)B * lay->ch[l] * a->hs[l] * a->ws[l]);
    float *const *gskip = a->cur_gskip;

    /* out: conv_out <- silu(out_norm(h)) */
    const int N0 = net->H * net->W;
    float *don = grad_buf(net, a->gt[0], (size_t)B * C * N0);
    e->ops->conv2d_backward(e, don, PG(net, lay->conv_out.w), PG(net, lay->conv_out.b), deps, a->on, P + lay->conv_out.w,
                    conv_shape(B, C, net->H, net->W, cfg->in_channels, 3, 1));
    gA = grad_buf(net, gA, (size_t)B * C * N0);
    e->ops->groupnorm_backward(e, gA, PG(net, lay->out_norm.w), PG(net, lay->out_norm.b), don, a->level_out_up[0], a->on_mean, a->on_rstd,
                       P + lay->out_norm.w, P + lay->out_norm.b, B, C, N0, cfg->groups, 1);
    /* gA now holds d level_out_up[0] */

    /* up path, in reverse of the forward order: l = 0 .. L-1 */
    for (int l = 0; l < L; l++) {
        const int h = a->hs[l], w = a->ws[l], N = h * w, ch = lay->ch[l];
        const int cur = lay->up[l].cin - ch;
        if (l > 0) {
            /* gA holds d upconv[l] (B, ch, 2h, 2w) */
            size_t n2 = (size_t)B * ch * a->hs[l - 1] * a->ws[l - 1];
            float *dups = grad_buf(net, a->gt[0], n2);
            e->ops->conv2d_backward(e, dups, PG(net, lay->upsample[l].w), PG(net, lay->upsample[l].b), gA, a->upsampled[l],
                            P + lay->upsample[l].w, conv_shape(B, ch, a->hs[l - 1], a->ws[l - 1], ch, 3, 1));
            gB = grad_buf(net, gB, (size_t)B * ch * N);
            e->ops->upsample2x_backward(e, gB, dups, B, ch, h, w);
            float *tmp = gA; gA = gB; gB = tmp;
        }
        /* gA: d level_out_up[l]; -> d cat[l] in gB */
        gB = grad_buf(net, gB, (size_t)B * lay->up[l].cin * N);
        level_backward(net, &lay->up[l], &a->up[l], &lay->up_attn[l], &a->up_attn[l], cfg->attn[l], gA,
                       a->scratch, gB, B, h, w);
        /* split d cat[l] into d h_in (gA) and d skip_l */
        gA = grad_buf(net, gA, (size_t)B * cur * N);
        e->ops->concat_channels_backward(e, gA, gskip[l], gB, B, cur, ch, N);
        /* gA: d of the up level's input: upconv[l+1] or, for l = L-1, the mid output */
    }

    /* middle, with the optional extra gradient on its output */
    const int hm = a->hs[L - 1], wm = a->ws[L - 1], Cm = lay->mid2.cout;
    const size_t nm = (size_t)B * Cm * hm * wm;
    if (dmid) e->ops->add(e, gA, dmid, nm);
    gB = grad_buf(net, gB, nm);
    resblock_backward(net, &lay->mid2, &a->mid2, gA, gB, B, hm, wm);
    gA = grad_buf(net, gA, nm);
    attention_block_backward(net, &lay->mid_attn, &a->mid_attn, gB, gA, B, hm, wm);
    /* mid1's input is the last down level's output = skip L-1 */
    resblock_backward(net, &lay->mid1, &a->mid1, gA, gskip[L - 1], B, hm, wm);

    /* down path: l = L-1 .. 0; gskip[l] collects d level_out_down[l] */
    for (int l = L - 1; l >= 0; l--) {
        const int h = a->hs[l], w = a->ws[l];
        size_t nin = (size_t)B * lay->down[l].cin * h * w;
        float *gin = gA = grad_buf(net, gA, nin);
        level_backward(net, &lay->down[l], &a->down[l], &lay->down_attn[l], &a->down_attn[l], cfg->attn[l],
                       gskip[l], a->scratch, gin, B, h, w);
        if (l > 0) {
            /* gin = d downsampled[l-1]; push through the stride-2 conv into gskip[l-1] */
            e->ops->conv2d_backward(e, gskip[l - 1], PG(net, lay->downsample[l - 1].w), PG(net, lay->downsample[l - 1].b), gin,
                            a->level_out_down[l - 1], P + lay->downsample[l - 1].w,
                            conv_shape(B, lay->ch[l - 1], a->hs[l - 1], a->ws[l - 1], lay->ch[l - 1], 3, 2));
        }
    }
    /* gA = d h0 */
    e->ops->conv2d_backward(e, dx, PG(net, lay->conv_in.w), PG(net, lay->conv_in.b), gA, a->x_in, P + lay->conv_in.w,
                    conv_shape(B, cfg->in_channels, net->H, net->W, C, 3, 1));

    /* embedding: semb = silu(emb); emb = time2(silu(time1(temb))) + class_embed[y] or cond */
    float *demb = grad_buf(net, a->demb, (size_t)B * E);
    e->ops->silu_backward(e, demb, a->cur_dsemb, a->emb, (size_t)B * E);
    if (a->has_cond && dcond) e->ops->add(e, dcond, demb, (size_t)B * E);
    if (net->input_grads_only) return;
    if (!a->has_cond) e->ops->embedding_backward(e, PG(net, lay->class_embed), demb, a->y_in, B, E);
    float *de1s = grad_buf(net, a->de1s, (size_t)B * E);
    e->ops->linear_backward(e, de1s, PG(net, lay->time2.w), PG(net, lay->time2.b), demb, a->e1s, P + lay->time2.w, B, E, E);
    float *de1 = grad_buf(net, a->de1, (size_t)B * E);
    e->ops->silu_backward(e, de1, de1s, a->e1, (size_t)B * E);
    e->ops->linear_backward(e, NULL, PG(net, lay->time1.w), PG(net, lay->time1.b), de1, a->temb, P + lay->time1.w, B, C, E);
}

void unet_backward(UNet *net, const float *deps, const float *dmid, float *dx, float *dcond) {
    D2C_CHECK(net->acts->saved); /* backward follows unet_forward, not unet_forward_infer */
    grad_pass_begin(net);
    backward_body(net, deps, dmid, dx, dcond);
    grad_pass_end(net);
}

/* ---------------------------------------------------------------- FLOP count */

static double conv_flops(int cin, int cout, int k, int ho, int wo) { return 2.0 * cin * cout * k * k * ho * wo; }

static double resblock_flops(const ResBlockOff *o, int N, int E) {
    double f = 2.0 * o->cin * o->cout * 9 * N + 2.0 * o->cout * o->cout * 9 * N + 2.0 * E * o->cout;
    if (o->has_skip) f += 2.0 * o->cin * o->cout * N;
    return f;
}

static double attention_flops(int C, int N) { return 2.0 * C * 3 * C * N + 2.0 * C * C * N + 4.0 * N * N * C; }

double unet_forward_flops(const UNet *net) {
    const UNetLayout *lay = &net->lay;
    const UNetActivations *a = net->acts;
    const int L = lay->cfg.num_levels, E = lay->E, C = lay->cfg.base_channels;
    double f = 2.0 * C * E + 2.0 * E * E;
    f += conv_flops(lay->cfg.in_channels, C, 3, net->H, net->W);
    for (int l = 0; l < L; l++) {
        int N = a->hs[l] * a->ws[l];
        f += resblock_flops(&lay->down[l], N, E) + resblock_flops(&lay->up[l], N, E);
        if (lay->cfg.attn[l]) f += 2 * attention_flops(lay->ch[l], N);
        if (l < L - 1) f += conv_flops(lay->ch[l], lay->ch[l], 3, a->hs[l + 1], a->ws[l + 1]);
        if (l > 0) f += conv_flops(lay->ch[l], lay->ch[l], 3, a->hs[l - 1], a->ws[l - 1]);
    }
    int Nm = a->hs[L - 1] * a->ws[L - 1];
    f += resblock_flops(&lay->mid1, Nm, E) + resblock_flops(&lay->mid2, Nm, E) + attention_flops(lay->mid_attn.ch, Nm);
    f += conv_flops(C, lay->cfg.in_channels, 3, net->H, net->W);
    return f;
}

/* ---------------------------------------------------------------- host copies of the weights */

void unet_upload_params(UNet *net, const float *host) { engine_upload_floats(net->eng, net->params, host, net->lay.n_params); }

void unet_download_params(const UNet *net, float *host) {
    engine_download_floats(net->eng, host, net->params, net->lay.n_params);
}

void unet_init_weights(UNet *net, uint64_t seed) {
    float *host = xmalloc_floats(net->lay.n_params);
    unet_init_params(&net->lay, host, seed);
    unet_upload_params(net, host);
    free(host);
}
