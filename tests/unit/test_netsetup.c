/* tests/unit/test_netsetup.c - node setup: netlink request bytes, rules, iptables text, commands.
 *
 * Everything here runs without privileges: the netlink messages are built
 * into buffers and compared byte for byte, the iptables rules are checked as
 * text (iptables-save input, iptables-restore output), and the command
 * runner is exercised with /bin/sh, /bin/cat and /bin/sleep. The end-to-end
 * tests in tests/node/ do the real thing as root in network namespaces.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "nodedns/node/link.h"
#include "nodedns/node/netsetup.h"
#include "nodedns/node/rules.h"
#include "nodedns/node/subprocess.h"

static struct netsetup_addr v4(const char *ip, uint16_t port)
{
	struct netsetup_addr a;
	memset(&a, 0, sizeof(a));
	a.family = AF_INET;
	assert_int_equal(inet_pton(AF_INET, ip, a.ip), 1);
	a.port = port;
	return a;
}

static struct netsetup_addr v6(const char *ip, uint16_t port)
{
	struct netsetup_addr a;
	memset(&a, 0, sizeof(a));
	a.family = AF_INET6;
	assert_int_equal(inet_pton(AF_INET6, ip, a.ip), 1);
	a.port = port;
	return a;
}

/* ------------------------------------------------------------ netlink */

static void test_newlink_dummy_bytes(void **state)
{
	(void)state;
	uint8_t buf[256];
	memset(buf, 0xaa, sizeof(buf));
	size_t n = link_msg_newlink_dummy(buf, sizeof(buf), 7, "nodelocaldns");
	static const uint8_t want[] = {
		/* nlmsghdr: len 68, RTM_NEWLINK (16), REQUEST|ACK|EXCL|CREATE (0x605), seq 7, pid 0 */
		68, 0, 0, 0, 16, 0, 0x05, 0x06, 7, 0, 0, 0, 0, 0, 0, 0,
		/* ifinfomsg: AF_UNSPEC, pad, type 0, index 0, flags 0, change 0 */
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
		/* IFLA_IFNAME (3), len 17: "nodelocaldns\0" + 3 bytes of padding */
		17, 0, 3, 0, 'n', 'o', 'd', 'e', 'l', 'o', 'c', 'a', 'l', 'd', 'n', 's', 0, 0, 0, 0,
		/* IFLA_LINKINFO (18) | NLA_F_NESTED, len 16 */
		16, 0, 18, 0x80,
		/*   IFLA_INFO_KIND (1), len 10: "dummy\0" + 2 bytes of padding */
		10, 0, 1, 0, 'd', 'u', 'm', 'm', 'y', 0, 0, 0,
	};
	assert_int_equal(n, sizeof(want));
	assert_memory_equal(buf, want, sizeof(want));

	/* Too small a buffer: 0, never an overflow. */
	memset(buf, 0xaa, sizeof(buf));
	assert_int_equal(link_msg_newlink_dummy(buf, 40, 1, "nodelocaldns"), 0);
	assert_int_equal(buf[40], 0xaa);
	assert_int_equal(link_msg_newlink_dummy(buf, 8, 1, "x"), 0);
}

