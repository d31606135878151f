/*
 * Tests of JSON Merge Patch (src/proto/mergepatch.c): every example of RFC 7396 (section 3 and
 * Appendix A), the depth limit, inputs left untouched, and property checks over generated
 * documents:
 *   apply(apply(t, p1), p2) == apply(t, combine(p1, p2))  whenever combine has an answer,
 *   apply(a, diff(a, b)) == b                              whenever diff has an answer,
 * and that "no answer" (NULL) happens exactly in the cases mergepatch.h documents.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto/mergepatch.h"

static json_t *parse(const char *text)
{
    json_error_t err;
    json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    if (v == NULL)
        fail_msg("bad test JSON %s: %s", text, err.text);
    return v;
}

static void assert_json_eq(const json_t *got, const json_t *want)
{
    if (got == NULL || !json_equal(got, want)) {
        char *g = got ? json_dumps(got, JSON_ENCODE_ANY | JSON_SORT_KEYS) : NULL;
        char *w = json_dumps(want, JSON_ENCODE_ANY | JSON_SORT_KEYS);
        fail_msg("got %s, want %s", g ? g : "NULL", w);
    }
}

/* apply(target, patch) == result, with the inputs unchanged afterwards. */
static void check_apply(const char *target, const char *patch, const char *result)
{
    json_t *t = parse(target), *p = parse(patch), *want = parse(result);
    json_t *t0 = json_deep_copy(t), *p0 = json_deep_copy(p);
    json_t *got = vg_merge_patch_apply(t, p);
    assert_json_eq(got, want);
    assert_json_eq(t, t0);
    assert_json_eq(p, p0);
    /* The result shares nothing: changing it leaves the inputs alone. */
    if (json_is_object(got))
        json_object_set_new(got, "__mutated", json_true());
    assert_json_eq(t, t0);
    assert_json_eq(p, p0);
    json_decref(got);
    json_decref(t);
    json_decref(p);
    json_decref(want);
    json_decref(t0);
    json_decref(p0);
}

