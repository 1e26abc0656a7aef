/* include/nodedns/util/log.h - leveled one-line logs on stderr, text or JSON.
 *
 * The log level and format are the only file-static mutable state besides
 * main.c. Every line carries a module tag ("upstream", "server", ...). Never
 * log per query at info level; use log_ratelimited() for repeated errors.
 * Thread-safe: each line is formatted into a local buffer and written with a
 * single write(2); the level and format are atomics, so log_setup() may run
 * (SIGHUP) while other threads log.
 */
#ifndef NODEDNS_LOG_H
#define NODEDNS_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum log_level { LOGL_ERROR = 0, LOGL_WARN, LOGL_INFO, LOGL_DEBUG };

/** Parse "error|warn|info|debug". @return 0, or -EINVAL. */
int log_level_parse(const char *s, enum log_level *out);

/** Set level and format (json=false: "2026-11-26T06:00:00.000Z level tag msg"). */
void log_setup(enum log_level level, bool json);

/** True when a message at @p level would be written. */
bool log_enabled(enum log_level level);

/**
 * Copy @p s into @p out (@p cap bytes, NUL-terminated, cut before an escape
 * that does not fit) with every control character (0x00-0x1f, 0x7f)
 * escaped: \n, \r, \t, else \xNN in text or \u00NN in JSON, where '"' and
 * a backslash are escaped as well. log_msg() passes every message through it, in
 * both formats, so a string from outside cannot forge a line.
 * @return the length written.
 */
size_t log_escape(char *out, size_t cap, const char *s, bool json);

/** Write one line; the formatted message is escaped with log_escape(). */
void log_msg(enum log_level level, const char *tag, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define log_error(tag, ...) log_msg(LOGL_ERROR, tag, __VA_ARGS__)
#define log_warn(tag, ...) log_msg(LOGL_WARN, tag, __VA_ARGS__)
#define log_info(tag, ...) log_msg(LOGL_INFO, tag, __VA_ARGS__)
#define log_debug(tag, ...)                                                    \
	do {                                                                   \
		if (log_enabled(LOGL_DEBUG))                                   \
			log_msg(LOGL_DEBUG, tag, __VA_ARGS__);                 \
	} while (0)

/** A token bucket for rate-limited logging: at most one line per
 * @p interval_ms; returns true when the caller may log now. Calls that
 * return false are counted in @c suppressed, which a call that returns true
 * resets to 0 (read it before the call to report how many lines were
 * suppressed since the last one). Not locked: keep one per thread or accept
 * an occasional extra line. */
struct log_limit {
	uint64_t last_ms;
	uint64_t suppressed;
};
bool log_ratelimited(struct log_limit *l, uint64_t now_ms, uint64_t interval_ms);

#endif