static void test_addr_bytes(void **state)
{
	(void)state;
	uint8_t buf[256];
	struct netsetup_addr a = v4("169.254.20.10", 53);
	size_t n = link_msg_addr(buf, sizeof(buf), 9, true, 5, &a);
	static const uint8_t want4[] = {
		/* len 40, RTM_NEWADDR (20), REQUEST|ACK|EXCL|CREATE, seq 9 */
		40, 0, 0, 0, 20, 0, 0x05, 0x06, 9, 0, 0, 0, 0, 0, 0, 0,
		/* ifaddrmsg: AF_INET, /32, flags 0, scope universe, index 5 */
		2, 32, 0, 0, 5, 0, 0, 0,
		/* IFA_LOCAL (2) and IFA_ADDRESS (1) */
		8, 0, 2, 0, 169, 254, 20, 10,
		8, 0, 1, 0, 169, 254, 20, 10,
	};
	assert_int_equal(n, sizeof(want4));
	assert_memory_equal(buf, want4, sizeof(want4));

	struct netsetup_addr b = v6("fd00::10", 53);
	n = link_msg_addr(buf, sizeof(buf), 10, false, 300, &b);
	static const uint8_t want6[] = {
		/* len 44, RTM_DELADDR (21), REQUEST|ACK, seq 10 */
		44, 0, 0, 0, 21, 0, 0x05, 0x00, 10, 0, 0, 0, 0, 0, 0, 0,
		/* AF_INET6, /128, IFA_F_NODAD, scope universe, index 300 */
		10, 128, 0x02, 0, 0x2c, 0x01, 0, 0,
		/* IFA_ADDRESS */
		20, 0, 1, 0, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
	};
	assert_int_equal(n, sizeof(want6));
	assert_memory_equal(buf, want6, sizeof(want6));
	assert_int_equal(link_msg_addr(buf, 30, 1, true, 1, &a), 0);
}

/* -------------------------------------------------------------- rules */

static void test_rules_per_address(void **state)
{
	(void)state;
	struct rules_rule r[NETSETUP_MAX_RULES];
	struct netsetup_addr a[4] = { v4("169.254.20.10", 53) };
	size_t n = rules_build(a, 1, 8080, r, NETSETUP_MAX_RULES);
	assert_int_equal(n, 12);
	/* The upstream set: 4 raw PREROUTING/INPUT... counted by chain. */
	unsigned pre = 0, input = 0, rawout = 0, filtout = 0;
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(r[i].family, AF_INET);
		assert_non_null(strstr(r[i].comment, "nodedns: "));
		if (strcmp(r[i].chain, "PREROUTING") == 0)
			pre++, assert_string_equal(r[i].target, "NOTRACK");
		else if (strcmp(r[i].chain, "INPUT") == 0)
			input++, assert_string_equal(r[i].table, "filter");
		else if (strcmp(r[i].table, "raw") == 0)
			rawout++;
		else
			filtout++, assert_string_equal(r[i].target, "ACCEPT");
		/* Comments are unique within a chain: that is how rules are found. */
		for (size_t j = 0; j < i; j++)
			if (strcmp(r[i].table, r[j].table) == 0 && strcmp(r[i].chain, r[j].chain) == 0)
				assert_string_not_equal(r[i].comment, r[j].comment);
	}
	assert_int_equal(pre, 2);
	assert_int_equal(input, 2);
	assert_int_equal(rawout, 6); /* from :53 x2, to :53 x2, health both ways */
	assert_int_equal(filtout, 2);
	assert_string_equal(r[0].table, "raw");
	assert_string_equal(r[0].chain, "PREROUTING");
	assert_string_equal(r[0].match, "-d 169.254.20.10/32 -p udp -m udp --dport 53");
	assert_string_equal(r[0].comment, "nodedns: skip conntrack for udp to 169.254.20.10:53");
	assert_string_equal(r[11].match, "-s 169.254.20.10/32 -p tcp -m tcp --sport 8080");

	/* No health port: 10. IPv6: the same set with /128 and [ip]:port. */
	a[0] = v6("fd00::a", 5353);
	n = rules_build(a, 1, 0, r, NETSETUP_MAX_RULES);
	assert_int_equal(n, 10);
	assert_int_equal(r[0].family, AF_INET6);
	assert_string_equal(r[0].match, "-d fd00::a/128 -p udp -m udp --dport 5353");
	assert_string_equal(r[0].comment, "nodedns: skip conntrack for udp to [fd00::a]:5353");

	/* The same IP on two ports: DNS rules per port, health rules once.
	 * The same IP:port twice: once. */
	a[0] = v4("10.96.0.10", 53);
	a[1] = v4("10.96.0.10", 5353);
	a[2] = v4("10.96.0.10", 53);
	a[3] = v4("169.254.20.10", 53);
	n = rules_build(a, 4, 8080, r, NETSETUP_MAX_RULES);
	assert_int_equal(n, 12 + 10 + 12);
	/* Bounded by max. */
	assert_int_equal(rules_build(a, 4, 8080, r, 5), 5);
}

