/*
 * Wall-clock time for timestamps that leave the process (messages, logs, APIs).  Durations and
 * timers use the loop's monotonic clock instead.
 */
#ifndef VG_UTIL_CLOCK_H
#define VG_UTIL_CLOCK_H

#include <stddef.h>
#include <stdint.h>

/* Milliseconds since the Unix epoch. */
int64_t vg_wall_ms(void);
/* Seconds since the Unix epoch, with sub-second precision. */
double vg_wall_seconds(void);
/* Nanoseconds of a monotonic clock (for latency measurements). */
uint64_t vg_mono_ns(void);
/* Writes "2026-11-22T05:00:00.123Z" (24 characters and a NUL) for a time in ms. */
void vg_format_rfc3339(int64_t ms, char out[32]);
/* Parses a time given as milliseconds since 1970 ("1763790000123") or an RFC 3339 UTC timestamp
 * ("2026-11-22T05:00:00.123Z", fraction optional).  Returns 0 and sets *ms, or -1. */
int vg_parse_time_ms(const char *text, int64_t *ms);

#endif
