/* libFuzzer harness for the model decoder: the input as a model file; then with its CRC-32
 * recomputed (so the header and size checks behind the checksum are reached); every model that
 * decodes must encode, decode again to the same model and encode to the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "cnnelm/model.h"

/* decode -> encode -> decode -> encode: the two encodings are the same bytes and the two models
 * the same (the input itself may differ from its encoding: reserved bytes are not kept). */
static void round_trip(const cnnelm_model *m)
{
    unsigned char *enc, *enc2;
    size_t elen, elen2;
    cnnelm_error err;
    if (cnnelm_model_encode(m, &enc, &elen, &err) != 0)
        abort(); /* a model that decodes can be encoded */
    cnnelm_model again;
    if (cnnelm_model_decode(&again, enc, elen, "<re-encoded>", &err) != 0)
        abort(); /* and its encoding decodes */
    if (!cnnelm_arch_equal(&again.arch, &m->arch) || again.arch.n_params != m->arch.n_params ||
        again.lambda != m->lambda || again.seed != m->seed || again.n_examples != m->n_examples)
        abort();
    if (cnnelm_model_encode(&again, &enc2, &elen2, &err) != 0)
        abort();
    if (elen2 != elen || memcmp(enc, enc2, elen) != 0)
        abort(); /* one encoding per model */
    cnnelm_model_free(&again);
    free(enc);
    free(enc2);
}

static void decode(const uint8_t *data, size_t size)
{
    cnnelm_model m;
    cnnelm_error err = { "" };
    if (cnnelm_model_decode(&m, data, size, "<fuzz>", &err) == 0) {
        round_trip(&m);
        cnnelm_model_free(&m);
    } else if (strncmp(err.msg, "<fuzz>", 6) != 0 || strchr(err.msg, '\n')) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    decode(data, size);
    if (size >= 164) {
        uint8_t *fixed = malloc(size);
        if (!fixed)
            return 0;
        memcpy(fixed, data, size);
        uint32_t crc = (uint32_t)crc32(0L, fixed, (uInt)(size - 4));
        for (int i = 0; i < 4; i++)
            fixed[size - 4 + i] = (uint8_t)(crc >> (8 * i));
        decode(fixed, size);
        free(fixed);
    }
    return 0;
}
