/* cnnelm layer kinds for the public API (config.h, model.h), without the plugin ABI: the same
 * enums, with the same values, as plugins/include/cnnelm/backend.h, which a model file and a
 * plugin both depend on. Whichever header comes first defines them; both use one guard. */
#ifndef CNNELM_LAYERS_H
#define CNNELM_LAYERS_H

#ifndef CNNELM_LAYER_ENUMS_DEFINED
#define CNNELM_LAYER_ENUMS_DEFINED
/* Keep in step with backend.h: values are stored in model files and passed to plugins. */
typedef enum cnnelm_activation {
    CNNELM_ACT_IDENTITY = 0,
    CNNELM_ACT_RELU = 1,       /* y = max(0, x) */
    CNNELM_ACT_OPTTANH = 2     /* y = 1.7159 tanh(2x/3) */
} cnnelm_activation;

typedef enum cnnelm_pooling {
    CNNELM_POOL_MEAN = 0,      /* mean of each s x s block */
    CNNELM_POOL_MAX = 1        /* max of each block */
} cnnelm_pooling;
#endif

#endif
