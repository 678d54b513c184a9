/* Subset-selection baselines: ipc real images per class, chosen at random, by greedy
 * k-center, by herding (both on the images' pixels), or by difficulty (each image's mean
 * denoising loss under a briefly trained proxy UNet, keeping the easiest or hardest).
 * Each writes idx (K * ipc, class-major) into the data set, or returns D2C_ERR_INPUT
 * naming the class when one holds fewer than ipc images. */
#ifndef D2C_CONDENSE_BASELINES_H
#define D2C_CONDENSE_BASELINES_H

#include <stdint.h>

#include "io/dataset.h"
#include "model/unet.h"

int select_random(const Dataset *d, const ClassIndex *ci, int ipc, uint64_t seed, int *idx);
/* Greedy k-center (farthest-point) from the class mean's nearest image. */
int select_kcenter(const Dataset *d, const ClassIndex *ci, int ipc, uint64_t seed, int *idx);
/* Herding: greedily keeps the running mean of the picks close to the class mean. */
int select_herding(const Dataset *d, const ClassIndex *ci, int ipc, int *idx);
/* Difficulty-based selection: trains a proxy UNet (cfg) for proxy_steps on the data, scores
 * every image by its mean DDPM loss at fixed timesteps and noise, keeps the `hard` (1) or
 * easy (0) end per class. The proxy runs on eng (NULL: the CPU). */
int select_difficulty(Engine *eng, const Dataset *d, const ClassIndex *ci, int ipc, const UNetConfig *cfg, int proxy_steps,
                       int hard, uint64_t seed, int *idx);

#endif
