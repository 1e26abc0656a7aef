/* tests/unit/test_k8s_stream.c - watch stream line framing and event decoding. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "nodedns/cluster/k8s_stream.h"

/* ------------------------------------------------------------ helpers */

#define MAX_LINES 64

struct collect {
	char *lines[MAX_LINES];
	size_t n;
	int stop_after; /* >0: return 7 after that many lines */
};

static int collect_cb(void *arg, const char *line, size_t len)
{
	struct collect *c = arg;
	assert_true(len > 0);
	assert_true(c->n < MAX_LINES);
	c->lines[c->n] = malloc(len + 1);
	assert_non_null(c->lines[c->n]);
	memcpy(c->lines[c->n], line, len);
	c->lines[c->n][len] = '\0';
	c->n++;
	if (c->stop_after > 0 && (int)c->n == c->stop_after)
		return 7;
	return 0;
}

static void collect_free(struct collect *c)
{
	for (size_t i = 0; i < c->n; i++)
		free(c->lines[i]);
	memset(c, 0, sizeof(*c));
}

static void feed_str(struct k8s_stream *s, const char *str, struct collect *c)
{
	assert_int_equal(k8s_stream_feed(s, str, strlen(str), collect_cb, c), 0);
}

static void expect_lines(struct collect *c, const char *const *want, size_t n)
{
	assert_int_equal(c->n, n);
	for (size_t i = 0; i < n; i++)
		assert_string_equal(c->lines[i], want[i]);
}

/* ------------------------------------------------------------ framing */

static const char *const three[] = {
	"{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\"}}}",
	"{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":\"17\"}}}",
	"{\"type\":\"DELETED\",\"object\":{\"metadata\":{\"name\":\"\xc3\xa9\"}}}",
};

static char *join_lines(const char *const *l, size_t n, const char *sep)
{
	size_t total = 1;
	for (size_t i = 0; i < n; i++)
		total += strlen(l[i]) + strlen(sep);
	char *out = malloc(total);
	assert_non_null(out);
	out[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		strcat(out, l[i]);
		strcat(out, sep);
	}
	return out;
}

static void split_every_position(const char *sep)
{
	char *all = join_lines(three, 3, sep);
	size_t len = strlen(all);

	/* Two pieces, split at every byte. */
	for (size_t i = 0; i <= len; i++) {
		struct k8s_stream s;
		struct collect c = {0};
		k8s_stream_init(&s, 4096);
		assert_int_equal(k8s_stream_feed(&s, all, i, collect_cb, &c), 0);
		assert_int_equal(k8s_stream_feed(&s, all + i, len - i, collect_cb, &c), 0);
		expect_lines(&c, three, 3);
		assert_int_equal(s.lines, 3);
		assert_int_equal(s.oversized, 0);
		collect_free(&c);
		k8s_stream_deinit(&s);
	}
	/* Three pieces, every pair of split points. */
	for (size_t i = 0; i <= len; i++) {
		for (size_t j = i; j <= len; j++) {
			struct k8s_stream s;
			struct collect c = {0};
			k8s_stream_init(&s, 4096);
			assert_int_equal(k8s_stream_feed(&s, all, i, collect_cb, &c), 0);
			assert_int_equal(k8s_stream_feed(&s, all + i, j - i, collect_cb, &c), 0);
			assert_int_equal(k8s_stream_feed(&s, all + j, len - j, collect_cb, &c), 0);
			expect_lines(&c, three, 3);
			collect_free(&c);
			k8s_stream_deinit(&s);
		}
	}
	/* One byte at a time. */
	struct k8s_stream s;
	struct collect c = {0};
	k8s_stream_init(&s, 4096);
	for (size_t i = 0; i < len; i++)
		assert_int_equal(k8s_stream_feed(&s, all + i, 1, collect_cb, &c), 0);
	expect_lines(&c, three, 3);
	collect_free(&c);
	k8s_stream_deinit(&s);
	free(all);
}

static void test_split_every_byte(void **state)
{
	(void)state;
	split_every_position("\n");
}

static void test_split_every_byte_crlf(void **state)
{
	(void)state;
	split_every_position("\r\n");
}

