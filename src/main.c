/*
 * vigil: argv, configuration, signals, and the main thread's loop (h2o src/main.c).
 *
 * The main thread binds the listening sockets, starts the workers and then only waits for
 * SIGINT/SIGTERM; the workers do all connection work on their own loops.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <uv.h>

#include "cli/serve.h"
#include "cli/commands.h"
#include "core/config.h"
#include "cli/demo.h"
#include "net/server.h"
#include "util/error.h"
#include "util/log.h"

extern char **environ;

static void usage(FILE *out)
{
    fprintf(out,
            "vigil %s - real-time push server for camera and device dashboards\n\n"
            "Usage: vigil <command> [options]\n\n"
            "Commands:\n"
            "  serve      run the server (vigil serve --help for its options)\n"
            "  token      print a JWT for development and tests\n"
            "  publish    publish one message through the HTTP API\n"
            "  bench      measure fan-out throughput and latency against a server\n"
            "  demo       run a simulated camera fleet against a server (serve --demo: built in)\n"
            "  version    print the version\n"
            "  help       show this help\n",
            VG_VERSION);
}

static void serve_usage(FILE *out)
{
    fprintf(out, "Usage: vigil serve [options]\n\n"
                 "Options (flags override VIGIL_* environment variables, which override the\n"
                 "--config JSON file, whose keys are the option names):\n");
    vg_config_print_help(out);
}

typedef struct main_ctx_s {
    vg_server_t *server;
    vg_demo_t *demo; /* serve --demo: the fleet publishing to this server */
    uv_signal_t sigint, sigterm;
    int stopping;
} main_ctx_t;

static void on_signal(uv_signal_t *h, int signum)
{
    main_ctx_t *ctx = h->data;
    if (ctx->stopping) {
        vg_warning("second %s: exiting now", signum == SIGINT ? "SIGINT" : "SIGTERM");
        exit(1);
    }
    ctx->stopping = 1;
    vg_notice("%s received: shutting down", signum == SIGINT ? "SIGINT" : "SIGTERM");
    /* The fleet first, while the server still answers its last request: stopped later, it
     * could sit out a request timeout against a listening socket nobody accepts on. */
    vg_demo_stop(ctx->demo, NULL);
    ctx->demo = NULL;
    vg_server_stop(ctx->server);
    /* Stay subscribed: a second signal forces the exit. */
    uv_unref((uv_handle_t *)&ctx->sigint);
    uv_unref((uv_handle_t *)&ctx->sigterm);
}

/* Each connection is a descriptor: take the hard limit, not the default soft 1024. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void apply_logging(const vg_config_t *cfg)
{
    vg_log_level = cfg->log_level;
    vg_log_set_format((enum vg_log_format)cfg->log_format);
}

/* serve --demo: the fleet publishes to the first listening address, over HTTP like any
 * publisher, and the operator is told where to point a browser. */
static void start_demo(main_ctx_t *ctx, const vg_config_t *cfg)
{
    char url[300], err[300];
    vg_demo_base_url(vg_server_listen_name(ctx->server, 0), url, sizeof(url));
    vg_demo_options_t o = {url, cfg->api_key, cfg->demo_cameras, 0};
    if (vg_demo_start(&ctx->demo, &o, err, sizeof(err)) != 0) {
        vg_warning("the demo fleet cannot start: %s", err);
        ctx->demo = NULL;
        return;
    }
    printf("vigil demo: open %s/\n", url);
    fflush(stdout);
}

static int serve(int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            serve_usage(stdout);
            return 0;
        }
    }
    vg_config_t cfg;
    char err[512];
    if (vg_config_load(&cfg, argc, (const char *const *)argv, (const char *const *)environ, err,
                       sizeof(err)) != 0 ||
        vg_demo_prepare_config(&cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "vigil: %s\n", err);
        vg_config_dispose(&cfg);
        return 2;
    }
    apply_logging(&cfg);
    signal(SIGPIPE, SIG_IGN);

    vg_app_t app;
    int rc = vg_serve_init(&app, &cfg, cfg.workers, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "vigil: %s\n", err);
        vg_serve_dispose(&app);
        vg_config_dispose(&cfg);
        return rc == VG_ECONFIG ? 2 : 1; /* a bad option, or a data dir that cannot be used */
    }
    vg_server_options_t opts = {
        .listen = (const char *const *)cfg.listen,
        .num_listen = cfg.num_listen,
        .workers = cfg.workers,
        .max_outbound = cfg.max_outbound,
        .drain_timeout_ms = (uint64_t)(cfg.shutdown_timeout * 1000),
        .app = &app,
    };
    main_ctx_t ctx = {0};
    raise_fd_limit();
    rc = vg_server_new(&ctx.server, &opts, &vg_serve_callbacks, err, sizeof(err));
    if (rc != 0) {
        vg_warning("%s", err);
        vg_serve_dispose(&app);
        vg_config_dispose(&cfg);
        return 1;
    }
    app.server = ctx.server;
    vg_notice("vigil %s starting: %d worker(s), pid %d", VG_VERSION, cfg.workers, (int)getpid());
    for (size_t i = 0; i < vg_server_num_listen(ctx.server); i++)
        vg_notice("listening on http://%s", vg_server_listen_name(ctx.server, i));

    uv_loop_t *loop = uv_default_loop();
    uv_signal_init(loop, &ctx.sigint);
    uv_signal_init(loop, &ctx.sigterm);
    ctx.sigint.data = ctx.sigterm.data = &ctx;
    uv_signal_start(&ctx.sigint, on_signal, SIGINT);
    uv_signal_start(&ctx.sigterm, on_signal, SIGTERM);
    if (vg_server_start(ctx.server) != 0) {
        vg_warning("cannot start the workers");
        return 1;
    }
    if (cfg.demo)
        start_demo(&ctx, &cfg);
    uv_run(loop, UV_RUN_DEFAULT);
    vg_server_join(ctx.server);
    vg_demo_stop(ctx.demo, NULL);
    vg_notice("shutdown complete");

    uv_close((uv_handle_t *)&ctx.sigint, NULL);
    uv_close((uv_handle_t *)&ctx.sigterm, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    vg_server_free(ctx.server);
    vg_serve_dispose(&app);
    vg_config_dispose(&cfg);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "serve") == 0)
        return serve(argc - 2, argv + 2);
    if (strcmp(cmd, "token") == 0)
        return vg_cmd_token(argc - 2, argv + 2);
    if (strcmp(cmd, "publish") == 0)
        return vg_cmd_publish(argc - 2, argv + 2);
    if (strcmp(cmd, "bench") == 0)
        return vg_cmd_bench(argc - 2, argv + 2);
    if (strcmp(cmd, "demo") == 0)
        return vg_cmd_demo(argc - 2, argv + 2);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("vigil %s\n", VG_VERSION);
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        if (argc > 2 && strcmp(argv[2], "serve") == 0)
            serve_usage(stdout);
        else
            usage(stdout);
        return 0;
    }
    fprintf(stderr, "vigil: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return 2;
}
