/* cnnelm image files: PNG through libpng's simplified API, JPEG through libjpeg(-turbo), both
 * decoded to 8-bit gray or RGB; conversion to the planar input a model takes. */
#include "data/image.h"

#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <png.h>

#define SUPPORTED "supported: PNG and JPEG images, 8-bit gray or RGB"

static int read_head(const char *path, unsigned char *buf, size_t size, size_t *got)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    *got = fread(buf, 1, size, f);
    fclose(f);
    return 0;
}

static int is_png(const unsigned char *b, size_t n)
{
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    return n >= 8 && memcmp(b, sig, 8) == 0;
}

static int is_jpeg(const unsigned char *b, size_t n)
{
    return n >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff;
}

int cnnelm_image_sniff(const char *path)
{
    unsigned char b[8];
    size_t n;
    if (read_head(path, b, sizeof b, &n))
        return 0;
    return is_png(b, n) || is_jpeg(b, n);
}

void cnnelm_file_describe(const char *path, char *buf, size_t size)
{
    unsigned char b[512];
    size_t n;
    if (read_head(path, b, sizeof b, &n)) {
        snprintf(buf, size, "unreadable: %s", strerror(errno));
        return;
    }
    if (n == 0) {
        snprintf(buf, size, "an empty file");
        return;
    }
    if (is_png(b, n) || is_jpeg(b, n)) {
        snprintf(buf, size, "a %s image", is_png(b, n) ? "PNG" : "JPEG");
        return;
    }
    if (n >= 2 && b[0] == 0x1f && b[1] == 0x8b) {
        snprintf(buf, size, "a gzip file");
        return;
    }
    if (n >= 4 && b[0] == 0 && b[1] == 0 && b[2] >= 0x08 && b[2] <= 0x0e && b[3] >= 1 && b[3] <= 4) {
        static const char *const types[] = {"unsigned byte", "signed byte", "?", "short", "int",
                                            "float", "double"};
        snprintf(buf, size, "an IDX file of %s elements, %d dimensions", types[b[2] - 0x08], b[3]);
        return;
    }
    if ((n >= 2 && b[0] == 'B' && b[1] == 'M')) { snprintf(buf, size, "a BMP image"); return; }
    if (n >= 4 && (!memcmp(b, "GIF8", 4))) { snprintf(buf, size, "a GIF image"); return; }
    if (n >= 4 && (!memcmp(b, "II*\0", 4) || !memcmp(b, "MM\0*", 4))) { snprintf(buf, size, "a TIFF image"); return; }
    if (n >= 12 && !memcmp(b, "RIFF", 4) && !memcmp(b + 8, "WEBP", 4)) { snprintf(buf, size, "a WebP image"); return; }
    size_t text = 0;
    for (size_t i = 0; i < n; i++)
        text += (b[i] >= 0x20 && b[i] < 0x7f) || b[i] == '\n' || b[i] == '\r' || b[i] == '\t' || b[i] >= 0x80;
    snprintf(buf, size, "%s", text == n ? "a text file" : "an unrecognised binary file");
}

static int read_png(const char *path, cnnelm_image *img, cnnelm_error *err)
{
    png_image p;
    memset(&p, 0, sizeof p);
    p.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&p, path))
        return cnnelm_fail(err, "%s: cannot decode PNG: %s", path, p.message);
    if (p.format & PNG_FORMAT_FLAG_LINEAR) {
        png_image_free(&p);
        return cnnelm_fail(err, "%s: a 16-bit PNG; " SUPPORTED, path);
    }
    if (p.width > 4096 || p.height > 4096) {
        png_image_free(&p);
        return cnnelm_fail(err, "%s: a %ux%u PNG is too large (at most 4096x4096)", path, p.width, p.height);
    }
    int c = (p.format & PNG_FORMAT_FLAG_COLOR) ? 3 : 1;
    p.format = c == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY; /* alpha composited on black */
    size_t bytes = (size_t)p.width * p.height * (size_t)c;
    img->pix = malloc(bytes ? bytes : 1);
    if (!img->pix) {
        png_image_free(&p);
        return cnnelm_fail(err, "%s: out of memory", path);
    }
    png_color black = {0, 0, 0};
    if (!png_image_finish_read(&p, &black, img->pix, 0, NULL)) {
        free(img->pix);
        img->pix = NULL;
        return cnnelm_fail(err, "%s: cannot decode PNG: %s", path, p.message);
    }
    img->h = (int)p.height;
    img->w = (int)p.width;
    img->c = c;
    return 0;
}

typedef struct jpeg_failure {
    struct jpeg_error_mgr mgr;
    jmp_buf jump;
    char msg[JMSG_LENGTH_MAX];
} jpeg_failure;

/* libjpeg's error_exit hook: instead of exiting, back to read_jpeg's setjmp with the message */
static void jpeg_fail_jump(j_common_ptr cinfo)
{
    jpeg_failure *f = (jpeg_failure *)cinfo->err;
    f->mgr.format_message(cinfo, f->msg);
    longjmp(f->jump, 1);
}

static void jpeg_quiet(j_common_ptr cinfo, int level) { (void)cinfo; (void)level; }

