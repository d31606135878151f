/*
 * Authentication: JWT verification, the publishers' API key, and single-use connect tickets.
 *
 * Tokens are checked in two stages.  We first take the token apart ourselves: exactly three
 * strict base64url segments, a JSON object header and payload, and an "alg" that belongs to a
 * key family we were configured with.  Only then is libjwt asked to check the signature, and it
 * is handed the key of that family alone.  Choosing the key from the header before libjwt sees
 * the token is what makes "alg":"none" and the classic confusion (an HS256 token whose HMAC key
 * is our RSA public key PEM) fail: libjwt itself would happily treat any key bytes as an HMAC
 * secret.  The claims are then read from our own parse of the payload, the exact bytes whose
 * encoding the signature covers.
 */
#include "auth/auth.h"

#include <errno.h>
#include <jansson.h>
#include <jwt.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/core_names.h>
#include <openssl/decoder.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "proto/channel.h"
#include "util/alloc.h"
#include "util/base64.h"
#include "util/error.h"
#include "util/log.h"

#define MAX_TOKEN      (8 * 1024)  /* longer tokens are refused as malformed */
#define MAX_KEY_FILE   (64 * 1024) /* a PEM public key or certificate is a few KiB */
#define MIN_RSA_BITS   2048        /* NIST SP 800-131A */
#define TICKET_TTL     30.0        /* seconds */
#define TICKET_RAW     24          /* random bytes per ticket: 192 bits */
#define TICKET_LEN     32          /* base64url characters for TICKET_RAW bytes */
#define TICKET_MAX     100000      /* live tickets kept at most; the oldest go first */
#define TICKET_GRACE   300.0       /* expired tickets answer "ticket expired" this long */
#define TICKET_BUCKETS 8192        /* power of two */

enum { FAMILY_HS = 1, FAMILY_RS = 2, FAMILY_ES = 4 };

typedef struct ticket_s ticket_t;
struct ticket_s {
    ticket_t *hnext;                            /* next in the hash bucket */
    ticket_t *older, *newer;                    /* issue order */
    unsigned char digest[SHA256_DIGEST_LENGTH]; /* of the ticket text, never the text itself */
    double expires_at;
    vg_identity_t id;
};

struct vg_auth_s {
    int families; /* FAMILY_* that tokens may use */
    unsigned char *secret;
    size_t secret_len;
    char *pem; /* the --jwt-public-key, re-encoded as a SubjectPublicKeyInfo PEM for libjwt */
    size_t pem_len;
    double leeway;
    char *issuer, *audience;
    int has_api_key;
    unsigned char api_key_digest[SHA256_DIGEST_LENGTH];
    int allow_anonymous;

    /* Tickets: a hash table keyed by SHA-256 of the ticket (so lookup timing says nothing about
     * the ticket text), plus a list in issue order so expired ones are purged from one end. */
    pthread_mutex_t lock;
    ticket_t **buckets;
    ticket_t *oldest, *newest;
    size_t num_tickets;
};

/* ---- identities ----------------------------------------------------------------------------- */

void vg_identity_init_anonymous(vg_identity_t *id)
{
    memset(id, 0, sizeof(*id));
    strcpy(id->user, "anonymous");
    id->anonymous = 1;
}

/* dst is treated as uninitialised storage: whatever it held is overwritten, not released. */
void vg_identity_copy(vg_identity_t *dst, const vg_identity_t *src)
{
    *dst = *src;
    dst->channels = NULL;
    if (src->num_channels > 0) {
        dst->channels = vg_malloc(src->num_channels * sizeof(*dst->channels));
        for (size_t i = 0; i < src->num_channels; i++)
            dst->channels[i] = vg_strdup(src->channels[i]);
    }
}

/* Leaves the identity zeroed, so disposing twice is harmless. */
void vg_identity_dispose(vg_identity_t *id)
{
    if (id == NULL)
        return;
    for (size_t i = 0; i < id->num_channels; i++)
        vg_free(id->channels[i]);
    vg_free(id->channels);
    memset(id, 0, sizeof(*id));
}

