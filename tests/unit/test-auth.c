/*
 * Tests of authentication (src/auth/auth.c): JWT verification with every failure reason, key
 * loading, the API key compare, connect tickets, minting, and `vigil token` usage errors.
 *
 * Tokens are built here from their parts with OpenSSL (HMAC, RSA and ECDSA signatures, the
 * latter converted to JOSE's raw r||s), independently of libjwt, so that hand-crafted headers
 * ("alg":"none", algorithm confusion, duplicate keys) and payloads can be tested.  Keys are
 * generated per run and their public halves written to temporary PEM files.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/encoder.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "auth/auth.h"
#include "cli/commands.h"
#include "util/alloc.h"
#include "util/error.h"

#define NOW    1700000000.0
#define SECRET "correct horse battery staple"

/* ---- keys ----------------------------------------------------------------------------------- */

static struct {
    EVP_PKEY *rsa, *rsa_other, *ec, *ec_other;
    char rsa_pub[64], ec_pub[64], rsa_pkcs1[64], rsa_small[64], ec384[64], ed25519[64],
        rsa_priv[64], garbage[64];
    char *rsa_pub_pem; /* text of rsa_pub, for the algorithm confusion test */
} K;

static void write_file(char *path, const char *text, size_t len)
{
    strcpy(path, "/tmp/vigil-test-auth-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
}

/* Writes pkey's public (or private) half as PEM with the given structure. */
static char *pem_of(EVP_PKEY *pkey, int selection, const char *structure, size_t *len)
{
    OSSL_ENCODER_CTX *ctx = OSSL_ENCODER_CTX_new_for_pkey(pkey, selection, "PEM", structure, NULL);
    assert_non_null(ctx);
    unsigned char *data = NULL;
    size_t n = 0;
    assert_true(OSSL_ENCODER_to_data(ctx, &data, &n));
    OSSL_ENCODER_CTX_free(ctx);
    char *s = malloc(n + 1);
    memcpy(s, data, n);
    s[n] = '\0';
    OPENSSL_free(data);
    *len = n;
    return s;
}

static void write_pub(char *path, EVP_PKEY *pkey, const char *structure)
{
    size_t n;
    char *pem = pem_of(pkey, EVP_PKEY_PUBLIC_KEY, structure, &n);
    write_file(path, pem, n);
    free(pem);
}

static int setup_keys(void **state)
{
    (void)state;
    K.rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    K.rsa_other = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    K.ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    K.ec_other = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    EVP_PKEY *small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    EVP_PKEY *p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    if (!K.rsa || !K.rsa_other || !K.ec || !K.ec_other || !small || !p384 || !ed)
        return -1;
    size_t n;
    K.rsa_pub_pem = pem_of(K.rsa, EVP_PKEY_PUBLIC_KEY, "SubjectPublicKeyInfo", &n);
    write_file(K.rsa_pub, K.rsa_pub_pem, n);
    write_pub(K.ec_pub, K.ec, "SubjectPublicKeyInfo");
    write_pub(K.rsa_pkcs1, K.rsa, "type-specific");
    write_pub(K.rsa_small, small, "SubjectPublicKeyInfo");
    write_pub(K.ec384, p384, "SubjectPublicKeyInfo");
    write_pub(K.ed25519, ed, "SubjectPublicKeyInfo");
    char *priv = pem_of(K.rsa, EVP_PKEY_KEYPAIR, "PrivateKeyInfo", &n);
    write_file(K.rsa_priv, priv, n);
    free(priv);
    write_file(K.garbage, "not a key\n", 10);
    EVP_PKEY_free(small);
    EVP_PKEY_free(p384);
    EVP_PKEY_free(ed);
    return 0;
}

static int teardown_keys(void **state)
{
    (void)state;
    const char *files[] = {K.rsa_pub, K.ec_pub,  K.rsa_pkcs1, K.rsa_small,
                           K.ec384,   K.ed25519, K.rsa_priv,  K.garbage};
    for (size_t i = 0; i < VG_ARRAY_SIZE(files); i++)
        unlink(files[i]);
    EVP_PKEY_free(K.rsa);
    EVP_PKEY_free(K.rsa_other);
    EVP_PKEY_free(K.ec);
    EVP_PKEY_free(K.ec_other);
    free(K.rsa_pub_pem);
    return 0;
}

/* ---- token construction --------------------------------------------------------------------- */

static void b64url(const unsigned char *in, size_t n, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
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

/* "b64(header).b64(payload)" in a buffer with room for a signature. */
static char *signing_input(const char *header, const char *payload)
{
    size_t hl = strlen(header), pl = strlen(payload);
    char *s = malloc((hl + pl) * 2 + 1024);
    b64url((const unsigned char *)header, hl, s);
    strcat(s, ".");
    b64url((const unsigned char *)payload, pl, s + strlen(s));
    return s;
}

static char *append_sig(char *s, const unsigned char *sig, size_t n)
{
    strcat(s, ".");
    b64url(sig, n, s + strlen(s));
    return s;
}

/* HMAC-signed token; md picks HS256/384/512 independently of what the header says. */
static char *tok_hs(const EVP_MD *md, const char *secret, size_t secret_len, const char *header,
                    const char *payload)
{
    char *s = signing_input(header, payload);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    assert_non_null(
        HMAC(md, secret, (int)secret_len, (const unsigned char *)s, strlen(s), mac, &n));
    return append_sig(s, mac, n);
}

/* RS256 or ES256 (raw r||s) token signed with pkey. */
static char *tok_pk(EVP_PKEY *pkey, const char *header, const char *payload)
{
    char *s = signing_input(header, payload);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char der[1024];
    size_t n = sizeof(der);
    assert_int_equal(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, pkey), 1);
    assert_int_equal(EVP_DigestSign(ctx, der, &n, (const unsigned char *)s, strlen(s)), 1);
    EVP_MD_CTX_free(ctx);
    if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_EC)
        return append_sig(s, der, n);
    const unsigned char *p = der;
    ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)n);
    assert_non_null(sig);
    unsigned char raw[64];
    assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_r(sig), raw, 32), 32);
    assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_s(sig), raw + 32, 32), 32);
    ECDSA_SIG_free(sig);
    return append_sig(s, raw, sizeof(raw));
}

