#include "util/num.h"

#include "util/error.h"

static int digit_value(char c, unsigned base)
{
    int v = -1;
    if (c >= '0' && c <= '9')
        v = c - '0';
    else if (base == 16 && c >= 'a' && c <= 'f')
        v = c - 'a' + 10;
    else if (base == 16 && c >= 'A' && c <= 'F')
        v = c - 'A' + 10;
    return v;
}

static int parse_digits(const char *s, size_t len, unsigned base, uint64_t max, uint64_t *out)
{
    if (s == NULL || len == 0)
        return VG_EINVAL;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        int d = digit_value(s[i], base);
        /* v * base + d <= max, written so that it cannot overflow */
        if (d < 0 || (uint64_t)d > max || v > (max - (uint64_t)d) / base)
            return VG_EINVAL;
        v = v * base + (uint64_t)d;
    }
    *out = v;
    return 0;
}

int vg_parse_decimal(const char *s, size_t len, uint64_t max, uint64_t *out)
{
    return parse_digits(s, len, 10, max, out);
}

int vg_parse_hex(const char *s, size_t len, uint64_t max, uint64_t *out)
{
    return parse_digits(s, len, 16, max, out);
}