/* ---- setup ---------------------------------------------------------------------------------- */

/* Reads a public key from PEM text: a "PUBLIC KEY" (SubjectPublicKeyInfo), an "RSA PUBLIC KEY"
 * (PKCS#1), or an X.509 certificate, whose key is taken.  Returns NULL when none parses. */
static EVP_PKEY *load_public_key(const unsigned char *data, size_t len)
{
    EVP_PKEY *pkey = NULL;
    OSSL_DECODER_CTX *dctx =
        OSSL_DECODER_CTX_new_for_pkey(&pkey, "PEM", NULL, NULL, EVP_PKEY_PUBLIC_KEY, NULL, NULL);
    if (dctx != NULL) {
        const unsigned char *p = data;
        size_t left = len;
        if (!OSSL_DECODER_from_data(dctx, &p, &left))
            pkey = NULL;
        OSSL_DECODER_CTX_free(dctx);
    }
    if (pkey == NULL) {
        BIO *bio = BIO_new_mem_buf(data, (int)len);
        X509 *cert = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
        if (cert != NULL)
            pkey = X509_get_pubkey(cert);
        X509_free(cert);
        BIO_free(bio);
    }
    ERR_clear_error(); /* the decoders that did not match queued errors */
    return pkey;
}

/* Loads --jwt-public-key, checks that it is an RSA (>= 2048 bits) or EC P-256 key, and keeps it
 * re-encoded as SubjectPublicKeyInfo PEM, the one form libjwt 1.10 reads. */
static int load_key_file(vg_auth_t *a, const char *path, char *err, size_t errlen)
{
    int ret = VG_ECONFIG;
    unsigned char *data = NULL;
    EVP_PKEY *pkey = NULL;
    BIO *out = NULL;

    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "--jwt-public-key: cannot open %s: %s", path, strerror(errno));
        goto Exit;
    }
    data = vg_malloc(MAX_KEY_FILE + 1);
    size_t len = fread(data, 1, MAX_KEY_FILE + 1, f);
    int rerr = ferror(f);
    fclose(f);
    if (rerr) {
        snprintf(err, errlen, "--jwt-public-key: cannot read %s", path);
        goto Exit;
    }
    if (len > MAX_KEY_FILE) {
        snprintf(err, errlen, "--jwt-public-key: %s is larger than %d bytes", path, MAX_KEY_FILE);
        goto Exit;
    }
    if ((pkey = load_public_key(data, len)) == NULL) {
        snprintf(err, errlen,
                 "--jwt-public-key: %s holds no PEM public key or certificate (a private key is "
                 "not accepted)",
                 path);
        goto Exit;
    }

    int type = EVP_PKEY_get_base_id(pkey);
    if (type == EVP_PKEY_RSA) {
        int bits = EVP_PKEY_get_bits(pkey);
        if (bits < MIN_RSA_BITS) {
            snprintf(err, errlen, "--jwt-public-key: %s is a %d-bit RSA key; at least %d needed",
                     path, bits, MIN_RSA_BITS);
            goto Exit;
        }
        a->families |= FAMILY_RS;
    } else if (type == EVP_PKEY_EC) {
        char group[64] = "";
        size_t glen = 0;
        if (!EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                            &glen) ||
            (strcmp(group, "prime256v1") != 0 && strcmp(group, "P-256") != 0)) {
            snprintf(err, errlen,
                     "--jwt-public-key: %s is an EC key on curve %s; only P-256 (ES256) is "
                     "supported",
                     path, group[0] ? group : "(unknown)");
            goto Exit;
        }
        a->families |= FAMILY_ES;
    } else {
        const char *name = OBJ_nid2sn(type);
        snprintf(err, errlen,
                 "--jwt-public-key: %s holds a %s key; expected RSA (RS256) or EC P-256 (ES256)",
                 path, name ? name : "unsupported");
        goto Exit;
    }

    char *pem;
    out = BIO_new(BIO_s_mem());
    long pem_len;
    if (out == NULL || !PEM_write_bio_PUBKEY(out, pkey) ||
        (pem_len = BIO_get_mem_data(out, &pem)) <= 0) {
        snprintf(err, errlen, "--jwt-public-key: cannot re-encode the key from %s", path);
        goto Exit;
    }
    a->pem = vg_strndup(pem, (size_t)pem_len);
    a->pem_len = (size_t)pem_len;
    ret = 0;