static char *tok_raw(const char *header, const char *payload, const char *sig)
{
    char *s = signing_input(header, payload);
    strcat(s, ".");
    strcat(s, sig);
    return s;
}

#define HS256 "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"
#define RS256 "{\"alg\":\"RS256\",\"typ\":\"JWT\"}"
#define ES256 "{\"alg\":\"ES256\",\"typ\":\"JWT\"}"

static char *hs(const char *payload)
{
    return tok_hs(EVP_sha256(), SECRET, strlen(SECRET), HS256, payload);
}

/* ---- helpers -------------------------------------------------------------------------------- */

static vg_auth_t *auth_new(const vg_auth_config_t *cfg)
{
    vg_auth_t *a = NULL;
    char err[256] = "";
    int rc = vg_auth_new(&a, cfg, err, sizeof(err));
    if (rc != 0)
        fail_msg("vg_auth_new: %s", err);
    return a;
}

static vg_auth_t *auth_secret(double leeway)
{
    vg_auth_config_t cfg = {.jwt_secret = SECRET, .leeway = leeway};
    return auth_new(&cfg);
}

/* Verifies and returns the reason (NULL on success); the identity is disposed. */
static const char *verify_at(vg_auth_t *a, const char *token, double now)
{
    vg_identity_t id;
    const char *reason = "unset";
    int rc = vg_auth_verify_token(a, token, token ? strlen(token) : 0, now, &id, &reason);
    if (rc == 0) {
        assert_null(reason);
        assert_true(id.user[0] != '\0');
    } else {
        assert_int_equal(rc, VG_EAUTH);
        assert_non_null(reason);
        assert_null(id.channels);
    }
    vg_identity_dispose(&id);
    return reason;
}

static const char *verify(vg_auth_t *a, const char *token)
{
    return verify_at(a, token, NOW);
}

/* Verifies a token and frees it. */
static const char *check(vg_auth_t *a, char *token)
{
    const char *r = verify(a, token);
    free(token);
    return r;
}

static const char *or_accepted(const char *reason)
{
    return reason ? reason : "(accepted)";
}

#define assert_ok(r)           assert_null(r)
#define assert_reason(r, want) assert_string_equal(or_accepted(r), want)

/* ---- HMAC ----------------------------------------------------------------------------------- */

static void test_hs256_ok(void **state)
{
    (void)state;
    vg_auth_t *a = auth_secret(0);
    assert_true(vg_auth_has_jwt(a));
    assert_false(vg_auth_allow_anonymous(a));
    char *t = hs("{\"sub\":\"alice\",\"exp\":1700000060,\"admin\":true,"
                 "\"channels\":[\"cameras.*\",\"alerts.user.alice\",\">\"]}");
    vg_identity_t id;
    const char *reason = "unset";
    assert_int_equal(vg_auth_verify_token(a, t, strlen(t), NOW, &id, &reason), 0);
    assert_null(reason);
    assert_string_equal(id.user, "alice");
    assert_int_equal(id.admin, 1);
    assert_int_equal(id.anonymous, 0);
    assert_true(id.expires_at == 1700000060.0);
    assert_int_equal(id.has_channels, 1);
    assert_int_equal(id.num_channels, 3);
    assert_string_equal(id.channels[0], "cameras.*");
    assert_string_equal(id.channels[1], "alerts.user.alice");
    assert_string_equal(id.channels[2], ">");

    /* A copy is deep. */
    vg_identity_t copy;
    vg_identity_copy(&copy, &id);
    vg_identity_dispose(&id);
    assert_string_equal(copy.channels[1], "alerts.user.alice");
    vg_identity_dispose(&copy);
    vg_identity_dispose(&copy); /* harmless twice */
    free(t);

    /* No exp, no channels, admin not true. */
    t = hs("{\"sub\":\"bob\",\"admin\":\"yes\"}");
    assert_int_equal(vg_auth_verify_token(a, t, strlen(t), NOW, &id, &reason), 0);
    assert_int_equal(id.admin, 0);
    assert_true(id.expires_at == 0);
    assert_int_equal(id.has_channels, 0);
    assert_null(id.channels);
    vg_identity_dispose(&id);

    /* The token need not be NUL-terminated: only len bytes count. */
    char *longer = malloc(strlen(t) + 8);
    strcpy(longer, t);
    strcat(longer, "garbage");
    assert_int_equal(vg_auth_verify_token(a, longer, strlen(t), NOW, &id, &reason), 0);
    vg_identity_dispose(&id);
    free(longer);
    free(t);

    /* HS384 and HS512, and no typ header. */
    t = tok_hs(EVP_sha384(), SECRET, strlen(SECRET), "{\"alg\":\"HS384\"}", "{\"sub\":\"c\"}");
    assert_ok(check(a, t));
    t = tok_hs(EVP_sha512(), SECRET, strlen(SECRET), "{\"alg\":\"HS512\",\"typ\":\"jwt\"}",
               "{\"sub\":\"c\"}");
    assert_ok(check(a, t));
    vg_auth_free(a);
}

