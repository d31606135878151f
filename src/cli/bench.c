/*
 * `vigil bench fanout`: measures fan-out from the outside, the way a deployment sees it.
 *
 * N WebSocket clients, spread over T threads with one libuv loop each, connect to /ws and
 * subscribe to one channel.  Then a publisher thread POSTs M messages to /api/publish at a given
 * rate; each message carries its publish time (CLOCK_REALTIME, ns) in data.t, and every client
 * computes publish-to-receive latency for every delivery.  The result: connect time, deliveries
 * per second, expected vs received deliveries (loss), and latency percentiles.
 *
 * This file is the command and the main thread: options, preparing what the other threads send
 * (the upgrade request, the subscribe request, the padding), running the phases (connect and
 * subscribe, publish and count, stop) and the report.  The clients are in bench_clients.c, the
 * publisher in bench_publisher.c, the latency histogram in histogram.c; what they share is
 * bench.h.
 *
 * Measurement choices made here (the clients' and the publisher's are in their files):
 *   - Latency goes into a log-linear histogram per thread (32 sub-buckets per power of two:
 *     under 3.2% error), merged at the end, so a run with 10^8 deliveries needs no sample array.
 *   - Publishing starts only once every connection is subscribed (or has failed): a late
 *     subscriber would miss the first messages and read as loss.
 *   - After the last publish the run waits for the deliveries still expected, and gives up after
 *     IDLE_GIVE_UP_NS without one (or --timeout); what is missing then is reported as lost.
 */
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <uv.h>

#include "cli/bench.h"
#include "cli/cmdline.h"
#include "cli/commands.h"
#include "cli/histogram.h"
#include "net/httpc.h"
#include "util/alloc.h"
#include "util/buf.h"
#include "util/clock.h"

#define IDLE_GIVE_UP_NS 3000000000ull /* after the last publish: no delivery for 3 s ends it */

/* ---- errors ------------------------------------------------------------------------------- */

static uint64_t error_count(vg_bench_t *b)
{
    uv_mutex_lock(&b->lock);
    uint64_t n = b->errors;
    uv_mutex_unlock(&b->lock);
    return n;
}

/* ---- options ------------------------------------------------------------------------------ */

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: vigil bench fanout --connections N --messages M --size B [options]\n\n"
            "Opens N WebSocket connections to --url, subscribes each to one channel, publishes\n"
            "M messages of about B bytes through POST /api/publish and reports connect time,\n"
            "deliveries per second, lost deliveries and publish-to-receive latency.  The last\n"
            "line of output is the same result as one JSON object.\n\n"
            "Options:\n"
            "  --url URL           WebSocket endpoint [default: ws://127.0.0.1:8000/ws]\n"
            "  --connections N     WebSocket connections [default: 100]\n"
            "  --messages M        messages to publish [default: 100]\n"
            "  --size B            approximate size of one delivered message [default: 256]\n"
            "  --publish-url URL   where to publish [default: http://HOST:PORT of --url]\n"
            "  --api-key KEY       publisher API key [default: $VIGIL_API_KEY]\n"
            "  --token JWT         user token, sent as ?token= on --url\n"
            "  --channel C         channel [default: bench.fanout]\n"
            "  --threads T         client threads, one event loop each [default: cores]\n"
            "  --rate R            messages published per second; 0: as fast as possible\n"
            "                      [default: 100]\n"
            "  --timeout S         seconds allowed for connecting and subscribing, and for\n"
            "                      waiting for deliveries after the last publish [default: 30]\n"
            "  -h, --help          show this help\n\n"
            "Exit status: 0 every delivery arrived, 1 failure or lost deliveries, 2 bad usage.\n");
}

static int parse_long(const char *name, const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || errno != 0 || v < min || v > max)
        return vg_cmdline_usage_error("bench", "%s must be an integer from %ld to %ld, not '%s'",
                                      name, min, max, s);
    *out = v;
    return 0;
}

static int parse_double(const char *name, const char *s, double min, double max, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || !(v >= min && v <= max))
        return vg_cmdline_usage_error("bench", "%s must be a number from %g to %g, not '%s'", name,
                                      min, max, s);
    *out = v;
    return 0;
}

