/* tests/unit/test_nodestate.c - node setup's ownership records: the state file text, and the file itself.
 *
 * The format is shared by every nodedns on a node (one may tear down what
 * an older version created), so it is checked byte for byte.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "nodedns/node/nodestate.h"

static const char TEXT[] =
	"# nodedns node setup: what nodedns created, removed at teardown\n"
	"link 7 nodelocaldns\n"
	"addr 7 169.254.20.10\n"
	"addr 7 fd00::10\n";

static void test_parse_format(void **state)
{
	(void)state;
	struct nodestate_set s;
	nodestate_parse(TEXT, &s);
	assert_int_equal(s.n, 3);
	assert_int_equal(s.v[0].kind, NODESTATE_LINK);
	assert_int_equal(s.v[0].ifindex, 7);
	assert_string_equal(s.v[0].name, "nodelocaldns");
	assert_int_equal(s.v[1].kind, NODESTATE_ADDR);
	assert_int_equal(s.v[1].family, AF_INET);
	assert_int_equal(s.v[2].family, AF_INET6);
	char out[512];
	size_t len = nodestate_format(&s, out, sizeof(out));
	assert_int_equal(len, strlen(TEXT));
	assert_memory_equal(out, TEXT, len);
}

static void test_parse_skips_bad_lines(void **state)
{
	(void)state;
	struct nodestate_set s;
	nodestate_parse("link 0 x\n"               /* index must be positive */
			"link 3 a-name-longer-than-15\n" /* over IFNAMSIZ */
			"addr 3 not-an-ip\n"
			"something else\n"
			"addr 3 10.0.0.1\n"
			"addr 3 10.0.0.1\n" /* duplicate */
			"link 4 partial", /* no newline: ignored */
			&s);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.v[0].kind, NODESTATE_ADDR);
	assert_int_equal(s.v[0].ifindex, 3);
}

static void test_set_ops(void **state)
{
	(void)state;
	struct nodestate_set s;
	memset(&s, 0, sizeof(s));
	struct nodestate_rec l = { .kind = NODESTATE_LINK, .ifindex = 5 };
	snprintf(l.name, sizeof(l.name), "ndl0");
	struct nodestate_rec a = { .kind = NODESTATE_ADDR, .ifindex = 5, .family = AF_INET };
	assert_int_equal(inet_pton(AF_INET, "169.254.20.10", a.ip), 1);
	nodestate_add(&s, &l);
	nodestate_add(&s, &a);
	nodestate_add(&s, &l);
	assert_int_equal(s.n, 2);
	assert_true(nodestate_has(&s, &a));
	struct nodestate_rec other = l;
	other.ifindex = 6; /* a re-created link is another record */
	assert_false(nodestate_has(&s, &other));
	nodestate_del_at(&s, 0);
	assert_int_equal(s.n, 1);
	assert_false(nodestate_has(&s, &l));
	for (int i = 1; i <= NODESTATE_MAX_RECORDS + 5; i++) {
		struct nodestate_rec r = { .kind = NODESTATE_LINK, .ifindex = i };
		snprintf(r.name, sizeof(r.name), "l%d", i);
		nodestate_add(&s, &r);
	}
	assert_int_equal(s.n, NODESTATE_MAX_RECORDS); /* bounded */
}

static void test_file_roundtrip(void **state)
{
	(void)state;
	char path[] = "/tmp/nodedns-nodestate-XXXXXX";
	int tfd = mkstemp(path);
	assert_true(tfd >= 0);
	assert_int_equal(write(tfd, TEXT, strlen(TEXT)), (ssize_t)strlen(TEXT));
	close(tfd);
	struct nodestate_set s;
	int fd;
	assert_int_equal(nodestate_load(path, &s, &fd), 0);
	assert_true(fd >= 0);
	assert_int_equal(s.n, 3);
	nodestate_del_at(&s, 0); /* the link goes; the last record takes its place */
	assert_int_equal(nodestate_store(fd, path, &s), 0);
	assert_int_equal(nodestate_load(path, &s, &fd), 0);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.v[0].kind, NODESTATE_ADDR);
	assert_int_equal(s.v[0].family, AF_INET6);
	assert_int_equal(nodestate_store(fd, path, &s), 0);
	unlink(path);

	assert_int_equal(nodestate_load("/nonexistent/dir/state", &s, &fd), -ENOENT);
	assert_int_equal(fd, -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_format),
		cmocka_unit_test(test_parse_skips_bad_lines),
		cmocka_unit_test(test_set_ops),
		cmocka_unit_test(test_file_roundtrip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