static void test_hs_bad_signature(void **state)
{
    (void)state;
    vg_auth_t *a = auth_secret(0);
    const char *p = "{\"sub\":\"alice\"}";
    assert_reason(check(a, tok_hs(EVP_sha256(), "wrong", 5, HS256, p)), "invalid signature");
    /* The header says HS512 but the MAC is HS256 (and the other way round). */
    assert_reason(check(a, tok_hs(EVP_sha256(), SECRET, strlen(SECRET), "{\"alg\":\"HS512\"}", p)),
                  "invalid signature");
    assert_reason(check(a, tok_hs(EVP_sha512(), SECRET, strlen(SECRET), HS256, p)),
                  "invalid signature");
    /* A signed token whose payload was changed afterwards. */
    char *good = hs(p);
    char *forged = tok_raw(HS256, "{\"sub\":\"root\"}", strrchr(good, '.') + 1);
    assert_reason(check(a, forged), "invalid signature");
    /* One flipped signature character. */
    char *last = good + strlen(good) - 2;
    *last = *last == 'A' ? 'B' : 'A';
    assert_reason(check(a, good), "invalid signature");
    /* Valid base64url, wrong length. */
    assert_reason(check(a, tok_raw(HS256, p, "AAAA")), "invalid signature");
    vg_auth_free(a);
}

static void test_alg_none(void **state)
{
    (void)state;
    vg_auth_t *a = auth_secret(0);
    const char *p = "{\"sub\":\"alice\",\"admin\":true}";
    assert_reason(check(a, tok_raw("{\"alg\":\"none\",\"typ\":\"JWT\"}", p, "")),
                  "algorithm not allowed");
    assert_reason(check(a, tok_raw("{\"alg\":\"none\"}", p, "c2ln")), "algorithm not allowed");
    assert_reason(check(a, tok_raw("{\"alg\":\"None\"}", p, "")), "algorithm not allowed");
    assert_reason(check(a, tok_raw("{\"alg\":\"NONE\"}", p, "")), "algorithm not allowed");
    assert_reason(check(a, tok_raw("{\"alg\":\"hs256\"}", p, "")), "algorithm not allowed");
    /* Algorithms libjwt knows but we never accept. */
    assert_reason(check(a, tok_raw("{\"alg\":\"RS384\"}", p, "c2ln")), "algorithm not allowed");
    assert_reason(check(a, tok_raw("{\"alg\":\"ES512\"}", p, "c2ln")), "algorithm not allowed");
    assert_reason(check(a, tok_raw("{\"alg\":\"PS256\"}", p, "c2ln")), "algorithm not allowed");
    /* A secret is configured, so RS256/ES256 are not. */
    assert_reason(check(a, tok_pk(K.rsa, RS256, p)), "algorithm not allowed");
    assert_reason(check(a, tok_pk(K.ec, ES256, p)), "algorithm not allowed");
    vg_auth_free(a);

    /* Nothing configured: every token is refused. */
    vg_auth_config_t none = {.allow_anonymous = 1};
    a = auth_new(&none);
    assert_false(vg_auth_has_jwt(a));
    assert_true(vg_auth_allow_anonymous(a));
    assert_reason(check(a, hs(p)), "algorithm not allowed");
    assert_reason(check(a, tok_raw("{\"alg\":\"none\"}", p, "")), "algorithm not allowed");
    vg_auth_free(a);
}

/* ---- RSA and EC ----------------------------------------------------------------------------- */

static void test_rs256(void **state)
{
    (void)state;
    const char *p = "{\"sub\":\"alice\",\"exp\":1700000060}";
    const char *files[] = {K.rsa_pub, K.rsa_pkcs1};
    for (size_t i = 0; i < VG_ARRAY_SIZE(files); i++) {
        vg_auth_config_t cfg = {.jwt_public_key_file = files[i]};
        vg_auth_t *a = auth_new(&cfg);
        assert_true(vg_auth_has_jwt(a));
        assert_ok(check(a, tok_pk(K.rsa, RS256, p)));
        assert_reason(check(a, tok_pk(K.rsa_other, RS256, p)), "invalid signature");
        assert_reason(check(a, tok_pk(K.ec, ES256, p)), "algorithm not allowed");
        /* The classic confusion: HS256 keyed with our public key PEM. */
        assert_reason(
            check(a, tok_hs(EVP_sha256(), K.rsa_pub_pem, strlen(K.rsa_pub_pem), HS256, p)),
            "algorithm not allowed");
        assert_reason(check(a, tok_raw("{\"alg\":\"none\"}", p, "")), "algorithm not allowed");
        /* An RS256 signature under an ES256 or RS512 header. */
        char *t = tok_pk(K.rsa, RS256, p);
        char *relabeled = tok_raw("{\"alg\":\"RS512\"}", p, strrchr(t, '.') + 1);
        assert_reason(check(a, relabeled), "algorithm not allowed");
        free(t);
        vg_auth_free(a);
    }
}

static void test_es256(void **state)
{
    (void)state;
    vg_auth_config_t cfg = {.jwt_public_key_file = K.ec_pub};
    vg_auth_t *a = auth_new(&cfg);
    const char *p = "{\"sub\":\"alice\",\"channels\":[\"a.>\"]}";
    for (int i = 0; i < 20; i++) /* r and s with leading zero bytes come up now and then */
        assert_ok(check(a, tok_pk(K.ec, ES256, p)));
    assert_reason(check(a, tok_pk(K.ec_other, ES256, p)), "invalid signature");
    assert_reason(check(a, tok_pk(K.rsa, RS256, p)), "algorithm not allowed");
    assert_reason(check(a, hs(p)), "algorithm not allowed");
    /* Change the top bits of r. */
    char *t = tok_pk(K.ec, ES256, p);
    char *sig = strrchr(t, '.') + 1;
    *sig = *sig == 'A' ? 'B' : 'A';
    assert_reason(check(a, t), "invalid signature");
    /* A DER signature instead of r||s, and an empty one. */
    assert_reason(check(a, tok_raw(ES256, p, "MEUCIQDx")), "invalid signature");
    assert_reason(check(a, tok_raw(ES256, p, "")), "malformed token");
    vg_auth_free(a);
}

