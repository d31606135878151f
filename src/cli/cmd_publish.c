/*
 * `vigil publish`: publishes one message through the HTTP API (POST /api/publish) and prints
 * the server's answer.  Exit status: 0 when the server accepted it (2xx), 1 when it refused it,
 * could not be reached or the data is not JSON, 2 for a usage mistake.
 */
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cmdline.h"
#include "cli/commands.h"
#include "net/httpc.h"
#include "util/alloc.h"
#include "util/buf.h"

#define DEFAULT_URL "http://127.0.0.1:8000"

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: vigil publish --channel C --type T [options] ['JSON' | -]\n\n"
            "Publishes one message {channel, type, data} through POST <url>/api/publish and\n"
            "prints the server's answer.  The data is the JSON argument, or standard input when\n"
            "it is absent or '-'; it is checked locally before anything is sent.\n\n"
            "Options:\n"
            "  --url URL        server base URL [default: " DEFAULT_URL "]\n"
            "  --api-key KEY    publisher API key [default: $VIGIL_API_KEY]\n"
            "  --channel C      channel to publish on (required)\n"
            "  --type T         the message's event type (required)\n"
            "  --timeout S      seconds to wait for the server [default: 10]\n"
            "  -h, --help       show this help\n\n"
            "Exit status: 0 published, 1 refused or failed, 2 bad usage.\n");
}

static int read_stdin(vg_buf_t *out)
{
    for (;;) {
        char *p = vg_buf_reserve(out, 65536);
        size_t n = fread(p, 1, 65536, stdin);
        out->len += n;
        if (n < 65536)
            return ferror(stdin) ? -1 : 0;
    }
}

/* Header values go into the request verbatim, so refuse anything that could end the line. */
static int header_safe(const char *s)
{
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 0;
    }
    return 1;
}

/* Prints the server's refusal: the JSON error's code and message when it sent one. */
static void print_refusal(const vg_httpc_response_t *r)
{
    json_t *doc = json_loadb(r->body.base, r->body.len, 0, NULL);
    json_t *err = json_object_get(doc, "error");
    const char *code = json_string_value(json_object_get(err, "code"));
    const char *message = json_string_value(json_object_get(err, "message"));
    if (code != NULL && message != NULL)
        fprintf(stderr, "vigil publish: HTTP %d %s: %s\n", r->status, code, message);
    else
        fprintf(stderr, "vigil publish: HTTP %d: %.*s\n", r->status, (int)r->body.len,
                r->body.base != NULL ? r->body.base : "");
    json_decref(doc);
}

