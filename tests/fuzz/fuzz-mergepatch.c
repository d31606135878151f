/*
 * libFuzzer driver for JSON Merge Patch (src/proto/mergepatch.c).
 *
 * Input: up to three JSON texts separated by '\n' (write each on one line): a, b and c.  With
 * fewer, the missing ones repeat the first.  Each is parsed with jansson (any value, NUL in
 * strings allowed); unparsable ones are NULL ("no document" or "no patch", mergepatch.h).
 * Then, whatever the input:
 *   - apply, combine and diff never crash, and return NULL for depth only when an input nests
 *     deeper than VG_MERGE_PATCH_MAX_DEPTH;
 *   - apply(apply(a, b), c) == apply(a, combine(b, c)) whenever combine answers, and it
 *     answers exactly when the reference rule says a combined patch exists;
 *   - apply(a, diff(a, b)) == b whenever diff answers, and it answers exactly when b has no
 *     null object member that a lacks; documents stripped of null members always have a diff;
 *   - no input is modified.
 *
 * CHECK aborts even in builds with NDEBUG, so libFuzzer sees every broken invariant.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/mergepatch.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static int depth(const json_t *v)
{
    int d = 0;
    if (json_is_array(v)) {
        size_t i;
        json_t *e;
        json_array_foreach((json_t *)v, i, e)
        {
            int c = depth(e);
            d = c > d ? c : d;
        }
        return d + 1;
    }
    if (json_is_object(v)) {
        const char *k;
        json_t *e;
        json_object_foreach((json_t *)v, k, e)
        {
            int c = depth(e);
            d = c > d ? c : d;
        }
        return d + 1;
    }
    return 0;
}

static int shallow(const json_t *v)
{
    return depth(v) <= VG_MERGE_PATCH_MAX_DEPTH;
}

static int eq(const json_t *x, const json_t *y)
{
    if (x == NULL || y == NULL)
        return x == y;
    return json_equal(x, y);
}

static int ref_combinable(const json_t *p1, const json_t *p2)
{
    if (!json_is_object(p2))
        return 1;
    if (!json_is_object(p1))
        return 0;
    const char *k;
    json_t *v2;
    json_object_foreach((json_t *)p2, k, v2)
    {
        json_t *v1 = json_object_get(p1, k);
        if (json_is_object(v2) && v1 != NULL && !ref_combinable(v1, v2))
            return 0;
    }
    return 1;
}

static int ref_diffable(const json_t *from, const json_t *to)
{
    if (!json_is_object(to))
        return 1;
    const char *k;
    json_t *tv;
    json_object_foreach((json_t *)to, k, tv)
    {
        json_t *fv = json_is_object(from) ? json_object_get(from, k) : NULL;
        if (json_is_null(tv) && !json_is_null(fv))
            return 0;
        if (json_is_object(tv) && !ref_diffable(json_is_object(fv) ? fv : NULL, tv))
            return 0;
    }
    return 1;
}

static void check_diff(const json_t *a, const json_t *b)
{
    json_t *d = vg_merge_patch_diff(a, b);
    if (!shallow(a) || !shallow(b)) {
        CHECK(d == NULL);
        return;
    }
    const json_t *bb = b ? b : json_null();
    CHECK((d != NULL) == ref_diffable(a, bb));
    if (d != NULL) {
        json_t *r = vg_merge_patch_apply(a, d);
        CHECK(r != NULL && json_equal(r, bb));
        json_decref(r);
        json_decref(d);
    }
    /* Stripped of null members (apply(NULL, doc)), objects always have a diff. */
    json_t *sa = vg_merge_patch_apply(NULL, a), *sb = vg_merge_patch_apply(NULL, b);
    CHECK(sa != NULL && sb != NULL);
    json_t *sd = vg_merge_patch_diff(sa, sb);
    CHECK(sd != NULL);
    json_t *r = vg_merge_patch_apply(sa, sd);
    CHECK(r != NULL && json_equal(r, sb));
    json_decref(r);
    json_decref(sd);
    json_decref(sa);
    json_decref(sb);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *doc[3] = {NULL, NULL, NULL};
    size_t nd = 0, start = 0;
    for (size_t i = 0; i <= size && nd < 3; i++) {
        if (i == size || data[i] == '\n') {
            json_error_t err;
            doc[nd++] = json_loadb((const char *)data + start, i - start,
                                   JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
            start = i + 1;
        }
    }
    for (size_t i = nd; i < 3; i++)
        doc[i] = json_incref(doc[0]);
    json_t *a = doc[0], *b = doc[1], *c = doc[2];
    json_t *copies[3];
    for (int i = 0; i < 3; i++)
        copies[i] = doc[i] ? json_deep_copy(doc[i]) : NULL;
    int ok = shallow(a) && shallow(b) && shallow(c);

    /* apply */
    json_t *ab = vg_merge_patch_apply(a, b);
    CHECK((ab != NULL) == (shallow(a) && shallow(b)));

    /* combine */
    json_t *bc = vg_merge_patch_combine(b, c);
    if (!shallow(b) || !shallow(c))
        CHECK(bc == NULL);
    else if (b == NULL || c == NULL)
        CHECK((bc != NULL) == (b != c));
    else
        CHECK((bc != NULL) == ref_combinable(b, c));
    if (ok && bc != NULL) {
        json_t *two = vg_merge_patch_apply(ab, c);
        json_t *one = vg_merge_patch_apply(a, bc);
        CHECK(two != NULL && one != NULL && json_equal(one, two));
        json_decref(one);
        json_decref(two);
    }

    /* diff, both ways */
    check_diff(a, b);
    check_diff(b, a);
    if (ab != NULL)
        check_diff(a, ab);

    /* Inputs untouched. */
    for (int i = 0; i < 3; i++)
        CHECK(eq(doc[i], copies[i]));

    json_decref(ab);
    json_decref(bc);
    for (int i = 0; i < 3; i++) {
        json_decref(doc[i]);
        json_decref(copies[i]);
    }
    return 0;
}
