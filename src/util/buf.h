/*
 * Byte views and growable byte buffers.
 *
 * vg_iov_t is a borrowed {base,len} view: it owns nothing and is valid only as long as the
 * memory it points into (h2o_iovec_t, picohttpparser).  vg_buf_t owns its bytes.
 */
#ifndef VG_UTIL_BUF_H
#define VG_UTIL_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct vg_iov_s {
    const char *base;
    size_t len;
} vg_iov_t;

#define VG_IOV_LIT(s) ((vg_iov_t){(s), sizeof(s) - 1})
#define VG_IOV_NULL   ((vg_iov_t){NULL, 0})

vg_iov_t vg_iov_from_cstr(const char *s);
/* Exact, case-sensitive comparison with a NUL-terminated string. */
int vg_iov_eq(vg_iov_t v, const char *s);
/* ASCII case-insensitive comparison with a NUL-terminated string. */
int vg_iov_ieq(vg_iov_t v, const char *s);

typedef struct vg_buf_s {
    char *base;
    size_t len;
    size_t cap;
} vg_buf_t;

#define VG_BUF_INIT ((vg_buf_t){NULL, 0, 0})

/* Makes room for at least `extra` more bytes and returns the write position (base + len).
 * May move base: pointers into the buffer are invalid after the call. Aborts on OOM. */
char *vg_buf_reserve(vg_buf_t *b, size_t extra);
void vg_buf_append(vg_buf_t *b, const void *data, size_t len);
void vg_buf_append_str(vg_buf_t *b, const char *s);
/* printf into the buffer; returns the number of bytes appended. */
size_t vg_buf_printf(vg_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s as the body of a JSON string (no quotes), escaping as RFC 8259 requires. */
void vg_buf_append_json_escaped(vg_buf_t *b, const char *s, size_t len);
/* Drops the first n bytes, moving the rest to the front. */
void vg_buf_consume(vg_buf_t *b, size_t n);
void vg_buf_reset(vg_buf_t *b);
/* Releases the memory; the buffer is empty and reusable afterwards. */
void vg_buf_dispose(vg_buf_t *b);

#endif
