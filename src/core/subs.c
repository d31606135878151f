/*
 * The per-worker subscription index.
 *
 * Layout:
 *  - every subscription is one entry: a single allocation holding the links and a copy of the
 *    pattern.  It sits on two doubly linked lists at once: its subscriber's (in the order added,
 *    for vg_subscriber_each and remove_all) and the index list of everyone subscribed to the same
 *    name or pattern (for delivery).  Either unlink is O(1).
 *  - exact names: a chained hash table of nodes, one per distinct name, each owning the index
 *    list of that name.  The name itself is read from the list's first entry, so a node costs
 *    32 bytes and is freed with its last entry.
 *  - patterns: a tree with one node per distinct pattern prefix.  A node's "*" child is a
 *    pointer; its literal children live in one hash table shared by the whole tree, keyed by
 *    (parent, segment), which avoids a table per node and a sorted array's O(n) inserts.  A
 *    pattern ending in ">" is listed on the node of its prefix (`gt`), any other on the node of
 *    its last segment (`term`).  Nodes left with no entries and no children are freed at once,
 *    so subscribe/unsubscribe churn never grows the index.
 *
 * Matching a channel of k segments costs one hash probe for the exact name plus a walk of the
 * tree that follows, at each node, the literal child for the next segment and the "*" child:
 * each node is visited at most once, so the walk is bounded by both 2^k and the tree's size.
 *
 * Duplicate checks (add, remove) scan whichever is shorter: the subscriber's own list or the
 * index list of that name, so neither a subscriber with thousands of channels nor a channel
 * with thousands of subscribers makes them slow.
 */
#include "core/subs.h"

#include <assert.h>
#include <string.h>

#include <uv.h>

#include "proto/channel.h"
#include "util/alloc.h"
#include "util/error.h"

enum { KIND_EXACT, KIND_TERM, KIND_GT };

typedef struct elist_s {
    vg_sub_entry_t *head;
    size_t count;
} elist_t;

struct vg_sub_entry_s {
    vg_subscriber_t *sub;
    vg_sub_entry_t *snext, *sprev; /* subscriber's list; the head's sprev is the tail */
    vg_sub_entry_t *inext, *iprev; /* index list `list` (NULL-terminated both ways) */
    elist_t *list;                 /* the index list this entry is on: identifies the node */
    uint16_t len;
    uint8_t kind;
    char pattern[]; /* len bytes and a NUL */
};

typedef struct hlink_s {
    struct hlink_s *next;
    uint64_t hash;
} hlink_t;

/* Chained, power-of-two.  buckets is NULL exactly when count is 0. */
typedef struct htable_s {
    hlink_t **buckets;
    size_t mask;
    size_t count;
} htable_t;

typedef struct xnode_s {
    hlink_t link; /* in vg_subs_t.exact, hash of the name */
    elist_t list; /* never empty while the node exists */
} xnode_t;

typedef struct tnode_s {
    hlink_t link; /* in vg_subs_t.edges (literal children only), hash of (parent, segment) */
    struct tnode_s *parent;
    struct tnode_s *star;
    elist_t term;   /* patterns ending at this node */
    elist_t gt;     /* patterns ending at this node followed by ">" */
    uint32_t nkids; /* literal children plus the star child */
    uint16_t seglen;
    char seg[];
} tnode_t;

struct vg_subs_s {
    htable_t exact;
    htable_t edges;
    tnode_t *root; /* the empty prefix; never freed before the index */
    uint64_t seed;
    size_t max_per_subscriber; /* 0: no limit */
};

#define MIN_BUCKETS 8
/* A valid name of at most VG_CHANNEL_MAX_LEN bytes has at most this many segments. */
#define MAX_SEGS (VG_CHANNEL_MAX_LEN / 2 + 1)

/* Stamps come from a per-thread counter rather than a per-index one, so a subscriber that sits
 * in two indexes of the same thread can never see a stale stamp that happens to be equal. */
static _Thread_local uint64_t match_stamp;

/* --- hashing ------------------------------------------------------------------------------- */