static const char SAVE[] =
	"# Generated by iptables-save v1.8.9 (nf_tables)\n"
	"*raw\n"
	":PREROUTING ACCEPT [0:0]\n"
	":OUTPUT ACCEPT [0:0]\n"
	"-A PREROUTING -d 169.254.20.10/32 -p udp -m udp --dport 53 -m comment --comment \"nodedns: skip conntrack for udp to 169.254.20.10:53\" -j NOTRACK\n"
	"-A PREROUTING -d 169.254.20.10/32 -p udp -m udp --dport 53 -m comment --comment \"nodedns: skip conntrack for udp to 169.254.20.10:53\" -j NOTRACK\n"
	"-A PREROUTING -d 169.254.20.10/32 -p tcp -m tcp --dport 53 -m comment --comment \"nodedns: skip conntrack for tcp to 169.254.20.10:53 (old)\" -j NOTRACK\n"
	"-A OUTPUT -p tcp -m comment --comment \"nodedns: skip conntrack for udp to 169.254.20.10:53\" -j NOTRACK\n"
	"-A OUTPUT -j KUBE-SOMETHING\n"
	"COMMIT\n"
	"*filter\n"
	":INPUT ACCEPT [0:0]\n"
	"-A INPUT -m comment --comment \"kube: \\\"quoted\\\" nodedns: accept udp to 169.254.20.10:53\" -j ACCEPT\n"
	"-A INPUT -d 169.254.20.10/32 -p udp -m comment --comment \"nodedns: accept udp to 169.254.20.10:53\" -j ACCEPT\n"
	"-A INPUT -d 169.254.20.10/32 -p udp -m comment --comment \"nodedns: skip conntrack for udp to 169.254.20.10:53\" -j ACCEPT\n"
	"-A INPUT -m comment --comment bare -j ACCEPT\n"
	"COMMIT\n";

static void test_count_rules(void **state)
{
	(void)state;
	struct rules_rule r[NETSETUP_MAX_RULES];
	struct netsetup_addr a = v4("169.254.20.10", 53);
	size_t n = rules_build(&a, 1, 0, r, NETSETUP_MAX_RULES);
	unsigned c[NETSETUP_MAX_RULES];
	rules_count(SAVE, strlen(SAVE), r, n, AF_INET, c);
	for (size_t i = 0; i < n; i++) {
		unsigned want = 0;
		if (strcmp(r[i].chain, "PREROUTING") == 0 && strstr(r[i].comment, "udp to"))
			want = 2; /* a duplicate */
		else if (strcmp(r[i].chain, "OUTPUT") == 0 && strcmp(r[i].table, "raw") == 0 &&
			 strcmp(r[i].comment, "nodedns: skip conntrack for udp to 169.254.20.10:53") == 0)
			want = 1; /* found by chain and comment, whatever the matches say */
		else if (strcmp(r[i].chain, "INPUT") == 0 && strstr(r[i].comment, "accept udp"))
			want = 1; /* not fooled by the comment inside another one */
		assert_int_equal(c[i], want);
	}
	/* Wrong family: nothing counted. No table lines: chains only. */
	rules_count(SAVE, strlen(SAVE), r, n, AF_INET6, c);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(c[i], 0);
	static const char S[] =
		"-A PREROUTING -m comment --comment \"nodedns: skip conntrack for tcp to 169.254.20.10:53\" -j NOTRACK";
	rules_count(S, strlen(S), r, n, AF_INET, c);
	unsigned total = 0;
	for (size_t i = 0; i < n; i++)
		total += c[i];
	assert_int_equal(total, 1);
}