static void test_many_lines_one_chunk(void **state)
{
	(void)state;
	struct k8s_stream s;
	struct collect c = {0};
	k8s_stream_init(&s, 100);
	feed_str(&s, "a\nbb\nccc\ndd", &c);
	const char *const want[] = {"a", "bb", "ccc"};
	expect_lines(&c, want, 3);
	/* The partial "dd" is completed by the next chunk. */
	feed_str(&s, "d\ne\n", &c);
	const char *const want2[] = {"a", "bb", "ccc", "ddd", "e"};
	expect_lines(&c, want2, 5);
	collect_free(&c);
	k8s_stream_deinit(&s);
}

static void test_empty_lines_and_crlf(void **state)
{
	(void)state;
	struct k8s_stream s;
	struct collect c = {0};
	k8s_stream_init(&s, 100);
	feed_str(&s, "\n\n\r\na\r\n\n\r\r\nb\n", &c);
	/* "\r\r\n": only one '\r' belongs to the line ending. */
	const char *const want[] = {"a", "\r", "b"};
	expect_lines(&c, want, 3);
	assert_int_equal(s.lines, 3);
	collect_free(&c);
	/* Zero-length and NULL feeds are no-ops. */
	assert_int_equal(k8s_stream_feed(&s, NULL, 0, collect_cb, &c), 0);
	assert_int_equal(k8s_stream_feed(&s, "x", 0, collect_cb, &c), 0);
	assert_int_equal(c.n, 0);
	k8s_stream_deinit(&s);
}

static void test_line_length_limit(void **state)
{
	(void)state;
	struct k8s_stream s;
	struct collect c = {0};
	k8s_stream_init(&s, 5);
	/* Exactly the limit, and the limit plus a CR: both delivered. */
	feed_str(&s, "12345\n12345\r\n", &c);
	/* One byte over: dropped, with and without a carried-over part. */
	feed_str(&s, "123456\n", &c);
	feed_str(&s, "123", &c);
	feed_str(&s, "456\nok\n", &c);
	const char *const want[] = {"12345", "12345", "ok"};
	expect_lines(&c, want, 3);
	assert_int_equal(s.oversized, 2);
	collect_free(&c);
	k8s_stream_deinit(&s);
}

static void test_oversized_line(void **state)
{
	(void)state;
	const size_t max = 16;
	char big[200];
	memset(big, 'x', sizeof(big));
	const char *before = "first\n";
	const char *after = "\nsecond\nthird\n";
	size_t total = strlen(before) + sizeof(big) + strlen(after);
	char *all = malloc(total);
	assert_non_null(all);
	memcpy(all, before, strlen(before));
	memcpy(all + strlen(before), big, sizeof(big));
	memcpy(all + strlen(before) + sizeof(big), after, strlen(after));
	const char *const want[] = {"first", "second", "third"};

	/* Whole, then split at every position, then byte by byte. */
	for (size_t i = 0; i <= total; i++) {
		struct k8s_stream s;
		struct collect c = {0};
		k8s_stream_init(&s, max);
		assert_int_equal(k8s_stream_feed(&s, all, i, collect_cb, &c), 0);
		assert_true(s.len <= max + 1);
		assert_int_equal(k8s_stream_feed(&s, all + i, total - i, collect_cb, &c), 0);
		expect_lines(&c, want, 3);
		assert_int_equal(s.oversized, 1);
		collect_free(&c);
		k8s_stream_deinit(&s);
	}
	struct k8s_stream s;
	struct collect c = {0};
	k8s_stream_init(&s, max);
	for (size_t i = 0; i < total; i++) {
		assert_int_equal(k8s_stream_feed(&s, all + i, 1, collect_cb, &c), 0);
		assert_true(s.cap <= max + 1);
	}
	expect_lines(&c, want, 3);
	assert_int_equal(s.oversized, 1);
	collect_free(&c);
	k8s_stream_deinit(&s);
	free(all);
}

static void test_large_line_buffer_released(void **state)
{
	(void)state;
	struct k8s_stream s;
	struct collect c = {0};
	size_t n = 300 * 1024;
	char *big = malloc(n + 1);
	assert_non_null(big);
	memset(big, 'y', n);
	big[n] = '\n';
	k8s_stream_init(&s, 1024 * 1024);
	/* Carried over in two halves, so it goes through the buffer. */
	assert_int_equal(k8s_stream_feed(&s, big, n / 2, collect_cb, &c), 0);
	assert_int_equal(s.len, n / 2);
	assert_int_equal(k8s_stream_feed(&s, big + n / 2, n + 1 - n / 2, collect_cb, &c), 0);
	assert_int_equal(c.n, 1);
	assert_int_equal(strlen(c.lines[0]), n);
	/* Big buffers are not kept once empty. */
	assert_null(s.buf);
	collect_free(&c);
	k8s_stream_deinit(&s);
	free(big);
}