static inline uint64_t mix64(uint64_t h)
{
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 31;
    return h;
}

/* Names are short (a few to a few dozen bytes), so a word-at-a-time multiply-rotate with one
 * final avalanche beats byte-wise FNV.  The per-index random seed keeps a client from choosing
 * names that all land in one bucket without knowing it. */
static uint64_t hash_bytes(uint64_t seed, const char *p, size_t len)
{
    uint64_t h = seed ^ (len * 0x9e3779b97f4a7c15ull);
    for (; len >= 8; p += 8, len -= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdull;
        h = (h << 29) | (h >> 35);
    }
    uint64_t w = 0;
    for (size_t i = 0; i < len; i++)
        w |= (uint64_t)(unsigned char)p[i] << (8 * i);
    h = (h ^ w) * 0xff51afd7ed558ccdull;
    return mix64(h);
}

/* The key of a tree node: its parent's key and its segment's hash, mixed so order matters. */
static inline uint64_t edge_hash(const tnode_t *parent, uint64_t seg_hash)
{
    return mix64(parent->link.hash ^ (seg_hash * 0xc2b2ae3d27d4eb4full));
}

#define STAR_SEG_HASH 0x2a2a2a2a2a2a2a2aull

/* --- hash table ---------------------------------------------------------------------------- */

static hlink_t *table_first(const htable_t *t, uint64_t h)
{
    return t->count != 0 ? t->buckets[h & t->mask] : NULL;
}

static void table_resize(htable_t *t, size_t n)
{
    hlink_t **b = vg_calloc(n, sizeof(*b));
    if (t->buckets != NULL) {
        for (size_t i = 0; i <= t->mask; i++) {
            hlink_t *l = t->buckets[i];
            while (l != NULL) {
                hlink_t *next = l->next;
                size_t j = l->hash & (n - 1);
                l->next = b[j];
                b[j] = l;
                l = next;
            }
        }
        vg_free(t->buckets);
    }
    t->buckets = b;
    t->mask = n - 1;
}

static void table_insert(htable_t *t, hlink_t *l)
{
    if (t->buckets == NULL)
        table_resize(t, MIN_BUCKETS);
    else if (t->count > t->mask)
        table_resize(t, (t->mask + 1) * 2);
    hlink_t **b = &t->buckets[l->hash & t->mask];
    l->next = *b;
    *b = l;
    t->count++;
}

/* Grows at load 1 and shrinks at load 1/8 (to 1/2), so churn around one size never resizes
 * back and forth, and an emptied table holds no memory at all. */
static void table_remove(htable_t *t, hlink_t *l)
{
    hlink_t **pp = &t->buckets[l->hash & t->mask];
    while (*pp != l)
        pp = &(*pp)->next;
    *pp = l->next;
    t->count--;
    if (t->count == 0) {
        vg_free(t->buckets);
        t->buckets = NULL;
        t->mask = 0;
    } else if (t->mask + 1 > MIN_BUCKETS && t->count < (t->mask + 1) / 8) {
        table_resize(t, (t->mask + 1) / 4 > MIN_BUCKETS ? (t->mask + 1) / 4 : MIN_BUCKETS);
    }
}

/* --- nodes --------------------------------------------------------------------------------- */

static xnode_t *exact_find(const vg_subs_t *s, const char *name, size_t len, uint64_t h)
{
    for (hlink_t *l = table_first(&s->exact, h); l != NULL; l = l->next) {
        if (l->hash != h)
            continue;
        xnode_t *x = vg_container_of(l, xnode_t, link);
        const vg_sub_entry_t *e = x->list.head;
        if (e->len == len && memcmp(e->pattern, name, len) == 0)
            return x;
    }
    return NULL;
}

static tnode_t *child_find(const vg_subs_t *s, const tnode_t *parent, const char *seg, size_t len,
                           uint64_t h)
{
    for (hlink_t *l = table_first(&s->edges, h); l != NULL; l = l->next) {
        if (l->hash != h)
            continue;
        tnode_t *c = vg_container_of(l, tnode_t, link);
        if (c->parent == parent && c->seglen == len && memcmp(c->seg, seg, len) == 0)
            return c;
    }
    return NULL;
}