static int parse_options(vg_bench_opts_t *o, int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        const char *eq = strchr(a, '=');
        char name[64];
        if (strncmp(a, "--", 2) != 0)
            return vg_cmdline_usage_error("bench", "unexpected argument '%s'", a);
        if (eq != NULL) {
            snprintf(name, sizeof(name), "%.*s", (int)(eq - a), a);
            v = eq + 1;
        } else {
            snprintf(name, sizeof(name), "%s", a);
            if (i + 1 < argc)
                v = argv[i + 1];
        }
        static const char *const known[] = {"--url",     "--publish-url", "--api-key",  "--token",
                                            "--channel", "--connections", "--messages", "--size",
                                            "--threads", "--rate",        "--timeout"};
        int found = 0;
        for (size_t k = 0; k < VG_ARRAY_SIZE(known); k++)
            found |= strcmp(name, known[k]) == 0;
        if (!found)
            return vg_cmdline_usage_error("bench", "unknown option '%s'", name);
        if (v == NULL)
            return vg_cmdline_usage_error("bench", "%s needs a value", name);
        if (eq == NULL)
            i++;
        int rc = 0;
        if (strcmp(name, "--url") == 0)
            o->url = v;
        else if (strcmp(name, "--publish-url") == 0)
            o->publish_url = v;
        else if (strcmp(name, "--api-key") == 0)
            o->api_key = v;
        else if (strcmp(name, "--token") == 0)
            o->token = v;
        else if (strcmp(name, "--channel") == 0)
            o->channel = v;
        else if (strcmp(name, "--connections") == 0)
            rc = parse_long(name, v, 1, 10000000, &o->connections);
        else if (strcmp(name, "--messages") == 0)
            rc = parse_long(name, v, 1, 1000000000, &o->messages);
        else if (strcmp(name, "--size") == 0)
            rc = parse_long(name, v, 1, 16 << 20, &o->size);
        else if (strcmp(name, "--threads") == 0)
            rc = parse_long(name, v, 1, 1024, &o->threads);
        else if (strcmp(name, "--rate") == 0)
            rc = parse_double(name, v, 0, 1e9, &o->rate);
        else if (strcmp(name, "--timeout") == 0)
            rc = parse_double(name, v, 0.001, 86400, &o->timeout);
        if (rc != 0)
            return rc;
    }
    if (o->channel[0] == '\0')
        return vg_cmdline_usage_error("bench", "--channel must not be empty");
    for (const char *s = o->api_key ? o->api_key : ""; *s != '\0'; s++) {
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return vg_cmdline_usage_error("bench", "--api-key contains a control character");
    }
    return 0;
}

/* ---- running ------------------------------------------------------------------------------ */

static int raise_fd_limit(size_t need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 0;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
        fprintf(stderr,
                "vigil bench: %zu connections need about %zu file descriptors; the limit is %llu "
                "(raise the hard limit: ulimit -Hn)\n",
                need - 64, need, (unsigned long long)rl.rlim_cur);
        return -1;
    }
    return 0;
}

/* Appends s percent-encoded (everything but RFC 3986 unreserved characters). */
static void append_query_escaped(vg_buf_t *out, const char *s)
{
    for (; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '.' || ch == '_' || ch == '~')
            vg_buf_append(out, s, 1);
        else
            vg_buf_printf(out, "%%%02X", ch);
    }
}

/* Builds the upgrade request (all but the key), the subscribe request, the publish URL, the
 * padding, and resolves the server address. */
