/* tests/unit/test_pods.c - Pods for autopath: decoding, the node's set, the table by IP. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "nodedns/cluster/pod_object.h"
#include "nodedns/cluster/pod_set.h"
#include "nodedns/cluster/pod_table.h"

/* A Pod of node n1 in @p ns named @p name with @p ip; @p extra_spec and
 * @p extra_status are spliced into spec and status (JSON members or ""). */
static json_t *pod(const char *ns, const char *name, const char *ip, const char *extra_spec,
		   const char *extra_status)
{
	char text[2048];
	snprintf(text, sizeof(text),
		 "{\"kind\":\"Pod\",\"metadata\":{\"namespace\":\"%s\",\"name\":\"%s\"},"
		 "\"spec\":{\"nodeName\":\"n1\"%s%s},"
		 "\"status\":{\"phase\":\"Running\",\"podIP\":\"%s\",\"podIPs\":[{\"ip\":\"%s\"}]%s%s}}",
		 ns, name, *extra_spec ? "," : "", extra_spec, ip, ip, *extra_status ? "," : "",
		 extra_status);
	json_error_t e;
	json_t *o = json_loads(text, 0, &e);
	if (!o)
		fail_msg("bad test JSON: %s: %s", e.text, text);
	return o;
}

static int decode(json_t *o, struct pod_object *p)
{
	char err[200] = "";
	int rc = pod_object_decode(o, "n1", p, err, sizeof(err));
	json_decref(o);
	return rc;
}

static void test_decode_verdicts(void **state)
{
	(void)state;
	struct pod_object p;
	assert_int_equal(decode(pod("web", "a-1", "10.1.0.5", "", ""), &p), 0);
	assert_int_equal(p.verdict, POD_ELIGIBLE);
	assert_string_equal(p.ns, "web");
	assert_string_equal(p.name, "a-1");
	assert_int_equal(p.nips, 1); /* podIP and podIPs[0] are the same address */
	assert_int_equal(p.ips[0].fam, 4);

	assert_int_equal(decode(pod("web", "a", "10.1.0.5", "\"dnsPolicy\":\"ClusterFirstWithHostNet\"", ""), &p), 0);
	assert_int_equal(p.verdict, POD_ELIGIBLE);
	assert_int_equal(decode(pod("web", "a", "10.1.0.5", "\"hostNetwork\":true", ""), &p), 0);
	assert_int_equal(p.verdict, POD_HOST_NETWORK);
	assert_int_equal(decode(pod("web", "a", "10.1.0.5", "\"dnsPolicy\":\"Default\"", ""), &p), 0);
	assert_int_equal(p.verdict, POD_DNS_POLICY);
	assert_int_equal(decode(pod("web", "a", "10.1.0.5", "\"dnsPolicy\":\"None\"", ""), &p), 0);
	assert_int_equal(p.verdict, POD_DNS_POLICY);
	assert_int_equal(decode(pod("web", "a", "10.1.0.5",
				    "\"dnsConfig\":{\"searches\":[\"corp.example\"]}", ""), &p), 0);
	assert_int_equal(p.verdict, POD_CUSTOM_SEARCH);
	/* Options and nameservers leave the search list alone. */
	assert_int_equal(decode(pod("web", "a", "10.1.0.5",
				    "\"dnsConfig\":{\"options\":[{\"name\":\"ndots\",\"value\":\"2\"}],"
				    "\"searches\":[]}", ""), &p), 0);
	assert_int_equal(p.verdict, POD_ELIGIBLE);
}