static void test_callback_stops(void **state)
{
	(void)state;
	struct k8s_stream s;
	struct collect c = {.stop_after = 2};
	k8s_stream_init(&s, 100);
	assert_int_equal(k8s_stream_feed(&s, "a\nb\nc\nd", 7, collect_cb, &c), 7);
	assert_int_equal(c.n, 2);
	/* The rest of that chunk is gone; the stream can be reset and reused. */
	k8s_stream_reset(&s);
	c.stop_after = 0;
	feed_str(&s, "e\n", &c);
	const char *const want[] = {"a", "b", "e"};
	expect_lines(&c, want, 3);
	collect_free(&c);
	k8s_stream_deinit(&s);
}

static void test_reset_drops_partial(void **state)
{
	(void)state;
	struct k8s_stream s;
	struct collect c = {0};
	k8s_stream_init(&s, 4);
	feed_str(&s, "abc", &c);
	k8s_stream_reset(&s);
	feed_str(&s, "d\n", &c);
	/* Reset also leaves skipping mode. */
	feed_str(&s, "toolong", &c);
	assert_true(s.skipping);
	k8s_stream_reset(&s);
	feed_str(&s, "x\n", &c);
	const char *const want[] = {"d", "x"};
	expect_lines(&c, want, 2);
	collect_free(&c);
	k8s_stream_deinit(&s);
}

/* ------------------------------------------------------------ decoding */

static int decode_str(const char *line, struct k8s_stream_event *ev, char *err, size_t errlen)
{
	return k8s_stream_decode(line, strlen(line), ev, err, errlen);
}

