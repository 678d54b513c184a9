/* PNG (libpng's simplified API) and JPEG (libjpeg) decoding and writing, and image grids
 * with captions. Decoders report errors instead of exiting so that data set loaders can
 * run them in parallel and report the first bad file afterwards. */
#include "io/image.h"

#include <errno.h>
#include <png.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jpeglib.h>

#include "core/util.h"
#include "io/font5x7.h"

/* Refuse images above this many pixels before allocating for them (a corrupt header
 * can claim 65535 x 65535). Data set images are tiny; figures stay far below it. */
#define IMAGE_MAX_PIXELS ((size_t)1 << 26)
#define IMAGE_MAX_FILE_BYTES ((size_t)1 << 28)
/* The most pixels a file of n bytes can describe, so that a short file's header cannot
 * make the decoder allocate much: PNG's deflate expands at most 1032:1 and a 1-bit image
 * packs 8 pixels a byte; a baseline JPEG spends at least 2 bits on an 8x8 block (DC and
 * end of block), i.e. 256 pixels a byte. (Progressive JPEGs can skip runs of blocks with
 * one code; for them only IMAGE_MAX_PIXELS applies.) The slack covers headers. */
#define PNG_MAX_PIXELS_PER_BYTE 8256.0
#define JPEG_MAX_PIXELS_PER_BYTE 256.0
#define PIXEL_SLACK 65536.0

static int fail(char *err, size_t err_len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t err_len, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
    return -1;
}

static uint8_t *read_file_soft(const char *path, size_t *len, char *err, size_t err_len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fail(err, err_len, "cannot open: %s", strerror(errno));
        return NULL;
    }
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode) || (size_t)sb.st_size > IMAGE_MAX_FILE_BYTES) {
        fclose(f);
        fail(err, err_len, "not a regular file of at most %zu bytes", IMAGE_MAX_FILE_BYTES);
        return NULL;
    }
    size_t n = (size_t)sb.st_size;
    uint8_t *buf = xmalloc(n + 1);
    if (fread(buf, 1, n, f) != n) {
        fclose(f);
        free(buf);
        fail(err, err_len, "cannot read: %s", strerror(errno));
        return NULL;
    }
    fclose(f);
    *len = n;
    return buf;
}

/* (H, W, C) interleaved -> (C, H, W) planar, into a new buffer; frees hwc. */
static uint8_t *to_planar(uint8_t *hwc, int c, int h, int w) {
    size_t hw = (size_t)h * w;
    if (c == 1) return hwc;
    uint8_t *chw = xmalloc(hw * c);
    for (size_t p = 0; p < hw; p++)
        for (int k = 0; k < c; k++) chw[k * hw + p] = hwc[p * c + k];
    free(hwc);
    return chw;
}

static int decode_png(const uint8_t *buf, size_t len, ImageU8 *out, char *err, size_t err_len) {
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&img, buf, len))
        return fail(err, err_len, "corrupt PNG: %s", img.message);
    if ((size_t)img.width * img.height > IMAGE_MAX_PIXELS) {
        png_image_free(&img);
        return fail(err, err_len, "PNG of %u x %u pixels is too large", img.width, img.height);
    }
    if ((double)img.width * img.height > PNG_MAX_PIXELS_PER_BYTE * (double)len + PIXEL_SLACK) {
        png_image_free(&img);
        return fail(err, err_len, "truncated PNG: its header claims %u x %u pixels but the file holds %zu bytes",
                    img.width, img.height, len);
    }
    int c = (img.format & PNG_FORMAT_FLAG_COLOR) ? 3 : 1;
    img.format = c == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
    img.flags |= PNG_IMAGE_FLAG_16BIT_sRGB; /* 16-bit samples scale to 8 bits, no gamma */
    uint8_t *hwc = xmalloc(PNG_IMAGE_SIZE(img));
    png_color black = {0, 0, 0};
    if (!png_image_finish_read(&img, &black, hwc, 0, NULL)) {
        free(hwc);
        return fail(err, err_len, "corrupt PNG: %s", img.message);
    }
    out->c = c;
    out->h = (int)img.height;
    out->w = (int)img.width;
    out->pixels = to_planar(hwc, c, out->h, out->w);
    return 0;
}

typedef struct {
    struct jpeg_error_mgr base;
    jmp_buf escape;
    char message[JMSG_LENGTH_MAX];
    int warnings;
} JpegErrors;

static void jpeg_on_error(j_common_ptr cinfo) {
    JpegErrors *e = (JpegErrors *)cinfo->err;
    cinfo->err->format_message(cinfo, e->message);
    longjmp(e->escape, 1);
}

/* libjpeg merely warns about truncated files and corrupt data (then invents pixels);
 * d2c counts the warnings and refuses the image. Trace messages (level > 0) are ignored. */