static void test_decode_finished_and_node(void **state)
{
	(void)state;
	struct pod_object p;
	char err[200];
	json_t *o = json_loads("{\"metadata\":{\"namespace\":\"web\",\"name\":\"done\"},"
			       "\"spec\":{\"nodeName\":\"n1\"},"
			       "\"status\":{\"phase\":\"Failed\",\"podIP\":\"10.1.0.9\"}}", 0, NULL);
	assert_int_equal(pod_object_decode(o, "n1", &p, err, sizeof(err)), 0);
	assert_int_equal(p.verdict, POD_FINISHED);
	assert_int_equal(pod_object_decode(o, "n2", &p, err, sizeof(err)), 0);
	assert_int_equal(p.verdict, POD_OTHER_NODE);
	assert_int_equal(pod_object_decode(o, NULL, &p, err, sizeof(err)), 0);
	assert_int_equal(p.verdict, POD_FINISHED);
	json_decref(o);

	/* Dual stack; a bad address is skipped, not fatal. */
	o = json_loads("{\"metadata\":{\"namespace\":\"web\",\"name\":\"ds\"},\"spec\":{},"
		       "\"status\":{\"podIPs\":[{\"ip\":\"10.1.0.7\"},{\"ip\":\"fd00::7\"},{\"ip\":\"x\"}]}}",
		       0, NULL);
	assert_int_equal(pod_object_decode(o, NULL, &p, err, sizeof(err)), 0);
	assert_int_equal(p.verdict, POD_ELIGIBLE); /* no dnsPolicy: ClusterFirst */
	assert_int_equal(p.nips, 2);
	assert_int_equal(p.ips[1].fam, 6);
	json_decref(o);
}

static void test_decode_malformed(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"[]",
		"{}",
		"{\"metadata\":{\"name\":\"a\"}}",
		"{\"metadata\":{\"namespace\":\"Web\",\"name\":\"a\"}}",
		"{\"metadata\":{\"namespace\":\"web\",\"name\":\"\"}}",
		"{\"metadata\":{\"namespace\":\"web\",\"name\":\"a\"},\"spec\":[]}",
		"{\"metadata\":{\"namespace\":\"web\",\"name\":\"a\"},\"spec\":{\"hostNetwork\":\"yes\"}}",
		"{\"metadata\":{\"namespace\":\"web\",\"name\":\"a\"},\"spec\":{\"dnsConfig\":{\"searches\":\"x\"}}}",
		"{\"metadata\":{\"namespace\":\"web\",\"name\":\"a\"},\"status\":{\"podIPs\":[1]}}",
		"{\"metadata\":{\"namespace\":\"web\",\"name\":\"a\"},\"status\":{\"podIP\":5}}",
		"{\"metadata\":{\"namespace\":\"a-very-long-namespace-name-that-is-longer-than-sixty-three-chars-x\",\"name\":\"a\"}}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct pod_object p;
		char err[200] = "";
		json_t *o = json_loads(bad[i], 0, NULL);
		assert_non_null(o);
		assert_int_equal(pod_object_decode(o, NULL, &p, err, sizeof(err)), -EINVAL);
		assert_true(err[0] != '\0');
		json_decref(o);
	}
}

static const uint8_t *lookup4(const struct pod_table *t, const char *ip)
{
	struct sockaddr_in sin;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	assert_int_equal(inet_pton(AF_INET, ip, &sin.sin_addr), 1);
	return pod_table_lookup(t, (const struct sockaddr *)&sin);
}

static const uint8_t *lookup6(const struct pod_table *t, const char *ip)
{
	struct sockaddr_in6 sin6;
	memset(&sin6, 0, sizeof(sin6));
	sin6.sin6_family = AF_INET6;
	assert_int_equal(inet_pton(AF_INET6, ip, &sin6.sin6_addr), 1);
	return pod_table_lookup(t, (const struct sockaddr *)&sin6);
}

static void assert_ns(const uint8_t *label, const char *ns)
{
	assert_non_null(label);
	assert_int_equal(label[0], strlen(ns));
	assert_memory_equal(label + 1, ns, strlen(ns));
}

