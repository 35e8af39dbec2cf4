/* cnnelm op table: every op of the plugin ABI described once (name, slot, argument kind, buffer
 * roles with their sizes from the shape, which output may alias which input). The core
 * generates its dispatch, argument checks, fallback and the docs' table from these lists; a
 * plugin author may use them to generate its own tables or tests. Included by backend.h. */
#ifndef CNNELM_BACKEND_OPS_H
#define CNNELM_BACKEND_OPS_H

/* One row per op, in slot order:
 *   X(ID, slot, args, buffers, optional)
 * ID       CNNELM_OP_<ID>, also the bit of the op in masks
 * slot     the member of struct cnnelm_backend
 * args     what precedes the buffers in the slot's arguments (before them: the context):
 *            CONV_ACT  (const cnnelm_conv_shape *, cnnelm_activation)
 *            CONV      (const cnnelm_conv_shape *)
 *            CONV_ACC  (const cnnelm_conv_shape *) and after the buffers (int accumulate)
 *            POOL      (const cnnelm_pool_shape *, cnnelm_pooling)
 *            ACT       (cnnelm_activation, size_t count)
 *            ELM       (int n, int l, int c)
 *            SOLVE     (int l, int c, double lambda)
 * buffers  how many buffer arguments follow
 * optional 1: the slot may be NULL (the core runs the op on the CPU reference)
 * Rows after ELM_SOLVE are ABI 1.1 slots appended to struct cnnelm_backend: the core reads
 * such a slot only when the table's abi_minor and table_size say it is there. */
#define CNNELM_OP_LIST(X)                                               \
    X(CONV_FORWARD, conv2d_forward, CONV_ACT, 4, 1)                     \
    X(CONV_BACKWARD_DATA, conv2d_backward_data, CONV, 3, 1)             \
    X(CONV_BACKWARD_FILTER, conv2d_backward_filter, CONV_ACC, 4, 1)     \
    X(POOL_FORWARD, pool_forward, POOL, 2, 1)                           \
    X(POOL_BACKWARD, pool_backward, POOL, 3, 1)                         \
    X(ACT_FORWARD, activation_forward, ACT, 2, 1)                       \
    X(ACT_BACKWARD, activation_backward, ACT, 3, 1)                     \
    X(ELM_ACCUMULATE, elm_accumulate, ELM, 4, 1)                        \
    X(ELM_PREDICT, elm_predict, ELM, 3, 1)                              \
    X(ELM_BACKPROP, elm_backprop, ELM, 3, 1)                            \
    X(ELM_SOLVE, elm_solve, SOLVE, 3, 1)                                \
    X(ELM_ACCUMULATE_F64, elm_accumulate_f64, ELM, 4, 1)

/* One row per buffer argument, in argument order:
 *   X(ID, index, name, size, role, alias)
 * size   floats the tensor holds, from the shape:
 *          CONV_X n*c_in*h*w      CONV_W c_out*c_in*k*k   CONV_B c_out
 *          CONV_Y n*c_out*(h-k+1)*(w-k+1)
 *          POOL_X n*c*h*w         POOL_Y n*c*(h/s)*(w/s)  COUNT count
 *          NL n*l   NC n*c   LL l*l   LC l*c
 *          LL_F64 l*l and LC_F64 l*c doubles (8 bytes each, i.e. twice as many floats' bytes)
 * role   IN (read), OUT (written), INOUT (read and written), ACC (written; also read when
 *        accumulate != 0)
 * alias  index of the one input this output may be (the same buffer), or -1: none */
#define CNNELM_OP_BUFFER_LIST(X)                                        \
    X(CONV_FORWARD, 0, x, CONV_X, IN, -1)                               \
    X(CONV_FORWARD, 1, w, CONV_W, IN, -1)                               \
    X(CONV_FORWARD, 2, b, CONV_B, IN, -1)                               \
    X(CONV_FORWARD, 3, y, CONV_Y, OUT, -1)                              \
    X(CONV_BACKWARD_DATA, 0, dy, CONV_Y, IN, -1)                        \
    X(CONV_BACKWARD_DATA, 1, w, CONV_W, IN, -1)                         \
    X(CONV_BACKWARD_DATA, 2, dx, CONV_X, OUT, -1)                       \
    X(CONV_BACKWARD_FILTER, 0, x, CONV_X, IN, -1)                       \
    X(CONV_BACKWARD_FILTER, 1, dy, CONV_Y, IN, -1)                      \
    X(CONV_BACKWARD_FILTER, 2, dw, CONV_W, ACC, -1)                     \
    X(CONV_BACKWARD_FILTER, 3, db, CONV_B, ACC, -1)                     \
    X(POOL_FORWARD, 0, x, POOL_X, IN, -1)                               \
    X(POOL_FORWARD, 1, y, POOL_Y, OUT, -1)                              \
    X(POOL_BACKWARD, 0, x, POOL_X, IN, -1)                              \
    X(POOL_BACKWARD, 1, dy, POOL_Y, IN, -1)                             \
    X(POOL_BACKWARD, 2, dx, POOL_X, OUT, -1)                            \
    X(ACT_FORWARD, 0, x, COUNT, IN, -1)                                 \
    X(ACT_FORWARD, 1, y, COUNT, OUT, 0)                                 \
    X(ACT_BACKWARD, 0, y, COUNT, IN, -1)                                \
    X(ACT_BACKWARD, 1, dy, COUNT, IN, -1)                               \
    X(ACT_BACKWARD, 2, dx, COUNT, OUT, 1)                               \
    X(ELM_ACCUMULATE, 0, H, NL, IN, -1)                                 \
    X(ELM_ACCUMULATE, 1, T, NC, IN, -1)                                 \
    X(ELM_ACCUMULATE, 2, U, LL, INOUT, -1)                              \
    X(ELM_ACCUMULATE, 3, V, LC, INOUT, -1)                              \
    X(ELM_PREDICT, 0, H, NL, IN, -1)                                    \
    X(ELM_PREDICT, 1, beta, LC, IN, -1)                                 \
    X(ELM_PREDICT, 2, Y, NC, OUT, -1)                                   \
    X(ELM_BACKPROP, 0, E, NC, IN, -1)                                   \
    X(ELM_BACKPROP, 1, beta, LC, IN, -1)                                \
    X(ELM_BACKPROP, 2, dH, NL, OUT, -1)                                 \
    X(ELM_SOLVE, 0, U, LL, IN, -1)                                      \
    X(ELM_SOLVE, 1, V, LC, IN, -1)                                      \
    X(ELM_SOLVE, 2, beta, LC, OUT, -1)                                  \
    X(ELM_ACCUMULATE_F64, 0, H, NL, IN, -1)                             \
    X(ELM_ACCUMULATE_F64, 1, T, NC, IN, -1)                             \
    X(ELM_ACCUMULATE_F64, 2, U, LL_F64, INOUT, -1)                      \
    X(ELM_ACCUMULATE_F64, 3, V, LC_F64, INOUT, -1)

/* The most buffer arguments any op takes. */
#define CNNELM_OP_MAX_BUFFERS 4

typedef enum cnnelm_op_id {
#define CNNELM_OP_ENUM_(id, slot, args, nbuf, opt) CNNELM_OP_##id,
    CNNELM_OP_LIST(CNNELM_OP_ENUM_)
#undef CNNELM_OP_ENUM_
    CNNELM_OP_COUNT
} cnnelm_op_id;

#endif /* CNNELM_BACKEND_OPS_H */
