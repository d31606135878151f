/*
 * Authentication: JWT verification (libjwt), publisher API keys, and single-use connect
 * tickets.
 *
 * A vg_auth_t is created once at start and then shared read-only by every worker thread; only
 * the ticket store changes, under its own mutex.  Tokens, tickets and API keys are secrets:
 * nothing here logs them.
 */
#ifndef VG_AUTH_AUTH_H
#define VG_AUTH_AUTH_H

#include <stddef.h>

typedef struct vg_auth_config_s {
    const char *jwt_secret;          /* HS256/384/512 shared secret, or NULL */
    const char *jwt_public_key_file; /* PEM file: RSA (RS256) or EC P-256 (ES256), or NULL */
    double leeway;                   /* seconds of clock skew allowed for exp and nbf */
    const char *issuer;              /* required "iss" when set */
    const char *audience;            /* required in "aud" (string or array) when set */
    const char *api_key;             /* publishers' key, or NULL */
    int allow_anonymous;             /* token-less clients become user "anonymous" */
} vg_auth_config_t;

typedef struct vg_auth_s vg_auth_t;

#define VG_AUTH_MAX_USER 128

/* Who a connection or request is. */
typedef struct vg_identity_s {
    char user[VG_AUTH_MAX_USER]; /* the token's "sub" ("anonymous" for anonymous clients) */
    int admin;                   /* "admin": true, or authenticated with the API key */
    int anonymous;
    double expires_at; /* the token's "exp" as a Unix time, 0 when it has none */
    /* The "channels" claim: patterns the user may subscribe to.  has_channels is 0 when the
     * claim is absent (the server's --default-channels apply then). */
    int has_channels;
    char **channels; /* heap strings, owned by the identity */
    size_t num_channels;
} vg_identity_t;

/* Loads key material.  Returns 0, or VG_ECONFIG with a message naming the option in err (e.g.
 * an unreadable or non-RSA/EC --jwt-public-key file). */
int vg_auth_new(vg_auth_t **out, const vg_auth_config_t *cfg, char *err, size_t errlen);
void vg_auth_free(vg_auth_t *a);

/* Nonzero when a JWT key is configured (otherwise only anonymous clients can connect). */
int vg_auth_has_jwt(const vg_auth_t *a);
int vg_auth_allow_anonymous(const vg_auth_t *a);

/* Verifies a compact JWT at time `now` (Unix seconds).  The token's "alg" must belong to the
 * configured key's family (HS* for a secret, RS256 for an RSA key, ES256 for an EC key): "none"
 * and algorithm confusion are refused.  Checks signature, exp and nbf (with leeway), iss and aud
 * when configured, and that "sub" is a non-empty string of at most VG_AUTH_MAX_USER-1 bytes.
 * Returns 0 and fills *id (release with vg_identity_dispose), or VG_EAUTH with *reason set to a
 * static, client-presentable text: "missing token", "malformed token", "algorithm not allowed",
 * "invalid signature", "token expired", "token not yet valid", "wrong issuer",
 * "wrong audience", "missing sub", "invalid channels claim". */
int vg_auth_verify_token(const vg_auth_t *a, const char *token, size_t len, double now,
                         vg_identity_t *id, const char **reason);

/* Compares a presented API key with the configured one in constant time.  Returns nonzero when
 * it matches (never when no key is configured). */
int vg_auth_check_api_key(const vg_auth_t *a, const char *key, size_t len);

/* Issues a single-use ticket valid 30 s for this identity; writes it (URL-safe, NUL-terminated,
 * at least 128 bits of randomness) into out.  Returns 0. */
int vg_auth_ticket_issue(vg_auth_t *a, const vg_identity_t *id, double now, char out[64]);
/* Redeems a ticket: returns 0 and fills *id (a copy), or VG_EAUTH with *reason "invalid ticket"
 * or "ticket expired".  A ticket works once. */
int vg_auth_ticket_redeem(vg_auth_t *a, const char *ticket, size_t len, double now,
                          vg_identity_t *id, const char **reason);

void vg_identity_init_anonymous(vg_identity_t *id);
void vg_identity_copy(vg_identity_t *dst, const vg_identity_t *src);
void vg_identity_dispose(vg_identity_t *id);

/* Mints a token (for `vigil token`, the demo and tests): alg HS256/HS384/HS512 with the secret;
 * claims sub, iat, exp = now + ttl (no exp when ttl <= 0), admin when set, channels from a
 * comma-separated list when not NULL.  Returns a heap string (vg_free) or NULL on error. */
char *vg_auth_mint_token(const char *secret, const char *alg, const char *sub, long ttl, int admin,
                         const char *channels_csv);

#endif
