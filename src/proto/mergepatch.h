/*
 * JSON Merge Patch (RFC 7396) on jansson values: apply a patch, combine two patches into one,
 * and compute the patch between two documents.  State documents (DESIGN.md section 2) are
 * PATCHed with apply; their subscribers get deltas made with diff or combine.
 *
 * A merge patch that is an object merges member by member (a null member removes the key, an
 * object member merges recursively, anything else replaces); a patch that is not an object
 * replaces the whole target.  Two things follow that limit what a single patch can say:
 *
 *  - A patch can never leave an object member whose value is null (null means "remove"), unless
 *    the null sits inside an array, which is copied verbatim.  So diff(from, to) has no answer
 *    when `to` holds a null object member that `from` does not hold at the same place.
 *  - An object member of a patch always merges into what is there; it cannot say "replace this
 *    object with that one".  So combine(first, second) has no answer when `first` sets a member
 *    to a non-object (null included) and `second` then patches it with an object: the result
 *    would be exactly that object, whatever the target held before `first`.
 *
 * In both cases the functions return NULL; the caller sends a full snapshot instead.  (Replacing
 * the parent object, the usual suggestion, does not help: an object in a patch merges, so the
 * target's other members would survive.)  The simplest way never to meet the first case is to
 * keep documents free of null members: apply(NULL, doc) returns doc without them.
 *
 * Every result is a new value that shares nothing with the inputs; the inputs are never
 * modified.  A NULL argument means "none": no document (a target or `from` that is NULL is
 * absent, which a patch treats like any non-object) or no patch (nothing to apply or combine);
 * a NULL `to` for diff is JSON null.
 */
#ifndef VG_PROTO_MERGEPATCH_H
#define VG_PROTO_MERGEPATCH_H

#include <jansson.h>

/* Inputs whose arrays and objects nest deeper than this are refused (the functions return
 * NULL), so a hostile document cannot exhaust the stack. */
#define VG_MERGE_PATCH_MAX_DEPTH 64

/* Returns the result of applying `patch` to `target` (RFC 7396 section 2), a new reference.
 * A NULL patch changes nothing: the result is a copy of target (JSON null when target is NULL
 * too).  Returns NULL only when an input nests deeper than VG_MERGE_PATCH_MAX_DEPTH. */
json_t *vg_merge_patch_apply(const json_t *target, const json_t *patch);

/* Returns one patch c with apply(apply(t, first), second) == apply(t, c) for every t: the two
 * patches merged with their null members kept.  Returns NULL when no such patch exists (first
 * sets a member to a non-object, or is itself a non-object, and second patches that place with
 * an object; see above) or when an input nests too deep.  When one of them is NULL (no patch)
 * the result is a copy of the other; when both are, NULL (still no patch: no patch leaves
 * every target unchanged, since {} turns a scalar into an object). */
json_t *vg_merge_patch_combine(const json_t *first, const json_t *second);

/* Returns a patch p with apply(from, p) == to, minimal in the sense that members equal in both
 * are left out: when both are objects and equal, p is the empty object {}.  When `to` is not an
 * object, p is a copy of `to`.  Returns NULL when no patch exists (`to` holds a null object
 * member that `from` lacks; see above) or when an input nests too deep. */
json_t *vg_merge_patch_diff(const json_t *from, const json_t *to);

#endif
