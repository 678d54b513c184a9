/* Image files: PNG and JPEG decoding into planar 8-bit grey or RGB (the pixels of
 * folder: data sets), and PNG output of image grids with an optional caption (d2c's
 * figures). Shape letters: N images, C channels (1 grey or 3 RGB), H rows, W columns. */
#ifndef D2C_IO_IMAGE_H
#define D2C_IO_IMAGE_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int c, h, w;
    uint8_t *pixels; /* (C, H, W) */
} ImageU8;

/* Decodes a PNG or JPEG file (told apart by content, not name) into C = 1 for grey
 * sources and C = 3 for colour ones: palettes are expanded, 16-bit samples scaled to 8
 * bits, alpha composited onto black. A JPEG that libjpeg only warns about (truncated,
 * corrupt entropy data) is refused, as are CMYK JPEGs. Returns 0, or -1 with the reason
 * in err (which does not repeat the path). Never exits: safe inside parallel loops. */
int image_decode_file(const char *path, ImageU8 *out, char *err, size_t err_len);
/* The same with the error model: D2C_ERR_INPUT and "path: reason" on failure. */
int image_load(ImageU8 *img, const char *path);
void image_free(ImageU8 *img);

/* Writes planar (C, H, W) 8-bit pixels, C = 1 or 3, as PNG or JPEG (atomically). These
 * and the grid writers return D2C_ERR_INPUT if the folder cannot be written, D2C_ERR_FAIL
 * on an I/O or codec failure (leaving path as it was). */
int png_write_u8(const char *path, const uint8_t *pixels, int c, int h, int w);
int jpeg_write_u8(const char *path, const uint8_t *pixels, int c, int h, int w, int quality);

/* Writes n images (N, C, H, W) with values in [-1, 1] (u8 = round((x + 1) * 127.5),
 * clamped) as one PNG grid of ncols columns, pad white pixels between and around them. */
int png_write_grid(const char *path, const float *images, int n, int C, int H, int W, int ncols, int pad);
/* The same with caption text (ASCII, '\n' starts a new line) in black below the grid;
 * the canvas widens if the text needs it. */
int png_write_grid_caption(const char *path, const float *images, int n, int C, int H, int W, int ncols,
                            int pad, const char *caption);

#endif
