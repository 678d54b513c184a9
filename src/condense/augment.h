/* Differentiable Siamese augmentation (DSA, Zhao & Bilen 2021): one random draw of
 * colour (brightness, saturation, contrast), flip, scale, rotation, translation and cutout
 * applied identically to the real and the synthetic batch of a matching step. For fixed
 * parameters every operation is affine in the image, so the gradient to the synthetic
 * images is the adjoint map applied to the gradient at the augmented images.
 * Shapes: B images of C x H x W. */
#ifndef D2C_CONDENSE_AUGMENT_H
#define D2C_CONDENSE_AUGMENT_H

#include "core/rng.h"

typedef struct {
    float brightness;     /* added, in [-0.5, 0.5] on the [-1, 1] scale */
    float saturation;     /* channel-mean mixing factor (colour images only) */
    float contrast;       /* image-mean mixing factor */
    int flip;             /* mirror left-right */
    float scale, angle;   /* zoom factor and rotation in radians */
    float shift_x, shift_y; /* translation in pixels */
    int cut_x, cut_y, cut_size; /* cutout square (zeroed), size 0 = none */
} AugmentParams;

/* Draws the parameters of one matching step (DSA's default ranges). */
AugmentParams augment_draw(Rng *r, int H, int W);
/* y (B, C, H, W) = A(x); y and x must not overlap. */
void augment_forward(const AugmentParams *a, const float *x, float *y, int B, int C, int H, int W);
/* dx (B, C, H, W) += A^T(dy). */
void augment_backward(const AugmentParams *a, const float *dy, float *dx, int B, int C, int H, int W);

#endif