Exit:
    BIO_free(out);
    EVP_PKEY_free(pkey);
    vg_free(data);
    return ret;
}

static int nonempty(const char *s, const char *option, char *err, size_t errlen)
{
    if (s != NULL && s[0] == '\0') {
        snprintf(err, errlen, "--%s: must not be empty", option);
        return 0;
    }
    return 1;
}

int vg_auth_new(vg_auth_t **out, const vg_auth_config_t *cfg, char *err, size_t errlen)
{
    *out = NULL;
    /* An empty value is almost always an unset environment variable; starting anyway would make
     * an empty HMAC secret or API key, so refuse. */
    if (!nonempty(cfg->jwt_secret, "jwt-secret", err, errlen) ||
        !nonempty(cfg->api_key, "api-key", err, errlen) ||
        !nonempty(cfg->issuer, "jwt-issuer", err, errlen) ||
        !nonempty(cfg->audience, "jwt-audience", err, errlen))
        return VG_ECONFIG;

    vg_auth_t *a = vg_calloc(1, sizeof(*a));
    if (cfg->jwt_secret != NULL) {
        a->secret_len = strlen(cfg->jwt_secret);
        a->secret = (unsigned char *)vg_strdup(cfg->jwt_secret);
        a->families |= FAMILY_HS;
    }
    if (cfg->jwt_public_key_file != NULL) {
        int ret = load_key_file(a, cfg->jwt_public_key_file, err, errlen);
        if (ret != 0) {
            vg_auth_free(a);
            return ret;
        }
    }
    a->leeway = cfg->leeway > 0 ? cfg->leeway : 0;
    a->issuer = cfg->issuer ? vg_strdup(cfg->issuer) : NULL;
    a->audience = cfg->audience ? vg_strdup(cfg->audience) : NULL;
    if (cfg->api_key != NULL) {
        SHA256((const unsigned char *)cfg->api_key, strlen(cfg->api_key), a->api_key_digest);
        a->has_api_key = 1;
    }
    a->allow_anonymous = cfg->allow_anonymous != 0;
    pthread_mutex_init(&a->lock, NULL);
    a->buckets = vg_calloc(TICKET_BUCKETS, sizeof(*a->buckets));
    *out = a;
    return 0;
}

void vg_auth_free(vg_auth_t *a)
{
    if (a == NULL)
        return;
    if (a->buckets != NULL) {
        for (ticket_t *t = a->oldest, *next; t != NULL; t = next) {
            next = t->newer;
            vg_identity_dispose(&t->id);
            OPENSSL_cleanse(t, sizeof(*t));
            vg_free(t);
        }
        vg_free(a->buckets);
        pthread_mutex_destroy(&a->lock);
    }
    if (a->secret != NULL) {
        OPENSSL_cleanse(a->secret, a->secret_len);
        vg_free(a->secret);
    }
    vg_free(a->pem);
    vg_free(a->issuer);
    vg_free(a->audience);
    OPENSSL_cleanse(a, sizeof(*a));
    vg_free(a);
}

int vg_auth_has_jwt(const vg_auth_t *a)
{
    return a->families != 0;
}

int vg_auth_allow_anonymous(const vg_auth_t *a)
{
    return a->allow_anonymous;
}

/* ---- tokens --------------------------------------------------------------------------------- */

