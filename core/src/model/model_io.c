/* cnnelm model files: versioned, little-endian, CRC-32 checked. The byte layout is documented
 * in docs/model-format.md; keep the two in step. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "base/atomic_file.h"
#include "cnnelm/enums.h"
#include "cnnelm/dataset.h"
#include "cnnelm/model.h"

#define MODEL_MAGIC "CNNELM\r\n"
#define MODEL_VERSION 2u      /* written; 1 is still read */
#define MODEL_VERSION_OLDEST 1u
#define NAMES_MAX (1u << 20)   /* class names block, bytes */
#define HEADER_SIZE 160u
#define LAYERS_OFFSET 96u

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}
static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get_u32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}
static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}
static void put_f64(unsigned char *p, double d)
{
    uint64_t v;
    memcpy(&v, &d, 8);
    put_u64(p, v);
}
static double get_f64(const unsigned char *p)
{
    uint64_t v = get_u64(p);
    double d;
    memcpy(&d, &v, 8);
    return d;
}

/* Payload size for a header's counts; 0 on overflow. */
static uint64_t payload_bytes(uint64_t n_params, uint64_t hidden, uint64_t classes)
{
    if (n_params > (1ull << 40) || hidden > (1ull << 20) || classes > (1ull << 16))
        return 0;
    return 4 * n_params + 4 * hidden * classes + 8 * hidden * hidden + 8 * hidden * classes;
}

/* Format 2's block after V: partitions, reduce, then the class names, each NUL-terminated
 * (names_bytes 0: none). */
static size_t names_bytes(const cnnelm_model *m)
{
    size_t b = 0;
    if (m->class_names)
        for (int i = 0; i < m->arch.classes; i++)
            b += strlen(m->class_names[i]) + 1;
    return b;
}

static unsigned char *put_extension(unsigned char *p, const cnnelm_model *m, size_t nb)
{
    put_u32(p, m->partitions);
    put_u32(p + 4, m->reduce);
    put_u32(p + 8, (uint32_t)nb);
    p += 12;
    for (int i = 0; nb && i < m->arch.classes; i++) {
        size_t len = strlen(m->class_names[i]) + 1;
        memcpy(p, m->class_names[i], len);
        p += len;
    }
    return p;
}

/* Reads format 2's block (len bytes at p, exactly); 0 or -1 with err. */
static int get_extension(cnnelm_model *m, const unsigned char *p, size_t len, const char *path,
                         cnnelm_error *err)
{
    if (len < 12)
        return cnnelm_fail(err, "%s: truncated model file (the class block is cut)", path);
    m->partitions = get_u32(p);
    m->reduce = get_u32(p + 4);
    size_t nb = get_u32(p + 8);
    if (nb != len - 12)
        return cnnelm_fail(err, "%s: inconsistent model file: class names take %zu bytes, %zu are there",
                           path, nb, len - 12);
    if (m->reduce > 1u + CNNELM_REDUCE_REFIT)
        return cnnelm_fail(err, "%s: unknown reduce code %u in the model file", path, m->reduce);
    if (nb == 0)
        return 0;
    const char *s = (const char *)p + 12, *end = s + nb;
    if (end[-1] != '\0')
        return cnnelm_fail(err, "%s: corrupted class names (not NUL-terminated)", path);
    int count = 0;
    for (const char *q = s; q < end; q += strlen(q) + 1)
        count++;
    if (count != m->arch.classes)
        return cnnelm_fail(err, "%s: %d class names for %d classes", path, count, m->arch.classes);
    char *names[256];
    int i = 0;
    for (const char *q = s; q < end && i < 256; q += strlen(q) + 1)
        names[i++] = (char *)q;
    return count > 256 ? cnnelm_fail(err, "%s: more than 256 class names", path)
                       : cnnelm_model_set_class_names(m, names, err);
}

/* The version field of a model file's header (0: unreadable or not a model file). */
unsigned cnnelm_model_file_version(const char *path)
{
    unsigned char h[12];
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    size_t got = fread(h, 1, sizeof h, f);
    fclose(f);
    if (got < 12 || memcmp(h, MODEL_MAGIC, 8) != 0)
        return 0;
    return get_u32(h + 8);
}