static void jpeg_on_message(j_common_ptr cinfo, int level) {
    JpegErrors *e = (JpegErrors *)cinfo->err;
    if (level >= 0) return;
    if (e->warnings++ == 0) cinfo->err->format_message(cinfo, e->message);
}

static int decode_jpeg(const uint8_t *buf, size_t len, ImageU8 *out, char *err, size_t err_len) {
    struct jpeg_decompress_struct cinfo;
    JpegErrors jerr;
    uint8_t *volatile hwc = NULL;
    cinfo.err = jpeg_std_error(&jerr.base);
    jerr.base.error_exit = jpeg_on_error;
    jerr.base.emit_message = jpeg_on_message;
    jerr.warnings = 0;
    if (setjmp(jerr.escape)) {
        jpeg_destroy_decompress(&cinfo);
        free(hwc);
        return fail(err, err_len, "corrupt JPEG: %s", jerr.message);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, buf, (unsigned long)len);
    jpeg_read_header(&cinfo, TRUE);
    int c;
    if (cinfo.jpeg_color_space == JCS_GRAYSCALE) {
        c = 1;
        cinfo.out_color_space = JCS_GRAYSCALE;
    } else if (cinfo.jpeg_color_space == JCS_YCbCr || cinfo.jpeg_color_space == JCS_RGB) {
        c = 3;
        cinfo.out_color_space = JCS_RGB;
    } else {
        jpeg_destroy_decompress(&cinfo);
        return fail(err, err_len, "JPEG colour space %d (CMYK?) is not supported; use grey or RGB",
                    (int)cinfo.jpeg_color_space);
    }
    if ((size_t)cinfo.image_width * cinfo.image_height > IMAGE_MAX_PIXELS) {
        jpeg_destroy_decompress(&cinfo);
        return fail(err, err_len, "JPEG of %u x %u pixels is too large", cinfo.image_width, cinfo.image_height);
    }
    if (!cinfo.progressive_mode &&
        (double)cinfo.image_width * cinfo.image_height > JPEG_MAX_PIXELS_PER_BYTE * (double)len + PIXEL_SLACK) {
        jpeg_destroy_decompress(&cinfo);
        return fail(err, err_len, "truncated JPEG: its header claims %u x %u pixels but the file holds %zu bytes",
                    cinfo.image_width, cinfo.image_height, len);
    }
    jpeg_start_decompress(&cinfo);
    int h = (int)cinfo.output_height, w = (int)cinfo.output_width;
    D2C_CHECK(cinfo.output_components == c);
    hwc = xmalloc((size_t)h * w * c);
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = hwc + (size_t)cinfo.output_scanline * w * c;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    if (jerr.warnings) {
        free(hwc);
        return fail(err, err_len, "corrupt JPEG: %s", jerr.message);
    }
    out->c = c;
    out->h = h;
    out->w = w;
    out->pixels = to_planar(hwc, c, h, w);
    return 0;
}

int image_decode_file(const char *path, ImageU8 *out, char *err, size_t err_len) {
    memset(out, 0, sizeof *out);
    size_t len;
    uint8_t *buf = read_file_soft(path, &len, err, err_len);
    if (!buf) return -1;
    static const uint8_t png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    int rc;
    if (len >= 8 && memcmp(buf, png_magic, 8) == 0) rc = decode_png(buf, len, out, err, err_len);
    else if (len >= 3 && buf[0] == 0xFF && buf[1] == 0xD8 && buf[2] == 0xFF) rc = decode_jpeg(buf, len, out, err, err_len);
    else rc = fail(err, err_len, "not a PNG or JPEG file");
    free(buf);
    return rc;
}

int image_load(ImageU8 *img, const char *path) {
    char err[256];
    if (image_decode_file(path, img, err, sizeof err) != 0) return d2c_error(D2C_ERR_INPUT, "%s: %s", path, err);
    return D2C_OK;
}

void image_free(ImageU8 *img) {
    free(img->pixels);
    memset(img, 0, sizeof *img);
}

/* ---------------------------------------------------------------------------------- */
/* Writing                                                                            */

/* Writes interleaved (H, W, C) pixels. */
static int write_png_hwc(const char *path, const uint8_t *hwc, int c, int h, int w) {
    D2C_CHECK((c == 1 || c == 3) && h > 0 && w > 0);
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    img.width = (png_uint_32)w;
    img.height = (png_uint_32)h;
    img.format = c == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
    AtomicFile af;
    D2C_TRY(atomic_open(&af, path));
    if (!png_image_write_to_stdio(&img, af.f, 0, hwc, 0, NULL)) {
        atomic_abort(&af);
        return d2c_error(D2C_ERR_FAIL, "%s: cannot write PNG: %s", path, img.message);
    }
    return atomic_commit(&af);
}