static const char R_MISSING[] = "missing token", R_MALFORMED[] = "malformed token",
                  R_ALG[] = "algorithm not allowed", R_SIGNATURE[] = "invalid signature",
                  R_EXPIRED[] = "token expired", R_NBF[] = "token not yet valid",
                  R_ISSUER[] = "wrong issuer", R_AUDIENCE[] = "wrong audience",
                  R_SUB[] = "missing sub", R_CHANNELS[] = "invalid channels claim",
                  R_TICKET[] = "invalid ticket", R_TICKET_EXPIRED[] = "ticket expired";

/* Maps a header "alg" to the libjwt algorithm and key family; JWT_ALG_INVAL for everything we
 * never accept ("none", RS384, PS256, ES384, ...). */
static jwt_alg_t parse_alg(const char *name, int *family)
{
    static const struct {
        const char *name;
        jwt_alg_t alg;
        int family;
    } algs[] = {{"HS256", JWT_ALG_HS256, FAMILY_HS},
                {"HS384", JWT_ALG_HS384, FAMILY_HS},
                {"HS512", JWT_ALG_HS512, FAMILY_HS},
                {"RS256", JWT_ALG_RS256, FAMILY_RS},
                {"ES256", JWT_ALG_ES256, FAMILY_ES}};
    for (size_t i = 0; i < VG_ARRAY_SIZE(algs); i++) {
        if (strcmp(name, algs[i].name) == 0) {
            *family = algs[i].family;
            return algs[i].alg;
        }
    }
    *family = 0;
    return JWT_ALG_INVAL;
}

/* Decodes one base64url segment holding a JSON object.  Duplicate keys are refused so that no
 * two parsers can disagree about a claim. */
static json_t *decode_json_segment(const char *s, size_t n, unsigned char *scratch)
{
    long len = vg_base64_decode(s, n, scratch, VG_BASE64_URL);
    if (len <= 0)
        return NULL;
    json_t *js = json_loadb((const char *)scratch, (size_t)len, JSON_REJECT_DUPLICATES, NULL);
    if (js != NULL && !json_is_object(js)) {
        json_decref(js);
        js = NULL;
    }
    return js;
}

/* Reads a NumericDate claim: 1 and *value when present, 0 when absent, -1 when not a number. */
static int get_time_claim(json_t *payload, const char *name, double *value)
{
    json_t *v = json_object_get(payload, name);
    if (v == NULL)
        return 0;
    if (!json_is_number(v))
        return -1;
    *value = json_number_value(v);
    return 1;
}

static int audience_matches(json_t *aud, const char *want)
{
    if (json_is_string(aud))
        return strcmp(json_string_value(aud), want) == 0;
    if (json_is_array(aud)) {
        size_t i;
        json_t *v;
        json_array_foreach(aud, i, v)
        {
            if (json_is_string(v) && strcmp(json_string_value(v), want) == 0)
                return 1;
        }
    }
    return 0;
}

/* Fills id->channels from the "channels" claim; returns 0, or -1 if it is not an array of
 * valid patterns. */
static int read_channels(json_t *claim, vg_identity_t *id)
{
    if (!json_is_array(claim))
        return -1;
    size_t n = json_array_size(claim);
    id->has_channels = 1;
    if (n == 0)
        return 0;
    id->channels = vg_calloc(n, sizeof(*id->channels));
    size_t i;
    json_t *v;
    json_array_foreach(claim, i, v)
    {
        if (!json_is_string(v))
            return -1;
        const char *s = json_string_value(v);
        size_t len = json_string_length(v);
        if (vg_channel_check_pattern(s, len) != NULL)
            return -1;
        id->channels[i] = vg_strndup(s, len);
        id->num_channels = i + 1;
    }
    return 0;
}

