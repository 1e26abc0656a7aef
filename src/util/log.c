/* src/util/log.c - leveled one-line logs on stderr, text or JSON. */
#include "nodedns/util/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Set by log_setup() on the control thread (start, SIGHUP) while every
 * worker reads them: atomics, relaxed (a line in the old format or level
 * just after a reload is fine; a torn read is not). */
static _Atomic int g_level = LOGL_INFO;
static atomic_bool g_json;

static const char *const level_names[] = { "error", "warn", "info", "debug" };

int log_level_parse(const char *s, enum log_level *out)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcmp(s, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	if (strcmp(s, "warning") == 0) {
		*out = LOGL_WARN;
		return 0;
	}
	return -EINVAL;
}

void log_setup(enum log_level level, bool json)
{
	atomic_store_explicit(&g_level, (int)level, memory_order_relaxed);
	atomic_store_explicit(&g_json, json, memory_order_relaxed);
}

bool log_enabled(enum log_level level)
{
	return (int)level <= atomic_load_explicit(&g_level, memory_order_relaxed);
}

size_t log_escape(char *out, size_t cap, const char *s, bool json)
{
	static const char hex[] = "0123456789abcdef";
	size_t n = 0;

	for (; cap && *s; s++) {
		unsigned char c = (unsigned char)*s;
		const char *e = c == '\n' ? "n" : c == '\r' ? "r" : c == '\t' ? "t" : NULL;
		char tmp[8];
		size_t k = 0;
		if (json && (c == '"' || c == '\\')) {
			tmp[k++] = '\\';
			tmp[k++] = (char)c;
		} else if ((c < 0x20 || c == 0x7f) && e) {
			tmp[k++] = '\\';
			tmp[k++] = *e;
		} else if (c < 0x20 || c == 0x7f) {
			memcpy(tmp, json ? "\\u00" : "\\x", json ? 4 : 2);
			k = json ? 4 : 2;
			tmp[k++] = hex[c >> 4];
			tmp[k++] = hex[c & 15];
		} else {
			tmp[k++] = (char)c;
		}
		if (n + k + 1 > cap)
			break;
		memcpy(out + n, tmp, k);
		n += k;
	}
	if (cap)
		out[n] = '\0';
	return n;
}

void log_msg(enum log_level level, const char *tag, const char *fmt, ...)
{
	if (!log_enabled(level))
		return;
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	char when[64];
	snprintf(when, sizeof(when), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ",
		 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		 tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);

	/* Every message is escaped: the strings in it may come from a peer (a
	 * Service name, a server's error text), and a control character must
	 * neither start a forged line nor reach a terminal. */
	bool json = atomic_load_explicit(&g_json, memory_order_relaxed);
	char esc[4200];
	log_escape(esc, sizeof(esc), msg, json);
	char line[4400];
	int n;
	if (json)
		n = snprintf(line, sizeof(line),
			     "{\"time\":\"%s\",\"level\":\"%s\",\"module\":\"%s\",\"msg\":\"%s\"}\n",
			     when, level_names[level], tag, esc);
	else
		n = snprintf(line, sizeof(line), "%s %s %s: %s\n", when, level_names[level], tag,
			     esc);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line))
		n = sizeof(line) - 1;
	ssize_t w = write(STDERR_FILENO, line, (size_t)n);
	(void)w;
}

bool log_ratelimited(struct log_limit *l, uint64_t now_ms, uint64_t interval_ms)
{
	if (l->last_ms != 0 && now_ms - l->last_ms < interval_ms) {
		l->suppressed++;
		return false;
	}
	l->last_ms = now_ms ? now_ms : 1;
	l->suppressed = 0;
	return true;
}
