/* cnnelm image files: PNG (libpng) and JPEG (libjpeg-turbo) decoded to 8-bit gray or RGB, and
 * converted (channels, optional resize) to the planar uint8 input a model takes. */
#ifndef CNNELM_IMAGE_H
#define CNNELM_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "cnnelm/error.h"

typedef struct cnnelm_image {
    uint8_t *pix;   /* h x w x c, interleaved, as decoded; malloc'd */
    int h, w, c;    /* c: 1 (gray) or 3 (RGB) */
} cnnelm_image;

/* Decodes a PNG or JPEG file (recognised by content, not name). Alpha is dropped (composited
 * on black), palettes expanded. 16-bit PNGs, CMYK JPEGs and anything that is not a PNG or JPEG
 * are one-line errors naming the file, what it is and what is supported. */
int cnnelm_image_read(const char *path, cnnelm_image *img, cnnelm_error *err);
void cnnelm_image_free(cnnelm_image *img);

/* 1 when the file starts like a PNG or a JPEG. */
int cnnelm_image_sniff(const char *path);

/* A one-line description of what a file that is not a supported image is ("a text file",
 * "a gzip file", ...), for messages. */
void cnnelm_file_describe(const char *path, char *buf, size_t size);

/* 1 when some pixel of an RGB image has R, G, B not all equal. */
int cnnelm_image_is_colour(const cnnelm_image *img);

/* Writes the image as c x h x w planar bytes to dst: gray to RGB by copying, RGB to gray by
 * luma (299 R + 587 G + 114 B) / 1000, rounded (an RGB image with R = G = B gives back its
 * gray bytes exactly). Another size than h x w is an error naming `path` and both sizes unless
 * `resize` (bilinear, pixel centres aligned). */
int cnnelm_image_to_input(const cnnelm_image *img, const char *path, int c, int h, int w, int resize,
                          uint8_t *dst, cnnelm_error *err);

/* Writes an 8-bit gray (c = 1) or RGB (c = 3) PNG from h x w x c interleaved pixels (tests and
 * tools). */
int cnnelm_image_write_png(const char *path, const uint8_t *pix, int h, int w, int c,
                           cnnelm_error *err);

#endif