static const char *check_claims(const vg_auth_t *a, json_t *payload, double now, vg_identity_t *id)
{
    double exp = 0, nbf = 0;
    int has_exp = get_time_claim(payload, "exp", &exp);
    int has_nbf = get_time_claim(payload, "nbf", &nbf);
    if (has_exp < 0 || has_nbf < 0)
        return R_MALFORMED;
    if (has_exp && now > exp + a->leeway)
        return R_EXPIRED;
    if (has_nbf && now + a->leeway < nbf)
        return R_NBF;

    if (a->issuer != NULL) {
        json_t *iss = json_object_get(payload, "iss");
        if (!json_is_string(iss) || strcmp(json_string_value(iss), a->issuer) != 0)
            return R_ISSUER;
    }
    if (a->audience != NULL && !audience_matches(json_object_get(payload, "aud"), a->audience))
        return R_AUDIENCE;

    json_t *sub = json_object_get(payload, "sub");
    if (!json_is_string(sub) || json_string_length(sub) == 0 ||
        json_string_length(sub) >= VG_AUTH_MAX_USER)
        return R_SUB;
    memcpy(id->user, json_string_value(sub), json_string_length(sub) + 1);
    id->admin = json_is_true(json_object_get(payload, "admin"));
    id->expires_at = has_exp ? exp : 0;

    json_t *channels = json_object_get(payload, "channels");
    if (channels != NULL && read_channels(channels, id) != 0)
        return R_CHANNELS;
    return NULL;
}

/* Checks the signature with libjwt, giving it only the key of the header's family. */
static int signature_ok(const vg_auth_t *a, const char *token, jwt_alg_t alg, int family)
{
    const unsigned char *key;
    int key_len;
    if (family == FAMILY_HS) {
        key = a->secret;
        key_len = (int)a->secret_len;
    } else {
        key = (const unsigned char *)a->pem;
        key_len = (int)a->pem_len;
    }
    jwt_t *jwt = NULL;
    int ok = jwt_decode(&jwt, token, key, key_len) == 0 && jwt != NULL && jwt_get_alg(jwt) == alg;
    jwt_free(jwt);
    /* libjwt leaves OpenSSL's per-thread error queue filled on failure; this thread may do TLS
     * or other OpenSSL work next, which must not see those errors. */
    ERR_clear_error();
    return ok;
}

int vg_auth_verify_token(const vg_auth_t *a, const char *token, size_t len, double now,
                         vg_identity_t *id, const char **reason)
{
    const char *why = NULL;
    char *buf = NULL;
    json_t *header = NULL, *payload = NULL;

    memset(id, 0, sizeof(*id));
    if (token == NULL || len == 0) {
        why = R_MISSING;
        goto Exit;
    }
    if (len > MAX_TOKEN) {
        why = R_MALFORMED;
        goto Exit;
    }

    /* One allocation: the NUL-terminated token libjwt wants, then room to decode a segment. */
    buf = vg_malloc(len + 1 + len * 3 / 4 + 1);
    memcpy(buf, token, len);
    buf[len] = '\0';
    unsigned char *scratch = (unsigned char *)buf + len + 1;

    const char *dot1 = memchr(buf, '.', len);
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - buf)) : NULL;
    if (dot2 == NULL || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - buf)) != NULL) {
        why = R_MALFORMED;
        goto Exit;
    }
    size_t hlen = (size_t)(dot1 - buf), plen = (size_t)(dot2 - dot1 - 1);
    size_t slen = len - (size_t)(dot2 + 1 - buf);
    if ((header = decode_json_segment(buf, hlen, scratch)) == NULL) {
        why = R_MALFORMED;
        goto Exit;
    }

    json_t *alg_v = json_object_get(header, "alg");
    if (!json_is_string(alg_v)) {
        why = R_MALFORMED;
        goto Exit;
    }
    int family;
    jwt_alg_t alg = parse_alg(json_string_value(alg_v), &family);
    if (alg == JWT_ALG_INVAL || (a->families & family) == 0) {
        why = R_ALG;
        goto Exit;
    }
    /* libjwt refuses a "typ" other than JWT, and we understand no critical extension. */
    json_t *typ = json_object_get(header, "typ");
    if ((typ != NULL && (!json_is_string(typ) || strcasecmp(json_string_value(typ), "JWT"))) ||
        json_object_get(header, "crit") != NULL) {
        why = R_MALFORMED;
        goto Exit;
    }
    if ((payload = decode_json_segment(dot1 + 1, plen, scratch)) == NULL || slen == 0 ||
        vg_base64_decode(dot2 + 1, slen, scratch, VG_BASE64_URL) <= 0) {
        why = R_MALFORMED;
        goto Exit;
    }

    if (!signature_ok(a, buf, alg, family)) {
        why = R_SIGNATURE;
        goto Exit;
    }
    why = check_claims(a, payload, now, id);

