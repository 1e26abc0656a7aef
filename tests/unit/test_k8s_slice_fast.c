/* tests/unit/test_k8s_slice_fast.c - the EndpointSlice watch-line fast path (k8s_store_apply_line). */
#include "cluster_fixture.h"

#include "nodedns/cluster/k8s_stream.h"

/* ' for ", as jq() does; returns a static copy. */
static const char *line_of(const char *s)
{
	static char buf[8192];
	size_t n = strlen(s);

	assert_true(n < sizeof(buf));
	for (size_t i = 0; i <= n; i++)
		buf[i] = s[i] == '\'' ? '"' : s[i];
	return buf;
}

static int fast(struct k8s_store *s, const char *json, enum k8s_event *ev, char *rv)
{
	const char *l = line_of(json);
	char err[256];

	return k8s_store_apply_line(s, K8S_ENDPOINTSLICE, "EndpointSlice", l, strlen(l), ev, rv,
				    err, sizeof(err));
}

#define SLICE_OBJ                                                                        \
	"{'kind':'EndpointSlice','apiVersion':'discovery.k8s.io/v1',"                     \
	"'metadata':{'name':'web-x1','namespace':'Demo','resourceVersion':'77',"          \
	"'labels':{'kubernetes.io/service-name':'Web','app':'web'}},"                     \
	"'addressType':'IPv4',"                                                           \
	"'endpoints':[{'addresses':['10.1.0.1'],'conditions':{'ready':true},'hostname':'Web-0',"\
	"'targetRef':{'kind':'Pod','name':'web-0'}},"                                     \
	"{'addresses':['10.1.0.2'],'conditions':{'ready':false}},"                        \
	"{'addresses':['10.1.0.3'],'conditions':{'ready':null}},"                         \
	"{'addresses':['10.1.0.4']}],"                                                    \
	"'ports':[{'name':'HTTP','protocol':'TCP','port':80},{'port':null}]}"

/* The fast path gives what the generic one gives: same answers, same counts. */
static void test_same_as_generic(void **state)
{
	struct k8s_store *a = k8s_store_new(&cfg), *b = k8s_store_new(&cfg);
	struct k8s_store_stats sa, sb;
	enum k8s_event ev;
	char rv[K8S_RV_MAX];

	(void)state;
	assert_int_equal(fast(a, "{'type':'MODIFIED','object':" SLICE_OBJ "}", &ev, rv), 0);
	assert_int_equal(ev, K8S_MODIFIED);
	assert_string_equal(rv, "77");
	put(b, K8S_ENDPOINTSLICE, SLICE_OBJ);
	put(a, K8S_SERVICE, "{'metadata':{'name':'web','namespace':'demo'},'spec':{'clusterIP':'None'}}");
	put(b, K8S_SERVICE, "{'metadata':{'name':'web','namespace':'demo'},'spec':{'clusterIP':'None'}}");
	k8s_store_get_stats(a, &sa);
	k8s_store_get_stats(b, &sb);
	assert_int_equal(sa.endpointslices, 1);
	assert_int_equal(sa.addresses, 3); /* the one not ready is left out */
	assert_int_equal(sa.addresses, sb.addresses);
	assert_int_equal(sa.events_applied, sb.events_applied);

	struct cluster_snapshot *x = publish_once(a), *y = publish_once(b);
	const char *names[] = { "web.demo.svc.cluster.local", "web-0.web.demo.svc.cluster.local",
				"10-1-0-3.web.demo.svc.cluster.local",
				"_http._tcp.web.demo.svc.cluster.local" };
	uint16_t types[] = { LDNS_RR_TYPE_A, LDNS_RR_TYPE_A, LDNS_RR_TYPE_A, LDNS_RR_TYPE_SRV };
	for (size_t i = 0; i < 4; i++) {
		ldns_pkt *p = ask_full(x, &cfg, names[i], types[i], 4096);
		ldns_pkt *q = ask_full(y, &cfg, names[i], types[i], 4096);
		char *sp = section(p, LDNS_SECTION_ANSWER), *sq = section(q, LDNS_SECTION_ANSWER);
		assert_true(ldns_pkt_ancount(p) > 0);
		assert_string_equal(sp, sq);
		free(sp);
		free(sq);
		ldns_pkt_free(p);
		ldns_pkt_free(q);
	}
	cluster_snapshot_unref(x);
	cluster_snapshot_unref(y);

	/* DELETED needs only the metadata */
	assert_int_equal(fast(a, "{'type':'DELETED','object':{'metadata':{'name':'web-x1',"
				 "'namespace':'demo'},'endpoints':7}}", &ev, rv),
			 K8S_LINE_UNHANDLED); /* a bad field: left to the generic path */
	assert_int_equal(fast(a, "{'object':{'kind':'EndpointSlice','metadata':{'name':'web-x1',"
				 "'namespace':'demo'}},'type':'DELETED'}", &ev, rv), 0);
	assert_int_equal(ev, K8S_DELETED);
	assert_string_equal(rv, "");
	k8s_store_get_stats(a, &sa);
	assert_int_equal(sa.endpointslices, 0);
	assert_int_equal(sa.addresses, 0);
	k8s_store_free(a);
	k8s_store_free(b);
}

