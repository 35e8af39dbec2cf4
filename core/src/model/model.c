/* cnnelm architecture parsing, shape checking and model allocation / seeded initialisation. */
#include "cnnelm/model.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnnelm/dataset.h"
#include "base/rng.h"

/* Bounds that keep every size product far from overflow and every buffer allocatable: one
 * image's activations of any layer (floats), the ELM width L (U is L x L doubles) and the
 * parameters; the model file format has the same hidden / parameter limits. */
#define ARCH_MAX_ACTIVATION ((uint64_t)1 << 28)
#define ARCH_MAX_HIDDEN ((uint64_t)1 << 20)
#define ARCH_MAX_PARAMS ((uint64_t)1 << 40)

int cnnelm_arch_init(cnnelm_arch *a, const char *layers, int kernel, int in_c, int in_h, int in_w,
                     int classes, cnnelm_activation act, cnnelm_pooling pool,
                     cnnelm_activation elm_act, cnnelm_error *err)
{
    memset(a, 0, sizeof *a);
    if (kernel < 1)
        return cnnelm_fail(err, "kernel size %d must be at least 1", kernel);
    if (in_c < 1 || in_h < 1 || in_w < 1)
        return cnnelm_fail(err, "input shape %dx%dx%d is empty", in_c, in_h, in_w);
    if (classes < 2)
        return cnnelm_fail(err, "%d class%s: a classifier needs at least 2", classes,
                           classes == 1 ? "" : "es");
    a->kernel = kernel;
    a->in_c = in_c;
    a->in_h = in_h;
    a->in_w = in_w;
    a->classes = classes;
    a->activation = act;
    a->pooling = pool;
    a->elm_activation = elm_act;

    int c = in_c, h = in_h, w = in_w;
    uint64_t in_size = (uint64_t)in_c * (uint64_t)in_h * (uint64_t)in_w;
    if (in_size > ARCH_MAX_ACTIVATION)
        return cnnelm_fail(err, "input shape %dx%dx%d is too large (%llu values per image, at most %llu)",
                           in_c, in_h, in_w, (unsigned long long)in_size,
                           (unsigned long long)ARCH_MAX_ACTIVATION);
    size_t params = 0, max_maps = (size_t)in_size;
    char canon[64] = "";
    const char *p = layers;
    if (!p || !*p)
        return cnnelm_fail(err, "empty architecture: expected layers like \"6c-2s-12c-2s\"");
    /* inside a multi-scale group "(As,Bs,...)": every entry pools the group's input c x h x w */
    int group = 0;
    uint64_t group_hidden = 0;
    while (*p) {
        if (!group && a->n_layers > 0 && strcmp(p, "sqrt") == 0) {
            a->sqrt_features = 1;
            size_t used = strlen(canon);
            snprintf(canon + used, sizeof canon - used, "-sqrt");
            break;
        }
        if (*p == '(' && !group) {
            group = 1;
            size_t used = strlen(canon);
            snprintf(canon + used, sizeof canon - used, "%s(", used ? "-" : "");
            p++;
            continue;
        }
        if (a->n_layers == CNNELM_MAX_LAYERS)
            return cnnelm_fail(err, "architecture \"%s\" has more than %d layers", layers,
                               CNNELM_MAX_LAYERS);
        if (!isdigit((unsigned char)*p))
            return cnnelm_fail(err, "architecture \"%s\": expected a number at \"%s\"", layers, p);
        char *end;
        long n = strtol(p, &end, 10);
        char kind = *end;
        int idx = a->n_layers + 1;
        if ((kind != 'c' && kind != 's') || n < 1 || n > 1024)
            return cnnelm_fail(err, "architecture \"%s\": layer %d \"%.*s\" is not <maps>c or <size>s "
                               "(with 1..1024)", layers, idx, (int)(end - p + (kind ? 1 : 0)), p);
        if (group && kind != 's')
            return cnnelm_fail(err, "architecture \"%s\": a multi-scale group holds pooling sizes "
                               "only (like \"(4s,12s)\"), not \"%ldc\"", layers, n);
        for (int j = a->n_layers - a->n_scales; group && j < a->n_layers; j++)
            if (a->layer[j].size == n)
                return cnnelm_fail(err, "architecture \"%s\": pooling size %ld appears twice in "
                                   "its multi-scale group", layers, n);
        cnnelm_layer *L = &a->layer[a->n_layers++];
        L->kind = kind == 'c' ? CNNELM_LAYER_CONV : CNNELM_LAYER_POOL;
        L->size = (int)n;
        L->in_c = c;
        L->in_h = h;
        L->in_w = w;
        int oc = c, oh = h, ow = w;
        if (kind == 'c') {
            if (kernel > h || kernel > w)
                return cnnelm_fail(err, "layer %d (%ldc): kernel %dx%d does not fit its %dx%d input",
                                   idx, n, kernel, kernel, h, w);
            L->w_offset = params;
            params += (size_t)n * (size_t)c * (size_t)kernel * (size_t)kernel;
            if (params > ARCH_MAX_PARAMS)
                return cnnelm_fail(err, "layer %d (%ldc): %zu parameters, more than the %llu allowed",
                                   idx, n, params, (unsigned long long)ARCH_MAX_PARAMS);
            L->b_offset = params;
            params += (size_t)n;
            oc = (int)n;
            oh = h - kernel + 1;
            ow = w - kernel + 1;
        } else {
            if (h % n != 0 || w % n != 0)
                return cnnelm_fail(err, "layer %d (%lds): pooling size %ld does not divide its %dx%d input",
                                   idx, n, n, h, w);
            oh = h / (int)n;
            ow = w / (int)n;
        }
        L->out_c = oc;
        L->out_h = oh;
        L->out_w = ow;
        uint64_t out_size = (uint64_t)oc * (uint64_t)oh * (uint64_t)ow;
        if (out_size > ARCH_MAX_ACTIVATION)
            return cnnelm_fail(err, "layer %d (%ld%c): output %dx%dx%d is too large (%llu values per "
                               "image, at most %llu)", idx, n, kind, oc, oh, ow,
                               (unsigned long long)out_size, (unsigned long long)ARCH_MAX_ACTIVATION);
        if (out_size > max_maps)
            max_maps = (size_t)out_size;
        size_t used = strlen(canon);
        const char *sep = group ? (a->n_scales ? "," : "") : used ? "-" : "";
        snprintf(canon + used, sizeof canon - used, "%s%ld%c", sep, n, kind);
        if (group) {
            /* the group's input stays c x h x w for the next entry */
            L->h_offset = (size_t)group_hidden;
            group_hidden += out_size;
            a->n_scales++;
        } else {
            c = oc;
            h = oh;
            w = ow;
        }
        p = end + 1;
        if (group && *p == ',') {
            p++;
        } else if (group && *p == ')') {
            if (a->n_scales < 2)
                return cnnelm_fail(err, "architecture \"%s\": a multi-scale group needs at least "
                                   "two pooling sizes", layers);
            if (p[1] && strcmp(p + 1, "-sqrt") != 0)
                return cnnelm_fail(err, "architecture \"%s\": the multi-scale group must end the "
                                   "string (only \"-sqrt\" may follow \")\")", layers);
            used = strlen(canon);
            snprintf(canon + used, sizeof canon - used, ")");
            group = 0;
            p += p[1] ? 2 : 1;
        } else if (group) {
            return cnnelm_fail(err, "architecture \"%s\": expected ',' or ')' at \"%s\"", layers,
                               *p ? p : "the end");
        } else if (*p == '-') {
            p++;
            if (!*p)
                return cnnelm_fail(err, "architecture \"%s\" ends with '-'", layers);
        } else if (*p) {
            return cnnelm_fail(err, "architecture \"%s\": expected '-' at \"%s\"", layers, p);
        }
    }
    if (group)
        return cnnelm_fail(err, "architecture \"%s\": '(' without ')'", layers);
    if (strlen(canon) >= sizeof a->layers - 1)
        return cnnelm_fail(err, "architecture \"%s\" is too long", layers);
    memcpy(a->layers, canon, sizeof a->layers);
    if (params == 0)
        return cnnelm_fail(err, "architecture \"%s\" has no convolution layer", layers);
    uint64_t hidden = a->n_scales ? group_hidden : (uint64_t)c * (uint64_t)h * (uint64_t)w;
    if (hidden > ARCH_MAX_HIDDEN)
        return cnnelm_fail(err, "architecture \"%s\" on %dx%dx%d inputs gives %llu hidden units "
                           "(%dx%dx%d), more than the %llu allowed: add pooling or fewer maps",
                           layers, in_c, in_h, in_w, (unsigned long long)hidden, c, h, w,
                           (unsigned long long)ARCH_MAX_HIDDEN);
    a->hidden = (int)hidden;
    a->n_params = params;
    a->max_maps = max_maps;
    return 0;
}