static void test_decode_object_events(void **state)
{
	(void)state;
	static const struct {
		const char *line;
		enum k8s_ev_type type;
		const char *rv;
	} cases[] = {
		{"{\"type\":\"ADDED\",\"object\":{\"kind\":\"Service\",\"metadata\":"
		 "{\"name\":\"a\",\"namespace\":\"b\",\"resourceVersion\":\"12\"}}}",
		 K8S_EV_ADDED, "12"},
		{"{\"object\":{\"metadata\":{\"resourceVersion\":\"13\"}},\"type\":\"MODIFIED\"}",
		 K8S_EV_MODIFIED, "13"},
		{"{\"type\":\"DELETED\",\"object\":{\"metadata\":{\"resourceVersion\":\"14\"}}}",
		 K8S_EV_DELETED, "14"},
		/* No metadata, or no RV: decoded, RV empty (the store judges the object). */
		{"{\"type\":\"ADDED\",\"object\":{}}", K8S_EV_ADDED, ""},
		{"{\"type\":\"ADDED\",\"object\":{\"metadata\":{}}}", K8S_EV_ADDED, ""},
		{" {\"type\":\"ADDED\",\"object\":{\"metadata\":{\"resourceVersion\":\"a.b-c_d~9\"}}} ",
		 K8S_EV_ADDED, "a.b-c_d~9"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct k8s_stream_event ev;
		char err[128];
		assert_int_equal(decode_str(cases[i].line, &ev, err, sizeof(err)), 0);
		assert_int_equal(ev.type, cases[i].type);
		assert_string_equal(ev.rv, cases[i].rv);
		assert_non_null(ev.root);
		assert_true(json_is_object((const json_t *)ev.object));
		k8s_stream_event_clear(&ev);
		assert_null(ev.root);
	}
}

static void test_decode_bookmark(void **state)
{
	(void)state;
	struct k8s_stream_event ev;
	char err[128];
	const char *bm = "{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"EndpointSlice\","
			 "\"apiVersion\":\"discovery.k8s.io/v1\",\"metadata\":"
			 "{\"resourceVersion\":\"98765\",\"creationTimestamp\":null},"
			 "\"addressType\":\"\",\"endpoints\":null,\"ports\":null}}";
	assert_int_equal(decode_str(bm, &ev, err, sizeof(err)), 0);
	assert_int_equal(ev.type, K8S_EV_BOOKMARK);
	assert_string_equal(ev.rv, "98765");
	assert_false(k8s_stream_event_is_expired(&ev));
	k8s_stream_event_clear(&ev);

	/* A bookmark must carry a resourceVersion. */
	assert_int_equal(decode_str("{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{}}}", &ev,
				    err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "BOOKMARK"));
	assert_null(ev.root);
	assert_int_equal(decode_str("{\"type\":\"BOOKMARK\",\"object\":{}}", &ev, NULL, 0),
			 -EINVAL);
}

static void test_decode_error_410(void **state)
{
	(void)state;
	struct k8s_stream_event ev;
	const char *e = "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"apiVersion\":\"v1\","
			"\"metadata\":{},\"status\":\"Failure\",\"message\":\"too old resource "
			"version: 5 (10)\",\"reason\":\"Expired\",\"code\":410}}";
	assert_int_equal(decode_str(e, &ev, NULL, 0), 0);
	assert_int_equal(ev.type, K8S_EV_ERROR);
	assert_int_equal(ev.code, 410);
	assert_string_equal(ev.reason, "Expired");
	assert_true(k8s_stream_event_is_expired(&ev));
	k8s_stream_event_clear(&ev);

	/* Old servers: reason Gone without a usable code. */
	assert_int_equal(decode_str("{\"type\":\"ERROR\",\"object\":{\"reason\":\"Gone\","
				    "\"code\":\"410\"}}",
				    &ev, NULL, 0),
			 0);
	assert_int_equal(ev.code, 0);
	assert_true(k8s_stream_event_is_expired(&ev));
	k8s_stream_event_clear(&ev);

	/* Another error: not expired. Wrong types are tolerated in ERROR. */
	assert_int_equal(decode_str("{\"type\":\"ERROR\",\"object\":{\"code\":500,"
				    "\"reason\":\"InternalError\",\"metadata\":7}}",
				    &ev, NULL, 0),
			 0);
	assert_int_equal(ev.code, 500);
	assert_false(k8s_stream_event_is_expired(&ev));
	k8s_stream_event_clear(&ev);

	static const char *const lenient[] = {
		"{\"type\":\"ERROR\",\"object\":{\"code\":1e3,\"reason\":5}}",
		"{\"type\":\"ERROR\",\"object\":{\"code\":-410,\"reason\":null}}",
		"{\"type\":\"ERROR\",\"object\":{\"code\":4100,\"reason\":[]}}",
		"{\"type\":\"ERROR\",\"object\":{\"code\":410.0}}",
		"{\"type\":\"ERROR\",\"object\":{}}",
	};
	for (size_t i = 0; i < sizeof(lenient) / sizeof(lenient[0]); i++) {
		assert_int_equal(decode_str(lenient[i], &ev, NULL, 0), 0);
		assert_int_equal(ev.type, K8S_EV_ERROR);
		assert_int_equal(ev.code, 0);
		assert_string_equal(ev.reason, "");
		assert_false(k8s_stream_event_is_expired(&ev));
		k8s_stream_event_clear(&ev);
	}

	/* A long reason with control characters is truncated and sanitized. */
	char line[512];
	snprintf(line, sizeof(line),
		 "{\"type\":\"ERROR\",\"object\":{\"reason\":\"a\\u0001\\n%0200d\"}}", 0);
	assert_int_equal(decode_str(line, &ev, NULL, 0), 0);
	assert_int_equal(strlen(ev.reason), K8S_REASON_MAX - 1);
	assert_memory_equal(ev.reason, "a??0", 4);
	k8s_stream_event_clear(&ev);
}

static void test_decode_wrong_types(void **state)
{
	(void)state;
	static const char *const bad[] = {
		/* not JSON / not one object */
		"",
		"{",
		"{\"type\":\"ADDED\",\"object\":{}",
		"{\"type\":\"ADDED\",\"object\":{}} {}",
		"{\"type\":\"ADDED\",\"object\":{}}x",
		"[]",
		"\"ADDED\"",
		"null",
		"42",
		"{\"type\":\"ADDED\",\"object\":{\"a\":\"\\u0000\"}}",
		"{\"type\":\"ADDED\",\"object\":{\"a\":\"\xff\xfe\"}}",
		/* type */
		"{\"object\":{}}",
		"{\"type\":null,\"object\":{}}",
		"{\"type\":1,\"object\":{}}",
		"{\"type\":[\"ADDED\"],\"object\":{}}",
		"{\"type\":{},\"object\":{}}",
		"{\"type\":true,\"object\":{}}",
		"{\"type\":\"added\",\"object\":{}}",
		"{\"type\":\"ADDED \",\"object\":{}}",
		"{\"type\":\"\",\"object\":{}}",
		"{\"type\":\"SYNC\",\"object\":{}}",
		/* object */
		"{\"type\":\"ADDED\"}",
		"{\"type\":\"ADDED\",\"object\":null}",
		"{\"type\":\"ADDED\",\"object\":[]}",
		"{\"type\":\"ADDED\",\"object\":\"x\"}",
		"{\"type\":\"ADDED\",\"object\":3}",
		"{\"type\":\"ERROR\",\"object\":\"gone\"}",
		"{\"type\":\"BOOKMARK\",\"object\":[]}",
		/* metadata */
		"{\"type\":\"ADDED\",\"object\":{\"metadata\":[]}}",
		"{\"type\":\"MODIFIED\",\"object\":{\"metadata\":\"m\"}}",
		"{\"type\":\"DELETED\",\"object\":{\"metadata\":null}}",
		"{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":5}}",
		/* resourceVersion */
		"{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"resourceVersion\":12}}}",
		"{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"resourceVersion\":null}}}",
		"{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"resourceVersion\":\"\"}}}",
		"{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"resourceVersion\":\"1&watch=0\"}}}",
		"{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"resourceVersion\":\"1 2\"}}}",
		"{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"resourceVersion\":\"1/2\"}}}",
		"{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":[\"1\"]}}}",
		"{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":true}}}",
		"{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":\"\\u00e9\"}}}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct k8s_stream_event ev;
		char err[128] = "unset";
		int rc = decode_str(bad[i], &ev, err, sizeof(err));
		if (rc != -EINVAL)
			fail_msg("case %zu (%s): rc %d", i, bad[i], rc);
		assert_true(err[0] != '\0' && strcmp(err, "unset") != 0);
		assert_null(ev.root);
		assert_null(ev.object);
		k8s_stream_event_clear(&ev); /* safe after a failure */
	}
}