/* Anything unusual is left to the generic path, the store untouched. */
static void test_left_to_generic(void **state)
{
	static const char *const lines[] = {
		"{'type':'BOOKMARK','object':{'kind':'EndpointSlice','metadata':{'resourceVersion':'9'}}}",
		"{'type':'ERROR','object':{'kind':'Status','code':410}}",
		"{'type':'ADDED','object':{'kind':'Service','metadata':{'name':'a','namespace':'b'}}}",
		/* duplicate keys (jansson keeps the last) */
		"{'type':'ADDED','type':'DELETED','object':" SLICE_OBJ "}",
		"{'type':'ADDED','object':{'metadata':{'name':'a','name':'b','namespace':'n'},"
		"'addressType':'IPv4'}}",
		/* escapes \\u, bytes over 0x7f, \\f */
		"{'type':'ADDED','object':{'metadata':{'name':'a\\u0062','namespace':'n'},"
		"'addressType':'IPv4'}}",
		"{'type':'ADDED','object':{'metadata':{'name':'\xc3\xa9','namespace':'n'},"
		"'addressType':'IPv4'}}",
		"{'type':'ADDED',\f'object':{'metadata':{'name':'a','namespace':'n'},"
		"'addressType':'IPv4'}}",
		/* trailing bytes, reals, big integers, bad values */
		"{'type':'ADDED','object':{'metadata':{'name':'a','namespace':'n'},"
		"'addressType':'IPv4'}}'",
		"{'type':'ADDED','object':{'metadata':{'name':'a','namespace':'n'},"
		"'addressType':'IPv4','ports':[{'port':80.0}]}}",
		"{'type':'ADDED','object':{'metadata':{'name':'a','namespace':'n','generation':"
		"99999999999999999999},'addressType':'IPv4'}}",
		"{'type':'ADDED','object':{'metadata':{'name':'a','namespace':'n'}}}",
		"{'type':'ADDED','object':{'metadata':{'name':'a','namespace':'n'},"
		"'addressType':'IPv4','endpoints':[{'addresses':['fd00::1']}]}}",
		"{'type':'ADDED','object':{'metadata':{'name':'a','namespace':'n_/'},"
		"'addressType':'IPv4'}}",
		"{'type':'ADDED','object':{'metadata':{'name':'a','namespace':'n',"
		"'resourceVersion':'1/2'},'addressType':'IPv4'}}",
		"{'type':'ADDED','object':{'metadata':{'name':'a','namespace':'n'},"
		"'addressType':'IPv4','endpoints':[{'conditions':{'ready':'yes'}}]}}",
		"[{'type':'ADDED'}]",
		"{'type':'ADDED','object':{'metadata':{'name':'a','namespace':'n'},"
		"'addressType':'IPv4'}",
	};
	struct k8s_store *s = k8s_store_new(&cfg);
	struct k8s_store_stats st;
	enum k8s_event ev;
	char rv[K8S_RV_MAX];

	(void)state;
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		strcpy(rv, "x");
		int rc = fast(s, lines[i], &ev, rv);
		if (rc != K8S_LINE_UNHANDLED)
			fail_msg("line %zu taken (%d): %s", i, rc, lines[i]);
		assert_string_equal(rv, "");
	}
	/* other kinds of watch: never */
	const char *l = line_of("{'type':'ADDED','object':{'metadata':{'name':'a','namespace':'n'}}}");
	assert_int_equal(k8s_store_apply_line(s, K8S_SERVICE, "Service", l, strlen(l), &ev, rv,
					      NULL, 0),
			 K8S_LINE_UNHANDLED);
	k8s_store_get_stats(s, &st);
	assert_int_equal(st.endpointslices + st.events_applied + st.events_rejected, 0);
	k8s_store_free(s);
}

