#include "util/clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/num.h"

int64_t vg_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double vg_wall_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

uint64_t vg_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void vg_format_rfc3339(int64_t ms, char out[32])
{
    time_t sec = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    /* Formatted with room to spare so the compiler can prove nothing is cut, then copied. */
    char buf[96];
    snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
    snprintf(out, 32, "%.31s", buf);
}

/* Exactly n decimal digits at p (no sign, no space), or -1.  Stops at the first non-digit, so it
 * never reads past the end of a shorter string. */
static int fixed_digits(const char *p, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

static int days_in_month(int year, int month)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    return days[month - 1] + (month == 2 && leap);
}

/* Milliseconds since 1970 as plain decimal digits, within int64. */
static int parse_ms(const char *text, int64_t *ms)
{
    uint64_t v;
    if (vg_parse_decimal(text, strlen(text), INT64_MAX, &v) != 0)
        return -1;
    *ms = (int64_t)v;
    return 0;
}

/* Milliseconds (-1 when absent) from ".d[d...]", the rest of the text in *rest. */
static int parse_fraction(const char *p, const char **rest)
{
    if (*p != '.') {
        *rest = p;
        return 0;
    }
    int digits = 0, frac = 0;
    for (p++; *p >= '0' && *p <= '9'; p++, digits++)
        if (digits < 3)
            frac = frac * 10 + (*p - '0');
    for (int d = digits; d < 3; d++)
        frac *= 10;
    *rest = p;
    return digits > 0 ? frac : -1;
}

int vg_parse_time_ms(const char *text, int64_t *ms)
{
    if (text[0] >= '0' && text[0] <= '9' && strchr(text, '-') == NULL)
        return parse_ms(text, ms);
    /* YYYY-MM-DDTHH:MM:SS[.fraction]Z, every field in range: timegm would quietly turn month 13
     * or 99:99 into some other date. */
    const char *p = text;
    int year = fixed_digits(p, 4), mon = -1, day = -1, hour = -1, min = -1, sec = -1;
    if (year >= 0 && p[4] == '-' && (mon = fixed_digits(p + 5, 2)) >= 0 && p[7] == '-' &&
        (day = fixed_digits(p + 8, 2)) >= 0 && p[10] == 'T' &&
        (hour = fixed_digits(p + 11, 2)) >= 0 && p[13] == ':' &&
        (min = fixed_digits(p + 14, 2)) >= 0 && p[16] == ':')
        sec = fixed_digits(p + 17, 2);
    if (sec < 0 || mon < 1 || mon > 12 || day < 1 || day > days_in_month(year, mon) || hour > 23 ||
        min > 59 || sec > 60) /* 60: a leap second */
        return -1;
    const char *rest;
    int msec = parse_fraction(p + 19, &rest);
    if (msec < 0 || strcmp(rest, "Z") != 0)
        return -1;
    struct tm tm = {0};
    tm.tm_year = year - 1900;
    tm.tm_mon = mon - 1;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = min;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    if (t < 0)
        return -1;
    *ms = (int64_t)t * 1000 + msec;
    return 0;
}