int cnnelm_arch_equal(const cnnelm_arch *a, const cnnelm_arch *b)
{
    return strcmp(a->layers, b->layers) == 0 && a->kernel == b->kernel && a->in_c == b->in_c &&
           a->in_h == b->in_h && a->in_w == b->in_w && a->classes == b->classes &&
           a->activation == b->activation && a->pooling == b->pooling &&
           a->elm_activation == b->elm_activation;
}

static int model_alloc(cnnelm_model *m, const cnnelm_arch *arch, cnnelm_error *err)
{
    size_t L = (size_t)arch->hidden, C = (size_t)arch->classes;
    memset(m, 0, sizeof *m);
    m->arch = *arch;
    m->params = calloc(arch->n_params, sizeof *m->params);
    m->beta = calloc(L * C, sizeof *m->beta);
    m->U = calloc(L * L, sizeof *m->U);
    m->V = calloc(L * C, sizeof *m->V);
    if (!m->params || !m->beta || !m->U || !m->V) {
        cnnelm_model_free(m);
        return cnnelm_fail(err, "out of memory allocating a model with %d hidden units", arch->hidden);
    }
    return 0;
}


int cnnelm_model_init(cnnelm_model *m, const cnnelm_arch *arch, double lambda, uint64_t seed,
                      int zero_mean, cnnelm_error *err)
{
    /* Subtracting the mean of a 1-element kernel zeroes it: every feature would be 0. */
    for (int i = 0; i < arch->n_layers && zero_mean; i++) {
        const cnnelm_layer *Ly = &arch->layer[i];
        if (Ly->kind == CNNELM_LAYER_CONV && (size_t)Ly->in_c * arch->kernel * arch->kernel == 1)
            return cnnelm_fail(err, "model.init = \"zero-mean\" with model.kernel = 1 on a single "
                               "input map (layer %d) makes every kernel 0: use model.init = "
                               "\"uniform\" or a larger kernel", i + 1);
    }
    if (model_alloc(m, arch, err) != 0)
        return -1;
    m->lambda = lambda;
    m->seed = seed;
    cnnelm_rng rng;
    cnnelm_rng_seed(&rng, seed, CNNELM_STREAM_WEIGHTS);
    for (int i = 0; i < arch->n_layers; i++) {
        const cnnelm_layer *Ly = &arch->layer[i];
        if (Ly->kind != CNNELM_LAYER_CONV)
            continue;
        size_t kk = (size_t)arch->kernel * arch->kernel;
        double bound = sqrt(6.0 / ((double)(Ly->in_c + Ly->out_c) * (double)kk));
        size_t nw = (size_t)Ly->out_c * Ly->in_c * kk;
        for (size_t j = 0; j < nw; j++)
            m->params[Ly->w_offset + j] = (float)((2.0 * cnnelm_rng_uniform(&rng) - 1.0) * bound);
        size_t per_map = nw / (size_t)Ly->out_c;
        for (int o = 0; o < Ly->out_c && zero_mean; o++) {
            float *w = m->params + Ly->w_offset + (size_t)o * per_map;
            double mean = 0;
            for (size_t j = 0; j < per_map; j++)
                mean += w[j];
            mean /= (double)per_map;
            for (size_t j = 0; j < per_map; j++)
                w[j] = (float)(w[j] - mean);
        }
        /* biases stay zero, as in the paper's toolbox */
    }
    return 0;
}