static tnode_t *node_new(tnode_t *parent, const char *seg, size_t len, uint64_t h)
{
    tnode_t *n = vg_calloc(1, sizeof(*n) + len + 1);
    n->link.hash = h;
    n->parent = parent;
    n->seglen = (uint16_t)len;
    memcpy(n->seg, seg, len);
    return n;
}

/* The child of `parent` for one pattern segment, created when `create` is set. */
static tnode_t *child(vg_subs_t *s, tnode_t *parent, const char *seg, size_t len, int create)
{
    if (len == 1 && seg[0] == '*') {
        if (parent->star == NULL && create) {
            parent->star = node_new(parent, seg, len, edge_hash(parent, STAR_SEG_HASH));
            parent->nkids++;
        }
        return parent->star;
    }
    uint64_t h = edge_hash(parent, hash_bytes(s->seed, seg, len));
    tnode_t *c = child_find(s, parent, seg, len, h);
    if (c == NULL && create) {
        c = node_new(parent, seg, len, h);
        table_insert(&s->edges, &c->link);
        parent->nkids++;
    }
    return c;
}

/* Frees `n` and then its ancestors while they hold no entries and no children. */
static void prune(vg_subs_t *s, tnode_t *n)
{
    while (n != s->root && n->nkids == 0 && n->term.head == NULL && n->gt.head == NULL) {
        tnode_t *parent = n->parent;
        if (parent->star == n)
            parent->star = NULL;
        else
            table_remove(&s->edges, &n->link);
        parent->nkids--;
        vg_free(n);
        n = parent;
    }
}

/* The index list for a pattern or name, and its kind; NULL when absent and !create. */
static elist_t *index_list(vg_subs_t *s, const char *pattern, size_t len, int create, int *kind)
{
    if (!vg_channel_is_pattern(pattern, len)) {
        *kind = KIND_EXACT;
        uint64_t h = hash_bytes(s->seed, pattern, len);
        xnode_t *x = exact_find(s, pattern, len, h);
        if (x == NULL && create) {
            /* Left with an empty list only until the caller links the new entry. */
            x = vg_calloc(1, sizeof(*x));
            x->link.hash = h;
            table_insert(&s->exact, &x->link);
        }
        return x != NULL ? &x->list : NULL;
    }
    tnode_t *n = s->root;
    const char *p = pattern, *end = pattern + len;
    *kind = KIND_TERM;
    for (;;) {
        const char *dot = memchr(p, '.', (size_t)(end - p));
        size_t seglen = (size_t)((dot != NULL ? dot : end) - p);
        if (seglen == 1 && p[0] == '>') {
            *kind = KIND_GT; /* valid patterns have it last */
            break;
        }
        n = child(s, n, p, seglen, create);
        if (n == NULL)
            return NULL;
        if (dot == NULL)
            break;
        p = dot + 1;
    }
    return *kind == KIND_GT ? &n->gt : &n->term;
}

/* --- entries ------------------------------------------------------------------------------- */

static vg_sub_entry_t *find_entry(const vg_subscriber_t *sub, const elist_t *list)
{
    if (list->count <= sub->_count) {
        for (vg_sub_entry_t *e = list->head; e != NULL; e = e->inext)
            if (e->sub == sub)
                return e;
    } else {
        for (vg_sub_entry_t *e = sub->_entries; e != NULL; e = e->snext)
            if (e->list == list)
                return e;
    }
    return NULL;
}