static int prepare(vg_bench_t *b, char **publish_url_owned)
{
    char err[300];
    if (vg_url_parse(&b->ws, b->o.url, err, sizeof(err)) != 0)
        return vg_cmdline_usage_error("bench", "--url: %s", err);
    if (strcmp(b->ws.scheme, "ws") != 0)
        return vg_cmdline_usage_error("bench", "--url must be a ws:// URL, not '%s'", b->o.url);

    vg_buf_t s = VG_BUF_INIT;
    vg_buf_printf(&s, "GET %s", b->ws.path);
    if (b->o.token != NULL) {
        vg_buf_append_str(&s, strchr(b->ws.path, '?') != NULL ? "&token=" : "?token=");
        append_query_escaped(&s, b->o.token);
    }
    vg_buf_printf(&s,
                  " HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Key: ",
                  b->ws.authority);
    b->handshake = s.base;
    b->handshake_len = s.len;
    b->handshake_end = "\r\nSec-WebSocket-Version: 13\r\nUser-Agent: vigil-bench\r\n\r\n";
    if (s.len > 3500)
        return vg_cmdline_usage_error("bench", "--url and --token are too long together");

    vg_buf_t sub = VG_BUF_INIT;
    vg_buf_append_str(&sub, "{\"type\":\"subscribe\",\"channels\":[\"");
    vg_buf_append_json_escaped(&sub, b->o.channel, strlen(b->o.channel));
    vg_buf_append_str(&sub, "\"],\"id\":1}");
    b->subscribe_len = sub.len;
    vg_buf_append(&sub, "", 1);
    b->subscribe = sub.base;

    if (b->o.publish_url == NULL) {
        size_t n = strlen(b->ws.authority) + 8;
        *publish_url_owned = vg_malloc(n);
        snprintf(*publish_url_owned, n, "http://%s", b->ws.authority);
        b->o.publish_url = *publish_url_owned;
    }
    vg_httpc_t probe;
    if (vg_httpc_init(&probe, b->o.publish_url, 1000) != 0) {
        int rc = vg_cmdline_usage_error("bench", "--publish-url: %s", probe.errstr);
        vg_httpc_dispose(&probe);
        return rc;
    }
    vg_httpc_dispose(&probe);

    /* What the server adds around data, for a typical delivery:
     * {"type":"bench","channel":C,"offset":N,"timestamp":"2026-11-22T05:00:00.123Z","data":
     * {"seq":N,"t":1790000000000000000,"pad":""}} */
    int digits = snprintf(NULL, 0, "%ld", b->o.messages);
    size_t overhead = 127 + strlen(b->o.channel) + 2 * (size_t)digits;
    b->pad = (size_t)b->o.size > overhead ? (size_t)b->o.size - overhead : 0;

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int gai = getaddrinfo(b->ws.host, b->ws.port, &hints, &res);
    if (gai != 0) {
        fprintf(stderr, "vigil bench: cannot resolve %s: %s\n", b->ws.host, gai_strerror(gai));
        return 1;
    }
    memcpy(&b->addr, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

static void stop_workers(vg_bench_t *b)
{
    atomic_store(&b->stopping, 1);
    for (int i = 0; i < b->nworkers; i++)
        uv_async_send(&b->workers[i].wake);
}

static void sum_counts(vg_bench_t *b, size_t *ready, size_t *failed, size_t *dropped,
                       uint64_t *deliveries)
{
    *ready = *failed = *dropped = 0;
    *deliveries = 0;
    for (int i = 0; i < b->nworkers; i++) {
        *ready += atomic_load(&b->workers[i].ready);
        *failed += atomic_load(&b->workers[i].failed);
        *dropped += atomic_load(&b->workers[i].dropped);
        *deliveries += atomic_load_explicit(&b->workers[i].deliveries, memory_order_relaxed);
    }
}

static void nap(void)
{
    struct timespec ts = {0, 2000000};
    nanosleep(&ts, NULL);
}

int vg_cmd_bench(int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0 ||
            (i == 0 && strcmp(argv[i], "help") == 0)) {
            usage(stdout);
            return 0;
        }
    }
    if (argc < 1 || strcmp(argv[0], "fanout") != 0)
        return vg_cmdline_usage_error("bench",
                                      "expected the scenario: vigil bench fanout [options]");

    vg_bench_t *b = vg_calloc(1, sizeof(*b));
    b->o = (vg_bench_opts_t){
        .url = "ws://127.0.0.1:8000/ws",
        .api_key = getenv("VIGIL_API_KEY"),
        .channel = "bench.fanout",
        .connections = 100,
        .messages = 100,
        .size = 256,
        .threads = (long)uv_available_parallelism(),
        .rate = 100,
        .timeout = 30,
    };
    char *publish_url_owned = NULL;
    int status = parse_options(&b->o, argc - 1, argv + 1);
    if (status == 0)
        status = prepare(b, &publish_url_owned);
    if (status != 0)
        goto Free;
    if (raise_fd_limit((size_t)b->o.connections + 64) != 0) {
        status = 1;
        goto Free;
    }
    signal(SIGPIPE, SIG_IGN);
    uv_mutex_init(&b->lock);

    size_t n = (size_t)b->o.connections;
    b->nworkers = (int)(b->o.threads < (long)n ? b->o.threads : (long)n);
    b->workers = vg_calloc((size_t)b->nworkers, sizeof(vg_bench_worker_t));
    char rate[64];
    if (b->o.rate > 0)
        snprintf(rate, sizeof(rate), "%g/s", b->o.rate);
    else
        snprintf(rate, sizeof(rate), "full speed");
    printf("vigil bench fanout: %zu connections on %d thread(s) to %s, %ld messages of ~%ld B "
           "on '%s' at %s\n",
           n, b->nworkers, b->o.url, b->o.messages, b->o.size, b->o.channel, rate);
    fflush(stdout);

    /* Phase 1: connect and subscribe. */
    int initialized = 0, started = 0;
    for (; initialized < b->nworkers; initialized++) {
        size_t count = n / (size_t)b->nworkers + ((size_t)initialized < n % (size_t)b->nworkers);
        if (vg__bench_worker_init(&b->workers[initialized], b, initialized, count) != 0) {
            fprintf(stderr, "vigil bench: cannot create an event loop\n");
            status = 1;
            goto Stop;
        }
    }
    uint64_t t0 = vg_mono_ns();
    for (; started < b->nworkers; started++) {
        if (uv_thread_create(&b->workers[started].thread, vg__bench_worker_main,
                             &b->workers[started]) != 0) {
            fprintf(stderr, "vigil bench: cannot start a thread\n");
            status = 1;
            goto Stop;
        }
    }
    size_t ready, failed, dropped;
    uint64_t deliveries;
    uint64_t deadline = t0 + (uint64_t)(b->o.timeout * 1e9), next_report = t0 + 2000000000u;
    for (;;) {
        sum_counts(b, &ready, &failed, &dropped, &deliveries);
        uint64_t now = vg_mono_ns();
        if (ready + failed >= n || now >= deadline)
            break;
        if (now >= next_report) {
            fprintf(stderr, "  ... %zu of %zu subscribed\n", ready, n);
            next_report = now + 2000000000u;
        }
        nap();
    }
    uint64_t ready_at = t0;
    for (int i = 0; i < b->nworkers; i++) {
        uint64_t r = atomic_load(&b->workers[i].ready_ns);
        if (r > ready_at)
            ready_at = r;
    }
    double connect_s = (double)(ready_at - t0) / 1e9;
    printf("connect:     %zu of %zu connected and subscribed in %.3f s (%.0f/s), %zu failed\n",
           ready, n, connect_s, connect_s > 0 ? (double)ready / connect_s : 0.0, failed);
    uint64_t errors_before = error_count(b);
    if (errors_before > 0) {
        uv_mutex_lock(&b->lock);
        printf("             first error: %s\n", b->first_error);
        uv_mutex_unlock(&b->lock);
    }
    fflush(stdout);
    if (ready + failed < n) {
        /* Late subscribers would miss the first messages and read as loss: stop here. */
        fprintf(stderr,
                "vigil bench: %zu connections still not subscribed after %g s (--timeout)\n",
                n - ready - failed, b->o.timeout);
        status = 1;
        goto Stop;
    }
    if (ready == 0) {
        fprintf(stderr, "vigil bench: no connection subscribed\n");
        status = 1;
        goto Stop;
    }

    /* Phase 2: publish and count deliveries. */
    uv_thread_t publisher;
    if (uv_thread_create(&publisher, vg__bench_publisher_main, b) != 0) {
        fprintf(stderr, "vigil bench: cannot start the publisher thread\n");
        status = 1;
        goto Stop;
    }
    uint64_t last_progress = vg_mono_ns(), last_count = 0;
    next_report = vg_mono_ns() + 2000000000u;
    for (;;) {
        sum_counts(b, &ready, &failed, &dropped, &deliveries);
        int done = atomic_load(&b->pub.done);
        uint64_t now = vg_mono_ns();
        if (deliveries != last_count) {
            last_count = deliveries;
            last_progress = now;
        }
        uint64_t expected = atomic_load(&b->pub.published) * (uint64_t)ready;
        if (done) {
            /* The publisher's fields are visible: pub.done was stored after them. */
            if (deliveries >= expected || b->pub.failed || dropped >= ready)
                break;
            uint64_t since =
                now -
                (last_progress > b->pub.last_publish_ns ? last_progress : b->pub.last_publish_ns);
            if (since > IDLE_GIVE_UP_NS ||
                (double)(now - b->pub.last_publish_ns) > b->o.timeout * 1e9)
                break;
        }
        if (now >= next_report) {
            fprintf(stderr, "  ... %" PRIu64 " published, %" PRIu64 " of %" PRIu64 " delivered\n",
                    atomic_load(&b->pub.published), deliveries, expected);
            next_report = now + 2000000000u;
        }
        nap();
    }
    uv_thread_join(&publisher);

Stop:
    stop_workers(b);
    for (int i = 0; i < started; i++)
        uv_thread_join(&b->workers[i].thread);
    /* Workers whose thread never started wind down here (their wake-up is already pending). */
    for (int i = started; i < initialized; i++)
        uv_run(&b->workers[i].loop, UV_RUN_DEFAULT);
    if (status != 0) {
        for (int i = 0; i < initialized; i++)
            vg__bench_worker_dispose(&b->workers[i]);
        goto Free;
    }

    /* Phase 3: report. */
    sum_counts(b, &ready, &failed, &dropped, &deliveries);
    vg_hist_t *h = vg_calloc(1, sizeof(*h));
    uint64_t last_delivery = 0, payload = 0, ooo = 0;
    for (int i = 0; i < b->nworkers; i++) {
        vg_bench_worker_t *w = &b->workers[i];
        vg_hist_merge(h, &w->hist);
        uint64_t l = atomic_load(&w->last_delivery_ns);
        if (l > last_delivery)
            last_delivery = l;
        payload += w->payload_bytes;
        ooo += w->out_of_order;
        vg__bench_worker_dispose(w);
    }
    uint64_t published = atomic_load(&b->pub.published);
    uint64_t expected = published * (uint64_t)ready;
    double span = last_delivery > b->pub.first_publish_ns
                      ? (double)(last_delivery - b->pub.first_publish_ns) / 1e9
                      : 0;
    double pub_span = (double)(b->pub.last_publish_ns - b->pub.first_publish_ns) / 1e9;
    double per_sec = span > 0 ? (double)deliveries / span : 0;
    double avg = deliveries > 0 ? (double)payload / (double)deliveries : 0.0;
    uint64_t lost = expected > deliveries ? expected - deliveries : 0;
    double p50 = vg_hist_quantile(h, 0.50) / 1e6, p90 = vg_hist_quantile(h, 0.90) / 1e6,
           p99 = vg_hist_quantile(h, 0.99) / 1e6, p999 = vg_hist_quantile(h, 0.999) / 1e6,
           max = (double)h->max / 1e6;
    vg_free(h);

    if (b->pub.failed) {
        fprintf(stderr, "vigil bench: %s\n", b->pub.error);
        if (published == 0) {
            status = 1;
            goto Free;
        }
        printf("publish:     FAILED after %" PRIu64 " messages: %s\n", published, b->pub.error);
    }
    printf("publish:     %" PRIu64 " messages in %.3f s (%.0f/s) with %" PRIu64 " requests\n",
           published, pub_span, pub_span > 0 ? (double)published / pub_span : 0.0, b->pub.requests);
    printf("delivered:   %" PRIu64 " of %" PRIu64 " expected (%" PRIu64 " lost, %.3f%%), %" PRIu64
           " out of order, %zu connections dropped\n",
           deliveries, expected, lost, expected > 0 ? 100.0 * (double)lost / (double)expected : 0,
           ooo, dropped);
    uint64_t unexpected = 0;
    for (int i = 0; i < b->nworkers; i++)
        unexpected += b->workers[i].unexpected;
    if (unexpected > 0)
        printf("             %" PRIu64 " other messages (neither deliveries nor answers)\n",
               unexpected);
    if (error_count(b) > errors_before)
        printf("             first error: %s\n", b->first_error);
    printf("throughput:  %.0f deliveries/s (%.3f s from the first publish to the last delivery)\n",
           per_sec, span);
    printf("payload:     %.0f B per delivered message on average\n", avg);
    printf("latency:     p50 %.3f ms  p90 %.3f ms  p99 %.3f ms  p99.9 %.3f ms  max %.3f ms\n", p50,
           p90, p99, p999, max);
    printf("{\"connections\":%zu,\"connected\":%zu,\"failed_connections\":%zu,\"threads\":%d,"
           "\"connect_s\":%.3f,\"messages\":%" PRIu64 ",\"size\":%ld,\"rate\":%g,"
           "\"payload_bytes\":%.0f,\"expected\":%" PRIu64 ",\"deliveries\":%" PRIu64
           ",\"lost\":%" PRIu64 ",\"out_of_order\":%" PRIu64 ",\"dropped\":%zu,"
           "\"deliveries_per_sec\":%.0f,\"latency_ms\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,"
           "\"p999\":%.3f,\"max\":%.3f}}\n",
           n, ready, failed, b->nworkers, connect_s, published, b->o.size, b->o.rate, avg, expected,
           deliveries, lost, ooo, dropped, per_sec, p50, p90, p99, p999, max);
    fflush(stdout);
    status = (b->pub.failed || lost > 0 || failed > 0 || dropped > 0) ? 1 : 0;

Free:
    vg_url_dispose(&b->ws);
    vg_free(b->handshake);
    vg_free(b->subscribe);
    vg_free(b->workers);
    vg_free(publish_url_owned);
    if (b->nworkers > 0)
        uv_mutex_destroy(&b->lock);
    vg_free(b);
    return status;
}