static void test_rfc7396_appendix_a(void **state)
{
    (void)state;
    static const char *const cases[][3] = {
        {"{\"a\":\"b\"}", "{\"a\":\"c\"}", "{\"a\":\"c\"}"},
        {"{\"a\":\"b\"}", "{\"b\":\"c\"}", "{\"a\":\"b\",\"b\":\"c\"}"},
        {"{\"a\":\"b\"}", "{\"a\":null}", "{}"},
        {"{\"a\":\"b\",\"b\":\"c\"}", "{\"a\":null}", "{\"b\":\"c\"}"},
        {"{\"a\":[\"b\"]}", "{\"a\":\"c\"}", "{\"a\":\"c\"}"},
        {"{\"a\":\"c\"}", "{\"a\":[\"b\"]}", "{\"a\":[\"b\"]}"},
        {"{\"a\":{\"b\":\"c\"}}", "{\"a\":{\"b\":\"d\",\"c\":null}}", "{\"a\":{\"b\":\"d\"}}"},
        {"{\"a\":[{\"b\":\"c\"}]}", "{\"a\":[1]}", "{\"a\":[1]}"},
        {"[\"a\",\"b\"]", "[\"c\",\"d\"]", "[\"c\",\"d\"]"},
        {"{\"a\":\"b\"}", "[\"c\"]", "[\"c\"]"},
        {"{\"a\":\"foo\"}", "null", "null"},
        {"{\"a\":\"foo\"}", "\"bar\"", "\"bar\""},
        {"{\"e\":null}", "{\"a\":1}", "{\"e\":null,\"a\":1}"},
        {"[1,2]", "{\"a\":\"b\",\"c\":null}", "{\"a\":\"b\"}"},
        {"{}", "{\"a\":{\"bb\":{\"ccc\":null}}}", "{\"a\":{\"bb\":{}}}"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        check_apply(cases[i][0], cases[i][1], cases[i][2]);
}

static void test_rfc7396_section3(void **state)
{
    (void)state;
    check_apply(
        "{\"title\":\"Goodbye!\",\"author\":{\"givenName\":\"John\",\"familyName\":\"Doe\"},"
        "\"tags\":[\"example\",\"sample\"],\"content\":\"This will be unchanged\"}",
        "{\"title\":\"Hello!\",\"phoneNumber\":\"+01-123-456-7890\","
        "\"author\":{\"familyName\":null},\"tags\":[\"example\"]}",
        "{\"title\":\"Hello!\",\"author\":{\"givenName\":\"John\"},\"tags\":[\"example\"],"
        "\"content\":\"This will be unchanged\",\"phoneNumber\":\"+01-123-456-7890\"}");
}

static void test_apply_edges(void **state)
{
    (void)state;
    /* NULL target: no document. */
    json_t *p = parse("{\"a\":{\"b\":null,\"c\":1}}");
    json_t *r = vg_merge_patch_apply(NULL, p);
    json_t *want = parse("{\"a\":{\"c\":1}}");
    assert_json_eq(r, want);
    json_decref(r);
    json_decref(want);
    /* A NULL patch changes nothing; NULL with NULL is JSON null. */
    r = vg_merge_patch_apply(p, NULL);
    assert_json_eq(r, p);
    assert_true(r != p);
    json_decref(r);
    r = vg_merge_patch_apply(NULL, NULL);
    assert_true(json_is_null(r));
    json_decref(r);
    /* combine with no patch is the other patch; two NULLs stay "no patch". */
    r = vg_merge_patch_combine(NULL, p);
    assert_json_eq(r, p);
    json_decref(r);
    r = vg_merge_patch_combine(p, NULL);
    assert_json_eq(r, p);
    json_decref(r);
    assert_null(vg_merge_patch_combine(NULL, NULL));
    /* diff from no document; to NULL is to JSON null. */
    r = vg_merge_patch_diff(NULL, p);
    assert_null(r); /* p holds a null member */
    r = vg_merge_patch_diff(p, NULL);
    assert_true(json_is_null(r));
    json_decref(r);
    json_decref(p);
    /* apply(NULL, doc) strips null members, keeping nulls inside arrays. */
    check_apply("null", "{\"a\":null,\"b\":[null,{\"c\":null}],\"d\":{\"e\":null}}",
                "{\"b\":[null,{\"c\":null}],\"d\":{}}");
    /* Keys holding NUL bytes (the parser refuses them, the API does not) are told apart. */
    json_t *t = json_object(), *q = json_object();
    json_object_setn_new(t, "a\0b", 3, json_integer(1));
    json_object_setn_new(t, "a\0c", 3, json_integer(2));
    json_object_setn_new(q, "a\0b", 3, json_null());
    json_object_setn_new(q, "a\0c", 3, json_integer(4));
    json_object_set_new(q, "a", json_integer(3));
    r = vg_merge_patch_apply(t, q);
    assert_int_equal(json_object_size(r), 2);
    assert_null(json_object_getn(r, "a\0b", 3));
    assert_int_equal(json_integer_value(json_object_getn(r, "a\0c", 3)), 4);
    assert_int_equal(json_integer_value(json_object_get(r, "a")), 3);
    json_t *d = vg_merge_patch_diff(t, r);
    json_t *back = vg_merge_patch_apply(t, d);
    /* (not json_equal: jansson 2.14 looks keys up by C string there, so "a\0c" reads "a") */
    assert_int_equal(json_object_size(back), 2);
    assert_int_equal(json_integer_value(json_object_getn(back, "a\0c", 3)), 4);
    assert_int_equal(json_integer_value(json_object_get(back, "a")), 3);
    json_decref(back);
    json_decref(d);
    json_decref(r);
    json_decref(t);
    json_decref(q);
    check_apply("{\"\\u00e9\":2}", "{\"\\u00e9\":null,\"a\":3}", "{\"a\":3}");
    /* Scalars and arrays are replaced, objects within arrays are not merged. */
    check_apply("{\"a\":[{\"x\":1}]}", "{\"a\":[{\"y\":null}]}", "{\"a\":[{\"y\":null}]}");
    check_apply("1", "{\"a\":1}", "{\"a\":1}");
    check_apply("{\"a\":1}", "{}", "{\"a\":1}");
}

/* A chain of n nested objects {"a":{"a":...{}}}. */
static json_t *nested(int n)
{
    json_t *v = json_object();
    for (int i = 1; i < n; i++) {
        json_t *o = json_object();
        json_object_set_new(o, i % 2 ? "a" : "b", v);
        v = o;
    }
    return v;
}

static void test_depth_limit(void **state)
{
    (void)state;
    json_t *ok = nested(VG_MERGE_PATCH_MAX_DEPTH);
    json_t *deep = nested(VG_MERGE_PATCH_MAX_DEPTH + 1);
    json_t *arr = json_array();
    json_t *inner = arr;
    for (int i = 1; i < VG_MERGE_PATCH_MAX_DEPTH + 1; i++) {
        json_t *a = json_array();
        json_array_append_new(inner, a);
        inner = a;
    }
    json_t *empty = json_object();

    json_t *r = vg_merge_patch_apply(empty, ok);
    assert_json_eq(r, ok);
    json_decref(r);
    r = vg_merge_patch_apply(ok, empty);
    assert_json_eq(r, ok);
    json_decref(r);
    r = vg_merge_patch_diff(empty, ok);
    assert_json_eq(r, ok);
    json_decref(r);
    r = vg_merge_patch_combine(ok, ok);
    assert_json_eq(r, ok);
    json_decref(r);

    assert_null(vg_merge_patch_apply(empty, deep));
    assert_null(vg_merge_patch_apply(deep, empty));
    assert_null(vg_merge_patch_apply(empty, arr));
    assert_null(vg_merge_patch_combine(deep, empty));
    assert_null(vg_merge_patch_combine(empty, deep));
    assert_null(vg_merge_patch_diff(deep, empty));
    assert_null(vg_merge_patch_diff(empty, deep));

    /* Far deeper (jansson's parser allows 2048): refused without recursing through it. */
    json_t *huge = nested(3000);
    assert_null(vg_merge_patch_apply(empty, huge));
    assert_null(vg_merge_patch_diff(huge, huge));

    json_decref(huge);
    json_decref(ok);
    json_decref(deep);
    json_decref(arr);
    json_decref(empty);
}

static void check_combine(const char *p1, const char *p2, const char *want_text)
{
    json_t *a = parse(p1), *b = parse(p2);
    json_t *c = vg_merge_patch_combine(a, b);
    if (want_text == NULL) {
        assert_null(c);
    } else {
        json_t *want = parse(want_text);
        assert_json_eq(c, want);
        json_decref(want);
    }
    json_decref(c);
    json_decref(a);
    json_decref(b);
}

static void test_combine_examples(void **state)
{
    (void)state;
    /* A key removed by the second patch stays removed (null) in the combined one. */
    check_combine("{\"a\":1,\"b\":2}", "{\"a\":null}", "{\"a\":null,\"b\":2}");
    /* A removal in the first patch survives when the second does not touch the key. */
    check_combine("{\"a\":null}", "{\"b\":1}", "{\"a\":null,\"b\":1}");
    /* A removal followed by a scalar is a set. */
    check_combine("{\"a\":null}", "{\"a\":5}", "{\"a\":5}");
    /* Objects merge recursively, nulls kept. */
    check_combine("{\"a\":{\"x\":1,\"y\":null}}", "{\"a\":{\"x\":null,\"z\":3}}",
                  "{\"a\":{\"x\":null,\"y\":null,\"z\":3}}");
    /* A non-object second replaces. */
    check_combine("{\"a\":1}", "[1]", "[1]");
    check_combine("{\"a\":1}", "null", "null");
    check_combine("{\"a\":{\"b\":1}}", "{\"a\":[2]}", "{\"a\":[2]}");
    /* Inexpressible: set to a non-object (or removed), then patched with an object. */
    check_combine("{\"a\":null}", "{\"a\":{\"b\":1}}", NULL);
    check_combine("{\"a\":5}", "{\"a\":{\"b\":1}}", NULL);
    check_combine("[1]", "{\"b\":1}", NULL);
    check_combine("null", "{\"b\":1}", NULL);
    /* ...but not when the key was never mentioned by the first. */
    check_combine("{\"c\":5}", "{\"a\":{\"b\":null}}", "{\"c\":5,\"a\":{\"b\":null}}");
}

static void check_diff(const char *from, const char *to, const char *want_text)
{
    json_t *a = parse(from), *b = parse(to);
    json_t *d = vg_merge_patch_diff(a, b);
    if (want_text == NULL) {
        assert_null(d);
    } else {
        json_t *want = parse(want_text);
        assert_json_eq(d, want);
        json_t *r = vg_merge_patch_apply(a, d);
        assert_json_eq(r, b);
        json_decref(r);
        json_decref(want);
    }
    json_decref(d);
    json_decref(a);
    json_decref(b);
}

static void test_diff_examples(void **state)
{
    (void)state;
    check_diff("{\"a\":1,\"b\":{\"c\":2}}", "{\"a\":1,\"b\":{\"c\":2}}", "{}");
    check_diff("{\"a\":1,\"b\":2}", "{\"a\":1}", "{\"b\":null}");
    check_diff("{\"a\":{\"x\":1,\"y\":2}}", "{\"a\":{\"x\":1,\"y\":3,\"z\":[null]}}",
               "{\"a\":{\"y\":3,\"z\":[null]}}");
    check_diff("{\"a\":[1,2]}", "{\"a\":[1,3]}", "{\"a\":[1,3]}");
    check_diff("{\"a\":1}", "{\"a\":{\"b\":2}}", "{\"a\":{\"b\":2}}");
    check_diff("{\"a\":{\"b\":2}}", "{\"a\":1}", "{\"a\":1}");
    check_diff("{\"a\":1}", "[1]", "[1]");
    check_diff("[1]", "{\"a\":1}", "{\"a\":1}");
    check_diff("{\"a\":1}", "null", "null");
    /* An existing null member is kept by leaving it alone. */
    check_diff("{\"a\":null,\"b\":1}", "{\"a\":null,\"b\":2}", "{\"b\":2}");
    /* No patch can create a null member. */
    check_diff("{\"a\":1}", "{\"a\":null}", NULL);
    check_diff("{}", "{\"a\":null}", NULL);
    check_diff("{\"a\":1}", "{\"a\":{\"b\":null}}", NULL);
    check_diff("[1]", "{\"a\":{\"b\":null}}", NULL);
}

/* ---- generated documents -------------------------------------------------------------------- */

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

/* A random value over a small key set so that documents and patches overlap.  null_pct is the
 * chance (in percent) that an object member is null. */
static json_t *gen(int depth, int null_pct)
{
    static const char *const keys[] = {"a", "b", "c", "d"};
    uint32_t r = rnd(10);
    if (depth <= 0 && r >= 6)
        r = rnd(6);
    switch (r) {
    case 0: return json_integer(rnd(3));
    case 1: return json_string(keys[rnd(4)]);
    case 2: return json_true();
    case 3: return json_null();
    case 4:
    case 5: return json_integer(rnd(2));
    case 6: {
        json_t *a = json_array();
        for (uint32_t i = rnd(3); i > 0; i--)
            json_array_append_new(a, gen(depth - 1, null_pct));
        return a;
    }
    default: {
        json_t *o = json_object();
        for (uint32_t i = rnd(4); i > 0; i--) {
            json_t *v = rnd(100) < (uint32_t)null_pct ? json_null() : gen(depth - 1, null_pct);
            json_object_set_new(o, keys[rnd(4)], v);
        }
        return o;
    }
    }
}

/* A random object (most documents and patches are objects). */
static json_t *gen_obj(int depth, int null_pct)
{
    json_t *v;
    do {
        v = gen(depth, null_pct);
        if (json_is_object(v) || rnd(8) == 0)
            return v;
        json_decref(v);
    } while (1);
}

/* The documented reason combine has no answer. */
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

static void test_combine_property(void **state)
{
    (void)state;
    size_t combined = 0, refused = 0;
    for (int iter = 0; iter < 20000; iter++) {
        json_t *t = gen_obj(3, 10), *p1 = gen_obj(3, 30), *p2 = gen_obj(3, 30);
        json_t *c = vg_merge_patch_combine(p1, p2);
        assert_int_equal(c != NULL, ref_combinable(p1, p2));
        if (c != NULL) {
            combined++;
            json_t *step = vg_merge_patch_apply(t, p1);
            json_t *two = vg_merge_patch_apply(step, p2);
            json_t *one = vg_merge_patch_apply(t, c);
            assert_json_eq(one, two);
            /* Combining is associative where defined. */
            json_t *p3 = gen_obj(2, 30);
            json_t *l = vg_merge_patch_combine(c, p3);
            json_t *r23 = vg_merge_patch_combine(p2, p3);
            json_t *r = r23 ? vg_merge_patch_combine(p1, r23) : NULL;
            if (l != NULL && r != NULL) {
                json_t *al = vg_merge_patch_apply(t, l), *ar = vg_merge_patch_apply(t, r);
                assert_json_eq(al, ar);
                json_decref(al);
                json_decref(ar);
            }
            json_decref(l);
            json_decref(r);
            json_decref(r23);
            json_decref(p3);
            json_decref(step);
            json_decref(two);
            json_decref(one);
            json_decref(c);
        } else {
            refused++;
        }
        json_decref(t);
        json_decref(p1);
        json_decref(p2);
    }
    /* Both outcomes were exercised, and most pairs combine. */
    assert_true(combined > 10000);
    assert_true(refused > 100);
}

/* The documented reason diff has no answer: a null member of `to`, reached through objects
 * only, where `from` does not hold the same null. */
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

static void test_diff_property(void **state)
{
    (void)state;
    size_t diffed = 0, refused = 0;
    for (int iter = 0; iter < 20000; iter++) {
        int null_pct = iter % 2 ? 0 : 15;
        json_t *a = gen_obj(4, null_pct), *b;
        if (rnd(3) == 0) {
            /* b close to a: a patched */
            json_t *p = gen_obj(3, 30);
            b = vg_merge_patch_apply(a, p);
            json_decref(p);
        } else {
            b = gen_obj(4, null_pct);
        }
        json_t *d = vg_merge_patch_diff(a, b);
        assert_int_equal(d != NULL, ref_diffable(a, b));
        if (d != NULL) {
            diffed++;
            json_t *r = vg_merge_patch_apply(a, d);
            assert_json_eq(r, b);
            json_decref(r);
            /* Minimal: nothing in d restates an equal member of a. */
            if (json_is_object(a) && json_is_object(d)) {
                const char *k;
                json_t *v;
                json_object_foreach(d, k, v)
                {
                    json_t *av = json_object_get(a, k);
                    assert_false(av != NULL && json_equal(av, json_object_get(b, k)));
                }
            }
            /* The diff of equal objects is empty. */
            json_t *same = vg_merge_patch_diff(b, b);
            if (json_is_object(b))
                assert_int_equal(json_object_size(same), 0);
            json_decref(same);
            json_decref(d);
        } else {
            refused++;
        }
        /* Documents without null members always have a diff. */
        json_t *a2 = vg_merge_patch_apply(NULL, a), *b2 = vg_merge_patch_apply(NULL, b);
        if (json_is_object(a) && json_is_object(b)) {
            json_t *d2 = vg_merge_patch_diff(a2, b2);
            assert_non_null(d2);
            json_t *r2 = vg_merge_patch_apply(a2, d2);
            assert_json_eq(r2, b2);
            json_decref(r2);
            json_decref(d2);
        }
        json_decref(a2);
        json_decref(b2);
        json_decref(a);
        json_decref(b);
    }
    assert_true(diffed > 10000);
    assert_true(refused > 100);
}

/* Coalescing deltas as the state layer will: many patches folded into one, compared with the
 * diff between the first and last document. */
static void test_coalesce_chain(void **state)
{
    (void)state;
    for (int iter = 0; iter < 2000; iter++) {
        json_t *start = gen_obj(3, 0);
        json_t *cur = vg_merge_patch_apply(NULL, start);
        json_t *first = json_deep_copy(cur);
        json_t *acc = json_object();
        int ok = 1;
        for (int i = 0; i < 10; i++) {
            json_t *p = gen_obj(2, 30);
            json_t *next = vg_merge_patch_apply(cur, p);
            json_decref(cur);
            cur = next;
            if (ok) {
                json_t *c = vg_merge_patch_combine(acc, p);
                json_decref(acc);
                acc = c;
                ok = c != NULL;
            }
            json_decref(p);
        }
        if (ok) {
            json_t *r = vg_merge_patch_apply(first, acc);
            assert_json_eq(r, cur);
            json_decref(r);
        }
        json_t *d = vg_merge_patch_diff(first, cur);
        assert_non_null(d); /* documents made by apply have no null members */
        json_t *r = vg_merge_patch_apply(first, d);
        assert_json_eq(r, cur);
        json_decref(r);
        json_decref(d);
        json_decref(acc);
        json_decref(first);
        json_decref(cur);
        json_decref(start);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc7396_appendix_a), cmocka_unit_test(test_rfc7396_section3),
        cmocka_unit_test(test_apply_edges),        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_combine_examples),   cmocka_unit_test(test_diff_examples),
        cmocka_unit_test(test_combine_property),   cmocka_unit_test(test_diff_property),
        cmocka_unit_test(test_coalesce_chain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