static void test_secret_and_key(void **state)
{
    (void)state;
    vg_auth_config_t cfg = {.jwt_secret = SECRET, .jwt_public_key_file = K.rsa_pub};
    vg_auth_t *a = auth_new(&cfg);
    const char *p = "{\"sub\":\"alice\"}";
    assert_ok(check(a, hs(p)));
    assert_ok(check(a, tok_pk(K.rsa, RS256, p)));
    /* HS* is checked with the secret only, never with the PEM. */
    assert_reason(check(a, tok_hs(EVP_sha256(), K.rsa_pub_pem, strlen(K.rsa_pub_pem), HS256, p)),
                  "invalid signature");
    assert_reason(check(a, tok_pk(K.ec, ES256, p)), "algorithm not allowed");
    vg_auth_free(a);
}

static void expect_config_error(const vg_auth_config_t *cfg, const char *option)
{
    vg_auth_t *a = (vg_auth_t *)&a;
    char err[256] = "";
    assert_int_equal(vg_auth_new(&a, cfg, err, sizeof(err)), VG_ECONFIG);
    assert_null(a);
    if (strstr(err, option) == NULL)
        fail_msg("error '%s' does not name %s", err, option);
}

static void test_config_errors(void **state)
{
    (void)state;
    const char *bad[] = {
        "/nonexistent/key.pem", K.garbage, K.rsa_priv, K.rsa_small, K.ec384, K.ed25519};
    for (size_t i = 0; i < VG_ARRAY_SIZE(bad); i++) {
        vg_auth_config_t cfg = {.jwt_secret = SECRET, .jwt_public_key_file = bad[i]};
        expect_config_error(&cfg, "--jwt-public-key");
    }
    vg_auth_config_t empty_secret = {.jwt_secret = ""};
    expect_config_error(&empty_secret, "--jwt-secret");
    vg_auth_config_t empty_key = {.api_key = ""};
    expect_config_error(&empty_key, "--api-key");
    vg_auth_config_t empty_iss = {.jwt_secret = SECRET, .issuer = ""};
    expect_config_error(&empty_iss, "--jwt-issuer");
    vg_auth_free(NULL);
}

/* ---- claims --------------------------------------------------------------------------------- */

static void test_exp(void **state)
{
    (void)state;
    vg_auth_t *strict = auth_secret(0), *lenient = auth_secret(5);
    char *t = hs("{\"sub\":\"a\",\"exp\":1699999999}"); /* a second ago */
    assert_reason(verify(strict, t), "token expired");
    assert_ok(verify(lenient, t));
    assert_ok(verify_at(strict, t, 1699999999.0)); /* valid through its exp second */
    assert_ok(verify_at(lenient, t, 1700000004.0));
    assert_reason(verify_at(lenient, t, 1700000004.5), "token expired");
    free(t);
    t = hs("{\"sub\":\"a\",\"exp\":1699999990}");
    assert_reason(verify(lenient, t), "token expired");
    free(t);
    /* Fractional exp is a number too. */
    assert_ok(check(strict, hs("{\"sub\":\"a\",\"exp\":1700000000.5}")));
    /* exp must be a number. */
    assert_reason(check(strict, hs("{\"sub\":\"a\",\"exp\":\"1800000000\"}")), "malformed token");
    assert_reason(check(strict, hs("{\"sub\":\"a\",\"exp\":null}")), "malformed token");
    assert_reason(check(strict, hs("{\"sub\":\"a\",\"nbf\":true}")), "malformed token");
    vg_auth_free(strict);
    vg_auth_free(lenient);
}

static void test_nbf(void **state)
{
    (void)state;
    vg_auth_t *strict = auth_secret(0), *lenient = auth_secret(5);
    char *t = hs("{\"sub\":\"a\",\"nbf\":1700000003}");
    assert_reason(verify(strict, t), "token not yet valid");
    assert_ok(verify(lenient, t));
    assert_ok(verify_at(strict, t, 1700000003.0));
    free(t);
    t = hs("{\"sub\":\"a\",\"nbf\":1700000010,\"exp\":1700000100}");
    assert_reason(verify(lenient, t), "token not yet valid");
    assert_ok(verify_at(lenient, t, 1700000005.0));
    free(t);
    /* exp is checked before nbf. */
    t = hs("{\"sub\":\"a\",\"nbf\":1700000100,\"exp\":1600000000}");
    assert_reason(verify(strict, t), "token expired");
    free(t);
    vg_auth_free(strict);
    vg_auth_free(lenient);
}

static void test_iss_aud(void **state)
{
    (void)state;
    vg_auth_config_t cfg = {
        .jwt_secret = SECRET, .issuer = "https://idp.example", .audience = "vigil"};
    vg_auth_t *a = auth_new(&cfg);
    assert_ok(check(a, hs("{\"sub\":\"a\",\"iss\":\"https://idp.example\",\"aud\":\"vigil\"}")));
    assert_ok(check(a, hs("{\"sub\":\"a\",\"iss\":\"https://idp.example\","
                          "\"aud\":[\"other\",\"vigil\"]}")));
    assert_reason(check(a, hs("{\"sub\":\"a\",\"aud\":\"vigil\"}")), "wrong issuer");
    assert_reason(check(a, hs("{\"sub\":\"a\",\"iss\":\"https://evil\",\"aud\":\"vigil\"}")),
                  "wrong issuer");
    assert_reason(check(a, hs("{\"sub\":\"a\",\"iss\":1,\"aud\":\"vigil\"}")), "wrong issuer");
    assert_reason(check(a, hs("{\"sub\":\"a\",\"iss\":\"https://idp.example\"}")),
                  "wrong audience");
    assert_reason(check(a, hs("{\"sub\":\"a\",\"iss\":\"https://idp.example\",\"aud\":\"vigi\"}")),
                  "wrong audience");
    assert_reason(check(a, hs("{\"sub\":\"a\",\"iss\":\"https://idp.example\","
                              "\"aud\":[\"other\",1]}")),
                  "wrong audience");
    assert_reason(check(a, hs("{\"sub\":\"a\",\"iss\":\"https://idp.example\",\"aud\":[]}")),
                  "wrong audience");
    assert_reason(check(a, hs("{\"sub\":\"a\",\"iss\":\"https://idp.example\",\"aud\":{}}")),
                  "wrong audience");
    vg_auth_free(a);

    /* Not configured: iss and aud are ignored. */
    a = auth_secret(0);
    assert_ok(check(a, hs("{\"sub\":\"a\",\"iss\":\"x\",\"aud\":5}")));
    vg_auth_free(a);
}

