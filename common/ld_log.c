#include "ld_log.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "ld_buf.h"
#include "ld_status.h"
#include "ld_time.h"

/* The one process-wide setting of common/: written once by ld_log_setup()
 * before any thread starts, read-only afterwards. */
static struct {
    ld_log_level level;
    ld_log_format format;
    const char *component;
} log_cfg = {LD_LOG_INFO, LD_LOG_TEXT, "larder"};

static const char *const level_names[] = {"debug", "info", "warning", "error", "off"};

void ld_log_setup(ld_log_level level, ld_log_format format, const char *component)
{
    log_cfg.level = level;
    log_cfg.format = format;
    if (component)
        log_cfg.component = component;
}

ld_log_level ld_log_get_level(void)
{
    return log_cfg.level;
}

int ld_log_parse_level(const char *s)
{
    if (!strcasecmp(s, "warn"))
        return LD_LOG_WARN;
    if (!strcasecmp(s, "critical"))
        return LD_LOG_ERROR;
    for (int i = 0; i <= LD_LOG_OFF; i++)
        if (!strcasecmp(s, level_names[i]))
            return i;
    return -1;
}

int ld_log_parse_format(const char *s)
{
    if (!strcasecmp(s, "text"))
        return LD_LOG_TEXT;
    if (!strcasecmp(s, "json"))
        return LD_LOG_JSON;
    return -1;
}

static void emit(ld_buf *b)
{
    ld_buf_putc(b, '\n');
    const char *p = b->data;
    size_t left = b->len;
    while (left) {
        ssize_t w = write(STDERR_FILENO, p, left);
        if (w <= 0)
            break;
        p += w;
        left -= (size_t)w;
    }
}

static void head(ld_buf *b, ld_log_level level)
{
    char ts[40];
    ld_time_rfc3339_us(ld_wall_us(), ts, sizeof ts);
    if (log_cfg.format == LD_LOG_JSON) {
        ld_buf_printf(b, "{\"ts\":\"%s\",\"level\":\"%s\",\"component\":", ts, level_names[level]);
        ld_buf_json_str(b, log_cfg.component, strlen(log_cfg.component), 0);
    } else {
        ld_buf_printf(b, "%s %-7s %s: ", ts, level_names[level], log_cfg.component);
    }
}

void ld_log_vwrite(ld_log_level level, const char *fmt, va_list ap)
{
    if (level < log_cfg.level || level >= LD_LOG_OFF)
        return;
    ld_buf b = LD_BUF_INIT;
    ld_buf_reserve(&b, 256);
    head(&b, level);
    if (log_cfg.format == LD_LOG_JSON) {
        ld_buf msg = LD_BUF_INIT;
        ld_buf_vprintf(&msg, fmt, ap);
        ld_buf_puts(&b, ",\"msg\":");
        ld_buf_json_str(&b, msg.data ? msg.data : "", msg.len, 0);
        ld_buf_putc(&b, '}');
        ld_buf_free(&msg);
    } else {
        ld_buf_vprintf(&b, fmt, ap);
    }
    emit(&b);
    ld_buf_free(&b);
}

void ld_log_write(ld_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ld_log_vwrite(level, fmt, ap);
    va_end(ap);
}

void ld_log_call(const char *method, const char *peer, int code, const char *message,
                 int64_t latency_us)
{
    ld_log_level level = code == 0 ? LD_LOG_INFO : LD_LOG_WARN;
    if (level < log_cfg.level)
        return;
    ld_buf b = LD_BUF_INIT;
    ld_buf_reserve(&b, 256);
    head(&b, level);
    const char *status = ld_status_code_name((grpc_status_code)code);
    if (log_cfg.format == LD_LOG_JSON) {
        ld_buf_puts(&b, ",\"event\":\"call\",\"method\":");
        ld_buf_json_str(&b, method, strlen(method), 0);
        ld_buf_puts(&b, ",\"peer\":");
        ld_buf_json_str(&b, peer ? peer : "", peer ? strlen(peer) : 0, 0);
        ld_buf_printf(&b, ",\"code\":%d,\"status\":\"%s\",\"latency_us\":%lld", code, status,
                      (long long)latency_us);
        if (message && *message) {
            ld_buf_puts(&b, ",\"error\":");
            ld_buf_json_str(&b, message, strlen(message), 0);
        }
        ld_buf_putc(&b, '}');
    } else {
        ld_buf_printf(&b, "call method=%s peer=%s status=%s latency_us=%lld", method,
                      peer ? peer : "-", status, (long long)latency_us);
        if (message && *message)
            ld_buf_printf(&b, " error=%s", message);
    }
    emit(&b);
    ld_buf_free(&b);
}