static void unlink_entry(vg_subs_t *s, vg_sub_entry_t *e)
{
    elist_t *list = e->list;
    if (e->iprev != NULL)
        e->iprev->inext = e->inext;
    else
        list->head = e->inext;
    if (e->inext != NULL)
        e->inext->iprev = e->iprev;
    list->count--;

    vg_subscriber_t *sub = e->sub;
    vg_sub_entry_t *head = sub->_entries;
    if (e == head) {
        sub->_entries = e->snext;
        if (e->snext != NULL)
            e->snext->sprev = e->sprev; /* still the tail */
    } else {
        e->sprev->snext = e->snext;
        if (e->snext != NULL)
            e->snext->sprev = e->sprev;
        else
            head->sprev = e->sprev; /* e was the tail */
    }
    sub->_count--;

    if (list->head == NULL) {
        if (e->kind == KIND_EXACT) {
            xnode_t *x = vg_container_of(list, xnode_t, list);
            table_remove(&s->exact, &x->link);
            vg_free(x);
        } else if (e->kind == KIND_GT) {
            prune(s, vg_container_of(list, tnode_t, gt));
        } else {
            prune(s, vg_container_of(list, tnode_t, term));
        }
    }
    vg_free(e);
}

/* --- public -------------------------------------------------------------------------------- */

vg_subs_t *vg_subs_new(void)
{
    vg_subs_t *s = vg_calloc(1, sizeof(*s));
    s->seed = mix64(uv_hrtime() ^ (uint64_t)(uintptr_t)s);
    s->root = node_new(NULL, "", 0, mix64(s->seed + 1));
    return s;
}

void vg_subs_free(vg_subs_t *s)
{
    if (s == NULL)
        return;
    /* Entries point back at their subscribers, which must have been removed (see subs.h).
     * Whatever is left here is a caller bug; ASan's leak check reports it. */
    assert(s->exact.count == 0 && s->edges.count == 0);
    assert(s->root->nkids == 0 && s->root->gt.head == NULL && s->root->term.head == NULL);
    vg_free(s->exact.buckets);
    vg_free(s->edges.buckets);
    vg_free(s->root);
    vg_free(s);
}

void vg_subscriber_init(vg_subscriber_t *sub, void *data)
{
    sub->data = data;
    sub->deliver = NULL;
    sub->_stamp = 0;
    sub->_entries = NULL;
    sub->_count = 0;
    sub->_tl_prev = sub->_tl_next = NULL;
}

void vg_subs_set_limit(vg_subs_t *s, size_t max_per_subscriber)
{
    s->max_per_subscriber = max_per_subscriber;
}

size_t vg_subs_limit(const vg_subs_t *s)
{
    return s->max_per_subscriber;
}

int vg_subs_contains(const vg_subs_t *s, const vg_subscriber_t *sub, const char *pattern,
                     size_t len)
{
    if (len == 0 || len > VG_CHANNEL_MAX_LEN || sub->_count == 0)
        return 0;
    int kind;
    /* Without `create` the lookup changes nothing. */
    const elist_t *list = index_list((vg_subs_t *)s, pattern, len, 0, &kind);
    return list != NULL && find_entry(sub, list) != NULL;
}

int vg_subs_add(vg_subs_t *s, vg_subscriber_t *sub, const char *pattern, size_t len)
{
    assert(len > 0 && len <= VG_CHANNEL_MAX_LEN);
    /* At the limit only a duplicate is fine; look it up without creating index nodes. */
    if (s->max_per_subscriber != 0 && sub->_count >= s->max_per_subscriber)
        return vg_subs_contains(s, sub, pattern, len) ? 0 : VG_ELIMIT;
    int kind;
    elist_t *list = index_list(s, pattern, len, 1, &kind);
    /* A duplicate implies the node already existed, so nothing was created for it. */
    if (find_entry(sub, list) != NULL)
        return 0;

    vg_sub_entry_t *e = vg_malloc(offsetof(vg_sub_entry_t, pattern) + len + 1);
    e->sub = sub;
    e->list = list;
    e->len = (uint16_t)len;
    e->kind = (uint8_t)kind;
    memcpy(e->pattern, pattern, len);
    e->pattern[len] = '\0';

    e->iprev = NULL;
    e->inext = list->head;
    if (list->head != NULL)
        list->head->iprev = e;
    list->head = e;
    list->count++;

    e->snext = NULL;
    vg_sub_entry_t *head = sub->_entries;
    if (head == NULL) {
        e->sprev = e;
        sub->_entries = e;
    } else {
        e->sprev = head->sprev;
        head->sprev->snext = e;
        head->sprev = e;
    }
    sub->_count++;
    return 1;
}