static void test_decode_rv_length(void **state)
{
	(void)state;
	char rv[K8S_RV_MAX + 1];
	char line[256];
	struct k8s_stream_event ev;

	memset(rv, '7', K8S_RV_MAX - 1);
	rv[K8S_RV_MAX - 1] = '\0';
	snprintf(line, sizeof(line),
		 "{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":\"%s\"}}}", rv);
	assert_int_equal(decode_str(line, &ev, NULL, 0), 0);
	assert_string_equal(ev.rv, rv);
	k8s_stream_event_clear(&ev);

	rv[K8S_RV_MAX - 1] = '7';
	rv[K8S_RV_MAX] = '\0';
	snprintf(line, sizeof(line),
		 "{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":\"%s\"}}}", rv);
	assert_int_equal(decode_str(line, &ev, NULL, 0), -EINVAL);

	assert_true(k8s_rv_valid("0"));
	assert_false(k8s_rv_valid(""));
	assert_false(k8s_rv_valid("1%20"));
}

static void test_decode_deep_nesting(void **state)
{
	(void)state;
	/* Far deeper than jansson's parser limit: an error, not a crash. */
	size_t depth = 100000;
	char *line = malloc(2 * depth + 64);
	assert_non_null(line);
	size_t n = (size_t)sprintf(line, "{\"type\":\"ADDED\",\"object\":{\"x\":");
	for (size_t i = 0; i < depth; i++)
		line[n++] = '[';
	for (size_t i = 0; i < depth; i++)
		line[n++] = ']';
	line[n++] = '}';
	line[n++] = '}';
	struct k8s_stream_event ev;
	/* ~128 bytes of tree per '[': refused before decoding. */
	assert_int_equal(k8s_stream_decode(line, n, &ev, NULL, 0), -E2BIG);
	free(line);

	/* The same nesting within the cost bound (padded with a long string):
	 * jansson's depth limit makes it an error. */
	size_t pad = 1u << 20;
	line = malloc(2 * depth + pad + 64);
	assert_non_null(line);
	n = (size_t)sprintf(line, "{\"type\":\"ADDED\",\"object\":{\"p\":\"");
	memset(line + n, 'p', pad);
	n += pad;
	n += (size_t)sprintf(line + n, "\",\"x\":");
	for (size_t i = 0; i < depth; i++)
		line[n++] = '[';
	for (size_t i = 0; i < depth; i++)
		line[n++] = ']';
	line[n++] = '}';
	line[n++] = '}';
	assert_int_equal(k8s_stream_decode(line, n, &ev, NULL, 0), -EINVAL);
	free(line);
}

