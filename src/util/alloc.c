#include "util/alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void oom(size_t size)
{
    fprintf(stderr, "vigil: out of memory allocating %zu bytes\n", size);
    abort();
}

void *vg_malloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (p == NULL)
        oom(size);
    return p;
}

void *vg_calloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL)
        oom(n * size);
    return p;
}

void *vg_realloc(void *p, size_t size)
{
    void *q = realloc(p, size ? size : 1);
    if (q == NULL)
        oom(size);
    return q;
}

char *vg_strdup(const char *s)
{
    return vg_strndup(s, strlen(s));
}

char *vg_strndup(const char *s, size_t n)
{
    char *d = vg_malloc(n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

void vg_free(void *p)
{
    free(p);
}

void *vg_try_malloc(size_t size)
{
    return malloc(size ? size : 1);
}

void *vg_try_realloc(void *p, size_t size)
{
    return realloc(p, size ? size : 1);
}
