/* The class-conditional epsilon-prediction UNet of reference/d2c_spec.py: its parameter
 * layout (one flat buffer, tensors named by the spec's state_dict keys), initialisation,
 * forward pass, and backward pass to the weights, the input images and the conditioning.
 *
 * Shape letters: B batch, Cin image channels, H W image size, C base channels,
 * E = 4C embedding width, L levels, Cl = C * channel_mult[l].
 *
 * Parameters live in one contiguous float buffer. UNetLayout holds, for every tensor,
 * its OFFSET into such a buffer, so the same layout indexes the weights, the gradients,
 * the Adam moments and the EMA weights; optimisers, clipping and checkpoints are flat
 * loops over the buffer. */
#ifndef D2C_MODEL_UNET_H
#define D2C_MODEL_UNET_H

#include <stddef.h>
#include <stdint.h>

#include "engine/backend.h"

#define UNET_MAX_LEVELS 6
#define UNET_MAX_TENSORS 512

typedef struct {
    int in_channels;                    /* 1 (Fashion-MNIST) or 3 (CIFAR-10) */
    int base_channels;                  /* C */
    int num_levels;                     /* L = len(channel_mult) */
    int channel_mult[UNET_MAX_LEVELS];
    int attn[UNET_MAX_LEVELS];          /* 1 where level l has self-attention */
    int num_classes;                    /* class_embed has num_classes + 1 rows (last = null) */
    int groups;                         /* GroupNorm groups everywhere */
} UNetConfig;

/* The spec's defaults: in 1, C 32, mult (1, 2, 2), attention at level 2, 10 classes, 8 groups. */
UNetConfig unet_default_config(void);
/* Checks a config is buildable for H x W images (channel counts divisible by groups, at
 * most D2C_MAX_CLASSES classes, ...): D2C_ERR_INPUT with the reason (callers add the
 * file or option as context) otherwise. */
int unet_config_validate(const UNetConfig *cfg, int H, int W);
/* Config as the JSON object stored in checkpoint metadata (caller frees), and back.
 * unet_config_from_json returns D2C_ERR_INPUT with the reason on a malformed or
 * incomplete object (json may be NULL: no config). */
char *unet_config_to_json(const UNetConfig *cfg);
int unet_config_from_json(const char *json, UNetConfig *cfg);

/* ---- parameter layout (offsets into a flat buffer) */
typedef struct { size_t w, b; } AffineOff;   /* weight and bias of a conv, linear or norm */
typedef struct {
    int cin, cout, has_skip;
    AffineOff norm1, conv1, emb_proj, norm2, conv2, skip;
} ResBlockOff;
typedef struct {
    int ch;
    AffineOff norm, qkv, proj;
} AttentionOff;

typedef struct {
    char name[64];      /* the spec's state_dict key */
    int ndim;
    int64_t shape[4];
    size_t offset;      /* floats from the start of the buffer */
    size_t count;       /* floats */
    int matrix;         /* ndim >= 2: counts in the layer-wise gradient distance */
} ParamTensor;

typedef struct {
    UNetConfig cfg;
    int E;                                  /* embedding width, 4C */
    int ch[UNET_MAX_LEVELS];                /* Cl */
    AffineOff time1, time2, conv_in, out_norm, conv_out;
    size_t class_embed;                     /* (num_classes + 1, E) */
    ResBlockOff down[UNET_MAX_LEVELS], up[UNET_MAX_LEVELS], mid1, mid2;
    AttentionOff down_attn[UNET_MAX_LEVELS], up_attn[UNET_MAX_LEVELS], mid_attn;
    AffineOff downsample[UNET_MAX_LEVELS], upsample[UNET_MAX_LEVELS];
    ParamTensor tensors[UNET_MAX_TENSORS];  /* in the spec's state_dict order */
    int n_tensors;
    size_t n_params;                        /* floats in the whole buffer */
} UNetLayout;

void unet_layout_build(UNetLayout *lay, const UNetConfig *cfg);
const ParamTensor *unet_find_tensor(const UNetLayout *lay, const char *name);
/* PyTorch's default initialisation (kaiming-uniform weights, uniform biases, GroupNorm
 * 1/0, N(0,1) embedding), drawn from the counter-based RNG keyed by seed. */