static void test_restore_text(void **state)
{
	(void)state;
	struct rules_rule r[NETSETUP_MAX_RULES];
	struct netsetup_addr a = v4("169.254.20.10", 53);
	size_t n = rules_build(&a, 1, 8080, r, NETSETUP_MAX_RULES);
	unsigned c[NETSETUP_MAX_RULES] = { 0 };
	char out[16384];

	/* Everything missing: -I ... 1 in reverse so the list order ends up on top. */
	int len = rules_restore_text(r, n, AF_INET, c, 1, out, sizeof(out));
	assert_true(len > 0);
	assert_int_equal((size_t)len, strlen(out));
	const char *raw = strstr(out, "*raw\n"), *filter = strstr(out, "*filter\n");
	assert_non_null(raw);
	assert_non_null(filter);
	assert_true(raw < filter);
	const char *first = "-I PREROUTING 1 -d 169.254.20.10/32 -p udp -m udp --dport 53 -m comment "
			    "--comment \"nodedns: skip conntrack for udp to 169.254.20.10:53\" -j NOTRACK\n";
	const char *second = "-I PREROUTING 1 -d 169.254.20.10/32 -p tcp -m tcp --dport 53 -m comment "
			     "--comment \"nodedns: skip conntrack for tcp to 169.254.20.10:53\" -j NOTRACK\n";
	assert_non_null(strstr(out, first));
	assert_true(strstr(out, second) < strstr(out, first));
	size_t lines = 0, commits = 0;
	for (const char *p = out; (p = strstr(p, "\n-I ")) != NULL; p++)
		lines++;
	for (const char *p = out; (p = strstr(p, "COMMIT\n")) != NULL; p++)
		commits++;
	assert_int_equal(lines, 12);
	assert_int_equal(commits, 2);
	assert_null(strstr(out, "-D "));

	/* All present once: nothing to do. */
	for (size_t i = 0; i < n; i++)
		c[i] = 1;
	assert_int_equal(rules_restore_text(r, n, AF_INET, c, 1, out, sizeof(out)), 0);
	assert_int_equal(rules_restore_text(r, n, AF_INET6, c, 0, out, sizeof(out)), 0);

	/* A duplicate in filter: one -D, only the filter table. */
	for (size_t i = 0; i < n; i++)
		if (strcmp(r[i].table, "filter") == 0 && strcmp(r[i].chain, "INPUT") == 0) {
			c[i] = 3;
			break;
		}
	len = rules_restore_text(r, n, AF_INET, c, 1, out, sizeof(out));
	assert_string_equal(out, "*filter\n"
				 "-D INPUT -d 169.254.20.10/32 -p udp -m udp --dport 53 -m comment --comment "
				 "\"nodedns: accept udp to 169.254.20.10:53\" -j ACCEPT\n"
				 "-D INPUT -d 169.254.20.10/32 -p udp -m udp --dport 53 -m comment --comment "
				 "\"nodedns: accept udp to 169.254.20.10:53\" -j ACCEPT\n"
				 "COMMIT\n");

	/* Removal: every copy of every rule. */
	len = rules_restore_text(r, n, AF_INET, c, 0, out, sizeof(out));
	lines = 0;
	for (const char *p = out; (p = strstr(p, "-D ")) != NULL; p++)
		lines++;
	assert_int_equal(lines, 14);
	assert_null(strstr(out, "-I "));

	/* Bounded output. */
	for (size_t i = 0; i < n; i++)
		c[i] = 0;
	assert_int_equal(rules_restore_text(r, n, AF_INET, c, 1, out, 100), -ENOSPC);
	assert_int_equal(rules_restore_text(r, n, AF_INET, c, 1, out, 0), -ENOSPC);
}

static void test_pick_backend(void **state)
{
	(void)state;
	assert_int_equal(rules_pick_backend(0, 0), NETSETUP_BACKEND_PLAIN);
	assert_int_equal(rules_pick_backend(40, 0), NETSETUP_BACKEND_LEGACY);
	assert_int_equal(rules_pick_backend(0, 3), NETSETUP_BACKEND_NFT);
	assert_int_equal(rules_pick_backend(2, 30), NETSETUP_BACKEND_NFT);
	assert_int_equal(rules_pick_backend(30, 2), NETSETUP_BACKEND_LEGACY);
}