/* ------------------------------------------------------- list splitting */

struct items {
	char text[16][128];
	size_t costs[16];
	unsigned n, stop_at;
};

static int items_cb(void *arg, const char *text, size_t len, size_t cost)
{
	struct items *it = arg;
	assert_true(it->n < 16 && len < 128);
	memcpy(it->text[it->n], text, len);
	it->text[it->n][len] = '\0';
	it->costs[it->n] = cost;
	it->n++;
	return it->stop_at && it->n == it->stop_at ? 7 : 0;
}

static const char LIST[] =
	"{\"kind\":\"ServiceList\",\"items\": [ {\"metadata\":{\"name\":\"a]\\\"},{\"}},\n"
	"{\"items\":[1,{}],\"s\":\"x\"} , 1,\"s,]\",null,[[]],\n{}],"
	"\"metadata\":{\"resourceVersion\":\"7\",\"continue\":\"c\",\"items\":[]}}";
static const char *const LIST_ITEMS[] = {
	"{\"metadata\":{\"name\":\"a]\\\"},{\"}}", "{\"items\":[1,{}],\"s\":\"x\"}", "1",
	"\"s,]\"", "null", "[[]]", "{}",
};

static void check_split(size_t step)
{
	struct k8s_stream_list s;
	struct items it = {0};
	size_t len = strlen(LIST), slen;

	k8s_stream_list_init(&s, 1024, 1024);
	for (size_t i = 0; i < len; i += step)
		assert_int_equal(k8s_stream_list_feed(&s, LIST + i, len - i < step ? len - i : step,
						      items_cb, &it), 0);
	assert_int_equal(it.n, 7);
	for (unsigned i = 0; i < 7; i++) {
		assert_string_equal(it.text[i], LIST_ITEMS[i]);
		assert_int_equal(it.costs[i], k8s_stream_json_cost(it.text[i], strlen(it.text[i])));
	}
	const char *shell = k8s_stream_list_shell(&s, &slen);
	json_t *root = json_loadb(shell, slen, 0, NULL);
	assert_non_null(root);
	assert_int_equal(json_array_size(json_object_get(root, "items")), 0);
	assert_true(json_is_array(json_object_get(root, "items")));
	const json_t *meta = json_object_get(root, "metadata");
	assert_string_equal(json_string_value(json_object_get(meta, "continue")), "c");
	assert_string_equal(json_string_value(json_object_get(root, "kind")), "ServiceList");
	json_decref(root);
	assert_int_equal(s.items, 7);
	assert_int_equal(s.oversized, 0);
	k8s_stream_list_deinit(&s);
}

/* Every element of the top-level "items" comes out whole, split anywhere:
 * brackets and quotes inside strings, an "items" key inside an item, scalar
 * elements; the rest stays in the shell with "items":[]. */
static void test_list_split(void **state)
{
	(void)state;
	for (size_t step = 1; step <= strlen(LIST); step++)
		check_split(step);
}

/* An element over max_item_bytes, or over the cost bound, is dropped and
 * counted; the next one comes through. A shell over its bound is -E2BIG. */
