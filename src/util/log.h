/*
 * Logging: one line per event worth knowing, as text or as JSON, to stderr by default.
 *
 * vg_log checks the level before evaluating its arguments (redis serverLog), so a disabled
 * debug line costs one comparison.  Lines are written with a single write(2) so that lines from
 * several worker threads never interleave.
 *
 * Every message is made safe whatever its arguments carry: secrets are replaced by "[redacted]"
 * (the value of a parameter whose percent-decoded name ends in token, ticket, api_key, apikey or
 * secret, and what follows "Bearer " or "X-API-Key: "), and characters that could start a new
 * line or rewrite one (controls, DEL, U+2028/9, bytes that are not UTF-8) are escaped, so no
 * peer string can forge a line.
 */
#ifndef VG_UTIL_LOG_H
#define VG_UTIL_LOG_H

#include <stddef.h>

enum vg_log_level { VG_LOG_DEBUG = 0, VG_LOG_VERBOSE, VG_LOG_NOTICE, VG_LOG_WARNING, VG_LOG_OFF };
enum vg_log_format { VG_LOG_TEXT = 0, VG_LOG_JSON };

extern int vg_log_level;

#define vg_log(lvl, ...)                                                                           \
    do {                                                                                           \
        if ((lvl) < vg_log_level)                                                                  \
            break;                                                                                 \
        vg__log(lvl, __VA_ARGS__);                                                                 \
    } while (0)

#define vg_debug(...)   vg_log(VG_LOG_DEBUG, __VA_ARGS__)
#define vg_verbose(...) vg_log(VG_LOG_VERBOSE, __VA_ARGS__)
#define vg_notice(...)  vg_log(VG_LOG_NOTICE, __VA_ARGS__)
#define vg_warning(...) vg_log(VG_LOG_WARNING, __VA_ARGS__)

void vg__log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void vg_log_set_format(enum vg_log_format format);
/* Sink for finished lines (without the trailing newline); the default writes to stderr. */
typedef void (*vg_log_sink_cb)(int level, const char *line, size_t len);
void vg_log_set_sink(vg_log_sink_cb sink);
/* Parses "debug|verbose|notice|warning" (also "info" = notice, "warn", "error" = warning);
 * returns the level or -1. */
int vg_log_level_parse(const char *name);
/* Names the calling thread in log lines (e.g. "w1"); at most 15 characters. */
void vg_log_set_thread_name(const char *name);

#endif
