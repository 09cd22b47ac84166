#include "ld_time.h"

#include <ctype.h>
#include <stdio.h>
#include <time.h>

int64_t ld_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t ld_wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

char *ld_time_rfc3339_us(int64_t wall_us, char *buf, size_t n)
{
    time_t secs = (time_t)(wall_us / 1000000);
    int64_t frac = wall_us % 1000000;
    if (frac < 0) {
        frac += 1000000;
        secs -= 1;
    }
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(buf, n, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)frac);
    return buf;
}

static int days_from_civil(int y, int m, int d, int64_t *days)
{
    if (m < 1 || m > 12 || d < 1 || d > 31)
        return -1;
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    *days = era * 146097 + doe - 719468;
    return 0;
}

int ld_time_parse_iso8601(const char *s, int64_t *us)
{
    int y, mo, d, h = 0, mi = 0, sec = 0, n = 0;
    while (isspace((unsigned char)*s))
        s++;
    if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3 || n != 10)
        return -1;
    const char *p = s + n;
    int64_t frac_us = 0;
    if (*p == 'T' || *p == ' ') {
        int m = 0;
        if (sscanf(p + 1, "%2d:%2d%n", &h, &mi, &m) != 2 || m != 5)
            return -1;
        p += 1 + m;
        if (*p == ':') {
            if (!isdigit((unsigned char)p[1]) || !isdigit((unsigned char)p[2]))
                return -1;
            sec = (p[1] - '0') * 10 + (p[2] - '0');
            p += 3;
        }
        if (*p == '.') {
            p++;
            int digits = 0;
            while (isdigit((unsigned char)*p)) {
                if (digits < 6)
                    frac_us = frac_us * 10 + (*p - '0');
                digits++;
                p++;
            }
            if (!digits)
                return -1;
            for (int k = digits; k < 6; k++)
                frac_us *= 10;
        }
    }
    int64_t off_s = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om = 0, m = 0;
        int sign = *p == '-' ? -1 : 1;
        if (sscanf(p + 1, "%2d:%2d%n", &oh, &om, &m) == 2)
            p += 1 + m;
        else if (sscanf(p + 1, "%2d%2d%n", &oh, &om, &m) == 2)
            p += 1 + m;
        else
            return -1;
        off_s = sign * (oh * 3600 + om * 60);
    }
    while (isspace((unsigned char)*p))
        p++;
    if (*p || h > 23 || mi > 59 || sec > 60)
        return -1;
    int64_t days;
    if (days_from_civil(y, mo, d, &days) != 0)
        return -1;
    *us = ((days * 86400 + h * 3600 + mi * 60 + sec) - off_s) * 1000000 + frac_us;
    return 0;
}