int cnnelm_model_encode(const cnnelm_model *m, unsigned char **out, size_t *out_len, cnnelm_error *err)
{
    const cnnelm_arch *a = &m->arch;
    uint64_t L = (uint64_t)a->hidden, C = (uint64_t)a->classes;
    size_t nb = names_bytes(m);
    if (nb > NAMES_MAX)
        return cnnelm_fail(err, "class names take %zu bytes (at most %u)", nb, NAMES_MAX);
    size_t total = HEADER_SIZE + payload_bytes(a->n_params, L, C) + 12 + nb + 4;
    unsigned char *buf = calloc(1, total);
    *out = NULL;
    if (!buf)
        return cnnelm_fail(err, "out of memory encoding a model");
    unsigned char *h = buf;
    memcpy(h, MODEL_MAGIC, 8);
    put_u32(h + 8, MODEL_VERSION);
    put_u32(h + 12, HEADER_SIZE);
    const uint32_t fields[] = { (uint32_t)a->in_c, (uint32_t)a->in_h, (uint32_t)a->in_w,
                                (uint32_t)a->kernel, (uint32_t)a->classes, (uint32_t)a->hidden,
                                (uint32_t)a->activation, (uint32_t)a->pooling,
                                (uint32_t)a->elm_activation, m->iterations, m->flags, 0 };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        put_u32(h + 16 + 4 * i, fields[i]);
    put_f64(h + 64, m->lambda);
    put_u64(h + 72, m->seed);
    put_u64(h + 80, m->n_examples);
    put_u64(h + 88, a->n_params);
    memcpy(h + LAYERS_OFFSET, a->layers, strlen(a->layers)); /* < 64, NUL-terminated */
    unsigned char *p = buf + HEADER_SIZE;
    for (size_t i = 0; i < a->n_params; i++, p += 4) {
        uint32_t v;
        memcpy(&v, &m->params[i], 4);
        put_u32(p, v);
    }
    for (size_t i = 0; i < L * C; i++, p += 4) {
        uint32_t v;
        memcpy(&v, &m->beta[i], 4);
        put_u32(p, v);
    }
    for (size_t i = 0; i < L * L; i++, p += 8)
        put_f64(p, m->U[i]);
    for (size_t i = 0; i < L * C; i++, p += 8)
        put_f64(p, m->V[i]);
    p = put_extension(p, m, nb);
    put_u32(p, (uint32_t)crc32(0L, buf, (uInt)(total - 4)));
    *out = buf;
    *out_len = total;
    return 0;
}

int cnnelm_model_save(const cnnelm_model *m, const char *path, cnnelm_error *err)
{
    unsigned char *buf;
    size_t total;
    if (cnnelm_model_encode(m, &buf, &total, err))
        return cnnelm_fail_prefix(err, "%s", path);
    cnnelm_atomic_file af;
    if (cnnelm_atomic_open(&af, path, err) != 0) {
        free(buf);
        return -1;
    }
    if (fwrite(buf, 1, total, af.f) != total) {
        int e = errno;
        cnnelm_atomic_abort(&af);
        free(buf);
        return cnnelm_fail(err, "%s: cannot write: %s", path, strerror(e));
    }
    free(buf);
    return cnnelm_atomic_commit(&af, err);
}

int cnnelm_model_load(cnnelm_model *m, const char *path, cnnelm_error *err)
{
    memset(m, 0, sizeof *m);
    FILE *f = fopen(path, "rb");
    if (!f)
        return cnnelm_fail(err, "%s: cannot open model: %s", path, strerror(errno));
    unsigned char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? cap * 2 : 1 << 16;
            if (cap > ((size_t)1 << 34)) {
                fclose(f);
                free(buf);
                return cnnelm_fail(err, "%s: too large to be a model file", path);
            }
            unsigned char *nb = realloc(buf, cap);
            if (!nb) {
                fclose(f);
                free(buf);
                return cnnelm_fail(err, "%s: out of memory", path);
            }
            buf = nb;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0)
            break;
    }
    int rerr = ferror(f);
    fclose(f);
    if (rerr) {
        free(buf);
        return cnnelm_fail(err, "%s: read error", path);
    }
    int rc = cnnelm_model_decode(m, buf, len, path, err);
    free(buf);
    return rc;
}