int cnnelm_model_copy(cnnelm_model *dst, const cnnelm_model *src, cnnelm_error *err)
{
    if (model_alloc(dst, &src->arch, err) != 0)
        return -1;
    size_t L = (size_t)src->arch.hidden, C = (size_t)src->arch.classes;
    dst->lambda = src->lambda;
    dst->seed = src->seed;
    dst->iterations = src->iterations;
    dst->flags = src->flags;
    dst->n_examples = src->n_examples;
    memcpy(dst->params, src->params, src->arch.n_params * sizeof *dst->params);
    memcpy(dst->beta, src->beta, L * C * sizeof *dst->beta);
    memcpy(dst->U, src->U, L * L * sizeof *dst->U);
    memcpy(dst->V, src->V, L * C * sizeof *dst->V);
    dst->partitions = src->partitions;
    dst->reduce = src->reduce;
    return cnnelm_model_set_class_names(dst, src->class_names, err);
}

int cnnelm_model_set_class_names(cnnelm_model *m, char *const *names, cnnelm_error *err)
{
    int C = m->arch.classes;
    cnnelm_class_names_free(m->class_names, C);
    m->class_names = NULL;
    if (!names)
        return 0;
    if (!(m->class_names = cnnelm_class_names_copy(names, C)))
        return cnnelm_fail(err, "out of memory for class names");
    return 0;
}

void cnnelm_model_free(cnnelm_model *m)
{
    if (!m)
        return;
    free(m->params);
    free(m->beta);
    free(m->U);
    free(m->V);
    cnnelm_class_names_free(m->class_names, m->arch.classes);
    m->class_names = NULL;
    m->params = NULL;
    m->beta = NULL;
    m->U = m->V = NULL;
}
