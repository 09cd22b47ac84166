/* ld_log: levelled logging to stderr, as text or as JSON lines. The level and
 * format are the one process-wide setting in common/ (set once at start-up,
 * read without locks). Each line is written with a single write(2), so lines
 * from different threads never interleave. */
#pragma once

#include <stdarg.h>
#include <stdint.h>

typedef enum {
    LD_LOG_DEBUG = 0,
    LD_LOG_INFO = 1,
    LD_LOG_WARN = 2,
    LD_LOG_ERROR = 3,
    LD_LOG_OFF = 4,
} ld_log_level;

typedef enum {
    LD_LOG_TEXT = 0,
    LD_LOG_JSON = 1,
} ld_log_format;

void ld_log_setup(ld_log_level level, ld_log_format format, const char *component);
ld_log_level ld_log_get_level(void);
/* Parse "debug|info|warning|warn|error|off" / "text|json"; -1 if unknown. */
int ld_log_parse_level(const char *s);
int ld_log_parse_format(const char *s);

void ld_log_write(ld_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ld_log_vwrite(ld_log_level level, const char *fmt, va_list ap);

/* The access line for one finished call: method, peer, status, latency. */
void ld_log_call(const char *method, const char *peer, int code, const char *message,
                 int64_t latency_us);

#define ld_debug(...)                                                                              \
    do {                                                                                           \
        if (ld_log_get_level() <= LD_LOG_DEBUG)                                                    \
            ld_log_write(LD_LOG_DEBUG, __VA_ARGS__);                                               \
    } while (0)
#define ld_info(...)  ld_log_write(LD_LOG_INFO, __VA_ARGS__)
#define ld_warn(...)  ld_log_write(LD_LOG_WARN, __VA_ARGS__)
#define ld_error(...) ld_log_write(LD_LOG_ERROR, __VA_ARGS__)