static void test_table(void **state)
{
	(void)state;
	struct pod_table_pair pairs[] = {
		{ { 4, { 10, 1, 0, 5 } }, "web" },
		{ { 4, { 10, 1, 0, 6 } }, "db" },
		{ { 4, { 10, 1, 0, 7 } }, "web" },
		{ { 4, { 10, 1, 0, 7 } }, "db" },  /* claimed by two namespaces */
		{ { 4, { 10, 1, 0, 8 } }, "web" },
		{ { 4, { 10, 1, 0, 8 } }, "web" }, /* twice, same namespace */
		{ { 6, { 0xfd, 0, [15] = 5 } }, "web" },
	};
	struct pod_table *t = pod_table_new(pairs, sizeof(pairs) / sizeof(pairs[0]));
	assert_non_null(t);
	assert_int_equal(pod_table_count(t), 5);
	assert_ns(lookup4(t, "10.1.0.5"), "web");
	assert_ns(lookup4(t, "10.1.0.6"), "db");
	assert_null(lookup4(t, "10.1.0.7"));
	assert_ns(lookup4(t, "10.1.0.8"), "web");
	assert_null(lookup4(t, "10.1.0.9"));
	assert_ns(lookup6(t, "fd00::5"), "web");
	assert_ns(lookup6(t, "::ffff:10.1.0.6"), "db");
	assert_null(lookup6(t, "fd00::6"));
	pod_table_ref(t);
	pod_table_unref(t);
	assert_ns(lookup4(t, "10.1.0.5"), "web");
	pod_table_unref(t);
	assert_null(lookup4(NULL, "10.1.0.5"));

	struct pod_table *empty = pod_table_new(NULL, 0);
	assert_non_null(empty);
	assert_null(lookup4(empty, "10.1.0.5"));
	pod_table_unref(empty);
}

static int apply(struct pod_set *s, bool deleted, json_t *o)
{
	char err[200];
	int rc = pod_set_apply(s, deleted, o, err, sizeof(err));
	json_decref(o);
	return rc;
}

static void test_set(void **state)
{
	(void)state;
	struct pod_set *s = pod_set_new("n1");
	assert_non_null(s);
	assert_int_equal(apply(s, false, pod("web", "a", "10.1.0.5", "", "")), 0);
	assert_int_equal(apply(s, false, pod("web", "h", "192.0.2.1", "\"hostNetwork\":true", "")), 0);
	assert_int_equal(apply(s, false, pod("db", "b", "10.1.0.6", "", "")), 0);
	assert_int_equal(apply(s, false, json_loads("{\"metadata\":{}}", 0, NULL)), -EINVAL);
	struct pod_table *t = pod_set_build(s);
	assert_ns(lookup4(t, "10.1.0.5"), "web");
	assert_ns(lookup4(t, "10.1.0.6"), "db");
	assert_null(lookup4(t, "192.0.2.1"));
	assert_int_equal(pod_set_stats(s)->pods, 3);
	assert_int_equal(pod_set_stats(s)->eligible, 2);
	assert_int_equal(pod_set_stats(s)->rejected, 1);

	/* Modified to a custom search path: its address goes; deleted: too;
	 * moved to another node: forgotten. The old table is unchanged. */
	assert_int_equal(apply(s, false, pod("web", "a", "10.1.0.5",
					     "\"dnsConfig\":{\"searches\":[\"x.example\"]}", "")), 0);
	assert_int_equal(apply(s, true, pod("db", "b", "10.1.0.6", "", "")), 0);
	struct pod_table *t2 = pod_set_build(s);
	assert_null(lookup4(t2, "10.1.0.5"));
	assert_null(lookup4(t2, "10.1.0.6"));
	assert_ns(lookup4(t, "10.1.0.5"), "web");
	assert_int_equal(pod_set_stats(s)->pods, 2);
	assert_int_equal(pod_set_stats(s)->eligible, 0);
	pod_table_unref(t);
	pod_table_unref(t2);

	pod_set_clear(s);
	assert_int_equal(pod_set_stats(s)->pods, 0);
	/* Bounded: POD_SET_MAX pods, then -E2BIG (a known pod still changes). */
	char name[32];
	for (int i = 0; i < POD_SET_MAX; i++) {
		snprintf(name, sizeof(name), "p%d", i);
		assert_int_equal(apply(s, false, pod("web", name, "10.2.0.1", "", "")), 0);
	}
	assert_int_equal(apply(s, false, pod("web", "one-more", "10.2.0.1", "", "")), -E2BIG);
	assert_int_equal(apply(s, false, pod("web", "p0", "10.2.0.2", "", "")), 0);
	pod_set_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decode_verdicts),
		cmocka_unit_test(test_decode_finished_and_node),
		cmocka_unit_test(test_decode_malformed),
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_set),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