static void test_sub(void **state)
{
    (void)state;
    vg_auth_t *a = auth_secret(0);
    assert_reason(check(a, hs("{\"admin\":true}")), "missing sub");
    assert_reason(check(a, hs("{\"sub\":\"\"}")), "missing sub");
    assert_reason(check(a, hs("{\"sub\":42}")), "missing sub");
    assert_reason(check(a, hs("{\"sub\":null}")), "missing sub");
    char payload[512], user[VG_AUTH_MAX_USER + 1];
    memset(user, 'u', sizeof(user));
    user[VG_AUTH_MAX_USER - 1] = '\0'; /* the longest allowed */
    snprintf(payload, sizeof(payload), "{\"sub\":\"%s\"}", user);
    char *t = hs(payload);
    vg_identity_t id;
    const char *reason;
    assert_int_equal(vg_auth_verify_token(a, t, strlen(t), NOW, &id, &reason), 0);
    assert_string_equal(id.user, user);
    vg_identity_dispose(&id);
    free(t);
    user[VG_AUTH_MAX_USER - 1] = 'u';
    user[VG_AUTH_MAX_USER] = '\0'; /* one too long */
    snprintf(payload, sizeof(payload), "{\"sub\":\"%s\"}", user);
    assert_reason(check(a, hs(payload)), "missing sub");
    /* Unicode is fine. */
    assert_ok(check(a, hs("{\"sub\":\"J\\u00fcrgen\"}")));
    vg_auth_free(a);
}

static void test_channels_claim(void **state)
{
    (void)state;
    vg_auth_t *a = auth_secret(0);
    const char *bad[] = {
        "\"cameras.*\"", "null",     "{}",          "[1]",       "[\"a\",null]", "[\"a..b\"]",
        "[\"\"]",        "[\".a\"]", "[\"a.>.b\"]", "[\"a b\"]", "[[\"a\"]]",    "[\"ok\",\"a.\"]",
    };
    for (size_t i = 0; i < VG_ARRAY_SIZE(bad); i++) {
        char payload[256];
        snprintf(payload, sizeof(payload), "{\"sub\":\"a\",\"channels\":%s}", bad[i]);
        const char *r = check(a, hs(payload));
        if (r == NULL || strcmp(r, "invalid channels claim") != 0)
            fail_msg("channels %s: %s", bad[i], r ? r : "(accepted)");
    }
    /* An empty list is a claim too: the user may subscribe to nothing. */
    char *t = hs("{\"sub\":\"a\",\"channels\":[]}");
    vg_identity_t id;
    const char *reason;
    assert_int_equal(vg_auth_verify_token(a, t, strlen(t), NOW, &id, &reason), 0);
    assert_int_equal(id.has_channels, 1);
    assert_int_equal(id.num_channels, 0);
    vg_identity_dispose(&id);
    free(t);
    vg_auth_free(a);
}

/* ---- malformed input ------------------------------------------------------------------------ */

