/*
 * vg_chunk_t: an immutable, reference-counted block of bytes shared by many writers.
 *
 * A message fanned out to N subscribers is framed once into one chunk; each recipient's
 * outbound queue takes a reference and drops it in its write callback (h2o
 * h2o_mem_alloc_shared).  The count is atomic because chunks cross worker threads.
 *
 * Lifetime: vg_chunk_new returns a chunk with one reference owned by the caller.  Fill
 * data[0..len) before sharing it; after the first vg_chunk_ref it must not change.
 */
#ifndef VG_UTIL_CHUNK_H
#define VG_UTIL_CHUNK_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct vg_chunk_s {
    atomic_uint refcnt;
    size_t len; /* bytes in use */
    size_t cap; /* bytes allocated in data */
    uint8_t data[];
} vg_chunk_t;

/* Allocates a chunk with room for cap bytes, len 0 and one reference.  Aborts on OOM. */
vg_chunk_t *vg_chunk_new(size_t cap);
/* Allocates a chunk holding a copy of data[0..len). */
vg_chunk_t *vg_chunk_new_copy(const void *data, size_t len);
/* Takes one more reference and returns the chunk. */
vg_chunk_t *vg_chunk_ref(vg_chunk_t *c);
/* Drops one reference; frees the chunk when it was the last.  Accepts NULL. */
void vg_chunk_unref(vg_chunk_t *c);

#endif
