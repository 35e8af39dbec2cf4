/* cnnelm plugin helpers: what every backend writes besides its device code, written once.
 * Header-only (static inline), so a plugin needs no library beyond its own:
 *   - CNNELM_PARAMS_HAS(p, field): whether a struct that starts with `struct_size` (context,
 *     plugin, op params, device limits) is long enough to hold `field`;
 *   - cnnelm_backend_status_name(st): a status as words, for messages;
 *   - an intrusive doubly linked list of a context's live buffers (context_close frees them all):
 *     declare `CNNELM_BUFFER_LINKS;` in struct cnnelm_buffer and keep a
 *     `struct cnnelm_buffer *buffers` head in the context; then ADD, REMOVE and FREE_ALL. */
#ifndef CNNELM_BACKEND_UTIL_H
#define CNNELM_BACKEND_UTIL_H

#include <stddef.h>

#include "cnnelm/backend.h"

/* p->field exists in the caller's struct (p may be NULL: then no). */
#define CNNELM_PARAMS_HAS(p, field) \
    ((p) != NULL && (p)->struct_size >= offsetof(__typeof__(*(p)), field) + sizeof((p)->field))

static inline const char *cnnelm_backend_status_name(cnnelm_status s)
{
    switch (s) {
    case CNNELM_OK: return "ok";
    case CNNELM_ERR_INVALID_ARGUMENT: return "invalid argument";
    case CNNELM_ERR_OUT_OF_MEMORY: return "out of memory";
    case CNNELM_ERR_DEVICE: return "device error";
    case CNNELM_ERR_UNSUPPORTED: return "unsupported";
    case CNNELM_ERR_NOT_POSITIVE_DEFINITE: return "not positive definite";
    case CNNELM_ERR_BUILD: return "device code build failed";
    case CNNELM_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

/* The links of a buffer in its context's list: declare with CNNELM_BUFFER_LINKS; inside
 * struct cnnelm_buffer. */
#define CNNELM_BUFFER_LINKS struct cnnelm_buffer *prev, *next

/* Adds b at the head of the list *head. */
#define CNNELM_BUFFER_LIST_ADD(head, b)     \
    do {                                    \
        (b)->prev = NULL;                   \
        (b)->next = *(head);                \
        if (*(head))                        \
            (*(head))->prev = (b);          \
        *(head) = (b);                      \
    } while (0)

/* Takes b out of the list *head (b must be in it). */
#define CNNELM_BUFFER_LIST_REMOVE(head, b)  \
    do {                                    \
        if ((b)->prev)                      \
            (b)->prev->next = (b)->next;    \
        else                                \
            *(head) = (b)->next;            \
        if ((b)->next)                      \
            (b)->next->prev = (b)->prev;    \
        (b)->prev = (b)->next = NULL;       \
    } while (0)

/* Calls release(b) on every buffer of the list and empties it (for context_close). */
#define CNNELM_BUFFER_LIST_FREE_ALL(head, release)          \
    do {                                                    \
        struct cnnelm_buffer *b_ = *(head), *next_;         \
        for (; b_; b_ = next_) {                            \
            next_ = b_->next;                               \
            release(b_);                                    \
        }                                                   \
        *(head) = NULL;                                     \
    } while (0)

#endif /* CNNELM_BACKEND_UTIL_H */