static void test_list_split_bounds(void **state)
{
	(void)state;
	struct k8s_stream_list s;
	struct items it = {0};
	char *body = malloc(300000);
	assert_non_null(body);

	k8s_stream_list_init(&s, 100000, 64);
	size_t n = (size_t)sprintf(body, "{\"items\":[{\"x\":\"");
	memset(body + n, 'x', 150000); /* over max_item_bytes */
	n += 150000;
	n += (size_t)sprintf(body + n, "\"},[");
	for (int i = 0; i < 20000; i++) /* 60 kB of "{}," : ~5 MB to decode */
		n += (size_t)sprintf(body + n, "{},");
	n += (size_t)sprintf(body + n, "{}],{\"ok\":1}]}");
	assert_int_equal(k8s_stream_list_feed(&s, body, n, items_cb, &it), 0);
	assert_int_equal(it.n, 1);
	assert_string_equal(it.text[0], "{\"ok\":1}");
	assert_int_equal(s.oversized, 2);
	assert_true(s.item.cap <= 64 * 1024); /* the big buffer is not kept */

	/* The shell is bounded. */
	k8s_stream_list_reset(&s);
	memset(body, ' ', 10);
	n = (size_t)sprintf(body, "{\"metadata\":{\"a\":\"%070d\"}}", 0);
	assert_int_equal(k8s_stream_list_feed(&s, body, n, items_cb, &it), -E2BIG);
	k8s_stream_list_deinit(&s);

	/* The callback stops the feed. */
	struct items stop = {.stop_at = 2};
	k8s_stream_list_init(&s, 1024, 1024);
	assert_int_equal(k8s_stream_list_feed(&s, LIST, strlen(LIST), items_cb, &stop), 7);
	assert_int_equal(stop.n, 2);
	k8s_stream_list_deinit(&s);
	free(body);
}

/* The cost estimate: "{}," is ~80x its text; real objects 10-20x. */
static void test_json_cost(void **state)
{
	(void)state;
	const char *obj = "{\"metadata\":{\"name\":\"web\",\"namespace\":\"default\","
			  "\"resourceVersion\":\"12345\",\"labels\":{\"app\":\"web\"}},"
			  "\"spec\":{\"clusterIP\":\"10.96.0.10\",\"ports\":[{\"name\":\"http\","
			  "\"port\":80,\"protocol\":\"TCP\"}]}}";
	size_t len = strlen(obj), cost = k8s_stream_json_cost(obj, len);
	assert_true(cost > 10 * len && cost < 20 * len);
	assert_true(k8s_stream_cost_ok(cost, len));
	assert_int_equal(k8s_stream_json_cost("{},", 3), 3 + 224 + 16);
	assert_int_equal(k8s_stream_json_cost("[1, -2]", 7), 7 + 136 + 16 + 2 * 48);
	assert_int_equal(k8s_stream_json_cost("\"{[\\\",\"", 7), 7 + 48); /* one string */
	assert_true(k8s_stream_cost_ok(K8S_COST_FLOOR, 1));
	assert_false(k8s_stream_cost_ok(K8S_COST_FLOOR + 1, 1));
	assert_true(k8s_stream_cost_ok(K8S_COST_RATIO * 100000, 100000));
	assert_false(k8s_stream_cost_ok(K8S_COST_RATIO * 100000 + K8S_COST_RATIO, 100000));
}

/* The watcher's pipeline: framing then decoding; bad lines are counted and
 * the stream goes on. */
struct pipeline {
	unsigned good, bad, bookmarks, errors;
	char last_rv[K8S_RV_MAX];
};

static int pipeline_cb(void *arg, const char *line, size_t len)
{
	struct pipeline *p = arg;
	struct k8s_stream_event ev;
	if (k8s_stream_decode(line, len, &ev, NULL, 0) < 0) {
		p->bad++;
		return 0;
	}
	p->good++;
	if (ev.type == K8S_EV_BOOKMARK)
		p->bookmarks++;
	if (ev.type == K8S_EV_ERROR)
		p->errors++;
	if (ev.rv[0])
		memcpy(p->last_rv, ev.rv, sizeof(ev.rv));
	k8s_stream_event_clear(&ev);
	return 0;
}