/* A store limit refuses as k8s_store_apply() does, counted as rejected. */
static void test_limits(void **state)
{
	struct k8s_store *s = k8s_store_new(&cfg);
	struct k8s_store_stats st;
	enum k8s_event ev;
	char rv[K8S_RV_MAX];
	/* 1001 endpoints: over the API limit, left to the generic path (which refuses it) */
	size_t cap = 64 * 1024, n = 0;
	char *big = malloc(cap);

	(void)state;
	assert_non_null(big);
	n += (size_t)snprintf(big + n, cap - n, "{'type':'ADDED','object':{'metadata':{'name':'a',"
				       "'namespace':'n'},'addressType':'IPv4','endpoints':[");
	for (int i = 0; i < 1001; i++)
		n += (size_t)snprintf(big + n, cap - n, "%s{'addresses':['10.0.%d.%d']}", i ? "," : "",
				      i / 250, i % 250 + 1);
	snprintf(big + n, cap - n, "]}}");
	for (char *p = big; *p; p++)
		if (*p == '\'')
			*p = '"';
	assert_int_equal(k8s_store_apply_line(s, K8S_ENDPOINTSLICE, "EndpointSlice", big,
					      strlen(big), &ev, rv, NULL, 0),
			 K8S_LINE_UNHANDLED);
	/* 1000 are fine */
	char *cut = strstr(big, ",{\"addresses\":[\"10.0.4.1\"]}");
	assert_non_null(cut);
	strcpy(cut, "]}}");
	assert_int_equal(k8s_store_apply_line(s, K8S_ENDPOINTSLICE, "EndpointSlice", big,
					      strlen(big), &ev, rv, NULL, 0),
			 0);
	k8s_store_get_stats(s, &st);
	assert_int_equal(st.addresses, 1000);
	/* 600 empty endpoints: within the API limit, over the decoding-cost
	 * bound: left to the generic path (which drops it) */
	n = (size_t)snprintf(big, cap, "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":"
				       "\"b\",\"namespace\":\"n\"},\"addressType\":\"IPv4\","
				       "\"endpoints\":[{}");
	for (int i = 1; i < 600; i++)
		n += (size_t)snprintf(big + n, cap - n, ",{}");
	snprintf(big + n, cap - n, "]}}");
	assert_false(k8s_stream_cost_ok(k8s_stream_json_cost(big, strlen(big)), strlen(big)));
	assert_int_equal(k8s_store_apply_line(s, K8S_ENDPOINTSLICE, "EndpointSlice", big,
					      strlen(big), &ev, rv, NULL, 0),
			 K8S_LINE_UNHANDLED);
	free(big);
	k8s_store_free(s);
}

/* A streaming list's ADDED slices are staged as k8s_store_stage_add() stages them. */
static void test_stage(void **state)
{
	struct k8s_store *a = k8s_store_new(&cfg), *b = k8s_store_new(&cfg);
	struct k8s_store_stage *sa, *sb;
	struct k8s_store_stats x, y;
	const char *l;

	(void)state;
	sa = k8s_store_stage_new(a, K8S_ENDPOINTSLICE);
	sb = k8s_store_stage_new(b, K8S_ENDPOINTSLICE);
	assert_non_null(sa);
	assert_non_null(sb);
	l = line_of("{'type':'ADDED','object':" SLICE_OBJ "}");
	assert_int_equal(k8s_store_stage_add_line(sa, "EndpointSlice", l, strlen(l), NULL, 0), 0);
	json_t *o = jq(SLICE_OBJ);
	assert_int_equal(k8s_store_stage_add(sb, o, NULL, 0), 0);
	json_decref(o);
	/* only ADDED: anything else is the generic path's (a fallback) */
	l = line_of("{'type':'MODIFIED','object':" SLICE_OBJ "}");
	assert_int_equal(k8s_store_stage_add_line(sa, "EndpointSlice", l, strlen(l), NULL, 0),
			 K8S_LINE_UNHANDLED);
	l = line_of("{'type':'DELETED','object':" SLICE_OBJ "}");
	assert_int_equal(k8s_store_stage_add_line(sa, "EndpointSlice", l, strlen(l), NULL, 0),
			 K8S_LINE_UNHANDLED);
	assert_int_equal(k8s_store_stage_count(sa), 1);
	assert_int_equal(k8s_store_stage_commit(a, sa), 0);
	assert_int_equal(k8s_store_stage_commit(b, sb), 0);
	k8s_store_get_stats(a, &x);
	k8s_store_get_stats(b, &y);
	assert_int_equal(x.endpointslices, 1);
	assert_int_equal(x.addresses, y.addresses);
	assert_int_equal(x.events_applied, y.events_applied);
	/* a stage of another kind: never */
	sa = k8s_store_stage_new(a, K8S_SERVICE);
	assert_non_null(sa);
	assert_int_equal(k8s_store_stage_add_line(sa, "Service", l, strlen(l), NULL, 0),
			 K8S_LINE_UNHANDLED);
	k8s_store_stage_free(sa);
	k8s_store_free(a);
	k8s_store_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_same_as_generic),
		cmocka_unit_test(test_left_to_generic),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_stage),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