static void test_garbage(void **state)
{
    (void)state;
    vg_auth_t *a = auth_secret(0);
    const char *p = "{\"sub\":\"a\"}";
    vg_identity_t id;
    const char *reason;
    assert_int_equal(vg_auth_verify_token(a, NULL, 0, NOW, &id, &reason), VG_EAUTH);
    assert_string_equal(reason, "missing token");
    assert_int_equal(vg_auth_verify_token(a, "abc", 0, NOW, &id, &reason), VG_EAUTH);
    assert_string_equal(reason, "missing token");

    const char *literal[] = {"abc",
                             ".",
                             "..",
                             "...",
                             "a.b",
                             "a.b.c.d",
                             "!!!.x.y",
                             "eyJhbGciOiJIUzI1NiJ9..",
                             "eyJhbGciOiJIUzI1NiJ9",
                             "\x01\x02\xff"};
    for (size_t i = 0; i < VG_ARRAY_SIZE(literal); i++)
        assert_reason(verify(a, literal[i]), "malformed token");
    /* An embedded NUL. */
    char *good = hs(p);
    size_t gl = strlen(good);
    good[gl - 4] = '\0';
    assert_int_equal(vg_auth_verify_token(a, good, gl, NOW, &id, &reason), VG_EAUTH);
    assert_string_equal(reason, "malformed token");
    free(good);

    /* Valid signatures over bad contents. */
    const char *bad_headers[] = {
        "[\"alg\",\"HS256\"]",
        "{\"alg\":\"HS256\"",
        "{\"typ\":\"JWT\"}",
        "{\"alg\":256}",
        "{\"alg\":\"HS256\",\"alg\":\"none\"}", /* duplicate keys */
        "{\"alg\":\"HS256\",\"typ\":\"JOSE+JSON\"}",
        "{\"alg\":\"HS256\",\"typ\":1}",
        "{\"alg\":\"HS256\",\"crit\":[\"exp\"],\"exp\":1}",
        "",
        "null",
    };
    for (size_t i = 0; i < VG_ARRAY_SIZE(bad_headers); i++) {
        const char *r = check(a, tok_hs(EVP_sha256(), SECRET, strlen(SECRET), bad_headers[i], p));
        if (r == NULL || strcmp(r, "malformed token") != 0)
            fail_msg("header %s: %s", bad_headers[i], r ? r : "(accepted)");
    }
    const char *bad_payloads[] = {"",
                                  "[]",
                                  "\"sub\"",
                                  "{\"sub\":\"a\"",
                                  "{\"sub\":\"a\",\"sub\":\"b\"}",
                                  "{\"sub\":\"a\"} x",
                                  "{\"sub\":\"a\\u0000b\"}"};
    for (size_t i = 0; i < VG_ARRAY_SIZE(bad_payloads); i++) {
        const char *r = check(a, hs(bad_payloads[i]));
        if (r == NULL || strcmp(r, "malformed token") != 0)
            fail_msg("payload %s: %s", bad_payloads[i], r ? r : "(accepted)");
    }

    /* Padding and the standard alphabet are not base64url. */
    good = hs(p);
    char *padded = malloc(strlen(good) + 2);
    strcpy(padded, good);
    strcat(padded, "=");
    assert_reason(verify(a, padded), "malformed token");
    char *plus = strchr(padded, '.') - 1;
    *plus = '+';
    assert_reason(verify(a, padded), "malformed token");
    free(padded);
    free(good);

    /* Over 8 KiB, even when otherwise valid. */
    char big_payload[9000];
    snprintf(big_payload, sizeof(big_payload), "{\"sub\":\"a\",\"pad\":\"%06200d\"}", 0);
    char *big = hs(big_payload);
    assert_true(strlen(big) > 8192);
    assert_reason(verify(a, big), "malformed token");
    free(big);
    snprintf(big_payload, sizeof(big_payload), "{\"sub\":\"a\",\"pad\":\"%05000d\"}", 0);
    big = hs(big_payload);
    assert_true(strlen(big) < 8192);
    assert_ok(verify(a, big));
    free(big);

    /* Nesting deeper than jansson's limit, within 8 KiB. */
    char nested[4300];
    strcpy(nested, "{\"sub\":\"a\",\"x\":");
    size_t n = strlen(nested);
    memset(nested + n, '[', 2100);
    memset(nested + n + 2100, ']', 2100);
    strcpy(nested + n + 4200, "}");
    char *deep = hs(nested);
    assert_true(strlen(deep) < 8192);
    assert_reason(check(a, deep), "malformed token");

    /* Random bytes and random base64url segments never get in. */
    srand(7);
    for (int i = 0; i < 2000; i++) {
        char buf[200];
        size_t len = (size_t)(rand() % (int)sizeof(buf));
        for (size_t k = 0; k < len; k++)
            buf[k] = (i & 1) ? (char)(rand() & 0xff) : "eyJhbGciOiJIUzI1NiJ9.-_"[rand() % 23];
        assert_int_equal(vg_auth_verify_token(a, buf, len, NOW, &id, &reason), VG_EAUTH);
        assert_null(id.channels);
    }
    vg_auth_free(a);
}

/* ---- API key -------------------------------------------------------------------------------- */

static void test_api_key(void **state)
{
    (void)state;
    vg_auth_config_t cfg = {.api_key = "s3cret-publisher-key"};
    vg_auth_t *a = auth_new(&cfg);
    assert_false(vg_auth_has_jwt(a));
    assert_true(vg_auth_check_api_key(a, "s3cret-publisher-key", 20));
    assert_true(vg_auth_check_api_key(a, "s3cret-publisher-key-and-more", 20));
    assert_false(vg_auth_check_api_key(a, "s3cret-publisher-kez", 20));
    assert_false(vg_auth_check_api_key(a, "s3cret-publisher-key", 19));
    assert_false(vg_auth_check_api_key(a, "s3cret-publisher-key2", 21));
    assert_false(vg_auth_check_api_key(a, "", 0));
    assert_false(vg_auth_check_api_key(a, NULL, 0));
    vg_auth_free(a);

    a = auth_secret(0);
    assert_false(vg_auth_check_api_key(a, "", 0));
    assert_false(vg_auth_check_api_key(a, "anything", 8));
    vg_auth_free(a);
}

/* ---- tickets -------------------------------------------------------------------------------- */

static void make_identity(vg_identity_t *id, const char *user)
{
    memset(id, 0, sizeof(*id));
    strcpy(id->user, user);
    id->admin = 1;
    id->expires_at = NOW + 3600;
    id->has_channels = 1;
    id->num_channels = 2;
    id->channels = vg_malloc(2 * sizeof(char *));
    id->channels[0] = vg_strdup("cameras.*");
    id->channels[1] = vg_strdup("alerts.>");
}

