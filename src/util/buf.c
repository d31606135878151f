#include "util/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "util/alloc.h"

vg_iov_t vg_iov_from_cstr(const char *s)
{
    return (vg_iov_t){s, strlen(s)};
}

int vg_iov_eq(vg_iov_t v, const char *s)
{
    size_t n = strlen(s);
    return v.len == n && memcmp(v.base, s, n) == 0;
}

int vg_iov_ieq(vg_iov_t v, const char *s)
{
    size_t n = strlen(s);
    return v.len == n && strncasecmp(v.base, s, n) == 0;
}

char *vg_buf_reserve(vg_buf_t *b, size_t extra)
{
    if (b->cap - b->len < extra) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < extra)
            cap *= 2;
        b->base = vg_realloc(b->base, cap);
        b->cap = cap;
    }
    return b->base + b->len;
}

void vg_buf_append(vg_buf_t *b, const void *data, size_t len)
{
    if (len == 0)
        return;
    memcpy(vg_buf_reserve(b, len), data, len);
    b->len += len;
}

void vg_buf_append_str(vg_buf_t *b, const char *s)
{
    vg_buf_append(b, s, strlen(s));
}

size_t vg_buf_printf(vg_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n <= 0)
        return 0;
    char *p = vg_buf_reserve(b, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return (size_t)n;
}

void vg_buf_append_json_escaped(vg_buf_t *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            vg_buf_append(b, esc, 2);
        } else if (c < 0x20) {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            vg_buf_append(b, esc, 6);
        } else {
            vg_buf_append(b, &s[i], 1);
        }
    }
}

void vg_buf_consume(vg_buf_t *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->base, b->base + n, b->len - n);
    b->len -= n;
}

void vg_buf_reset(vg_buf_t *b)
{
    b->len = 0;
}

void vg_buf_dispose(vg_buf_t *b)
{
    vg_free(b->base);
    *b = VG_BUF_INIT;
}