void unet_init_params(const UNetLayout *lay, float *params, uint64_t seed);

/* ---- a model instance: layout, parameters, gradients, saved activations */
typedef struct UNetActivations UNetActivations;

typedef struct {
    UNetLayout lay;
    int H, W;              /* image size this instance was planned for */
    int max_batch;         /* activations are sized for this many images */
    Engine *eng;           /* the backend every op of this net runs on */
    float *params;         /* (n_params) the weights forward reads (device memory) */
    float *grads;          /* (n_params) backward accumulates here (device memory) */
    UNetActivations *acts; /* saved by forward for backward (a device arena) */
    int input_grads_only;  /* backward skips the parameter gradients (hypergradient passes) */
    /* 1: each backward pass gives every activation gradient its own slot of one arena,
     * cleared by one memzero at the start, instead of clearing a few reusable buffers
     * before each use (about 70 memzeros a pass); more memory, fewer ops. unet_create sets
     * it on engines whose memory is not the host's (a GPU, where every op is a launch); the
     * results are the same bits either way (the same sums into zeroed memory). Set it
     * before the first backward. */
    int one_clear_backward;
} UNet;

/* Allocates parameters (zeroed), gradients and the activation arena for batches of up to
 * max_batch images of H x W, all on eng (NULL: engine_cpu_default()). D2C_ERR_INPUT ("model config: ...") if the config cannot be
 * built, D2C_ERR_FAIL naming the size if the memory is not there; net is then empty
 * (unet_destroy is safe on it). */
int unet_create(UNet *net, Engine *eng, const UNetConfig *cfg, int H, int W, int max_batch);
void unet_destroy(UNet *net);

/* eps (B, Cin, H, W) = UNet(x (B, Cin, H, W), t (B), conditioning), 1 <= B <= max_batch.
 * x, eps, cond and every float buffer of forward / backward are device memory of net->eng;
 * t and y are host arrays. unet_backward reads x and y again: they must hold the same
 * values until then (no copies are kept, so a backend's replay of a whole step, through
 * graph_run, reads the caller's arrays).
 * Conditioning: the class embedding row y[b] (0..num_classes, the last is the null label)
 * or, when cond != NULL, the given vectors cond (B, E) in place of class_embed[y]. */
void unet_forward(UNet *net, const float *x, const int64_t *t, const int64_t *y,
                  const float *cond, int B, float *eps);

/* The eps of unet_forward up to float rounding, without keeping what backward needs: the
 * block-internal tensors share a few buffers, which keeps the memory a sampling step
 * writes in cache and the rest of the arena untouched, and each nearest upsampling runs
 * fused with the conv after it (upsample2x_conv2d_forward: on the CPU 4/9 of that conv's
 * multiply-adds; every other op is the same op on the same inputs). For sampling and
 * scoring; unet_backward and unet_mid's data need a unet_forward. */
void unet_forward_infer(UNet *net, const float *x, const int64_t *t, const int64_t *y,
                        const float *cond, int B, float *eps);

/* Backward of the last forward (which must be unet_forward). Accumulates d loss / d params into net->grads, and, where
 * not NULL: dx (B, Cin, H, W) += d loss / d x, dcond (B, E) += d loss / d cond (or, with
 * class labels, the class_embed rows' gradient goes to grads as usual).
 * dmid, when not NULL, is an extra gradient (B, Cmid, h, w) arriving at the middle-block
 * output (distribution matching). */
void unet_backward(UNet *net, const float *deps, const float *dmid, float *dx, float *dcond);

/* The middle-block output of the last forward: (B, Cmid, h, w); sizes via the out args. */
const float *unet_mid(const UNet *net, int *Cmid, int *h, int *w);

/* The weights between the host and net->eng: upload / download n_params floats;
 * unet_init_weights = unet_init_params on the host, then upload. */
void unet_upload_params(UNet *net, const float *host);
void unet_download_params(const UNet *net, float *host);
void unet_init_weights(UNet *net, uint64_t seed);

/* Total multiply-add FLOPs (2 per MAC) of one image's forward, for reporting GFLOP/s. */
double unet_forward_flops(const UNet *net);

#endif
