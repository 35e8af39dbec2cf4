/* cnnelm info: what a model file holds, as text or JSON (the file is fully loaded, so a damaged
 * file is reported as load reports it). */
#include "cnnelm/predict.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnnelm/config.h"
#include "base/json.h"

/* The stored CRC-32: the file's last four bytes, little-endian. */
static int file_crc(const char *path, unsigned long *crc, long *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    unsigned char b[4];
    int ok = fseek(f, -4, SEEK_END) == 0 && fread(b, 1, 4, f) == 4;
    *size = ok ? ftell(f) : -1;
    fclose(f);
    *crc = (unsigned long)b[0] | (unsigned long)b[1] << 8 | (unsigned long)b[2] << 16 | (unsigned long)b[3] << 24;
    return ok ? 0 : -1;
}

static const char *reduce_text(uint32_t r)
{
    return r == 0 ? "none" : cnnelm_reduce_name((cnnelm_reduce)(r - 1));
}

int cnnelm_run_info(const char *path, int json, FILE *out, cnnelm_error *err)
{
    cnnelm_model m;
    if (cnnelm_model_load(&m, path, err))
        return -1;
    unsigned version = cnnelm_model_file_version(path);
    unsigned long crc = 0;
    long size = 0;
    file_crc(path, &crc, &size);
    const cnnelm_arch *a = &m.arch;
    int diverged = (m.flags & CNNELM_MODEL_DIVERGED) != 0;
    if (json) {
        cnnelm_json js;
        cnnelm_json_init(&js, out);
        cnnelm_json_object(&js, NULL);
        cnnelm_json_string(&js, "file", path);
        cnnelm_json_int(&js, "format_version", version);
        cnnelm_json_int(&js, "bytes", size);
        char hex[16];
        snprintf(hex, sizeof hex, "%08lx", crc);
        cnnelm_json_string(&js, "crc32", hex);
        cnnelm_json_string(&js, "layers", a->layers);
        cnnelm_json_int(&js, "kernel", a->kernel);
        cnnelm_json_string(&js, "activation", cnnelm_activation_name(a->activation));
        cnnelm_json_string(&js, "pooling", cnnelm_pooling_name(a->pooling));
        cnnelm_json_string(&js, "elm_activation", cnnelm_activation_name(a->elm_activation));
        cnnelm_json_int(&js, "input_channels", a->in_c);
        cnnelm_json_int(&js, "input_height", a->in_h);
        cnnelm_json_int(&js, "input_width", a->in_w);
        cnnelm_json_int(&js, "hidden", a->hidden);
        cnnelm_json_int(&js, "parameters", (long long)a->n_params);
        cnnelm_json_int(&js, "classes", a->classes);
        if (m.class_names) {
            cnnelm_json_array(&js, "class_names");
            for (int k = 0; k < a->classes; k++)
                cnnelm_json_string(&js, NULL, m.class_names[k]);
            cnnelm_json_end(&js, ']');
        }
        cnnelm_json_number(&js, "lambda", m.lambda);
        cnnelm_json_int(&js, "seed", (long long)m.seed);
        cnnelm_json_int(&js, "training_examples", (long long)m.n_examples);
        cnnelm_json_int(&js, "iterations", m.iterations);
        cnnelm_json_bool(&js, "diverged", diverged);
        if (version >= 2) {
            cnnelm_json_string(&js, "reduce", reduce_text(m.reduce));
            cnnelm_json_int(&js, "partitions", m.partitions);
        }
        cnnelm_json_end(&js, '}');
        fputc('\n', out);
    } else {
        fprintf(out, "file            %s (%ld bytes, format version %u, CRC-32 %08lx)\n", path, size, version, crc);
        fprintf(out, "architecture    %s, kernel %dx%d, %s after each convolution, %s pooling, ELM activation %s\n",
               a->layers, a->kernel, a->kernel, cnnelm_activation_name(a->activation),
               cnnelm_pooling_name(a->pooling), cnnelm_activation_name(a->elm_activation));
        fprintf(out, "input           %d channel%s x %d x %d (channels x height x width)\n", a->in_c,
               a->in_c == 1 ? "" : "s", a->in_h, a->in_w);
        fprintf(out, "hidden units    %d (L), %zu kernel and bias parameters\n", a->hidden, a->n_params);
        fprintf(out, "classes         %d", a->classes);
        for (int k = 0; m.class_names && k < a->classes; k++)
            fprintf(out, "%s%d=%s", k ? ", " : ": ", k, m.class_names[k]);
        fprintf(out, "%s\n", m.class_names ? "" : " (no names)");
        fprintf(out, "lambda          %g (beta = (I/lambda + U)^-1 V; larger = less regularisation)\n", m.lambda);
        fprintf(out, "seed            %llu\n", (unsigned long long)m.seed);
        fprintf(out, "examples seen   %llu\n", (unsigned long long)m.n_examples);
        fprintf(out, "iterations      %u fine-tuning iterations%s\n", m.iterations,
               diverged ? ", DIVERGED (this is the last good iteration)" : "");
        fprintf(out, "diverged        %s\n", diverged ? "yes" : "no");
        if (version >= 2) {
            fprintf(out, "reduce          %s\n", reduce_text(m.reduce));
            fprintf(out, "partitions      %u\n", m.partitions);
        } else {
            fprintf(out, "reduce          unknown (format version 1 does not record it)\n");
            fprintf(out, "partitions      unknown (format version 1 does not record it)\n");
        }
    }
    cnnelm_model_free(&m);
    if (fflush(out) != 0 || ferror(out))
        return cnnelm_fail(err, "%s: writing its description failed", path);
    return 0;
}
