// SPDX-License-Identifier: MIT
// The allocation-free JSON reader behind jwt_verify(): grammar, UTF-8, escapes, duplicates,
// nesting, numbers and arrays.
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "auth/jwt_priv.h"

static int parse(struct jwt__obj *o, const char *s)
{
    return jwt__obj_parse(o, s, strlen(s));
}

Test(jwt_json, accepts_valid_objects)
{
    static const char *ok[] = {
        "{}",
        " \t\r\n{ } \n",
        "{\"a\":1}",
        "{\"a\":-0.5e+10,\"b\":[1,\"x\",{\"c\":null}],\"d\":true,\"e\":false}",
        "{\"s\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"}",
        "{\"s\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\"}",
        "{\"a\":[],\"b\":{},\"c\":[[[]]]}",
    };
    struct jwt__obj o;
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        cr_assert_eq(parse(&o, ok[i]), 0, "%s", ok[i]);
}

Test(jwt_json, rejects_what_is_not_one_strict_json_object)
{
    static const char *bad[] = {
        "",
        "[]",
        "\"a\"",
        "{",
        "{\"a\"}",
        "{\"a\":}",
        "{\"a\":1,}",
        "{\"a\":1}x",
        "{\"a\":1}{}",
        "{a:1}",
        "{'a':1}",
        "{\"a\":01}",
        "{\"a\":1.}",
        "{\"a\":.5}",
        "{\"a\":1e}",
        "{\"a\":+1}",
        "{\"a\":tru}",
        "{\"a\":nul}",
        "{\"a\":[1,]}",
        "{\"a\":\"\x01\"}",         /* control character */
        "{\"a\":\"\\x\"}",          /* unknown escape */
        "{\"a\":\"\\u12\"}",        /* short \u */
        "{\"a\":\"\\ud83d\"}",      /* lone high surrogate */
        "{\"a\":\"\\ude00\"}",      /* lone low surrogate */
        "{\"a\":\"\xc3\"}",         /* truncated UTF-8 */
        "{\"a\":\"\xc0\xaf\"}",     /* overlong */
        "{\"a\":\"\xed\xa0\x80\"}", /* encoded surrogate */
        "{\"a\":\"\xf5\x80\x80\x80\"}",
        "{\"a\":1,\"a\":2}",                            /* duplicate */
        "{\"a\":1,\"\\u0061\":2}",                      /* duplicate once unescaped */
        "{\"a\":[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]}", /* too deep */
        "{\"a\":\"unterminated}",
    };
    struct jwt__obj o;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(parse(&o, bad[i]), -EINVAL, "accepted: %s", bad[i]);
    /* a NUL byte inside the text */
    cr_assert_eq(jwt__obj_parse(&o, "{\"a\":\"x\0y\"}", 11), -EINVAL);
}

Test(jwt_json, refuses_more_members_than_it_can_hold)
{
    char buf[4096];
    size_t o = 0;
    buf[o++] = '{';
    for (int i = 0; i <= JWT__MAX_MEMBERS; i++)
        o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%s\"k%d\":%d", i ? "," : "", i, i);
    buf[o++] = '}';
    struct jwt__obj obj;
    cr_assert_eq(jwt__obj_parse(&obj, buf, o), -EINVAL);
}

Test(jwt_json, finds_members_by_unescaped_name_and_unescapes_values)
{
    struct jwt__obj o;
    cr_assert_eq(parse(&o, "{\"s\\u0075b\":\"al\\u0069ce\\n\",\"alg\":\"RS256\",\"n\":7}"), 0);
    const struct jwt__jval *sub = jwt__obj_get(&o, "sub");
    cr_assert_not_null(sub);
    cr_assert_eq(sub->type, JWT__J_STRING);
    cr_assert(sub->esc);
    char buf[16];
    cr_assert_eq(jwt__str(sub, buf, sizeof(buf)), 6);
    cr_assert_eq(memcmp(buf, "alice\n", 6), 0);
    cr_assert_eq(jwt__str(sub, buf, 5), -ENOSPC);
    cr_assert(jwt__str_eq(sub, "alice\n", 6));
    cr_assert_not(jwt__str_eq(sub, "alice", 5));
    cr_assert(jwt__str_eq(jwt__obj_get(&o, "alg"), "RS256", 5));
    cr_assert_not(jwt__str_eq(jwt__obj_get(&o, "n"), "7", 1), "a number is not a string");
    cr_assert_null(jwt__obj_get(&o, "su"));
    cr_assert_null(jwt__obj_get(&o, "subx"));
}

Test(jwt_json, unescapes_to_utf8_including_surrogate_pairs)
{
    struct jwt__obj o;
    cr_assert_eq(parse(&o, "{\"s\":\"\\u00e9\\u20ac\\ud83d\\ude00\\u0000\"}"), 0);
    char buf[32];
    ssize_t n = jwt__str(jwt__obj_get(&o, "s"), buf, sizeof(buf));
    const char want[] = "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
    cr_assert_eq(n, (ssize_t)sizeof(want)); /* plus the NUL from \u0000 */
    cr_assert_eq(memcmp(buf, want, sizeof(want)), 0);
}

Test(jwt_json, reads_numbers_as_int64)
{
    struct jwt__obj o;
    cr_assert_eq(parse(&o, "{\"i\":2000000000,\"n\":-5,\"f\":1.9,\"e\":1.5e9,\"big\":"
                           "99999999999999999999,\"s\":\"1\",\"huge\":1e300}"),
                 0);
    int64_t v = 0;
    cr_assert_eq(jwt__num(jwt__obj_get(&o, "i"), &v), 0);
    cr_assert_eq(v, 2000000000);
    cr_assert_eq(jwt__num(jwt__obj_get(&o, "n"), &v), 0);
    cr_assert_eq(v, -5);
    cr_assert_eq(jwt__num(jwt__obj_get(&o, "f"), &v), 0);
    cr_assert_eq(v, 1);
    cr_assert_eq(jwt__num(jwt__obj_get(&o, "e"), &v), 0);
    cr_assert_eq(v, 1500000000);
    cr_assert_eq(jwt__num(jwt__obj_get(&o, "big"), &v), -EINVAL);
    cr_assert_eq(jwt__num(jwt__obj_get(&o, "huge"), &v), -EINVAL);
    cr_assert_eq(jwt__num(jwt__obj_get(&o, "s"), &v), -EINVAL);
    cr_assert_eq(jwt__num(NULL, &v), -EINVAL);
}

Test(jwt_json, iterates_array_elements_of_any_type)
{
    struct jwt__obj o;
    cr_assert_eq(parse(&o, "{\"a\":[ \"x\" , 2,{\"k\":[1]},[\"y\"],\"z\\\"\" ],\"e\":[ ]}"), 0);
    const struct jwt__jval *a = jwt__obj_get(&o, "a");
    size_t pos = 0, n = 0;
    struct jwt__jval el;
    enum jwt__jtype want[] = {JWT__J_STRING, JWT__J_NUMBER, JWT__J_OBJECT, JWT__J_ARRAY,
                              JWT__J_STRING};
    while (jwt__arr_next(a, &pos, &el)) {
        cr_assert_lt(n, 5);
        cr_assert_eq(el.type, want[n], "element %zu", n);
        n++;
    }
    cr_assert_eq(n, 5);
    cr_assert(jwt__str_eq(&el, "z\"", 2));
    pos = 0;
    cr_assert_not(jwt__arr_next(jwt__obj_get(&o, "e"), &pos, &el));
    pos = 0;
    cr_assert_not(jwt__arr_next(NULL, &pos, &el));
}