static int read_jpeg(const char *path, cnnelm_image *img, cnnelm_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return cnnelm_fail(err, "%s: cannot open: %s", path, strerror(errno));
    struct jpeg_decompress_struct cinfo;
    jpeg_failure fail;
    /* volatile: read after a longjmp */
    uint8_t *volatile pix = NULL;
    cinfo.err = jpeg_std_error(&fail.mgr);
    fail.mgr.error_exit = jpeg_fail_jump;
    fail.mgr.emit_message = jpeg_quiet;
    if (setjmp(fail.jump)) {
        jpeg_destroy_decompress(&cinfo);
        fclose(f);
        free(pix);
        return cnnelm_fail(err, "%s: cannot decode JPEG: %s", path, fail.msg);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_stdio_src(&cinfo, f);
    jpeg_read_header(&cinfo, TRUE);
    if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
        jpeg_destroy_decompress(&cinfo);
        fclose(f);
        return cnnelm_fail(err, "%s: a CMYK JPEG; " SUPPORTED, path);
    }
    if (cinfo.image_width > 4096 || cinfo.image_height > 4096) {
        unsigned w = cinfo.image_width, h = cinfo.image_height;
        jpeg_destroy_decompress(&cinfo);
        fclose(f);
        return cnnelm_fail(err, "%s: a %ux%u JPEG is too large (at most 4096x4096)", path, w, h);
    }
    int c = cinfo.jpeg_color_space == JCS_GRAYSCALE ? 1 : 3;
    cinfo.out_color_space = c == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_start_decompress(&cinfo);
    size_t stride = (size_t)cinfo.output_width * (size_t)c;
    pix = malloc(stride * cinfo.output_height + 1);
    if (!pix) {
        jpeg_destroy_decompress(&cinfo);
        fclose(f);
        return cnnelm_fail(err, "%s: out of memory", path);
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = pix + stride * cinfo.output_scanline;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_decompress(&cinfo);
    img->h = (int)cinfo.output_height;
    img->w = (int)cinfo.output_width;
    img->c = c;
    img->pix = pix;
    jpeg_destroy_decompress(&cinfo);
    fclose(f);
    return 0;
}

int cnnelm_image_read(const char *path, cnnelm_image *img, cnnelm_error *err)
{
    memset(img, 0, sizeof *img);
    unsigned char b[8];
    size_t n;
    if (read_head(path, b, sizeof b, &n))
        return cnnelm_fail(err, "%s: cannot open: %s", path, strerror(errno));
    if (is_png(b, n))
        return read_png(path, img, err);
    if (is_jpeg(b, n))
        return read_jpeg(path, img, err);
    char what[128];
    cnnelm_file_describe(path, what, sizeof what);
    return cnnelm_fail(err, "%s: not a supported image (%s); " SUPPORTED, path, what);
}

void cnnelm_image_free(cnnelm_image *img)
{
    free(img->pix);
    memset(img, 0, sizeof *img);
}

int cnnelm_image_is_colour(const cnnelm_image *img)
{
    if (img->c != 3)
        return 0;
    size_t n = (size_t)img->h * img->w;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = img->pix + 3 * i;
        if (p[0] != p[1] || p[1] != p[2])
            return 1;
    }
    return 0;
}

/* Pixel (y, x) of channel ch of the image as the target channel count sees it. */
static uint8_t sample(const cnnelm_image *img, int y, int x, int ch, int c_out)
{
    const uint8_t *p = img->pix + ((size_t)y * img->w + x) * (size_t)img->c;
    if (img->c == c_out)
        return p[ch];
    if (img->c == 1)
        return p[0];
    return (uint8_t)((299u * p[0] + 587u * p[1] + 114u * p[2] + 500u) / 1000u);
}

int cnnelm_image_to_input(const cnnelm_image *img, const char *path, int c, int h, int w, int resize,
                          uint8_t *dst, cnnelm_error *err)
{
    if (c != 1 && c != 3)
        return cnnelm_fail(err, "%s: %d input channels requested (1 or 3 supported)", path, c);
    if (img->h != h || img->w != w) {
        if (!resize)
            return cnnelm_fail(err, "%s: image is %dx%d (width x height) but %dx%d is expected; set "
                               "data.resize = true (predict: --resize) to resize", path, img->w, img->h, w, h);
        /* bilinear, pixel centres aligned: source coordinate (x + 0.5) * W / w - 0.5 */
        for (int ch = 0; ch < c; ch++)
            for (int y = 0; y < h; y++) {
                double sy = (y + 0.5) * img->h / h - 0.5;
                if (sy < 0) sy = 0;
                int y0 = (int)sy, y1 = y0 + 1 < img->h ? y0 + 1 : y0;
                double fy = sy - y0;
                for (int x = 0; x < w; x++) {
                    double sx = (x + 0.5) * img->w / w - 0.5;
                    if (sx < 0) sx = 0;
                    int x0 = (int)sx, x1 = x0 + 1 < img->w ? x0 + 1 : x0;
                    double fx = sx - x0;
                    double v = (1 - fy) * ((1 - fx) * sample(img, y0, x0, ch, c) + fx * sample(img, y0, x1, ch, c)) +
                               fy * ((1 - fx) * sample(img, y1, x0, ch, c) + fx * sample(img, y1, x1, ch, c));
                    dst[((size_t)ch * h + y) * w + x] = (uint8_t)(v + 0.5);
                }
            }
        return 0;
    }
    for (int ch = 0; ch < c; ch++)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                dst[((size_t)ch * h + y) * w + x] = sample(img, y, x, ch, c);
    return 0;
}

int cnnelm_image_write_png(const char *path, const uint8_t *pix, int h, int w, int c, cnnelm_error *err)
{
    png_image p;
    memset(&p, 0, sizeof p);
    p.version = PNG_IMAGE_VERSION;
    p.width = (png_uint_32)w;
    p.height = (png_uint_32)h;
    p.format = c == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
    if (!png_image_write_to_file(&p, path, 0, pix, 0, NULL))
        return cnnelm_fail(err, "%s: cannot write PNG: %s", path, p.message);
    return 0;
}
