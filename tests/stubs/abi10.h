/* Forced include (-include) for tests/stubs/template_v10.c, the plugin template as it was at ABI
 * 1.0 (git f165e1b, unmodified): the new header, with the minor version a 1.0 build had, so the
 * core must leave every 1.1 slot alone. */
#include "cnnelm/backend.h"
#undef CNNELM_BACKEND_ABI_MINOR
#define CNNELM_BACKEND_ABI_MINOR 0