Exit:
    json_decref(header);
    json_decref(payload);
    if (buf != NULL) {
        OPENSSL_cleanse(buf, len);
        vg_free(buf);
    }
    if (why != NULL)
        vg_identity_dispose(id);
    if (reason != NULL)
        *reason = why;
    return why == NULL ? 0 : VG_EAUTH;
}

/* ---- API key -------------------------------------------------------------------------------- */

/* Comparing digests makes the time independent of both the key's content and its length. */
int vg_auth_check_api_key(const vg_auth_t *a, const char *key, size_t len)
{
    if (!a->has_api_key || key == NULL)
        return 0;
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)key, len, digest);
    return CRYPTO_memcmp(digest, a->api_key_digest, sizeof(digest)) == 0;
}

/* ---- tickets -------------------------------------------------------------------------------- */

static ticket_t **bucket_of(vg_auth_t *a, const unsigned char *digest)
{
    uint32_t h;
    memcpy(&h, digest, sizeof(h));
    return &a->buckets[h & (TICKET_BUCKETS - 1)];
}

/* Unlinks t from its bucket and the issue-order list; the caller owns it afterwards. */
static void ticket_unlink(vg_auth_t *a, ticket_t *t)
{
    ticket_t **pp = bucket_of(a, t->digest);
    while (*pp != t)
        pp = &(*pp)->hnext;
    *pp = t->hnext;
    if (t->older)
        t->older->newer = t->newer;
    else
        a->oldest = t->newer;
    if (t->newer)
        t->newer->older = t->older;
    else
        a->newest = t->older;
    a->num_tickets--;
}

static void ticket_destroy(ticket_t *t)
{
    vg_identity_dispose(&t->id);
    OPENSSL_cleanse(t, sizeof(*t));
    vg_free(t);
}

/* Every ticket has the same lifetime, so the issue-order list is also expiry order (unless the
 * clock stepped back, which only delays a purge).  Expired tickets are kept TICKET_GRACE seconds
 * so that a late client learns "ticket expired" rather than "invalid ticket". */
static void tickets_purge(vg_auth_t *a, double now)
{
    while (a->oldest != NULL && a->oldest->expires_at + TICKET_GRACE < now) {
        ticket_t *t = a->oldest;
        ticket_unlink(a, t);
        ticket_destroy(t);
    }
}

int vg_auth_ticket_issue(vg_auth_t *a, const vg_identity_t *id, double now, char out[64])
{
    unsigned char raw[TICKET_RAW];
    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        /* Without a working CSPRNG no ticket may be issued. */
        vg_warning("auth: RAND_bytes failed; cannot issue a ticket");
        out[0] = '\0';
        return VG_EINVAL;
    }
    vg_base64_encode(raw, sizeof(raw), out, VG_BASE64_URL);
    OPENSSL_cleanse(raw, sizeof(raw));

    ticket_t *t = vg_calloc(1, sizeof(*t));
    SHA256((const unsigned char *)out, TICKET_LEN, t->digest);
    t->expires_at = now + TICKET_TTL;
    vg_identity_copy(&t->id, id);

    pthread_mutex_lock(&a->lock);
    tickets_purge(a, now);
    if (a->num_tickets >= TICKET_MAX) {
        ticket_t *old = a->oldest;
        ticket_unlink(a, old);
        ticket_destroy(old);
    }
    ticket_t **b = bucket_of(a, t->digest);
    t->hnext = *b;
    *b = t;
    t->older = a->newest;
    if (a->newest)
        a->newest->newer = t;
    else
        a->oldest = t;
    a->newest = t;
    a->num_tickets++;
    pthread_mutex_unlock(&a->lock);
    return 0;
}

