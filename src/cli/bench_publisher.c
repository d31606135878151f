/*
 * The publisher of `vigil bench fanout`: one thread that POSTs o.messages messages to
 * /api/publish at o.rate per second over one keep-alive connection (net/httpc.h), each stamped
 * with its sequence number and publish time (data.seq, data.t) for the clients to time.
 *
 * It is a thread of its own, apart from the client loops, using the blocking HTTP client, and it
 * keeps an absolute schedule: message i is due at start + i / rate.  Everything due since the
 * last request goes in the next one, so at high rates it sends {"messages":[...]} batches, and a
 * slow request is made up by a bigger next batch instead of delaying every later message.
 * Its results go to b->pub (bench.h); b->pub.done is stored last.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli/bench.h"
#include "net/httpc.h"
#include "util/buf.h"
#include "util/clock.h"

#define MAX_BATCH_MESSAGES 1000         /* /api/publish accepts at most 1000 per request */
#define MAX_BATCH_BYTES    (256u << 10) /* well under the server's default 1 MiB body limit */

static void append_message(vg_bench_t *b, vg_buf_t *out, uint64_t seq, uint64_t t)
{
    vg_buf_append_str(out, "{\"channel\":\"");
    vg_buf_append_json_escaped(out, b->o.channel, strlen(b->o.channel));
    vg_buf_printf(
        out, "\",\"type\":\"bench\",\"data\":{\"seq\":%" PRIu64 ",\"t\":%" PRIu64 ",\"pad\":\"",
        seq, t);
    memset(vg_buf_reserve(out, b->pad), 'x', b->pad);
    out->len += b->pad;
    vg_buf_append_str(out, "\"}}");
}

/* when_ns is on CLOCK_MONOTONIC, the clock of vg_mono_ns. */
static void sleep_until(uint64_t when_ns)
{
    struct timespec ts = {.tv_sec = (time_t)(when_ns / 1000000000u),
                          .tv_nsec = (long)(when_ns % 1000000000u)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

/* Publishes o.messages messages at o.rate per second (0: as fast as possible).  Each request
 * carries every message that has come due since the previous one (bounded by count and bytes),
 * so at low rates each message is its own request and at high rates requests are batches. */
void vg__bench_publisher_main(void *arg)
{
    vg_bench_t *b = arg;
    vg_httpc_t http;
    vg_buf_t body = VG_BUF_INIT, headers = VG_BUF_INIT, path = VG_BUF_INIT;
    uint64_t total = (uint64_t)b->o.messages, sent = 0;
    if (vg_httpc_init(&http, b->o.publish_url, (int)(b->o.timeout * 1000)) != 0) {
        snprintf(b->pub.error, sizeof(b->pub.error), "--publish-url: %s", http.errstr);
        b->pub.failed = 1;
        goto Exit;
    }
    const char *base = http.url.path;
    size_t blen = strcspn(base, "?");
    while (blen > 0 && base[blen - 1] == '/')
        blen--;
    vg_buf_append(&path, base, blen);
    vg_buf_append_str(&path, "/api/publish");
    vg_buf_append(&path, "", 1);
    vg_buf_append_str(&headers, "Content-Type: application/json\r\nUser-Agent: vigil-bench\r\n");
    if (b->o.api_key != NULL)
        vg_buf_printf(&headers, "Authorization: Bearer %s\r\n", b->o.api_key);
    vg_buf_append(&headers, "", 1);

    size_t per_message = b->pad + strlen(b->o.channel) + 100;
    size_t max_batch = MAX_BATCH_BYTES / per_message;
    if (max_batch < 1)
        max_batch = 1;
    if (max_batch > MAX_BATCH_MESSAGES)
        max_batch = MAX_BATCH_MESSAGES;

    uint64_t start = vg_mono_ns();
    b->pub.first_publish_ns = start;
    while (sent < total) {
        uint64_t due = total;
        if (b->o.rate > 0) {
            due = (uint64_t)((double)(vg_mono_ns() - start) * b->o.rate / 1e9) + 1;
            if (due > total)
                due = total;
            if (due <= sent) {
                sleep_until(start + (uint64_t)((double)sent * 1e9 / b->o.rate));
                continue;
            }
        }
        uint64_t n = due - sent;
        if (n > max_batch)
            n = max_batch;
        vg_buf_reset(&body);
        uint64_t t = vg__bench_real_ns();
        if (n == 1) {
            append_message(b, &body, sent, t);
        } else {
            vg_buf_append_str(&body, "{\"messages\":[");
            for (uint64_t i = 0; i < n; i++) {
                if (i > 0)
                    vg_buf_append(&body, ",", 1);
                append_message(b, &body, sent + i, t);
            }
            vg_buf_append_str(&body, "]}");
        }
        vg_httpc_response_t resp;
        int rc =
            vg_httpc_request(&http, "POST", path.base, headers.base, body.base, body.len, &resp);
        if (rc != 0 || resp.status / 100 != 2) {
            if (rc != 0)
                snprintf(b->pub.error, sizeof(b->pub.error), "publish: %s", http.errstr);
            else
                snprintf(b->pub.error, sizeof(b->pub.error), "publish: HTTP %d: %.300s",
                         resp.status, resp.body.base != NULL ? resp.body.base : "");
            vg_httpc_response_dispose(&resp);
            b->pub.failed = 1;
            break;
        }
        vg_httpc_response_dispose(&resp);
        sent += n;
        b->pub.requests++;
        atomic_store(&b->pub.published, sent);
    }
    b->pub.last_publish_ns = vg_mono_ns();

Exit:
    vg_httpc_dispose(&http);
    vg_buf_dispose(&body);
    vg_buf_dispose(&headers);
    vg_buf_dispose(&path);
    atomic_store(&b->pub.done, 1);
}
