/*
 * Allocation.  Out of memory is fatal: vg_malloc and friends log and abort, so callers never
 * check for NULL (redis zmalloc, h2o_mem_alloc).  Only allocations whose size comes from peer
 * input use the vg_try_ variants, which return NULL and must be checked.
 */
#ifndef VG_UTIL_ALLOC_H
#define VG_UTIL_ALLOC_H

#include <stddef.h>

#define VG_WARN_UNUSED __attribute__((warn_unused_result))

void *vg_malloc(size_t size);
void *vg_calloc(size_t n, size_t size);
/* May move the block: the old pointer is no longer valid after the call. */
void *vg_realloc(void *p, size_t size);
char *vg_strdup(const char *s);
char *vg_strndup(const char *s, size_t n);
void vg_free(void *p);

VG_WARN_UNUSED void *vg_try_malloc(size_t size);
VG_WARN_UNUSED void *vg_try_realloc(void *p, size_t size);

#define vg_container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#define VG_ARRAY_SIZE(a)                   (sizeof(a) / sizeof((a)[0]))

#endif