int vg_cmd_publish(int argc, char **argv)
{
    const char *url = DEFAULT_URL, *key = getenv("VIGIL_API_KEY"), *channel = NULL, *type = NULL,
               *data = NULL, *timeout_s = NULL;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        int m;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if ((m = vg_cmdline_option(argc, argv, &i, "--url", &url)) != 0 ||
            (m = vg_cmdline_option(argc, argv, &i, "--api-key", &key)) != 0 ||
            (m = vg_cmdline_option(argc, argv, &i, "--channel", &channel)) != 0 ||
            (m = vg_cmdline_option(argc, argv, &i, "--type", &type)) != 0 ||
            (m = vg_cmdline_option(argc, argv, &i, "--timeout", &timeout_s)) != 0) {
            if (m < 0)
                return vg_cmdline_usage_error("publish", "%s needs a value", a);
            continue;
        }
        if (a[0] == '-' && a[1] != '\0')
            return vg_cmdline_usage_error("publish", "unknown option '%s'", a);
        if (data != NULL)
            return vg_cmdline_usage_error(
                "publish", "unexpected argument '%s' (the data is one JSON argument)", a);
        data = a;
    }
    if (channel == NULL || channel[0] == '\0')
        return vg_cmdline_usage_error("publish", "%s is required", "--channel");
    if (type == NULL || type[0] == '\0')
        return vg_cmdline_usage_error("publish", "%s is required", "--type");
    if (key != NULL && !header_safe(key))
        return vg_cmdline_usage_error("publish", "%s contains a control character", "--api-key");
    int timeout_ms = 10000;
    if (timeout_s != NULL) {
        char *end;
        double t = strtod(timeout_s, &end);
        if (end == timeout_s || *end != '\0' || !(t > 0 && t <= 86400))
            return vg_cmdline_usage_error(
                "publish", "--timeout must be a number of seconds (0 < S <= 86400), not '%s'",
                timeout_s);
        timeout_ms = (int)(t * 1000 + 0.5);
        if (timeout_ms < 1)
            timeout_ms = 1;
    }

    int status = 1;
    vg_buf_t in = VG_BUF_INIT, body = VG_BUF_INIT, path = VG_BUF_INIT, headers = VG_BUF_INIT;
    vg_httpc_t client;
    vg_httpc_response_t resp;
    int have_resp = 0;
    if (vg_httpc_init(&client, url, timeout_ms) != 0) {
        vg_httpc_dispose(&client);
        return vg_cmdline_usage_error("publish", "--url: %s", client.errstr);
    }

    if (data == NULL || strcmp(data, "-") == 0) {
        if (read_stdin(&in) != 0) {
            fprintf(stderr, "vigil publish: cannot read the data from standard input\n");
            goto Exit;
        }
    } else {
        vg_buf_append_str(&in, data);
    }
    /* Check the data, but send it as given: a round trip through jansson could rewrite
     * numbers (0.1 -> 0.10000000000000001) and escapes. */
    json_error_t jerr;
    json_t *doc = json_loadb(in.base != NULL ? in.base : "", in.len, JSON_DECODE_ANY, &jerr);
    if (doc == NULL) {
        fprintf(stderr, "vigil publish: the data is not valid JSON: %s (line %d, column %d)\n",
                jerr.text, jerr.line, jerr.column);
        goto Exit;
    }
    json_decref(doc);
    size_t start = 0, end = in.len;
    while (start < end && strchr(" \t\r\n", in.base[start]) != NULL)
        start++;
    while (end > start && strchr(" \t\r\n", in.base[end - 1]) != NULL)
        end--;

    vg_buf_append_str(&body, "{\"channel\":\"");
    vg_buf_append_json_escaped(&body, channel, strlen(channel));
    vg_buf_append_str(&body, "\",\"type\":\"");
    vg_buf_append_json_escaped(&body, type, strlen(type));
    vg_buf_append_str(&body, "\",\"data\":");
    vg_buf_append(&body, in.base + start, end - start);
    vg_buf_append(&body, "}", 1);

    /* <url>/api/publish, keeping a path prefix the URL may have (a reverse proxy's). */
    const char *base = client.url.path;
    size_t blen = strcspn(base, "?");
    while (blen > 0 && base[blen - 1] == '/')
        blen--;
    vg_buf_append(&path, base, blen);
    vg_buf_append_str(&path, "/api/publish");
    vg_buf_append(&path, "", 1);

    vg_buf_append_str(&headers, "Content-Type: application/json\r\n"
                                "User-Agent: vigil-publish/" VG_VERSION "\r\n");
    if (key != NULL && key[0] != '\0')
        vg_buf_printf(&headers, "Authorization: Bearer %s\r\n", key);
    vg_buf_append(&headers, "", 1);

    have_resp = 1;
    if (vg_httpc_request(&client, "POST", path.base, headers.base, body.base, body.len, &resp) !=
        0) {
        fprintf(stderr, "vigil publish: %s\n", client.errstr);
        goto Exit;
    }
    if (resp.status >= 200 && resp.status < 300) {
        fwrite(resp.body.base, 1, resp.body.len, stdout);
        if (resp.body.len == 0 || resp.body.base[resp.body.len - 1] != '\n')
            fputc('\n', stdout);
        status = fflush(stdout) == 0 ? 0 : 1;
    } else {
        print_refusal(&resp);
    }

Exit:
    if (have_resp)
        vg_httpc_response_dispose(&resp);
    vg_httpc_dispose(&client);
    vg_buf_dispose(&in);
    vg_buf_dispose(&body);
    vg_buf_dispose(&path);
    vg_buf_dispose(&headers);
    return status;
}
