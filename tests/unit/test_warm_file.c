/* tests/unit/test_warm_file.c - unit tests for the warm-start file: round trip and every rejection. */
#include "cluster_fixture.h"

#include "cluster/k8s_store_internal.h"
#include "nodedns/cluster/warm_file.h"
#include "nodedns/util/wire.h"

#define SERVER "https://10.96.0.1:443 ca=0badcafe"
#define NOW 1700000000ull

static const struct warm_file_expect expect_ok = { "cluster.local", SERVER, NOW, 3600 };

static void encode(const struct k8s_store *s, uint64_t created, uint8_t **buf, size_t *len)
{
	assert_int_equal(warm_file_encode(s, "cluster.local", SERVER, created, buf, len), 0);
	assert_true(*len >= WARM_FILE_HEADER_BYTES);
}

/* Re-seal @p buf after a change: length and checksum as the writer sets them. */
static void reseal(uint8_t *buf, size_t len)
{
	wire_put32(buf + 16, 0);
	wire_put32(buf + 20, (uint32_t)len);
	wire_put32(buf + 12, warm_file_crc(buf + 16, len - 16));
}

/* ---------------------------------------------- the names to compare */

struct cmp {
	const struct cluster_snapshot *a, *b;
	unsigned asked;
};

static int cmp_line(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The answer in g_wire as text with the RRs of each section sorted: the
 * order of endpoints follows the order the store's slices came in. */
static char *canon(enum cluster_verdict v)
{
	char *out = calloc(1, 65536), *lines[512];
	ldns_pkt *p = NULL;
	size_t o;

	o = (size_t)snprintf(out, 65536, "verdict %d\n", v);
	if (v != CLUSTER_ANSWERED)
		return out;
	assert_int_equal(ldns_wire2pkt(&p, g_wire, g_len), LDNS_STATUS_OK);
	o += (size_t)snprintf(out + o, 65536 - o, "rcode %d tc %d\n", ldns_pkt_get_rcode(p),
			      ldns_pkt_tc(p));
	for (int sec = LDNS_SECTION_ANSWER; sec <= LDNS_SECTION_ADDITIONAL; sec++) {
		char *text = section(p, (ldns_pkt_section)sec), *save = NULL;
		size_t n = 0;
		for (char *l = strtok_r(text, "\n", &save); l && n < 512; l = strtok_r(NULL, "\n", &save))
			lines[n++] = l;
		qsort(lines, n, sizeof(lines[0]), cmp_line);
		for (size_t i = 0; i < n && o < 65000; i++)
			o += (size_t)snprintf(out + o, 65536 - o, "%d %s\n", sec, lines[i]);
		free(text);
	}
	ldns_pkt_free(p);
	return out;
}

/* Ask @p name of both snapshots: the same verdict and the same records. */
static void same(struct cmp *c, const char *name, uint16_t type)
{
	char *a = canon(ask_raw(c->a, &cfg, name, type, 65535));
	char *b = canon(ask_raw(c->b, &cfg, name, type, 65535));

	if (strcmp(a, b) != 0)
		fail_msg("%s type %u: answers differ:\n%s\nvs\n%s", name, type, a, b);
	free(a);
	free(b);
	c->asked++;
}

static int cmp_service(void *arg, const void *obj, size_t len)
{
	const struct k8s_service *svc = obj;
	static const uint16_t types[] = { LDNS_RR_TYPE_A, LDNS_RR_TYPE_AAAA, LDNS_RR_TYPE_SRV,
					  LDNS_RR_TYPE_CNAME, LDNS_RR_TYPE_ANY, LDNS_RR_TYPE_TXT };
	char name[300];

	(void)len;
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		snprintf(name, sizeof(name), "%s.%s.svc.cluster.local", svc->name, svc->ns);
		same(arg, name, types[i]);
	}
	for (uint16_t i = 0; i < svc->n_ports; i++) {
		static const char *protos[] = { "tcp", "udp", "sctp", "other" };
		snprintf(name, sizeof(name), "_%.*s._%s.%s.%s.svc.cluster.local",
			 svc->ports[i].name_len, svc->ports[i].name, protos[svc->ports[i].proto],
			 svc->name, svc->ns);
		same(arg, name, LDNS_RR_TYPE_SRV);
	}
	for (uint8_t i = 0; i < svc->n_ips; i++) {
		const uint8_t *b = svc->ips[i].b;
		if (svc->ips[i].fam != 4)
			continue;
		snprintf(name, sizeof(name), "%u.%u.%u.%u.in-addr.arpa", b[3], b[2], b[1], b[0]);
		same(arg, name, LDNS_RR_TYPE_PTR);
	}
	return 0;
}