static const char *redeem(vg_auth_t *a, const char *ticket, size_t len, double now,
                          vg_identity_t *id)
{
    if (ticket == NULL || len != TICKET_LEN)
        return R_TICKET;
    uint8_t raw[TICKET_LEN];
    if (vg_base64_decode(ticket, len, raw, VG_BASE64_URL) < 0) /* only its alphabet */
        return R_TICKET;
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)ticket, len, digest);

    pthread_mutex_lock(&a->lock);
    ticket_t *t = *bucket_of(a, digest);
    while (t != NULL && CRYPTO_memcmp(t->digest, digest, sizeof(digest)) != 0)
        t = t->hnext;
    if (t != NULL)
        ticket_unlink(a, t); /* single use, whatever happens next */
    tickets_purge(a, now);
    pthread_mutex_unlock(&a->lock);

    if (t == NULL)
        return R_TICKET;
    if (now > t->expires_at) {
        ticket_destroy(t);
        return R_TICKET_EXPIRED;
    }
    *id = t->id; /* the identity moves out of the ticket */
    memset(&t->id, 0, sizeof(t->id));
    ticket_destroy(t);
    return NULL;
}

int vg_auth_ticket_redeem(vg_auth_t *a, const char *ticket, size_t len, double now,
                          vg_identity_t *id, const char **reason)
{
    memset(id, 0, sizeof(*id));
    const char *why = redeem(a, ticket, len, now, id);
    if (reason != NULL)
        *reason = why;
    return why == NULL ? 0 : VG_EAUTH;
}

/* ---- minting -------------------------------------------------------------------------------- */

/* Builds {"channels":[...]} from "a.*, b"; NULL if an entry is not a valid pattern. */
static char *channels_json(const char *csv)
{
    json_t *arr = json_array();
    char *ret = NULL;
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
        if (e > s) {
            if (vg_channel_check_pattern(s, (size_t)(e - s)) != NULL)
                goto Exit;
            json_array_append_new(arr, json_stringn(s, (size_t)(e - s)));
        }
        if (*end == '\0')
            break;
        p = end + 1;
    }
    json_t *obj = json_pack("{s:O}", "channels", arr);
    if (obj != NULL) {
        ret = json_dumps(obj, JSON_COMPACT);
        json_decref(obj);
    }
Exit:
    json_decref(arr);
    return ret;
}

char *vg_auth_mint_token(const char *secret, const char *alg, const char *sub, long ttl, int admin,
                         const char *channels_csv)
{
    int family;
    jwt_alg_t a = parse_alg(alg ? alg : "HS256", &family);
    if (family != FAMILY_HS || secret == NULL || secret[0] == '\0' || sub == NULL ||
        sub[0] == '\0' || strlen(sub) >= VG_AUTH_MAX_USER || strlen(secret) > INT_MAX)
        return NULL;

    char *ret = NULL, *chans = NULL, *enc = NULL;
    jwt_t *jwt = NULL;
    if (channels_csv != NULL && (chans = channels_json(channels_csv)) == NULL)
        goto Exit;
    long now = (long)time(NULL);
    if (jwt_new(&jwt) != 0 ||
        jwt_set_alg(jwt, a, (const unsigned char *)secret, (int)strlen(secret)) != 0 ||
        jwt_add_grant(jwt, "sub", sub) != 0 || jwt_add_grant_int(jwt, "iat", now) != 0 ||
        (ttl > 0 && jwt_add_grant_int(jwt, "exp", now + ttl) != 0) ||
        (admin && jwt_add_grant_bool(jwt, "admin", 1) != 0) ||
        (chans != NULL && jwt_add_grants_json(jwt, chans) != 0))
        goto Exit;
    if ((enc = jwt_encode_str(jwt)) != NULL)
        ret = vg_strdup(enc);

Exit:
    free(enc); /* libjwt allocates with malloc */
    free(chans);
    jwt_free(jwt);
    return ret;
}