int cnnelm_model_decode(cnnelm_model *m, const unsigned char *buf, size_t len, const char *path,
                        cnnelm_error *err)
{
    memset(m, 0, sizeof *m);
    int rc = -1;
    if (len < 8 || memcmp(buf, MODEL_MAGIC, 8) != 0) {
        cnnelm_fail(err, "%s: not a cnnelm model file (bad magic)", path);
        goto out;
    }
    if (len < HEADER_SIZE + 4) {
        cnnelm_fail(err, "%s: truncated model file (%zu bytes, the header alone is %u)", path, len,
                    HEADER_SIZE);
        goto out;
    }
    uint32_t version = get_u32(buf + 8);
    if (version < MODEL_VERSION_OLDEST || version > MODEL_VERSION || get_u32(buf + 12) != HEADER_SIZE) {
        cnnelm_fail(err, "%s: model format version %u is not supported (this cnnelm reads versions %u to %u)",
                    path, version, MODEL_VERSION_OLDEST, MODEL_VERSION);
        goto out;
    }
    uint32_t fld[12];
    for (int i = 0; i < 12; i++)
        fld[i] = get_u32(buf + 16 + 4 * i);
    uint64_t n_params = get_u64(buf + 88);
    uint64_t pay = payload_bytes(n_params, fld[5], fld[4]);
    if (pay == 0) {
        cnnelm_fail(err, "%s: corrupted model header (sizes out of range)", path);
        goto out;
    }
    uint64_t expect = HEADER_SIZE + pay + 4;
    size_t ext_len = 0; /* format 2: the block between V and the CRC */
    if (version >= 2 && len >= expect + 12) {
        uint32_t nb = get_u32(buf + HEADER_SIZE + pay + 8);
        if (nb <= NAMES_MAX)
            ext_len = 12 + nb;
    } else if (version >= 2) {
        ext_len = 12;
    }
    expect += ext_len;
    if (len < expect) {
        cnnelm_fail(err, "%s: truncated model file (%zu bytes, expected %llu)", path, len,
                    (unsigned long long)expect);
        goto out;
    }
    if (len > expect) {
        cnnelm_fail(err, "%s: %llu unexpected bytes after the end of the model", path,
                    (unsigned long long)(len - expect));
        goto out;
    }
    if ((uint32_t)crc32(0L, buf, (uInt)(expect - 4)) != get_u32(buf + expect - 4)) {
        cnnelm_fail(err, "%s: checksum mismatch: the model file is corrupted", path);
        goto out;
    }
    char layers[64];
    memcpy(layers, buf + LAYERS_OFFSET, 63);
    layers[63] = '\0';
    /* the architecture string is shown in messages: only its own alphabet gets that far */
    if (layers[strspn(layers, "0123456789cs-(,)qrt")] != '\0') {
        char shown[200];
        cnnelm_fail(err, "%s: corrupted model header: architecture \"%s\" has bytes other than "
                    "digits, 'c', 's', '-', '(', ',', ')' and \"sqrt\"", path, cnnelm_escape(layers, sizeof layers, shown, sizeof shown));
        goto out;
    }
    if (fld[6] > CNNELM_ACT_OPTTANH || fld[7] > CNNELM_POOL_MAX || fld[8] > CNNELM_ACT_OPTTANH) {
        cnnelm_fail(err, "%s: unknown activation or pooling code in the header", path);
        goto out;
    }
    cnnelm_arch arch;
    if (cnnelm_arch_init(&arch, layers, (int)fld[3], (int)fld[0], (int)fld[1], (int)fld[2],
                         (int)fld[4], (cnnelm_activation)fld[6], (cnnelm_pooling)fld[7],
                         (cnnelm_activation)fld[8], err) != 0) {
        cnnelm_fail_prefix(err, "%s: inconsistent model header", path);
        goto out;
    }
    if (arch.n_params != n_params || (uint32_t)arch.hidden != fld[5]) {
        cnnelm_fail(err, "%s: inconsistent model header: %s needs %zu parameters and %d hidden units, "
                    "the file has %llu and %u", path, layers, arch.n_params, arch.hidden,
                    (unsigned long long)n_params, fld[5]);
        goto out;
    }
    if (cnnelm_model_init(m, &arch, get_f64(buf + 64), get_u64(buf + 72), 0, err) != 0)
        goto out;
    m->iterations = fld[9];
    m->flags = fld[10];
    m->n_examples = get_u64(buf + 80);
    const unsigned char *p = buf + HEADER_SIZE;
    size_t L = (size_t)arch.hidden, C = (size_t)arch.classes;
    for (size_t i = 0; i < arch.n_params; i++, p += 4) {
        uint32_t v = get_u32(p);
        memcpy(&m->params[i], &v, 4);
    }
    for (size_t i = 0; i < L * C; i++, p += 4) {
        uint32_t v = get_u32(p);
        memcpy(&m->beta[i], &v, 4);
    }
    for (size_t i = 0; i < L * L; i++, p += 8)
        m->U[i] = get_f64(p);
    for (size_t i = 0; i < L * C; i++, p += 8)
        m->V[i] = get_f64(p);
    if (ext_len && get_extension(m, p, ext_len, path, err)) {
        cnnelm_model_free(m);
        goto out;
    }
    if (!(m->lambda > 0) || !isfinite(m->lambda)) {
        cnnelm_model_free(m);
        cnnelm_fail(err, "%s: model has an invalid lambda", path);
        goto out;
    }
    rc = 0;
out:
    return rc;
}
