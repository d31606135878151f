#include "util/chunk.h"

#include <string.h>

#include "util/alloc.h"

vg_chunk_t *vg_chunk_new(size_t cap)
{
    vg_chunk_t *c = vg_malloc(sizeof(*c) + cap);
    atomic_init(&c->refcnt, 1);
    c->len = 0;
    c->cap = cap;
    return c;
}

vg_chunk_t *vg_chunk_new_copy(const void *data, size_t len)
{
    vg_chunk_t *c = vg_chunk_new(len);
    if (len)
        memcpy(c->data, data, len);
    c->len = len;
    return c;
}

vg_chunk_t *vg_chunk_ref(vg_chunk_t *c)
{
    atomic_fetch_add_explicit(&c->refcnt, 1, memory_order_relaxed);
    return c;
}

void vg_chunk_unref(vg_chunk_t *c)
{
    if (c == NULL)
        return;
    /* acq_rel: the thread that frees must see every other thread's last use of the bytes. */
    if (atomic_fetch_sub_explicit(&c->refcnt, 1, memory_order_acq_rel) == 1)
        vg_free(c);
}