static int cmp_slice(void *arg, const void *obj, size_t len)
{
	const struct k8s_slice *sl = obj;
	char name[400];

	(void)len;
	for (uint32_t i = 0; i < sl->n_addrs && sl->svc[0]; i++) {
		char buf[K8S_LABEL_MAX];
		uint8_t n;
		const char *label = k8s_objects_addr_label(sl, &sl->addrs[i], buf, &n);
		snprintf(name, sizeof(name), "%.*s.%s.%s.svc.cluster.local", n, label, sl->svc,
			 sl->ns);
		same(arg, name, LDNS_RR_TYPE_A);
		same(arg, name, LDNS_RR_TYPE_AAAA);
	}
	return 0;
}

static int cmp_ns(void *arg, const void *obj, size_t len)
{
	char name[300];

	snprintf(name, sizeof(name), "%.*s.svc.cluster.local", (int)len, (const char *)obj);
	same(arg, name, LDNS_RR_TYPE_A);
	snprintf(name, sizeof(name), "nope.%.*s.svc.cluster.local", (int)len, (const char *)obj);
	same(arg, name, LDNS_RR_TYPE_A);
	return 0;
}

/* Encode @p s, load it into a new store: every name answers as in @p orig
 * (a snapshot of @p s). */
static void round_trip(struct k8s_store *s, struct cluster_snapshot *orig)
{
	struct warm_file_info info;
	struct k8s_store_stats a, b;
	uint8_t *buf, *buf2;
	size_t len, len2;
	char err[256];

	encode(s, NOW - 10, &buf, &len);
	struct k8s_store *t = k8s_store_new(&cfg);
	if (warm_file_load(t, buf, len, &expect_ok, &info, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_int_equal(info.created_s, NOW - 10);
	assert_string_equal(info.domain, "cluster.local");
	assert_string_equal(info.server, SERVER);
	k8s_store_get_stats(s, &a);
	k8s_store_get_stats(t, &b);
	assert_int_equal(a.services, b.services);
	assert_int_equal(a.endpointslices, b.endpointslices);
	assert_int_equal(a.namespaces, b.namespaces);
	assert_int_equal(info.services, a.services);

	struct cmp c = { orig, publish_once(t), 0 };
	k8s_store_foreach_object(s, K8S_SERVICE, cmp_service, &c);
	k8s_store_foreach_object(s, K8S_ENDPOINTSLICE, cmp_slice, &c);
	k8s_store_foreach_object(s, K8S_NAMESPACE, cmp_ns, &c);
	assert_true(c.asked > 50);
	cluster_snapshot_unref((struct cluster_snapshot *)c.b);

	/* the loaded store encodes to as many bytes (the order may differ) */
	encode(t, NOW - 10, &buf2, &len2);
	assert_int_equal(len, len2);
	free(buf2);
	free(buf);
	k8s_store_free(t);
}

/* ------------------------------------------------------------------ tests */

static void test_round_trip(void **state)
{
	(void)state;
	round_trip(store, snap);
}

static void test_round_trip_demo(void **state)
{
	struct k8s_store *s = k8s_store_new(&cfg);
	char err[512];

	(void)state;
	if (k8s_store_load_file(s, DEMO_FILE, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	struct cluster_snapshot *sn = publish_once(s);
	round_trip(s, sn);
	cluster_snapshot_unref(sn);
	k8s_store_free(s);
}

static void test_empty_store(void **state)
{
	struct k8s_store *s = k8s_store_new(&cfg), *t = k8s_store_new(&cfg);
	struct k8s_store_stats st;
	uint8_t *buf;
	size_t len;

	(void)state;
	encode(s, NOW, &buf, &len);
	assert_int_equal(warm_file_load(t, buf, len, &expect_ok, NULL, NULL, 0), 0);
	k8s_store_get_stats(t, &st);
	assert_int_equal(st.services + st.endpointslices + st.namespaces, 0);
	free(buf);
	k8s_store_free(s);
	k8s_store_free(t);
}

/* A target store with content, to see that a refused file changes nothing. */
static struct k8s_store *target(void)
{
	struct k8s_store *t = k8s_store_new(&cfg);
	put(t, K8S_SERVICE, "{'metadata':{'name':'keep','namespace':'default'},"
			    "'spec':{'clusterIP':'10.96.7.7'}}");
	return t;
}

static void expect_refused(const uint8_t *buf, size_t len, const struct warm_file_expect *exp,
			   int want, const char *why)
{
	struct k8s_store *t = target();
	struct k8s_store_stats st;
	char err[256] = "";

	int rc = warm_file_load(t, buf, len, exp, NULL, err, sizeof(err));
	if (rc != want)
		fail_msg("got %d (%s), want %d", rc, err, want);
	if (why && !strstr(err, why))
		fail_msg("error \"%s\" does not say \"%s\"", err, why);
	assert_true(err[0] != '\0');
	k8s_store_get_stats(t, &st);
	assert_int_equal(st.services, 1);
	assert_int_equal(st.endpointslices + st.namespaces, 0);
	k8s_store_free(t);
}

static void test_truncated(void **state)
{
	uint8_t *buf;
	size_t len;

	(void)state;
	encode(store, NOW, &buf, &len);
	for (size_t n = 0; n < len; n++)
		expect_refused(buf, n, &expect_ok, -EBADMSG, n < WARM_FILE_HEADER_BYTES ? "truncated header" : "truncated");
	/* one byte too many */
	uint8_t *more = malloc(len + 1);
	memcpy(more, buf, len);
	more[len] = 0;
	expect_refused(more, len + 1, &expect_ok, -EBADMSG, "trailing bytes");
	free(more);
	free(buf);
}

static void test_bit_flips(void **state)
{
	uint8_t *buf;
	size_t len, step;

	(void)state;
	encode(store, NOW, &buf, &len);
	step = len / 400 + 1;
	for (size_t i = 0; i < len; i += (i < 64 ? 1 : step)) {
		for (int bit = 0; bit < 8; bit++) {
			buf[i] ^= (uint8_t)(1u << bit);
			/* the version field says "another version", everything else
			 * "not an intact file" */
			expect_refused(buf, len, &expect_ok, i >= 8 && i < 12 ? -EPROTONOSUPPORT : -EBADMSG,
				       NULL);
			buf[i] ^= (uint8_t)(1u << bit);
		}
	}
	free(buf);
}

static void test_version_and_identity(void **state)
{
	struct warm_file_expect exp = expect_ok;
	uint8_t *buf;
	size_t len;

	(void)state;
	encode(store, NOW - 100, &buf, &len);
	wire_put32(buf + 8, 2);
	reseal(buf, len);
	expect_refused(buf, len, &exp, -EPROTONOSUPPORT, "version 2");
	wire_put32(buf + 8, WARM_FILE_VERSION);
	reseal(buf, len);
	exp.domain = "other.local";
	expect_refused(buf, len, &exp, -EREMCHG, "cluster domain");
	exp.domain = "cluster.local";
	exp.server = "https://10.96.0.1:443 ca=12345678";
	expect_refused(buf, len, &exp, -EREMCHG, "API server");
	exp.server = SERVER;
	exp.max_age_s = 99;
	expect_refused(buf, len, &exp, -ESTALE, "100 s old");
	exp.max_age_s = 100;
	struct k8s_store *t = target();
	assert_int_equal(warm_file_load(t, buf, len, &exp, NULL, NULL, 0), 0);
	exp.max_age_s = 0; /* any age */
	exp.now_s = NOW + 100000000;
	assert_int_equal(warm_file_load(t, buf, len, &exp, NULL, NULL, 0), 0);
	exp.now_s = NOW - 100 - WARM_FILE_FUTURE_SLACK_S - 1;
	expect_refused(buf, len, &exp, -ESTALE, "future");
	k8s_store_free(t);
	free(buf);
}

/* An intact file (checksum right) whose records are wrong. */
static void test_malformed_records(void **state)
{
	struct k8s_store *s = k8s_store_new(&cfg);
	uint8_t *buf;
	size_t len;

	(void)state;
	put(s, K8S_SERVICE, "{'metadata':{'name':'web','namespace':'shop'},"
			    "'spec':{'clusterIP':'10.96.1.1','ports':[{'name':'http','port':80}]}}");
	encode(s, NOW, &buf, &len);
	size_t rec = WARM_FILE_HEADER_BYTES + 1 + strlen("cluster.local") + 2 + strlen(SERVER);
	/* service: 4 shop 3 web kind n_ips [4 a b c d] ext_len n_ports [80 proto 4 http] */
	assert_int_equal(buf[rec], 4);
	assert_memory_equal(buf + rec + 1, "shop", 4);
	struct { size_t off; uint8_t val; const char *what; } cases[] = {
		{ rec + 1, 'S', "upper case" },
		{ rec + 1, '.', "a dot in a label" },
		{ rec, 0, "an empty namespace" },
		{ rec, 64, "a label over 63" },
		{ rec + 9, 3, "an unknown service kind" },
		{ rec + 10, 3, "three ClusterIPs" },
		{ rec + 11, 5, "address family 5" },
		{ rec + 16, 1, "an ExternalName on a ClusterIP service" },
		{ rec + 17, 101, "too many ports (high byte)" },
		{ rec + 21, 4, "an unknown protocol" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t *b = malloc(len);
		memcpy(b, buf, len);
		b[cases[i].off] = cases[i].val;
		reseal(b, len);
		char err[256] = "";
		struct k8s_store *t = target();
		int rc = warm_file_load(t, b, len, &expect_ok, NULL, err, sizeof(err));
		if (rc != -EBADMSG)
			fail_msg("%s: got %d (%s)", cases[i].what, rc, err);
		k8s_store_free(t);
		free(b);
	}
	/* a count larger than the records */
	wire_put32(buf + 32 + 4, 2);
	reseal(buf, len);
	expect_refused(buf, len, &expect_ok, -EBADMSG, "malformed");
	/* a count smaller: bytes after the last record */
	wire_put32(buf + 32 + 4, 0);
	reseal(buf, len);
	expect_refused(buf, len, &expect_ok, -EBADMSG, "after the last record");
	free(buf);
	k8s_store_free(s);
}

static void test_not_a_file(void **state)
{
	uint8_t junk[100];

	(void)state;
	memset(junk, 'x', sizeof(junk));
	expect_refused(junk, sizeof(junk), &expect_ok, -EBADMSG, "not a warm-start file");
	expect_refused(junk, 0, &expect_ok, -EBADMSG, "truncated header");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_round_trip_demo, setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty_store, setup, teardown),
		cmocka_unit_test_setup_teardown(test_truncated, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bit_flips, setup, teardown),
		cmocka_unit_test_setup_teardown(test_version_and_identity, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed_records, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_a_file, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
