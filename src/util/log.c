#include "util/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
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

/* Secrets never reach a log line, whatever put them in the message (a request line, a URL, a
 * header, an error): the value of a parameter whose name ends in one of secret_names, and what
 * follows one of secret_markers, is replaced.
 *
 * Names are compared once percent-decoded, the way the query parser reads them, so "?%74oken="
 * and "?tok%65n=", which authenticate like "?token=", are redacted like it (issue 15).  Any name
 * ending in a secret name counts ("access_token="), case-insensitively. */
static const char *const secret_names[] = {"token", "ticket", "api_key", "apikey", "secret"};
static const char *const secret_markers[] = {"bearer ", "x-api-key: "};

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Characters of a parameter name as it appears in a URL, escapes included. */
static int is_name_char(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c != '\0' && strchr("%-_.~+", c) != NULL);
}

/* Decodes the name s[0..n) ("%74" is 't', '+' a space, an invalid escape stands for itself) and
 * tells whether it ends with a secret name.  Only the last few decoded characters matter. */
static int is_secret_name(const char *s, size_t n)
{
    char tail[16];
    size_t len = 0;
    for (size_t i = 0; i < n;) {
        char c = s[i++];
        if (c == '%' && n - i >= 2 && hex_digit(s[i]) >= 0 && hex_digit(s[i + 1]) >= 0) {
            c = (char)(hex_digit(s[i]) << 4 | hex_digit(s[i + 1]));
            i += 2;
        } else if (c == '+') {
            c = ' ';
        }
        if (len == sizeof(tail)) {
            memmove(tail, tail + 1, len - 1);
            len--;
        }
        tail[len++] = c;
    }
    for (size_t k = 0; k < sizeof(secret_names) / sizeof(secret_names[0]); k++) {
        size_t nlen = strlen(secret_names[k]);
        if (len >= nlen && strncasecmp(tail + len - nlen, secret_names[k], nlen) == 0)
            return 1;
    }
    return 0;
}

/* Where a secret value starts if msg[i] begins one (after "name=" or a marker), else 0. */
static size_t secret_at(const char *msg, size_t len, size_t i)
{
    if (msg[i] == '=') {
        size_t start = i;
        while (start > 0 && is_name_char(msg[start - 1]))
            start--;
        return start < i && is_secret_name(msg + start, i - start) ? i + 1 : 0;
    }
    for (size_t m = 0; m < sizeof(secret_markers) / sizeof(secret_markers[0]); m++) {
        size_t mlen = strlen(secret_markers[m]);
        if (len - i >= mlen && strncasecmp(msg + i, secret_markers[m], mlen) == 0)
            return i + mlen;
    }
    return 0;
}

static int ends_value(char c)
{
    return (unsigned char)c < 0x20 || strchr("& \"',", c) != NULL;
}

/* Redacts in place; returns the new length. */
static size_t redact(char *msg, size_t len, size_t cap)
{
    static const char mask[] = "[redacted]";
    for (size_t i = 0; i < len; i++) {
        size_t start = secret_at(msg, len, i), end;
        if (start == 0 || start >= len)
            continue;
        if (msg[start] == '"' || msg[start] == '\'') {
            /* A quoted value (secret="..."): everything up to the closing quote. */
            char quote = msg[start++];
            for (end = start; end < len && msg[end] != quote && msg[end] != '\n'; end++)
                ;
        } else {
            for (end = start; end < len && !ends_value(msg[end]); end++)
                ;
        }
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
    }
    msg[len] = '\0';
    return len;
}

/* Length of the well-formed UTF-8 sequence at s (1 to 4 bytes), or 0 (RFC 3629: no overlong
 * forms, no surrogates, nothing past U+10FFFF). */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t len = 0;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4;
    if (len == 0 || n < len)
        return 0;
    unsigned char lo = 0x80, hi = 0xbf; /* range of the second byte */
    if (c == 0xe0)
        lo = 0xa0;
    else if (c == 0xed)
        hi = 0x9f;
    else if (c == 0xf0)
        lo = 0x90;
    else if (c == 0xf4)
        hi = 0x8f;
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t k = 2; k < len; k++)
        if (s[k] < 0x80 || s[k] > 0xbf)
            return 0;
    return len;
}

static uint32_t utf8_decode(const unsigned char *s, size_t len)
{
    if (len == 1)
        return s[0];
    uint32_t cp = s[0] & (0x7f >> len);
    for (size_t k = 1; k < len; k++)
        cp = cp << 6 | (s[k] & 0x3f);
    return cp;
}

/* Characters that end or rewrite a line on a terminal or in a log viewer: C0 and C1 controls,
 * DEL, and the Unicode line and paragraph separators. */
static int is_line_breaking(uint32_t cp)
{
    return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029;
}

/* Appends a message so that nothing in it can start a new log line (issue 15: a user id with a
 * newline forged a line): line-breaking characters and bytes that are not UTF-8 become "\xNN"
 * per byte in text.  In JSON they become "\uNNNN" and "\\xNN", so the line stays valid JSON
 * (which must be UTF-8); quotes and backslashes are escaped there as well.  In text a backslash
 * stays as it is: it cannot end a line. */
static void append_escaped(vg_buf_t *b, const char *text, size_t n, int json)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)text;
    for (size_t i = 0; i < n;) {
        size_t len = utf8_len(s + i, n - i);
        uint32_t cp = len > 0 ? utf8_decode(s + i, len) : 0;
        if (len > 0 && !is_line_breaking(cp)) {
            if (json && (cp == '"' || cp == '\\'))
                vg_buf_append(b, "\\", 1);
            vg_buf_append(b, (const char *)s + i, len);
        } else if (len > 0 && json) {
            vg_buf_printf(b, "\\u%04x", (unsigned)cp);
        } else {
            if (len == 0)
                len = 1; /* a stray byte: escaped alone, the next one gets its own chance */
            for (size_t k = 0; k < len; k++) {
                char esc[5] = {'\\', '\\', 'x', hex[s[i + k] >> 4], hex[s[i + k] & 15]};
                /* JSON needs the backslash itself escaped; text does not. */
                vg_buf_append(b, json ? esc : esc + 1, json ? 5 : 4);
            }
        }
        i += len;
    }
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
        append_escaped(b, msg, msg_len, 1);
        vg_buf_append_str(b, "\"}");
    } else {
        append_timestamp(b);
        vg_buf_printf(b, " %-7s [%s] ", level_names[level], thread_name);
        append_escaped(b, msg, msg_len, 0);
    }
    size_t len = b->len;
    vg_buf_append(b, "\n", 1);
    log_sink(level, b->base, len);
    vg_buf_dispose(b);
}