/* ----------------------------------------------------------- commands */

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void test_run_status_and_output(void **state)
{
	(void)state;
	struct subprocess_result r;
	char *argv[] = { "/bin/sh", "-c", "echo out; echo err >&2; echo more >&2; exit 3", NULL };
	assert_int_equal(subprocess_run("/bin/sh", argv, NULL, 0, 1024, 5000, &r), 0);
	assert_int_equal(r.status, 3);
	assert_string_equal(r.out, "out\n");
	assert_int_equal(r.outlen, 4);
	assert_string_equal(r.err, "err more"); /* one line for the log */
	free(r.out);

	/* stdout not wanted: no buffer. Killed by a signal: 128+N. */
	char *argv2[] = { "/bin/sh", "-c", "echo ignored; kill -9 $$", NULL };
	assert_int_equal(subprocess_run("/bin/sh", argv2, NULL, 0, 0, 5000, &r), 0);
	assert_int_equal(r.status, 128 + SIGKILL);
	assert_null(r.out);

	/* Empty stdout when asked for: an empty string, not NULL. */
	char *argv3[] = { "/bin/true", NULL };
	assert_int_equal(subprocess_run("/bin/true", argv3, NULL, 0, 10, 5000, &r), 0);
	assert_int_equal(r.status, 0);
	assert_non_null(r.out);
	assert_string_equal(r.out, "");
	free(r.out);
}

static void test_run_stdin_large(void **state)
{
	(void)state;
	size_t len = 3u << 20; /* more than any pipe buffer, both ways */
	char *in = malloc(len);
	assert_non_null(in);
	for (size_t i = 0; i < len; i++)
		in[i] = (char)('a' + i % 26);
	struct subprocess_result r;
	char *argv[] = { "/bin/cat", NULL };
	assert_int_equal(subprocess_run("/bin/cat", argv, in, len, len, 10000, &r), 0);
	assert_int_equal(r.status, 0);
	assert_int_equal(r.outlen, len);
	assert_memory_equal(r.out, in, len);
	free(r.out);

	/* Output over the bound: killed, -EFBIG. */
	assert_int_equal(subprocess_run("/bin/cat", argv, in, len, 1000, 10000, &r), -EFBIG);
	assert_int_equal(r.status, -1);
	free(r.out);

	/* A command that does not read its stdin: no SIGPIPE, no hang. */
	char *argv2[] = { "/bin/true", NULL };
	assert_int_equal(subprocess_run("/bin/true", argv2, in, len, 0, 10000, &r), 0);
	assert_int_equal(r.status, 0);
	free(in);
}

static void test_run_timeout_and_missing(void **state)
{
	(void)state;
	struct subprocess_result r;
	char *argv[] = { "/bin/sleep", "5", NULL };
	uint64_t t0 = mono_ms();
	assert_int_equal(subprocess_run("/bin/sleep", argv, NULL, 0, 0, 200, &r), -ETIMEDOUT);
	uint64_t took = mono_ms() - t0;
	assert_true(took >= 190 && took < 2000);
	assert_int_equal(r.status, -1);

	/* Output closed early but the process lingers: still bounded. */
	char *argv2[] = { "/bin/sh", "-c", "exec >&- 2>&-; sleep 5", NULL };
	t0 = mono_ms();
	assert_int_equal(subprocess_run("/bin/sh", argv2, NULL, 0, 100, 300, &r), -ETIMEDOUT);
	assert_true(mono_ms() - t0 < 2000);
	free(r.out);

	char *argv3[] = { "/nonexistent/iptables", NULL };
	/* glibc reports it from posix_spawn; under valgrind the child exits 127. */
	int rc = subprocess_run("/nonexistent/iptables", argv3, NULL, 0, 0, 1000, &r);
	assert_true(rc == -ENOENT || (rc == 0 && r.status == 127));
}

