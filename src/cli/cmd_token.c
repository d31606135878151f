/*
 * `vigil token`: mints an HS256/384/512 user token for demos, tests and scripts.
 *
 *   vigil token --secret S --sub alice [--ttl 3600] [--admin] [--channels 'a.*,b'] [--alg HS256]
 *
 * The secret may come from VIGIL_JWT_SECRET instead of the command line, which keeps it out of
 * `ps` and shell history.  Prints the token and a newline.  Exit status 2 names the bad option.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "proto/channel.h"
#include "cli/commands.h"
#include "util/alloc.h"

static void usage(FILE *out)
{
    fprintf(out, "Usage: vigil token --sub USER [options]\n\n"
                 "Prints a signed user token (JWT) and a newline.\n\n"
                 "Options:\n"
                 "  --secret S        HMAC secret (default: $VIGIL_JWT_SECRET)\n"
                 "  --sub USER        the user id (required)\n"
                 "  --ttl SECONDS     lifetime; 0 for a token that never expires (default 3600)\n"
                 "  --admin           add \"admin\": true\n"
                 "  --channels LIST   comma-separated channel patterns the user may subscribe to\n"
                 "  --alg ALG         HS256, HS384 or HS512 (default HS256)\n"
                 "  --help            show this help\n");
}

__attribute__((format(printf, 1, 2))) static int bad_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("vigil token: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs(" (see vigil token --help)\n", stderr);
    va_end(ap);
    return 2;
}

/* Checks each comma-separated entry, so that a bad pattern is reported by name. */
static int check_channels(const char *csv)
{
    const char *p = csv;
    for (;;) {
        const char *end = strchr(p, ',');
        if (end == NULL)
            end = p + strlen(p);
        const char *s = p, *e = end;
        while (s < e && (*s == ' ' || *s == '\t'))
            s++;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        const char *why = e > s ? vg_channel_check_pattern(s, (size_t)(e - s)) : NULL;
        if (why != NULL) {
            fprintf(stderr, "vigil token: --channels: '%.*s': %s\n", (int)(e - s), s, why);
            return -1;
        }
        if (*end == '\0')
            return 0;
        p = end + 1;
    }
}

int vg_cmd_token(int argc, char **argv)
{
    const char *secret = NULL, *sub = NULL, *channels = NULL, *alg = "HS256";
    const char *ttl_text = "3600";
    int admin = 0;

    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(arg, "--admin") == 0) {
            admin = 1;
            continue;
        }
        static const char *const with_value[] = {"--secret", "--sub", "--ttl", "--channels",
                                                 "--alg"};
        const char **slots[] = {&secret, &sub, &ttl_text, &channels, &alg};
        size_t k;
        const char *value = NULL;
        for (k = 0; k < VG_ARRAY_SIZE(with_value); k++) {
            size_t n = strlen(with_value[k]);
            if (strncmp(arg, with_value[k], n) != 0)
                continue;
            if (arg[n] == '=') {
                value = arg + n + 1;
                break;
            }
            if (arg[n] == '\0') {
                if (i + 1 >= argc)
                    return bad_usage("option %s needs a value", with_value[k]);
                value = argv[++i];
                break;
            }
        }
        if (k == VG_ARRAY_SIZE(with_value))
            return bad_usage("unknown option '%s'", arg);
        *slots[k] = value;
    }

    if (secret == NULL)
        secret = getenv("VIGIL_JWT_SECRET");
    if (secret == NULL || secret[0] == '\0')
        return bad_usage("%s is required (or set VIGIL_JWT_SECRET)", "--secret");
    if (sub == NULL || sub[0] == '\0')
        return bad_usage("%s is required", "--sub");
    if (strlen(sub) >= VG_AUTH_MAX_USER) {
        fprintf(stderr, "vigil token: --sub: at most %d bytes\n", VG_AUTH_MAX_USER - 1);
        return 2;
    }
    if (strcmp(alg, "HS256") != 0 && strcmp(alg, "HS384") != 0 && strcmp(alg, "HS512") != 0)
        return bad_usage("--alg: '%s' is not HS256, HS384 or HS512", alg);
    char *end;
    errno = 0;
    long ttl = strtol(ttl_text, &end, 10);
    if (ttl_text[0] == '\0' || *end != '\0' || errno != 0 || ttl < 0 || ttl > INT_MAX)
        return bad_usage("--ttl: '%s' is not a number of seconds", ttl_text);
    if (channels != NULL && check_channels(channels) != 0)
        return 2;

    char *token = vg_auth_mint_token(secret, alg, sub, ttl, admin, channels);
    if (token == NULL) {
        fprintf(stderr, "vigil token: cannot create the token\n");
        return 1;
    }
    printf("%s\n", token);
    vg_free(token);
    return fflush(stdout) == 0 ? 0 : 1;
}
