#include "util/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "util/buf.h"

int vg_log_level = VG_LOG_NOTICE;
static enum vg_log_format log_format = VG_LOG_TEXT;
static _Thread_local char thread_name[16] = "main";

static const char *const level_names[] = {"debug", "verbose", "notice", "warning"};

/* The line handed to a sink ends in '\n' at line[len], so one write(2) carries it whole and
 * lines from several threads never interleave. */
static void write_stderr(int level, const char *line, size_t len)
{
    (void)level;
    ssize_t r;
    do
        r = write(STDERR_FILENO, line, len + 1);
    while (r < 0 && errno == EINTR);
}

static vg_log_sink_cb log_sink = write_stderr;

void vg_log_set_format(enum vg_log_format format)
{
    log_format = format;
}

void vg_log_set_sink(vg_log_sink_cb sink)
{
    log_sink = sink ? sink : write_stderr;
}

void vg_log_set_thread_name(const char *name)
{
    snprintf(thread_name, sizeof(thread_name), "%s", name);
}

int vg_log_level_parse(const char *name)
{
    for (int i = 0; i < (int)(sizeof(level_names) / sizeof(level_names[0])); i++)
        if (strcasecmp(name, level_names[i]) == 0)
            return i;
    if (strcasecmp(name, "info") == 0)
        return VG_LOG_NOTICE;
    if (strcasecmp(name, "warn") == 0 || strcasecmp(name, "error") == 0)
        return VG_LOG_WARNING;
    return -1;
}

static void append_timestamp(vg_buf_t *b)
{
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    char ts[32];
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    vg_buf_printf(b, "%s.%03dZ", ts, (int)(tv.tv_usec / 1000));
}

/* Secrets never reach a log line: the value after "token=", "ticket=", "api_key=", "apikey=",
 * "Bearer " and "X-API-Key: " is replaced, whatever put it in the message (a request line, a
 * header, an error).  Case-insensitive on the markers.  Returns the new length. */
static size_t redact(char *msg, size_t len, size_t cap)
{
    static const char *const markers[] = {
        "token=", "ticket=", "api_key=", "apikey=", "bearer ", "x-api-key: ", "secret="};
    static const char mask[] = "[redacted]";
    for (size_t i = 0; i < len; i++) {
        for (size_t m = 0; m < sizeof(markers) / sizeof(markers[0]); m++) {
            size_t mlen = strlen(markers[m]);
            if (len - i < mlen || strncasecmp(msg + i, markers[m], mlen) != 0)
                continue;
            size_t start = i + mlen, end = start;
            while (end < len && msg[end] != '&' && msg[end] != ' ' && msg[end] != '"' &&
                   msg[end] != '\'' && msg[end] != ',' && msg[end] != '\r' && msg[end] != '\n')
                end++;
            if (end == start)
                continue;
            size_t masklen = sizeof(mask) - 1, dst = start + masklen, tail = len - end;
            if (dst >= cap) {
                len = start; /* no room for the mask: cut the line before the secret */
                break;
            }
            if (dst + tail >= cap)
                tail = cap - 1 - dst;
            memmove(msg + dst, msg + end, tail);
            memcpy(msg + start, mask, masklen);
            len = dst + tail;
            i = dst - 1;
            break;
        }
    }
    msg[len] = '\0';
    return len;
}

void vg__log(int level, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    size_t msg_len = n < 0 ? 0 : (size_t)n >= sizeof(msg) ? sizeof(msg) - 1 : (size_t)n;
    msg_len = redact(msg, msg_len, sizeof(msg));
    if (level < VG_LOG_DEBUG || level > VG_LOG_WARNING)
        level = VG_LOG_WARNING;

    vg_buf_t line = VG_BUF_INIT;
    vg_buf_t *b = &line;
    if (log_format == VG_LOG_JSON) {
        vg_buf_append_str(b, "{\"ts\":\"");
        append_timestamp(b);
        vg_buf_printf(b, "\",\"level\":\"%s\",\"thread\":\"", level_names[level]);
        vg_buf_append_json_escaped(b, thread_name, strlen(thread_name));
        vg_buf_append_str(b, "\",\"msg\":\"");
        vg_buf_append_json_escaped(b, msg, msg_len);
        vg_buf_append_str(b, "\"}");
    } else {
        append_timestamp(b);
        vg_buf_printf(b, " %-7s [%s] ", level_names[level], thread_name);
        vg_buf_append(b, msg, msg_len);
    }
    size_t len = b->len;
    vg_buf_append(b, "\n", 1);
    log_sink(level, b->base, len);
    vg_buf_dispose(b);
}
