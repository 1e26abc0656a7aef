/* tests/unit/test_log.c - log levels, rate limiting and a reload while other threads log. */
#include "nodedns/util/log.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

static void test_level_parse(void **state)
{
	(void)state;
	enum log_level l;
	assert_int_equal(log_level_parse("debug", &l), 0);
	assert_int_equal(l, LOGL_DEBUG);
	assert_int_equal(log_level_parse("warning", &l), 0);
	assert_int_equal(l, LOGL_WARN);
	assert_int_not_equal(log_level_parse("verbose", &l), 0);
}

static void test_enabled_follows_setup(void **state)
{
	(void)state;
	log_setup(LOGL_WARN, false);
	assert_true(log_enabled(LOGL_ERROR));
	assert_true(log_enabled(LOGL_WARN));
	assert_false(log_enabled(LOGL_INFO));
	log_setup(LOGL_DEBUG, true);
	assert_true(log_enabled(LOGL_DEBUG));
	log_setup(LOGL_INFO, false);
}

/* One line per interval; the calls in between are counted, and the count
 * starts again from 0 once a line is allowed. */
static void test_ratelimited_resets_suppressed(void **state)
{
	(void)state;
	struct log_limit l = { 0 };
	assert_true(log_ratelimited(&l, 1000, 100));
	assert_int_equal(l.suppressed, 0);
	assert_false(log_ratelimited(&l, 1010, 100));
	assert_false(log_ratelimited(&l, 1050, 100));
	assert_false(log_ratelimited(&l, 1099, 100));
	assert_int_equal(l.suppressed, 3);
	assert_true(log_ratelimited(&l, 1100, 100));
	assert_int_equal(l.suppressed, 0);
	assert_false(log_ratelimited(&l, 1150, 100));
	assert_int_equal(l.suppressed, 1);
	assert_true(log_ratelimited(&l, 5000, 100));
	assert_int_equal(l.suppressed, 0);
}

/* A first call at time 0 still starts the interval. */
static void test_ratelimited_at_time_zero(void **state)
{
	(void)state;
	struct log_limit l = { 0 };
	assert_true(log_ratelimited(&l, 0, 100));
	assert_false(log_ratelimited(&l, 50, 100));
	assert_int_equal(l.suppressed, 1);
}

static void *log_a_lot(void *arg)
{
	(void)arg;
	for (int i = 0; i < 2000; i++)
		if (log_enabled(LOGL_DEBUG))
			log_msg(LOGL_DEBUG, "test", "line %d", i);
	return NULL;
}

/* log_setup() (the SIGHUP reload) while workers log: no data race (run
 * under TSan to see it), and the last setting wins. */
static void test_setup_while_logging(void **state)
{
	(void)state;
	int saved = dup(STDERR_FILENO);
	int null = open("/dev/null", O_WRONLY);
	assert_true(saved >= 0 && null >= 0);
	dup2(null, STDERR_FILENO);
	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&t[i], NULL, log_a_lot, NULL), 0);
	for (int i = 0; i < 2000; i++)
		log_setup(i % 2 ? LOGL_DEBUG : LOGL_ERROR, i % 3 == 0);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	log_setup(LOGL_INFO, false);
	dup2(saved, STDERR_FILENO);
	close(saved);
	close(null);
	assert_true(log_enabled(LOGL_INFO));
	assert_false(log_enabled(LOGL_DEBUG));
}

/* Run log_info(fmt, arg) with stderr on a pipe; the bytes written. */
static size_t capture(bool json, const char *arg, char *out, size_t cap)
{
	int fds[2], saved = dup(STDERR_FILENO);
	assert_true(saved >= 0 && pipe(fds) == 0);
	dup2(fds[1], STDERR_FILENO);
	log_setup(LOGL_INFO, json);
	log_info("k8s", "listed object rejected: %s", arg);
	log_setup(LOGL_INFO, false);
	dup2(saved, STDERR_FILENO);
	close(saved);
	close(fds[1]);
	ssize_t n = read(fds[0], out, cap - 1);
	close(fds[0]);
	assert_true(n > 0);
	out[n] = '\0';
	return (size_t)n;
}

/* A string from outside cannot forge a line or reach the terminal raw, in
 * either format. */
static void test_control_characters_escaped(void **state)
{
	(void)state;
	const char *evil = "x\n2026-12-05T00:00:00Z error FAKE\x1b[2J\r\"q\\";
	char out[512];
	for (int json = 0; json < 2; json++) {
		size_t n = capture(json, evil, out, sizeof(out));
		assert_int_equal(out[n - 1], '\n');
		assert_null(memchr(out, '\n', n - 1)); /* one line */
		for (size_t i = 0; i < n - 1; i++)
			assert_true((unsigned char)out[i] >= 0x20 && out[i] != 0x7f);
		assert_non_null(strstr(out, "x\\n2026-12-05"));
		assert_non_null(strstr(out, json ? "\\u001b[2J\\r\\\"q\\\\" : "\\x1b[2J\\r\"q\\"));
	}
	char small[8];
	assert_int_equal(log_escape(small, sizeof(small), "\x01\x02", false), 4);
	assert_string_equal(small, "\\x01");
	assert_int_equal(log_escape(small, sizeof(small), "abc\x7f", false), 7);
	assert_string_equal(small, "abc\\x7f");
	assert_int_equal(log_escape(small, sizeof(small), "abcd\x7f", false), 4);
	assert_string_equal(small, "abcd");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_level_parse),
		cmocka_unit_test(test_enabled_follows_setup),
		cmocka_unit_test(test_ratelimited_resets_suppressed),
		cmocka_unit_test(test_ratelimited_at_time_zero),
		cmocka_unit_test(test_setup_while_logging),
		cmocka_unit_test(test_control_characters_escaped),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