static void test_malformed_lines_not_fatal(void **state)
{
	(void)state;
	const char *stream =
		"{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"resourceVersion\":\"1\"}}}\n"
		"garbage\n"
		"{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"resourceVersion\":\"2\"}}}\r\n"
		"{\"type\":\"WHAT\",\"object\":{}}\n"
		"\n"
		"{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":\"9\"}}}\n"
		"{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{\"resourceVersion\":\"10\"}}}"
		"{\"type\":\"MODIFIED\",\"object\":{}}\n" /* two objects on one line: bad */
		"{\"type\":\"ERROR\",\"object\":{\"code\":410,\"reason\":\"Expired\"}}\n";
	size_t len = strlen(stream);
	for (size_t i = 0; i <= len; i++) {
		struct k8s_stream s;
		struct pipeline p = {0};
		k8s_stream_init(&s, 1024);
		assert_int_equal(k8s_stream_feed(&s, stream, i, pipeline_cb, &p), 0);
		assert_int_equal(k8s_stream_feed(&s, stream + i, len - i, pipeline_cb, &p), 0);
		assert_int_equal(p.good, 4);
		assert_int_equal(p.bad, 3);
		assert_int_equal(p.bookmarks, 1);
		assert_int_equal(p.errors, 1);
		assert_string_equal(p.last_rv, "9");
		assert_int_equal(s.lines, 7);
		k8s_stream_deinit(&s);
	}
}

/* Random bytes (mostly JSON-ish, many newlines) in random pieces: every
 * delivered line respects the bound, decoding never crashes, and the same
 * input gives the same lines whatever the split. */
struct fuzz_sum {
	uint64_t lines, bytes, decoded;
	size_t max;
};

static int fuzz_cb(void *arg, const char *line, size_t len)
{
	struct fuzz_sum *f = arg;
	struct k8s_stream_event ev;
	assert_true(len >= 1 && len <= f->max);
	f->lines++;
	f->bytes += len;
	if (k8s_stream_decode(line, len, &ev, NULL, 0) == 0)
		f->decoded++;
	k8s_stream_event_clear(&ev);
	return 0;
}

static void test_random_input(void **state)
{
	(void)state;
	static const char alphabet[] = "{}[]\":,\\\n\r\n \"type\"ADDEDBOOKMARKobject"
				       "metadataresourceVersion0123456789\x00\xff";
	uint64_t seed = 0x9e3779b97f4a7c15ull;
	const size_t n = 20000;
	char *buf = malloc(n);
	assert_non_null(buf);
	for (int round = 0; round < 20; round++) {
		for (size_t i = 0; i < n; i++) {
			seed = seed * 6364136223846793005ull + 1442695040888963407ull;
			buf[i] = alphabet[(seed >> 33) % (sizeof(alphabet) - 1)];
		}
		struct fuzz_sum whole = {.max = 40}, pieces = {.max = 40};
		struct k8s_stream s;
		k8s_stream_init(&s, 40);
		assert_int_equal(k8s_stream_feed(&s, buf, n, fuzz_cb, &whole), 0);
		uint64_t oversized = s.oversized;
		k8s_stream_deinit(&s);
		k8s_stream_init(&s, 40);
		for (size_t off = 0; off < n;) {
			seed = seed * 6364136223846793005ull + 1442695040888963407ull;
			size_t len = (seed >> 40) % 97;
			if (len > n - off)
				len = n - off;
			assert_int_equal(k8s_stream_feed(&s, buf + off, len, fuzz_cb, &pieces), 0);
			assert_true(s.len <= 41);
			off += len;
		}
		assert_int_equal(whole.lines, pieces.lines);
		assert_int_equal(whole.bytes, pieces.bytes);
		assert_int_equal(whole.decoded, pieces.decoded);
		assert_int_equal(s.oversized, oversized);
		k8s_stream_deinit(&s);
	}
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_split_every_byte),
		cmocka_unit_test(test_split_every_byte_crlf),
		cmocka_unit_test(test_many_lines_one_chunk),
		cmocka_unit_test(test_empty_lines_and_crlf),
		cmocka_unit_test(test_line_length_limit),
		cmocka_unit_test(test_oversized_line),
		cmocka_unit_test(test_large_line_buffer_released),
		cmocka_unit_test(test_callback_stops),
		cmocka_unit_test(test_reset_drops_partial),
		cmocka_unit_test(test_decode_object_events),
		cmocka_unit_test(test_decode_bookmark),
		cmocka_unit_test(test_decode_error_410),
		cmocka_unit_test(test_decode_wrong_types),
		cmocka_unit_test(test_decode_rv_length),
		cmocka_unit_test(test_decode_deep_nesting),
		cmocka_unit_test(test_list_split),
		cmocka_unit_test(test_list_split_bounds),
		cmocka_unit_test(test_json_cost),
		cmocka_unit_test(test_malformed_lines_not_fatal),
		cmocka_unit_test(test_random_input),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