static uint8_t *planar_to_hwc(const uint8_t *chw, int c, int h, int w) {
    size_t hw = (size_t)h * w;
    uint8_t *hwc = xmalloc(hw * c);
    for (size_t p = 0; p < hw; p++)
        for (int k = 0; k < c; k++) hwc[p * c + k] = chw[k * hw + p];
    return hwc;
}

int png_write_u8(const char *path, const uint8_t *pixels, int c, int h, int w) {
    uint8_t *hwc = planar_to_hwc(pixels, c, h, w);
    int st = write_png_hwc(path, hwc, c, h, w);
    free(hwc);
    return st;
}

typedef struct {
    struct jpeg_error_mgr base;
    jmp_buf escape;
} JpegWriteErrors;

static void jpeg_write_error(j_common_ptr cinfo) { longjmp(((JpegWriteErrors *)cinfo->err)->escape, 1); }

int jpeg_write_u8(const char *path, const uint8_t *pixels, int c, int h, int w, int quality) {
    D2C_CHECK((c == 1 || c == 3) && h > 0 && w > 0);
    AtomicFile af;
    D2C_TRY(atomic_open(&af, path));
    uint8_t *hwc = planar_to_hwc(pixels, c, h, w);
    struct jpeg_compress_struct cinfo;
    JpegWriteErrors jerr;
    cinfo.err = jpeg_std_error(&jerr.base);
    jerr.base.error_exit = jpeg_write_error;
    if (setjmp(jerr.escape)) {
        char message[JMSG_LENGTH_MAX];
        cinfo.err->format_message((j_common_ptr)&cinfo, message);
        jpeg_destroy_compress(&cinfo);
        atomic_abort(&af);
        free(hwc);
        return d2c_error(D2C_ERR_FAIL, "%s: cannot write JPEG: %s", path, message);
    }
    jpeg_create_compress(&cinfo);
    jpeg_stdio_dest(&cinfo, af.f);
    cinfo.image_width = (JDIMENSION)w;
    cinfo.image_height = (JDIMENSION)h;
    cinfo.input_components = c;
    cinfo.in_color_space = c == 3 ? JCS_RGB : JCS_GRAYSCALE;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = hwc + (size_t)cinfo.next_scanline * w * c;
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    free(hwc);
    return atomic_commit(&af);
}

static uint8_t to_u8(float x) {
    float v = (x + 1.0f) * 127.5f + 0.5f;
    return v > 0.0f ? (v < 255.0f ? (uint8_t)v : 255) : 0; /* NaN -> 0 */
}

int png_write_grid_caption(const char *path, const float *images, int n, int C, int H, int W, int ncols,
                            int pad, const char *caption) {
    D2C_CHECK(n > 0 && (C == 1 || C == 3) && H > 0 && W > 0 && ncols > 0 && pad >= 0);
    if (ncols > n) ncols = n;
    int nrows = (n + ncols - 1) / ncols;
    int grid_w = ncols * (W + pad) + pad, grid_h = nrows * (H + pad) + pad;
    if (!caption) caption = "";

    /* Caption at scale 2 when it fits under the grid, else scale 1 and a wider canvas. */
    int scale = font_text_width(caption, 2) + 2 * (pad + 2) <= grid_w ? 2 : 1;
    int text_w = font_text_width(caption, scale), text_h = font_text_height(caption, scale);
    int margin = text_h ? scale * 3 : 0;
    int canvas_w = D2C_MAX(grid_w, text_w + 2 * (pad + 2));
    int canvas_h = grid_h + (text_h ? text_h + 2 * margin - pad : 0);
    D2C_CHECK((size_t)canvas_w * canvas_h <= IMAGE_MAX_PIXELS);

    uint8_t *canvas = xmalloc((size_t)canvas_w * canvas_h * C);
    memset(canvas, 255, (size_t)canvas_w * canvas_h * C);
    int x0 = (canvas_w - grid_w) / 2;
    size_t plane = (size_t)H * W;
    for (int i = 0; i < n; i++) {
        const float *img = images + (size_t)i * C * plane;
        int top = pad + (i / ncols) * (H + pad), left = x0 + pad + (i % ncols) * (W + pad);
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                for (int k = 0; k < C; k++)
                    canvas[((size_t)(top + y) * canvas_w + left + x) * C + k] = to_u8(img[k * plane + (size_t)y * W + x]);
    }
    if (text_h)
        font_draw_text(canvas, canvas_h, canvas_w, C, (canvas_w - text_w) / 2, grid_h - pad + margin, caption, scale, 0);
    int st = write_png_hwc(path, canvas, C, canvas_h, canvas_w);
    free(canvas);
    return st;
}

int png_write_grid(const char *path, const float *images, int n, int C, int H, int W, int ncols, int pad) {
    return png_write_grid_caption(path, images, n, C, H, W, ncols, pad, NULL);
}