static void test_tickets(void **state)
{
    (void)state;
    vg_auth_t *a = auth_secret(0);
    vg_identity_t alice, got;
    make_identity(&alice, "alice");
    char t1[64], t2[64], t3[64];
    assert_int_equal(vg_auth_ticket_issue(a, &alice, NOW, t1), 0);
    assert_int_equal(vg_auth_ticket_issue(a, &alice, NOW, t2), 0);
    assert_true(strlen(t1) >= 22); /* >= 128 bits */
    assert_int_equal(strspn(t1, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
                     strlen(t1));
    assert_string_not_equal(t1, t2);
    vg_identity_dispose(&alice); /* tickets hold their own copy */

    const char *reason = "unset";
    assert_int_equal(vg_auth_ticket_redeem(a, t1, strlen(t1), NOW + 29, &got, &reason), 0);
    assert_null(reason);
    assert_string_equal(got.user, "alice");
    assert_int_equal(got.admin, 1);
    assert_int_equal(got.num_channels, 2);
    assert_string_equal(got.channels[1], "alerts.>");
    vg_identity_dispose(&got);
    /* Single use. */
    assert_int_equal(vg_auth_ticket_redeem(a, t1, strlen(t1), NOW + 29, &got, &reason), VG_EAUTH);
    assert_string_equal(reason, "invalid ticket");
    assert_null(got.channels);
    /* Valid through 30 s, then expired (and gone). */
    assert_int_equal(vg_auth_ticket_redeem(a, t2, strlen(t2), NOW + 30.5, &got, &reason), VG_EAUTH);
    assert_string_equal(reason, "ticket expired");
    assert_int_equal(vg_auth_ticket_redeem(a, t2, strlen(t2), NOW + 30.5, &got, &reason), VG_EAUTH);
    assert_string_equal(reason, "invalid ticket");
    vg_identity_t anon;
    vg_identity_init_anonymous(&anon);
    assert_string_equal(anon.user, "anonymous");
    assert_int_equal(anon.anonymous, 1);
    assert_int_equal(vg_auth_ticket_issue(a, &anon, NOW, t3), 0);
    assert_int_equal(vg_auth_ticket_redeem(a, t3, strlen(t3), NOW + 30, &got, &reason), 0);
    assert_int_equal(got.anonymous, 1);
    assert_null(got.channels);
    vg_identity_dispose(&got);

    /* Garbage. */
    assert_int_equal(vg_auth_ticket_redeem(a, "", 0, NOW, &got, &reason), VG_EAUTH);
    assert_string_equal(reason, "invalid ticket");
    assert_int_equal(vg_auth_ticket_redeem(a, NULL, 0, NOW, &got, &reason), VG_EAUTH);
    char fake[64];
    memset(fake, 'A', 32);
    fake[32] = '\0';
    assert_int_equal(vg_auth_ticket_redeem(a, fake, 32, NOW, &got, &reason), VG_EAUTH);
    assert_string_equal(reason, "invalid ticket");
    fake[5] = '\n';
    assert_int_equal(vg_auth_ticket_redeem(a, fake, 32, NOW, &got, &reason), VG_EAUTH);

    /* An outstanding ticket is released by vg_auth_free (ASan checks the leak). */
    make_identity(&alice, "alice");
    assert_int_equal(vg_auth_ticket_issue(a, &alice, NOW, t1), 0);
    vg_identity_dispose(&alice);
    vg_auth_free(a);
}

static void test_tickets_purge_and_bound(void **state)
{
    (void)state;
    vg_auth_t *a = auth_secret(0);
    vg_identity_t id, got;
    vg_identity_init_anonymous(&id);
    const char *reason;

    /* Long-expired tickets are purged: "invalid ticket" rather than "ticket expired". */
    char old[64], t[64];
    assert_int_equal(vg_auth_ticket_issue(a, &id, NOW, old), 0);
    assert_int_equal(vg_auth_ticket_issue(a, &id, NOW + 3600, t), 0);
    assert_int_equal(vg_auth_ticket_redeem(a, old, strlen(old), NOW + 3600, &got, &reason),
                     VG_EAUTH);
    assert_string_equal(reason, "invalid ticket");

    /* At most 100000 live tickets: issuing more drops the oldest. */
    char first[64], last[64];
    assert_int_equal(vg_auth_ticket_issue(a, &id, NOW + 3600, first), 0);
    for (int i = 0; i < 100000; i++)
        assert_int_equal(vg_auth_ticket_issue(a, &id, NOW + 3600, last), 0);
    assert_int_equal(vg_auth_ticket_redeem(a, first, strlen(first), NOW + 3600, &got, &reason),
                     VG_EAUTH);
    assert_string_equal(reason, "invalid ticket");
    assert_int_equal(vg_auth_ticket_redeem(a, last, strlen(last), NOW + 3600, &got, &reason), 0);
    vg_identity_dispose(&got);
    vg_auth_free(a);
}

/* Threads race to redeem the same tickets while issuing their own: each shared ticket works
 * exactly once, and every thread's own tickets work. */
#define RACE_THREADS 4
#define RACE_SHARED  200

static struct {
    vg_auth_t *auth;
    char shared[RACE_SHARED][64];
    int wins[RACE_THREADS];
    int own_ok[RACE_THREADS];
} race;

static void *race_thread(void *arg)
{
    int me = (int)(intptr_t)arg;
    vg_identity_t id, got;
    vg_identity_init_anonymous(&id);
    const char *reason;
    for (int i = 0; i < RACE_SHARED; i++) {
        char own[64];
        if (vg_auth_ticket_issue(race.auth, &id, NOW, own) == 0 &&
            vg_auth_ticket_redeem(race.auth, own, strlen(own), NOW, &got, &reason) == 0) {
            race.own_ok[me]++;
            vg_identity_dispose(&got);
        }
        const char *t = race.shared[i];
        if (vg_auth_ticket_redeem(race.auth, t, strlen(t), NOW, &got, &reason) == 0) {
            race.wins[me]++;
            vg_identity_dispose(&got);
        }
    }
    return NULL;
}

static void test_tickets_threads(void **state)
{
    (void)state;
    memset(&race, 0, sizeof(race));
    race.auth = auth_secret(0);
    vg_identity_t id;
    vg_identity_init_anonymous(&id);
    for (int i = 0; i < RACE_SHARED; i++)
        assert_int_equal(vg_auth_ticket_issue(race.auth, &id, NOW, race.shared[i]), 0);
    pthread_t th[RACE_THREADS];
    for (int i = 0; i < RACE_THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, race_thread, (void *)(intptr_t)i), 0);
    int wins = 0;
    for (int i = 0; i < RACE_THREADS; i++) {
        pthread_join(th[i], NULL);
        wins += race.wins[i];
        assert_int_equal(race.own_ok[i], RACE_SHARED);
    }
    assert_int_equal(wins, RACE_SHARED);
    vg_auth_free(race.auth);
}

/* ---- minting -------------------------------------------------------------------------------- */