/* ------------------------------------------------------- API and metrics */

static void test_new_validates(void **state)
{
	(void)state;
	struct netsetup_stats st;
	memset(&st, 0, sizeof(st));
	struct netsetup_config c;
	memset(&c, 0, sizeof(c));
	struct netsetup *ns = (struct netsetup *)1;
	assert_int_equal(netsetup_new(&c, &st, &ns), -EINVAL); /* no address */
	assert_null(ns);
	c.addrs[0] = v4("0.0.0.0", 53);
	c.naddrs = 1;
	assert_int_equal(netsetup_new(&c, &st, &ns), -EINVAL); /* only a wildcard */
	c.addrs[1] = v4("169.254.20.10", 53);
	c.naddrs = 2;
	c.ifname = "a-name-longer-than-15";
	assert_int_equal(netsetup_new(&c, &st, &ns), -EINVAL);
	c.ifname = "nodelocaldns";
	c.state_path = "/nonexistent/state";
	assert_int_equal(netsetup_new(&c, &st, &ns), 0);
	assert_non_null(ns);
	netsetup_free(ns);
	netsetup_free(NULL);
	c.addrs[1].family = AF_UNIX;
	assert_int_equal(netsetup_new(&c, &st, &ns), -EINVAL);
}

static void test_nothing_to_do(void **state)
{
	(void)state;
	/* Neither interface nor rules: ensure and teardown touch nothing. */
	struct netsetup_stats st;
	memset(&st, 0, sizeof(st));
	struct netsetup_config c;
	memset(&c, 0, sizeof(c));
	c.addrs[0] = v4("169.254.20.10", 53);
	c.naddrs = 1;
	struct netsetup *ns;
	assert_int_equal(netsetup_new(&c, &st, &ns), 0);
	assert_int_equal(netsetup_ensure(ns, true), 0);
	assert_int_equal(netsetup_teardown(ns), 0);
	assert_int_equal(netsetup_remove_rules(ns), 0);
	assert_int_equal(st.ensures, 1);
	netsetup_free(ns);
}

static void test_render_metrics(void **state)
{
	(void)state;
	struct netsetup_stats st;
	memset(&st, 0, sizeof(st));
	st.errors[NETSETUP_ERR_IPTABLES_LOCK] = 3;
	st.repairs[NETSETUP_FIX_RULE] = 12;
	st.ok = 1;
	st.rules = 12;
	struct mbuf b = { 0 };
	netsetup_render_metrics(&st, &b);
	assert_false(b.oom);
	assert_non_null(strstr(b.data, "nodedns_node_setup_errors_total{kind=\"iptables_lock\"} 3\n"));
	assert_non_null(strstr(b.data, "nodedns_node_setup_errors_total{kind=\"interface\"} 0\n"));
	assert_non_null(strstr(b.data, "nodedns_node_setup_repairs_total{kind=\"rule\"} 12\n"));
	assert_non_null(strstr(b.data, "nodedns_node_setup_ok 1\n"));
	assert_non_null(strstr(b.data, "nodedns_node_setup_rules 12\n"));
	assert_non_null(strstr(b.data, "# TYPE nodedns_node_setup_errors_total counter\n"));
	mbuf_free(&b);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN); /* as the supervisor does */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_newlink_dummy_bytes),
		cmocka_unit_test(test_addr_bytes),
		cmocka_unit_test(test_rules_per_address),
		cmocka_unit_test(test_count_rules),
		cmocka_unit_test(test_restore_text),
		cmocka_unit_test(test_pick_backend),
		cmocka_unit_test(test_run_status_and_output),
		cmocka_unit_test(test_run_stdin_large),
		cmocka_unit_test(test_run_timeout_and_missing),
		cmocka_unit_test(test_new_validates),
		cmocka_unit_test(test_nothing_to_do),
		cmocka_unit_test(test_render_metrics),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
