/*
 * Channel names and patterns: validation, matching and pattern containment.
 *
 * Everything here works on {pointer, length} views segment by segment and allocates nothing:
 * matching runs once per publish per pattern in the worst case, and validation runs on every
 * subscribe and publish request.  Pattern lists (vg_patterns_t) are the one owned thing here.
 */
#include "proto/channel.h"

#include <string.h>

#include "util/alloc.h"

/* The messages a client sees in `invalid_channel` errors: one set worded for names (publish,
 * exact subscriptions), one for patterns (subscribe, the `channels` claim). */
typedef struct msgs_s {
    const char *empty;
    const char *too_long;
    const char *empty_segment;
    const char *bad_char;
    const char *wildcard;
    const char *gt_not_last;
    const char *star_mixed;
    const char *gt_mixed;
} msgs_t;

#define MAX_LEN_STR "200"
_Static_assert(VG_CHANNEL_MAX_LEN == 200, "update MAX_LEN_STR");

static const msgs_t name_msgs = {
    .empty = "channel name is empty",
    .too_long = "channel name is longer than " MAX_LEN_STR " bytes",
    .empty_segment = "channel name has an empty segment",
    .bad_char = "channel name may contain only letters, digits, '_', '-', ':', '@' and '.' "
                "between segments",
    .wildcard = "channel name may not contain the wildcards '*' or '>' (only a subscription "
                "pattern may)",
};

static const msgs_t pattern_msgs = {
    .empty = "channel pattern is empty",
    .too_long = "channel pattern is longer than " MAX_LEN_STR " bytes",
    .empty_segment = "channel pattern has an empty segment",
    .bad_char = "channel pattern may contain only letters, digits, '_', '-', ':', '@', '.' "
                "between segments, and the wildcard segments '*' and '>'",
    .gt_not_last = "channel pattern may have '>' only as its last segment",
    .star_mixed = "channel pattern has '*' mixed with other characters in a segment ('*' must be "
                  "a whole segment)",
    .gt_mixed = "channel pattern has '>' mixed with other characters in a segment ('>' must be "
                "a whole segment)",
};

static int is_name_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == ':' || c == '@';
}

/* One left-to-right pass; the first problem found is the one reported, so "a..*x" complains
 * about the empty segment, not the mixed wildcard. */
static const char *check(const char *s, size_t len, int allow_wildcards, const msgs_t *m)
{
    if (len == 0)
        return m->empty;
    if (len > VG_CHANNEL_MAX_LEN)
        return m->too_long;
    size_t seg = 0; /* start of the current segment */
    int gt = 0;     /* the current segment is ">" */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (i == seg)
                return m->empty_segment;
            if (gt)
                return m->gt_not_last;
            seg = i + 1;
        } else if (c == '*' || c == '>') {
            if (!allow_wildcards)
                return m->wildcard;
            /* A wildcard must be alone between dots (or the ends). */
            if (i != seg || (i + 1 < len && s[i + 1] != '.'))
                return c == '*' ? m->star_mixed : m->gt_mixed;
            gt = c == '>';
        } else if (!is_name_char(c)) {
            return m->bad_char;
        }
    }
    if (seg == len)
        return m->empty_segment; /* trailing dot */
    return NULL;
}

const char *vg_channel_check_name(const char *name, size_t len)
{
    return check(name, len, 0, &name_msgs);
}

const char *vg_channel_check_pattern(const char *pattern, size_t len)
{
    return check(pattern, len, 1, &pattern_msgs);
}

int vg_channel_is_pattern(const char *pattern, size_t len)
{
    /* In a valid pattern the wildcards are whole segments, so any occurrence is one. */
    for (size_t i = 0; i < len; i++)
        if (pattern[i] == '*' || pattern[i] == '>')
            return 1;
    return 0;
}

/* A segment view: [base, base + len); `last` is set when no '.' follows it. */
typedef struct seg_s {
    const char *base;
    size_t len;
    int last;
} seg_t;

static seg_t seg_at(const char *p, const char *end)
{
    const char *dot = memchr(p, '.', (size_t)(end - p));
    seg_t s = {p, (size_t)((dot != NULL ? dot : end) - p), dot == NULL};
    return s;
}

