/* cnnelm IDX internals shared by the IDX files (idx_header.c, idx_read.c, idx_gunzip.c,
 * idx_write.c): the format's constants, what a header announced, big-endian words, and the header
 * checks, messages and gzip reads that idx_header.c defines. */
#ifndef CNNELM_DATA_IDX_INTERNAL_H
#define CNNELM_DATA_IDX_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <zlib.h>

#include "cnnelm/error.h"

#define IDX_MAGIC_IMAGES 0x00000803u
#define IDX_MAGIC_LABELS 0x00000801u
#define IDX_MAGIC_IMAGES_C 0x00000804u /* n x c x h x w: c channels, planar */
#define IDX_MAX_SIDE 4096u
#define GZ_STEP (1u << 30) /* gzread takes an unsigned int length */

/* What a header announced. */
typedef struct idx_header {
    uint32_t dims[3];      /* count, rows, cols */
    uint32_t channels;     /* 1, or the second dimension of a 4-dimension image file */
    size_t header_bytes;   /* 8 for labels, 16 for images, 20 for 4-dimension images */
    size_t payload_bytes;  /* product of the dimensions */
} idx_header;

static inline uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static inline void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24); p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);  p[3] = (unsigned char)v;
}

/* An image file's header at p: 16 bytes (n, rows, cols), or with four_dims 20 bytes (the
 * 4-dimension magic, with channels); returns its length. */
static inline size_t cnnelm_idx_put_image_header(unsigned char p[20], int four_dims, uint32_t n,
                                                 uint32_t channels, uint32_t rows, uint32_t cols)
{
    put_be32(p, four_dims ? IDX_MAGIC_IMAGES_C : IDX_MAGIC_IMAGES);
    put_be32(p + 4, n);
    if (four_dims)
        put_be32(p + 8, channels);
    put_be32(p + (four_dims ? 12 : 8), rows);
    put_be32(p + (four_dims ? 16 : 12), cols);
    return four_dims ? 20 : 16;
}

/* Checks the magic and the dimensions of an IDX header (`have` bytes at `p`) and fills h. */
int cnnelm_idx_parse_header(const char *path, const unsigned char *p, size_t have, int images,
                            idx_header *h, cnnelm_error *err);

/* "header says N images of RxC (X bytes)" or "header says N labels (N bytes)". */
void cnnelm_idx_describe(const idx_header *h, int images, char *buf, size_t size);

/* The one-line errors for a payload cut short (`got` bytes follow) or followed by more
 * (`extra`: how many bytes follow, as text). */
int cnnelm_idx_fail_truncated(const char *path, const idx_header *h, int images, size_t got,
                              cnnelm_error *err);
int cnnelm_idx_fail_trailing(const char *path, const idx_header *h, int images, const char *extra,
                             cnnelm_error *err);

/* Reads up to len bytes from a gzip stream; returns how many, or -1; *cut set when the stream
 * ends before its trailer. */
long long cnnelm_idx_gz_read(gzFile gz, const char *path, void *dst, size_t len, int *cut,
                             cnnelm_error *err);

/* Opens path and tells gzip from raw by the first two bytes. */
int cnnelm_idx_open(const char *path, int *fd_out, int *is_gzip, struct stat *st, cnnelm_error *err);

/* A zlib stream on a dup of fd (the caller keeps fd), and the image header read from one. */
gzFile cnnelm_idx_gz_from(int fd, const char *path, cnnelm_error *err);
int cnnelm_idx_read_gz_header(gzFile gz, const char *path, idx_header *h, cnnelm_error *err);

#endif
