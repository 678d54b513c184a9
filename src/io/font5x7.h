/* A tiny built-in bitmap font (5x7 glyphs in 6x9 cells, printable ASCII) for captions
 * under image grids: d2c's figures need a line of text without a font library. */
#ifndef D2C_IO_FONT5X7_H
#define D2C_IO_FONT5X7_H

#include <stdint.h>

enum { FONT_CELL_W = 6, FONT_CELL_H = 9 }; /* glyph plus spacing, at scale 1 */

/* Width and height in pixels of text (lines split at '\n') drawn at this scale. */
int font_text_width(const char *text, int scale);
int font_text_height(const char *text, int scale);

/* Draws text with its top-left corner at (x, y) into an interleaved (h, w, c) 8-bit
 * canvas, setting every channel of inked pixels to value; clipped to the canvas.
 * Characters outside printable ASCII are drawn as '?'. */
void font_draw_text(uint8_t *canvas, int h, int w, int c, int x, int y, const char *text, int scale,
                    uint8_t value);

#endif