static int seg_is(seg_t s, char wildcard)
{
    return s.len == 1 && s.base[0] == wildcard;
}

/*
 * Both walks below advance one segment of each string per step.  At the top of each step both
 * strings still have a segment at the cursor; a step ends the walk as soon as either string
 * runs out, so they agree exactly when they run out together.
 */
int vg_channel_match(const char *pattern, size_t plen, const char *name, size_t nlen)
{
    if (plen == 0 || nlen == 0)
        return 0;
    const char *p = pattern, *pend = pattern + plen, *n = name, *nend = name + nlen;
    for (;;) {
        seg_t ps = seg_at(p, pend), ns = seg_at(n, nend);
        if (seg_is(ps, '>'))
            return 1; /* the name has at least this segment left */
        if (!seg_is(ps, '*') && (ps.len != ns.len || memcmp(ps.base, ns.base, ps.len) != 0))
            return 0;
        if (ps.last || ns.last)
            return ps.last && ns.last;
        p += ps.len + 1;
        n += ns.len + 1;
    }
}

/*
 * Containment, segment by segment (both are valid patterns, so each matches some name):
 *   allowed ">"      covers whatever is left of the pattern, which is at least one segment;
 *   pattern ">"      stands for any number of segments, which no finite run of literals and
 *                    "*" covers, and an allowed ">" was handled by the line above;
 *   allowed "*"      covers a literal or "*";
 *   allowed literal  covers only the same literal ("*" could be another one).
 * Lengths must then agree, as in matching.  Each rule is both necessary and sufficient, since a
 * "*" or ">" in the pattern can always be instantiated with a literal the allowed pattern does
 * not mention.
 */
int vg_channel_covers(const char *allowed, size_t alen, const char *pattern, size_t plen)
{
    if (alen == 0 || plen == 0)
        return 0;
    const char *a = allowed, *aend = allowed + alen, *p = pattern, *pend = pattern + plen;
    for (;;) {
        seg_t as = seg_at(a, aend), ps = seg_at(p, pend);
        if (seg_is(as, '>'))
            return 1;
        if (seg_is(ps, '>'))
            return 0;
        if (!seg_is(as, '*')) {
            if (seg_is(ps, '*'))
                return 0;
            if (as.len != ps.len || memcmp(as.base, ps.base, as.len) != 0)
                return 0;
        }
        if (as.last || ps.last)
            return as.last && ps.last;
        a += as.len + 1;
        p += ps.len + 1;
    }
}

void vg_patterns_parse(vg_patterns_t *p, const char *csv)
{
    p->items = NULL;
    p->count = 0;
    if (csv == NULL)
        return;
    char *copy = vg_strdup(csv), *save = NULL;
    for (char *tok = strtok_r(copy, ", ", &save); tok != NULL; tok = strtok_r(NULL, ", ", &save)) {
        p->items = vg_realloc(p->items, (p->count + 1) * sizeof(*p->items));
        p->items[p->count++] = vg_strdup(tok);
    }
    vg_free(copy);
}

void vg_patterns_dispose(vg_patterns_t *p)
{
    for (size_t i = 0; i < p->count; i++)
        vg_free(p->items[i]);
    vg_free(p->items);
    p->items = NULL;
    p->count = 0;
}

int vg_patterns_covers(const vg_patterns_t *p, const char *pattern, size_t len)
{
    for (size_t i = 0; i < p->count; i++)
        if (vg_channel_covers(p->items[i], strlen(p->items[i]), pattern, len))
            return 1;
    return 0;
}

int vg_patterns_match(const vg_patterns_t *p, const char *channel, size_t len)
{
    for (size_t i = 0; i < p->count; i++)
        if (vg_channel_match(p->items[i], strlen(p->items[i]), channel, len))
            return 1;
    return 0;
}

const char *vg_patterns_check(const vg_patterns_t *p, const char **why)
{
    for (size_t i = 0; i < p->count; i++) {
        *why = vg_channel_check_pattern(p->items[i], strlen(p->items[i]));
        if (*why != NULL)
            return p->items[i];
    }
    return NULL;
}
