/*
 * Channel names and patterns (DESIGN.md section 2).
 *
 * A name is 1..VG_CHANNEL_MAX_LEN bytes of dot-separated, non-empty segments made of
 * [A-Za-z0-9_-:@] ("cameras.cam-1.events", "alerts.user.42", "stats").  A pattern is a name whose
 * segments may also be "*" (exactly one segment) and whose last segment may be ">" (one or more
 * further segments): "cameras.*" matches "cameras.cam-1" but not "cameras" or
 * "cameras.cam-1.events"; "cameras.>" matches both of the latter; ">" matches every name.
 */
#ifndef VG_PROTO_CHANNEL_H
#define VG_PROTO_CHANNEL_H

#include <stddef.h>

#define VG_CHANNEL_MAX_LEN 200

/* Returns NULL when `name` is a valid channel name, else a static message saying what is wrong
 * (e.g. "channel name has an empty segment"). */
const char *vg_channel_check_name(const char *name, size_t len);
/* Same for a pattern (a plain name is a valid pattern). */
const char *vg_channel_check_pattern(const char *pattern, size_t len);
/* Nonzero when the (valid) pattern contains a wildcard. */
int vg_channel_is_pattern(const char *pattern, size_t len);
/* Nonzero when the valid name matches the valid pattern. */
int vg_channel_match(const char *pattern, size_t plen, const char *name, size_t nlen);
/* Nonzero when every name that `pattern` can match is also matched by `allowed`: a user allowed
 * "cameras.>" may subscribe to "cameras.*" and "cameras.cam-1", but one allowed "cameras.*" may
 * not subscribe to "cameras.>". */
int vg_channel_covers(const char *allowed, size_t alen, const char *pattern, size_t plen);

/* A list of channel patterns (e.g. --default-channels), owned: vg_patterns_dispose frees it. */
typedef struct vg_patterns_s {
    char **items;
    size_t count;
} vg_patterns_t;

/* Patterns from a comma-separated list (NULL: none); validate them with vg_patterns_check. */
void vg_patterns_parse(vg_patterns_t *p, const char *csv);
void vg_patterns_dispose(vg_patterns_t *p);
/* NULL when every item is a valid pattern, else the first invalid one (*why says what is wrong). */
const char *vg_patterns_check(const vg_patterns_t *p, const char **why);
/* Nonzero when one of the patterns covers `pattern` (vg_channel_covers). */
int vg_patterns_covers(const vg_patterns_t *p, const char *pattern, size_t len);
/* Nonzero when one of the patterns matches the channel name. */
int vg_patterns_match(const vg_patterns_t *p, const char *channel, size_t len);

#endif
