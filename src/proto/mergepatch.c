/*
 * JSON Merge Patch (RFC 7396).  See mergepatch.h for the contract and for the two cases a
 * single merge patch cannot express.
 *
 * Each entry point first measures how deep its inputs nest, stopping one level past the limit,
 * and refuses them when they are too deep; after that the recursive helpers (and jansson's own
 * recursive json_equal and json_deep_copy) are known to stay within VG_MERGE_PATCH_MAX_DEPTH
 * frames.  Keys are handled with their lengths, so keys holding "\u0000" survive.
 */
#include "proto/mergepatch.h"

#include <stddef.h>

/* jansson's iterators take non-const objects although they only read them. */
#define MUT(v) ((json_t *)(v))

/* Nonzero when v's arrays and objects nest at most `left` levels deep. */
static int depth_ok(const json_t *v, int left)
{
    if (!json_is_object(v) && !json_is_array(v))
        return 1;
    if (left == 0)
        return 0;
    if (json_is_array(v)) {
        size_t i;
        json_t *e;
        json_array_foreach(MUT(v), i, e)
        {
            if (!depth_ok(e, left - 1))
                return 0;
        }
        return 1;
    }
    const char *k;
    json_t *e;
    json_object_foreach(MUT(v), k, e)
    {
        if (!depth_ok(e, left - 1))
            return 0;
    }
    return 1;
}

static int inputs_ok(const json_t *a, const json_t *b)
{
    return depth_ok(a, VG_MERGE_PATCH_MAX_DEPTH) && depth_ok(b, VG_MERGE_PATCH_MAX_DEPTH);
}

/* A copy sharing nothing with v; JSON null for NULL. */
static json_t *copy(const json_t *v)
{
    return v == NULL ? json_null() : json_deep_copy(v);
}

/* Merges the object `patch` into the object `dst` in place: RFC 7396's MergePatch for an object
 * patch, without the copy of the target. */
static void merge_into(json_t *dst, const json_t *patch)
{
    const char *k;
    size_t klen;
    json_t *pv;
    json_object_keylen_foreach(MUT(patch), k, klen, pv)
    {
        if (json_is_null(pv)) {
            json_object_deln(dst, k, klen);
        } else if (json_is_object(pv)) {
            json_t *cur = json_object_getn(dst, k, klen);
            if (!json_is_object(cur)) {
                cur = json_object();
                json_object_setn_new_nocheck(dst, k, klen, cur);
            }
            merge_into(cur, pv);
        } else {
            json_object_setn_new_nocheck(dst, k, klen, json_deep_copy(pv));
        }
    }
}

json_t *vg_merge_patch_apply(const json_t *target, const json_t *patch)
{
    if (!inputs_ok(target, patch))
        return NULL;
    if (patch == NULL)
        return copy(target);
    if (!json_is_object(patch))
        return copy(patch);
    json_t *out = json_is_object(target) ? json_deep_copy(target) : json_object();
    merge_into(out, patch);
    return out;
}

/*
 * Combining is applying with the nulls kept, with one exception.  For a key k of second:
 *  - second[k] is not an object: whatever first did, the result at k is second[k] (or k is
 *    removed when it is null), so the combined patch says exactly that.
 *  - second[k] is an object and first lacks k: second[k] patches the target's value; keep it.
 *  - both are objects: recurse.
 *  - first[k] is a non-object (null included) and second[k] an object: after first the value
 *    at k is that non-object, so second makes it exactly apply({}, second[k]), an object that
 *    ignores the target's value.  No patch member can say "replace with this object" (an
 *    object member merges), so there is no combined patch: NULL.
 * Same reasoning at the top level, where a non-object `second` simply replaces everything.
 */
static json_t *combine(const json_t *first, const json_t *second)
{
    if (!json_is_object(second))
        return copy(second);
    if (!json_is_object(first))
        return NULL;
    json_t *out = json_deep_copy(first);
    const char *k;
    size_t klen;
    json_t *sv;
    json_object_keylen_foreach(MUT(second), k, klen, sv)
    {
        json_t *fv = json_object_getn(first, k, klen);
        json_t *merged;
        if (!json_is_object(sv) || fv == NULL)
            merged = json_deep_copy(sv);
        else if ((merged = combine(fv, sv)) == NULL)
            goto fail;
        json_object_setn_new_nocheck(out, k, klen, merged);
    }
    return out;
fail:
    json_decref(out);
    return NULL;
}

json_t *vg_merge_patch_combine(const json_t *first, const json_t *second)
{
    if (!inputs_ok(first, second))
        return NULL;
    if (first == NULL || second == NULL)
        return first == second ? NULL : json_deep_copy(first != NULL ? first : second);
    return combine(first, second);
}

/* Nonzero when v, used as a patch on a non-object, gives back v: no object reachable from v
 * through objects alone has a null member (nulls inside arrays are copied verbatim). */
static int has_no_null_members(const json_t *v)
{
    if (!json_is_object(v))
        return 1;
    const char *k;
    json_t *e;
    json_object_foreach(MUT(v), k, e)
    {
        if (json_is_null(e) || !has_no_null_members(e))
            return 0;
    }
    return 1;
}

static json_t *diff(const json_t *from, const json_t *to)
{
    if (!json_is_object(to))
        return copy(to);
    if (!json_is_object(from))
        return has_no_null_members(to) ? json_deep_copy(to) : NULL;
    json_t *out = json_object();
    const char *k;
    size_t klen;
    json_t *fv, *tv;
    json_object_keylen_foreach(MUT(from), k, klen, fv)
    {
        if (json_object_getn(to, k, klen) == NULL)
            json_object_setn_new_nocheck(out, k, klen, json_null());
    }
    json_object_keylen_foreach(MUT(to), k, klen, tv)
    {
        fv = json_object_getn(from, k, klen);
        if (fv != NULL && json_equal(fv, tv))
            continue;
        if (json_is_null(tv))
            goto fail; /* a member cannot be set to null */
        json_t *d = json_is_object(tv) ? diff(fv, tv) : json_deep_copy(tv);
        if (d == NULL)
            goto fail;
        json_object_setn_new_nocheck(out, k, klen, d);
    }
    return out;
fail:
    json_decref(out);
    return NULL;
}

json_t *vg_merge_patch_diff(const json_t *from, const json_t *to)
{
    if (!inputs_ok(from, to))
        return NULL;
    return diff(from, to == NULL ? json_null() : to);
}
