/*
 * Numbers from peers (query parameters, JSON strings), read strictly: the plain digits a
 * well-behaved client sends, and a value in range, or an error.
 *
 * strtoul and friends skip leading spaces, take a sign ("-1" reads as ULONG_MAX), a "0x"
 * prefix with base 0 or 16, stop silently at the first other character ("10abc" is 10, "abc"
 * is 0) and saturate on overflow.  Each turned a malformed request into a valid-looking one
 * (issue 15), so every number a peer sends goes through here instead.
 */
#ifndef VG_UTIL_NUM_H
#define VG_UTIL_NUM_H

#include <stddef.h>
#include <stdint.h>

/* Parses s[0..len) as a decimal number: one or more ASCII digits and nothing else (no sign,
 * space, "0x", fraction or exponent; leading zeros are fine), with a value of at most max.
 * Returns 0 and sets *out, or VG_EINVAL (then *out is untouched). */
int vg_parse_decimal(const char *s, size_t len, uint64_t max, uint64_t *out);

/* The same for hexadecimal digits: 0-9, a-f, A-F, without a "0x" prefix. */
int vg_parse_hex(const char *s, size_t len, uint64_t max, uint64_t *out);

#endif
