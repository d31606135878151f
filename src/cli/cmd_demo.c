/*
 * `vigil demo`: runs the simulated camera fleet (cli/demo.h) against a running server, through
 * its public HTTP API, until Ctrl-C, SIGTERM or --duration.  Exit status: 0 when the server
 * accepted what was sent, 1 when it could not be reached or refused the API key, 2 for a usage
 * mistake.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cmdline.h"
#include "cli/commands.h"
#include "cli/demo.h"
#include "net/httpc.h"
#include "util/clock.h"

#define DEFAULT_URL "http://127.0.0.1:8000"

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: vigil demo [options]\n\n"
            "Runs a simulated camera fleet that publishes statistics, camera status, motion/\n"
            "person/vehicle events and alerts with thumbnails to a vigil server through its\n"
            "HTTP API, until Ctrl-C (or --duration).  `vigil serve --demo` runs the same fleet\n"
            "inside the server.\n\n"
            "Options:\n"
            "  --url URL        server base URL [default: " DEFAULT_URL "]\n"
            "  --api-key KEY    publisher API key [default: $VIGIL_API_KEY]\n"
            "  --cameras N      cameras in the fleet, 1-256 [default: 8]\n"
            "  --duration S     stop after S seconds [default: run until interrupted]\n"
            "  --seed N         replay the same sequence of simulated happenings\n"
            "  -h, --help       show this help\n\n"
            "Exit status: 0 published, 1 unreachable or refused, 2 bad usage.\n");
}

typedef struct demo_args_s {
    const char *url, *key, *cameras, *duration, *seed;
} demo_args_t;

/* Returns 0, 1 after --help, or 2 after a usage error (already printed). */
static int parse_args(int argc, char **argv, demo_args_t *a)
{
    for (int i = 0; i < argc; i++) {
        int m;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 1;
        }
        if ((m = vg_cmdline_option(argc, argv, &i, "--url", &a->url)) != 0 ||
            (m = vg_cmdline_option(argc, argv, &i, "--api-key", &a->key)) != 0 ||
            (m = vg_cmdline_option(argc, argv, &i, "--cameras", &a->cameras)) != 0 ||
            (m = vg_cmdline_option(argc, argv, &i, "--duration", &a->duration)) != 0 ||
            (m = vg_cmdline_option(argc, argv, &i, "--seed", &a->seed)) != 0) {
            if (m < 0)
                return vg_cmdline_usage_error("demo", "%s needs a value", argv[i]);
            continue;
        }
        return vg_cmdline_usage_error("demo", "unknown argument '%s'", argv[i]);
    }
    return 0;
}

/* Header values go into requests verbatim, so refuse anything that could end the line. */
static int header_safe(const char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 0;
    return 1;
}

static int parse_number(const char *text, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || *end != '\0' || errno != 0 || !(v >= lo && v <= hi))
        return -1;
    *out = v;
    return 0;
}

/* GET <url>/healthz: a clear "cannot reach" before any simulated camera starts. */
static int reachable(const char *url)
{
    vg_httpc_t c;
    if (vg_httpc_init(&c, url, 5000) != 0) {
        fprintf(stderr, "vigil demo: --url: %s\n", c.errstr);
        vg_httpc_dispose(&c);
        return 0;
    }
    const char *base = c.url.path;
    size_t blen = strcspn(base, "?");
    while (blen > 0 && base[blen - 1] == '/')
        blen--;
    char path[512];
    snprintf(path, sizeof(path), "%.*s/healthz", (int)blen, base);
    vg_httpc_response_t r;
    int rc = vg_httpc_request(&c, "GET", path, NULL, NULL, 0, &r);
    if (rc != 0)
        fprintf(stderr, "vigil demo: cannot reach %s: %s\n", url, c.errstr);
    else if (r.status != 200)
        fprintf(stderr, "vigil demo: %s answers GET /healthz with HTTP %d\n", url, r.status);
    int ok = rc == 0 && r.status == 200;
    vg_httpc_response_dispose(&r);
    vg_httpc_dispose(&c);
    return ok;
}

/* Waits for SIGINT/SIGTERM (blocked, so taken here synchronously), the end of the duration
 * (<= 0: none), or the fleet stopping by itself. */
static void wait_for_end(vg_demo_t *d, const sigset_t *signals, double duration)
{
    double end = vg_wall_seconds() + duration;
    for (;;) {
        struct timespec slice = {0, 200 * 1000000L};
        int sig = sigtimedwait(signals, NULL, &slice);
        if (sig == SIGINT || sig == SIGTERM || vg_demo_finished(d))
            return;
        if (duration > 0 && vg_wall_seconds() >= end)
            return;
    }
}

int vg_cmd_demo(int argc, char **argv)
{
    demo_args_t a = {DEFAULT_URL, getenv("VIGIL_API_KEY"), NULL, NULL, NULL};
    int rc = parse_args(argc, argv, &a);
    if (rc != 0)
        return rc == 1 ? 0 : 2;
    double cameras = 8, duration = 0, seed = 0;
    if (a.cameras != NULL && parse_number(a.cameras, 1, 256, &cameras) != 0)
        return vg_cmdline_usage_error("demo", "--cameras must be a number from 1 to 256, not '%s'",
                                      a.cameras);
    if (a.duration != NULL && (parse_number(a.duration, 0.001, 1e9, &duration) != 0))
        return vg_cmdline_usage_error(
            "demo", "--duration must be a positive number of seconds, not '%s'", a.duration);
    if (a.seed != NULL && parse_number(a.seed, 1, 9007199254740992.0, &seed) != 0)
        return vg_cmdline_usage_error("demo", "--seed must be a positive whole number, not '%s'",
                                      a.seed);
    if (a.key != NULL && !header_safe(a.key))
        return vg_cmdline_usage_error("demo", "%s contains a control character", "--api-key");
    vg_url_t u;
    char why[256];
    if (vg_url_parse(&u, a.url, why, sizeof(why)) != 0)
        return vg_cmdline_usage_error("demo", "--url: %s", why);
    vg_url_dispose(&u);
    if (!reachable(a.url))
        return 1;

    /* Blocked before the fleet's thread starts, so that only sigtimedwait takes them. */
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    vg_demo_options_t o = {a.url, a.key, (int)cameras, (uint64_t)seed};
    vg_demo_t *d;
    char err[300];
    if (vg_demo_start(&d, &o, err, sizeof(err)) != 0) {
        fprintf(stderr, "vigil demo: %s\n", err);
        return 1;
    }
    fprintf(stderr, "vigil demo: %d camera(s) publishing to %s (Ctrl-C to stop)\n", o.cameras,
            a.url);
    wait_for_end(d, &signals, duration);
    vg_demo_stats_t st;
    vg_demo_stop(d, &st);
    printf("vigil demo: %llu request(s) accepted, %llu failed\n", (unsigned long long)st.sent,
           (unsigned long long)st.failed);
    fflush(stdout);
    if (st.refused)
        fprintf(stderr, "vigil demo: the server refused the API key\n");
    return st.refused || st.sent == 0 ? 1 : 0;
}
