/*
 * libFuzzer driver for token verification (src/auth/auth.c).
 *
 * Input: byte 0 picks the mode and configuration, the rest is the token material.
 *   - bit 0 clear: the rest is a token, verified as is.
 *   - bit 0 set: the rest is "header JSON \0 payload JSON"; the driver encodes both and signs
 *     them with HS256 and the configured secret, so that the claim checks, which random bytes
 *     never reach past the signature, see arbitrary JSON.
 *   - bit 1: verify against the configuration with issuer, audience and leeway set.
 * The verifier has both an HS256 secret and an EC P-256 public key, so the libjwt PEM path sees
 * garbage signatures too.
 *
 * Invariants: a result is 0 with no reason, or VG_EAUTH with one of the documented reasons; an
 * accepted identity has a non-empty user that fits, valid channel patterns, and came from a
 * token whose "alg" is HS* (nothing here holds the EC private key); verification is
 * deterministic.  CHECK aborts even with NDEBUG.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "auth/auth.h"
#include "proto/channel.h"
#include "util/error.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define SECRET "fuzz-secret"
#define NOW    1700000000.0
#define B64URL "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

static vg_auth_t *plain, *strict;

static void setup(void)
{
    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    CHECK(ec != NULL);
    char path[] = "/tmp/vigil-fuzz-jwt-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    FILE *f = fdopen(fd, "w");
    CHECK(f != NULL && PEM_write_PUBKEY(f, ec) == 1);
    fclose(f);
    EVP_PKEY_free(ec);

    char err[256];
    vg_auth_config_t cfg = {.jwt_secret = SECRET, .jwt_public_key_file = path};
    CHECK(vg_auth_new(&plain, &cfg, err, sizeof(err)) == 0);
    cfg.issuer = "iss";
    cfg.audience = "aud";
    cfg.leeway = 5;
    CHECK(vg_auth_new(&strict, &cfg, err, sizeof(err)) == 0);
    unlink(path);
}

static void b64url(const unsigned char *in, size_t n, char *out)
{
    const char *a = B64URL;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = a[(v >> 18) & 63];
        out[o++] = a[(v >> 12) & 63];
        if (i + 1 < n)
            out[o++] = a[(v >> 6) & 63];
        if (i + 2 < n)
            out[o++] = a[v & 63];
    }
    out[o] = '\0';
}

/* Encodes header and payload and appends an HS256 signature; returns a malloc'd token. */
static char *sign(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t hl = nul ? (size_t)(nul - data) : size;
    const uint8_t *payload = nul ? nul + 1 : data + size;
    size_t pl = nul ? size - hl - 1 : 0;
    char *t = malloc((hl + pl) * 4 / 3 + 80);
    CHECK(t != NULL);
    b64url(data, hl, t);
    strcat(t, ".");
    b64url(payload, pl, t + strlen(t));
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    CHECK(HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (const unsigned char *)t, strlen(t), mac,
               &n) != NULL);
    strcat(t, ".");
    b64url(mac, n, t + strlen(t));
    return t;
}

/* Decodes the header segment independently and tells whether its "alg" is HS256/384/512. */
static int header_alg_is_hs(const char *token, size_t len)
{
    const char *dot = memchr(token, '.', len);
    if (dot == NULL)
        return 0;
    size_t n = (size_t)(dot - token);
    unsigned char *out = malloc(n + 1);
    CHECK(out != NULL);
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        const char *p = strchr(B64URL, token[i]);
        if (token[i] == '\0' || p == NULL) {
            free(out);
            return 0;
        }
        acc = (acc << 6) | (uint32_t)(p - B64URL);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    json_t *h = json_loadb((const char *)out, o, 0, NULL);
    free(out);
    const char *alg = json_string_value(json_object_get(h, "alg"));
    int ok = alg != NULL &&
             (strcmp(alg, "HS256") == 0 || strcmp(alg, "HS384") == 0 || strcmp(alg, "HS512") == 0);
    json_decref(h);
    return ok;
}

static int known_reason(const char *r)
{
    static const char *const reasons[] = {
        "missing token", "malformed token",       "algorithm not allowed", "invalid signature",
        "token expired", "token not yet valid",   "wrong issuer",          "wrong audience",
        "missing sub",   "invalid channels claim"};
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++) {
        if (r == reasons[i] || (r != NULL && strcmp(r, reasons[i]) == 0))
            return 1;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (plain == NULL)
        setup();
    if (size < 1)
        return 0;
    int mode = data[0];
    data++, size--;
    vg_auth_t *a = (mode & 2) ? strict : plain;

    char *signed_token = NULL;
    const char *token = (const char *)data;
    size_t len = size;
    if (mode & 1) {
        token = signed_token = sign(data, size);
        len = strlen(token);
    }

    vg_identity_t id;
    const char *reason = "unset";
    int rc = vg_auth_verify_token(a, token, len, NOW, &id, &reason);
    if (rc == 0) {
        CHECK(reason == NULL);
        size_t ul = strnlen(id.user, sizeof(id.user));
        CHECK(ul > 0 && ul < sizeof(id.user));
        CHECK(!id.anonymous);
        CHECK(id.has_channels || id.num_channels == 0);
        for (size_t i = 0; i < id.num_channels; i++)
            CHECK(vg_channel_check_pattern(id.channels[i], strlen(id.channels[i])) == NULL);
        /* Without the EC private key only HS* tokens can be genuine. */
        CHECK(header_alg_is_hs(token, len));
    } else {
        CHECK(rc == VG_EAUTH);
        CHECK(known_reason(reason));
        CHECK(id.channels == NULL && id.num_channels == 0);
    }

    /* Same answer a second time. */
    vg_identity_t again;
    const char *reason2 = "unset";
    CHECK(vg_auth_verify_token(a, token, len, NOW, &again, &reason2) == rc);
    CHECK(reason == reason2 || (reason && reason2 && strcmp(reason, reason2) == 0));
    if (rc == 0) {
        CHECK(strcmp(id.user, again.user) == 0 && id.admin == again.admin &&
              id.num_channels == again.num_channels);
    }
    vg_identity_dispose(&again);
    vg_identity_dispose(&id);
    free(signed_token);
    return 0;
}