static void test_mint_roundtrip(void **state)
{
    (void)state;
    vg_auth_t *a = auth_secret(0);
    double now = (double)time(NULL);
    const char *algs[] = {"HS256", "HS384", "HS512", NULL};
    for (size_t i = 0; i < VG_ARRAY_SIZE(algs); i++) {
        char *t = vg_auth_mint_token(SECRET, algs[i], "alice", 60, 1, "cameras.*, alerts.>,stats");
        assert_non_null(t);
        vg_identity_t id;
        const char *reason;
        assert_int_equal(vg_auth_verify_token(a, t, strlen(t), now, &id, &reason), 0);
        assert_string_equal(id.user, "alice");
        assert_int_equal(id.admin, 1);
        assert_true(id.expires_at >= now + 59 && id.expires_at <= now + 61);
        assert_int_equal(id.num_channels, 3);
        assert_string_equal(id.channels[0], "cameras.*");
        assert_string_equal(id.channels[1], "alerts.>");
        assert_string_equal(id.channels[2], "stats");
        vg_identity_dispose(&id);
        /* An hour later it has expired. */
        assert_int_equal(vg_auth_verify_token(a, t, strlen(t), now + 3600, &id, &reason), VG_EAUTH);
        assert_string_equal(reason, "token expired");
        vg_free(t);
    }

    char *t = vg_auth_mint_token(SECRET, "HS256", "bob", 0, 0, NULL);
    vg_identity_t id;
    const char *reason;
    assert_int_equal(vg_auth_verify_token(a, t, strlen(t), now + 1e9, &id, &reason), 0);
    assert_true(id.expires_at == 0);
    assert_int_equal(id.admin, 0);
    assert_int_equal(id.has_channels, 0);
    vg_identity_dispose(&id);
    vg_free(t);

    t = vg_auth_mint_token(SECRET, "HS256", "carol", 10, 0, "");
    assert_int_equal(vg_auth_verify_token(a, t, strlen(t), now, &id, &reason), 0);
    assert_int_equal(id.has_channels, 1);
    assert_int_equal(id.num_channels, 0);
    vg_identity_dispose(&id);
    vg_free(t);

    /* A different secret does not verify. */
    t = vg_auth_mint_token("other", "HS256", "alice", 60, 0, NULL);
    assert_int_equal(vg_auth_verify_token(a, t, strlen(t), now, &id, &reason), VG_EAUTH);
    assert_string_equal(reason, "invalid signature");
    vg_free(t);

    assert_null(vg_auth_mint_token(SECRET, "RS256", "alice", 60, 0, NULL));
    assert_null(vg_auth_mint_token(SECRET, "none", "alice", 60, 0, NULL));
    assert_null(vg_auth_mint_token(NULL, "HS256", "alice", 60, 0, NULL));
    assert_null(vg_auth_mint_token("", "HS256", "alice", 60, 0, NULL));
    assert_null(vg_auth_mint_token(SECRET, "HS256", "", 60, 0, NULL));
    assert_null(vg_auth_mint_token(SECRET, "HS256", NULL, 60, 0, NULL));
    assert_null(vg_auth_mint_token(SECRET, "HS256", "alice", 60, 0, "a..b"));
    assert_null(vg_auth_mint_token(SECRET, "HS256", "alice", 60, 0, "ok, a b"));
    vg_auth_free(a);
}

/* ---- vigil token ---------------------------------------------------------------------------- */

static int run_token(const char *first, ...)
{
    char *argv[16];
    int argc = 0;
    va_list ap;
    va_start(ap, first);
    for (const char *s = first; s != NULL; s = va_arg(ap, const char *))
        argv[argc++] = (char *)s;
    va_end(ap);
    argv[argc] = NULL;
    return vg_cmd_token(argc, argv);
}

static void test_cmd_token(void **state)
{
    (void)state;
    unsetenv("VIGIL_JWT_SECRET");
    assert_int_equal(run_token("--sub", "alice", NULL), 2); /* no secret */
    assert_int_equal(run_token("--secret", "s", NULL), 2);  /* no sub */
    assert_int_equal(run_token("--secret", "s", "--sub", "a", "--alg", "RS256", NULL), 2);
    assert_int_equal(run_token("--secret", "s", "--sub", "a", "--ttl", "soon", NULL), 2);
    assert_int_equal(run_token("--secret", "s", "--sub", "a", "--ttl", "-5", NULL), 2);
    assert_int_equal(run_token("--secret", "s", "--sub", "a", "--channels", "a..b", NULL), 2);
    assert_int_equal(run_token("--secret", "s", "--sub", "a", "--bogus", NULL), 2);
    assert_int_equal(run_token("--secret", "s", "--sub", NULL), 2);
    assert_int_equal(run_token("--secret", "s", "--sub", "a", "--admin", "--ttl=0",
                               "--channels=x.*,y", "--alg=HS512", NULL),
                     0);
    setenv("VIGIL_JWT_SECRET", "from-env", 1);
    assert_int_equal(run_token("--sub", "alice", NULL), 0);
    unsetenv("VIGIL_JWT_SECRET");
    assert_int_equal(run_token("--help", NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hs256_ok),
        cmocka_unit_test(test_hs_bad_signature),
        cmocka_unit_test(test_alg_none),
        cmocka_unit_test(test_rs256),
        cmocka_unit_test(test_es256),
        cmocka_unit_test(test_secret_and_key),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_exp),
        cmocka_unit_test(test_nbf),
        cmocka_unit_test(test_iss_aud),
        cmocka_unit_test(test_sub),
        cmocka_unit_test(test_channels_claim),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_api_key),
        cmocka_unit_test(test_tickets),
        cmocka_unit_test(test_tickets_purge_and_bound),
        cmocka_unit_test(test_tickets_threads),
        cmocka_unit_test(test_mint_roundtrip),
        cmocka_unit_test(test_cmd_token),
    };
    return cmocka_run_group_tests(tests, setup_keys, teardown_keys);
}
