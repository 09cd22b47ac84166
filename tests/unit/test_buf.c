#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "ld_buf.h"
#include "ld_test.h"

static const char *json(const char *s, size_t n, int ascii)
{
    static ld_buf b;
    ld_buf_reset(&b);
    ld_buf_json_str(&b, s, n, ascii);
    return b.data;
}

LD_TEST(append_and_printf)
{
    ld_buf b = LD_BUF_INIT;
    ld_buf_puts(&b, "abc");
    ld_buf_printf(&b, "-%d-%s", 7, "x");
    for (int i = 0; i < 1000; i++)
        ld_buf_putc(&b, 'y');
    LD_CHECK_INT(b.len, 7 + 1000);
    LD_CHECK(strncmp(b.data, "abc-7-x", 7) == 0);
    LD_CHECK(b.data[b.len] == '\0');
    ld_buf_free(&b);
}

LD_TEST(little_endian)
{
    ld_buf b = LD_BUF_INIT;
    ld_buf_put_u32le(&b, 0x01020304);
    ld_buf_put_u64le(&b, 1001);
    LD_CHECK_MEM(b.data, b.len, "\x04\x03\x02\x01\xe9\x03\0\0\0\0\0\0", 12);
    ld_buf_free(&b);
}

/* Expected strings produced by Python's json.dumps (ensure_ascii default). */
LD_TEST(json_like_python)
{
    LD_CHECK_STR(json("plain", sizeof("plain") - 1, 1), "\"plain\"");
    LD_CHECK_STR(json("a\"b\\c", sizeof("a\"b\\c") - 1, 1), "\"a\\\"b\\\\c\"");
    LD_CHECK_STR(json("\n\t\r\b\f\x01\x7f", sizeof("\n\t\r\b\f\x01\x7f") - 1, 1),
                 "\"\\n\\t\\r\\b\\f\\u0001\\u007f\"");
    LD_CHECK_STR(json("na\xc3\xafve \xe2\x9c\x93", sizeof("na\xc3\xafve \xe2\x9c\x93") - 1, 1),
                 "\"na\\u00efve \\u2713\"");
    LD_CHECK_STR(json("\xf0\x9f\x98\x80", sizeof("\xf0\x9f\x98\x80") - 1, 1), "\"\\ud83d\\ude00\"");
    LD_CHECK_STR(json("na\xc3\xafve", sizeof("na\xc3\xafve") - 1, 0), "\"na\xc3\xafve\"");
    LD_CHECK_STR(json("\x7f", sizeof("\x7f") - 1, 0), "\"\x7f\"");
    /* invalid UTF-8 becomes U+FFFD */
    LD_CHECK_STR(json("a\xff", sizeof("a\xff") - 1, 1), "\"a\\ufffd\"");
    LD_CHECK_STR(json("\xc0\xaf", sizeof("\xc0\xaf") - 1, 1), "\"\\ufffd\\ufffd\"");
    LD_CHECK_STR(json("\xed\xa0\x80", sizeof("\xed\xa0\x80") - 1, 1), "\"\\ufffd\\ufffd\\ufffd\"");
    LD_CHECK_STR(json("", sizeof("") - 1, 1), "\"\"");
    LD_CHECK_STR(json("a\0b", sizeof("a\0b") - 1, 1), "\"a\\u0000b\"");
}

LD_TEST(steal)
{
    ld_buf b = LD_BUF_INIT;
    ld_buf_puts(&b, "xyz");
    size_t n;
    char *p = ld_buf_steal(&b, &n);
    LD_CHECK_INT(n, 3);
    LD_CHECK_STR(p, "xyz");
    LD_CHECK(b.data == NULL && b.len == 0);
    free(p);
}

/* decimal integers equal printf's, at every digit count and both limits */
LD_TEST(put_i64)
{
    ld_buf b = LD_BUF_INIT;
    char want[32];
    int64_t v = 1;
    for (int d = 0; d < 19; d++, v = d < 19 ? v * 10 : v) {
        int64_t cases[] = {v - 1, v, v + 1, -v, -(v - 1), v * 9 / 10 + 7};
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            ld_buf_reset(&b);
            ld_buf_put_i64(&b, cases[i]);
            snprintf(want, sizeof want, "%lld", (long long)cases[i]);
            LD_CHECK_STR(b.data, want);
        }
    }
    int64_t ends[] = {INT64_MAX, INT64_MIN, INT64_MIN + 1, 0, -1, 99, 100, -100};
    for (size_t i = 0; i < sizeof ends / sizeof ends[0]; i++) {
        ld_buf_reset(&b);
        ld_buf_put_i64(&b, ends[i]);
        snprintf(want, sizeof want, "%lld", (long long)ends[i]);
        LD_CHECK_STR(b.data, want);
    }
    ld_buf_free(&b);
}

/* ld_copy_small copies exactly n bytes at every small length */
LD_TEST(copy_small)
{
    unsigned char src[40], dst[48];
    for (int i = 0; i < 40; i++)
        src[i] = (unsigned char)(i * 37 + 1);
    for (size_t n = 0; n <= 40; n++) {
        memset(dst, 0xEE, sizeof dst);
        ld_copy_small(dst + 1, src, n);
        LD_CHECK(dst[0] == 0xEE && memcmp(dst + 1, src, n) == 0 && dst[n + 1] == 0xEE);
    }
}

LD_TEST_MAIN