int vg_subs_remove(vg_subs_t *s, vg_subscriber_t *sub, const char *pattern, size_t len)
{
    if (len == 0 || len > VG_CHANNEL_MAX_LEN)
        return 0;
    int kind;
    elist_t *list = index_list(s, pattern, len, 0, &kind);
    if (list == NULL)
        return 0;
    vg_sub_entry_t *e = find_entry(sub, list);
    if (e == NULL)
        return 0;
    unlink_entry(s, e);
    return 1;
}

void vg_subs_remove_all(vg_subs_t *s, vg_subscriber_t *sub)
{
    while (sub->_entries != NULL)
        unlink_entry(s, sub->_entries);
}

size_t vg_subscriber_count(const vg_subscriber_t *sub)
{
    return sub->_count;
}

void vg_subscriber_each(const vg_subscriber_t *sub,
                        void (*fn)(const char *pattern, size_t len, void *arg), void *arg)
{
    for (const vg_sub_entry_t *e = sub->_entries; e != NULL; e = e->snext)
        fn(e->pattern, e->len, arg);
}

/* --- matching ------------------------------------------------------------------------------ */

typedef struct segv_s {
    const char *base;
    size_t len;
    uint64_t hash;
} segv_t;

typedef struct walk_s {
    const vg_subs_t *s;
    const segv_t *segs;
    size_t n;
    uint64_t stamp;
    vg_subs_match_cb cb;
    void *arg;
} walk_t;

static inline void emit(const elist_t *list, uint64_t stamp, vg_subs_match_cb cb, void *arg)
{
    for (const vg_sub_entry_t *e = list->head; e != NULL; e = e->inext) {
        vg_subscriber_t *sub = e->sub;
        if (sub->_stamp != stamp) {
            sub->_stamp = stamp;
            cb(sub, arg);
        }
    }
}

/* Visits `node` with segments [i, n) of the channel still to match.  Recurses into the "*"
 * child and loops into the literal one, so the C stack grows only with "*" depth. */
static void walk(const walk_t *w, const tnode_t *node, size_t i)
{
    for (;;) {
        if (i == w->n) {
            emit(&node->term, w->stamp, w->cb, w->arg);
            return;
        }
        emit(&node->gt, w->stamp, w->cb, w->arg); /* ">" takes the one or more segments left */
        if (node->star != NULL)
            walk(w, node->star, i + 1);
        if (node->nkids == (node->star != NULL ? 1u : 0u))
            return; /* no literal children */
        const segv_t *sg = &w->segs[i];
        node = child_find(w->s, node, sg->base, sg->len, edge_hash(node, sg->hash));
        if (node == NULL)
            return;
        i++;
    }
}

void vg_subs_match(vg_subs_t *s, const char *channel, size_t len, vg_subs_match_cb cb, void *arg)
{
    uint64_t stamp = ++match_stamp;
    if (len == 0 || len > VG_CHANNEL_MAX_LEN)
        return; /* no valid subscription matches an invalid name */

    if (s->exact.count != 0) {
        xnode_t *x = exact_find(s, channel, len, hash_bytes(s->seed, channel, len));
        if (x != NULL)
            emit(&x->list, stamp, cb, arg);
    }

    const tnode_t *root = s->root;
    if (root->nkids == 0 && root->gt.head == NULL)
        return;
    segv_t segs[MAX_SEGS];
    size_t n = 0;
    const char *p = channel, *end = channel + len;
    for (;;) {
        if (n == MAX_SEGS)
            return; /* more segments than any valid name has */
        const char *dot = memchr(p, '.', (size_t)(end - p));
        size_t seglen = (size_t)((dot != NULL ? dot : end) - p);
        segs[n].base = p;
        segs[n].len = seglen;
        segs[n].hash = hash_bytes(s->seed, p, seglen);
        n++;
        if (dot == NULL)
            break;
        p = dot + 1;
    }
    walk_t w = {s, segs, n, stamp, cb, arg};
    walk(&w, root, 0);
}
