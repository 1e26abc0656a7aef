/* tests/unit/test_cluster.c - unit tests for the cluster zone: answers from a snapshot. */
#include "cluster_fixture.h"

/* ------------------------------------------------------------------ tests */

static void test_clusterip(void **state)
{
	(void)state;
	expect("kubernetes.default.svc.cluster.local", LDNS_RR_TYPE_A,
	       "kubernetes.default.svc.cluster.local. 5 IN A 10.96.0.1\n", NULL);
	assert_int_equal(g_info.rcode, 0);
	assert_int_equal(g_info.chase_len, 0);
	expect_nodata("kubernetes.default.svc.cluster.local", LDNS_RR_TYPE_AAAA);
	expect_nodata("kubernetes.default.svc.cluster.local", LDNS_RR_TYPE_TXT);
	expect_nodata("kubernetes.default.svc.cluster.local", LDNS_RR_TYPE_MX);
	expect_nodata("kubernetes.default.svc.cluster.local", LDNS_RR_TYPE_CNAME);
	expect_nodata("kubernetes.default.svc.cluster.local", LDNS_RR_TYPE_SOA);
	/* a ClusterIP Service without endpoints still resolves; without
	 * Namespace object its namespace exists through the Service */
	expect("orphan.nonsobj.svc.cluster.local", LDNS_RR_TYPE_A,
	       "orphan.nonsobj.svc.cluster.local. 5 IN A 10.96.8.8\n", NULL);
	expect_nodata("nonsobj.svc.cluster.local", LDNS_RR_TYPE_A);
	/* ANY: what there is */
	expect("api.demo.svc.cluster.local", LDNS_RR_TYPE_ANY,
	       "api.demo.svc.cluster.local. 5 IN A 10.96.45.12\n"
	       "api.demo.svc.cluster.local. 5 IN AAAA fd00:10:96::2d0c\n"
	       "api.demo.svc.cluster.local. 5 IN SRV 0 100 80 api.demo.svc.cluster.local.\n",
	       NULL);
}

static void test_dual_stack(void **state)
{
	(void)state;
	expect("api.demo.svc.cluster.local", LDNS_RR_TYPE_A,
	       "api.demo.svc.cluster.local. 5 IN A 10.96.45.12\n", NULL);
	expect("api.demo.svc.cluster.local", LDNS_RR_TYPE_AAAA,
	       "api.demo.svc.cluster.local. 5 IN AAAA fd00:10:96::2d0c\n", NULL);
	/* endpoint names under a ClusterIP Service (CoreDNS): dashed IPs */
	expect("10-244-1-5.api.demo.svc.cluster.local", LDNS_RR_TYPE_A,
	       "10-244-1-5.api.demo.svc.cluster.local. 5 IN A 10.244.1.5\n", NULL);
	expect("fd00-10-244-1--5.api.demo.svc.cluster.local", LDNS_RR_TYPE_AAAA,
	       "fd00-10-244-1--5.api.demo.svc.cluster.local. 5 IN AAAA fd00:10:244:1::5\n", NULL);
	expect_nodata("fd00-10-244-1--5.api.demo.svc.cluster.local", LDNS_RR_TYPE_A);
	expect_nx("10-244-1-6.api.demo.svc.cluster.local", LDNS_RR_TYPE_A);
}

static void test_case(void **state)
{
	ldns_pkt *p;

	(void)state;
	/* owner as asked; object labels lower case; zone in targets as asked */
	expect("KuBeRnEtEs.DeFaUlT.SvC.cLuStEr.LoCaL", LDNS_RR_TYPE_A,
	       "KuBeRnEtEs.DeFaUlT.SvC.cLuStEr.LoCaL. 5 IN A 10.96.0.1\n", NULL);
	expect("_HTTPS._TCP.Kubernetes.DEFAULT.svc.Cluster.Local", LDNS_RR_TYPE_SRV,
	       "_HTTPS._TCP.Kubernetes.DEFAULT.svc.Cluster.Local. 5 IN SRV 0 100 443 "
	       "kubernetes.default.svc.Cluster.Local.\n",
	       "kubernetes.default.svc.Cluster.Local. 5 IN A 10.96.0.1\n");
	expect("WEB-0.Web.Demo.SVC.cluster.local", LDNS_RR_TYPE_A,
	       "WEB-0.Web.Demo.SVC.cluster.local. 5 IN A 10.244.1.10\n", NULL);
	p = ask("NOPE.default.svc.CLUSTER.local", LDNS_RR_TYPE_A);
	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NXDOMAIN);
	check_sec(p, LDNS_SECTION_AUTHORITY,
		  "CLUSTER.local. 5 IN SOA ns.dns.CLUSTER.local. hostmaster.CLUSTER.local. 1 7200 "
		  "1800 86400 5\n");
	ldns_pkt_free(p);
	expect("10-244-1-2.DEFAULT.POD.cluster.local", LDNS_RR_TYPE_A,
	       "10-244-1-2.DEFAULT.POD.cluster.local. 5 IN A 10.244.1.2\n", NULL);
}

static void test_headless(void **state)
{
	(void)state;
	/* ready endpoints only, deduplicated across slices */
	expect("web.demo.svc.cluster.local", LDNS_RR_TYPE_A,
	       "web.demo.svc.cluster.local. 5 IN A 10.244.1.10\n"
	       "web.demo.svc.cluster.local. 5 IN A 10.244.1.12\n"
	       "web.demo.svc.cluster.local. 5 IN A 10.244.2.11\n",
	       NULL);
	expect_nodata("web.demo.svc.cluster.local", LDNS_RR_TYPE_AAAA);
	expect("web-1.web.demo.svc.cluster.local", LDNS_RR_TYPE_A,
	       "web-1.web.demo.svc.cluster.local. 5 IN A 10.244.2.11\n", NULL);
	expect("web-2.web.demo.svc.cluster.local", LDNS_RR_TYPE_A,
	       "web-2.web.demo.svc.cluster.local. 5 IN A 10.244.1.12\n", NULL);
	/* not ready: no name, no address */
	expect_nx("web-3.web.demo.svc.cluster.local", LDNS_RR_TYPE_A);
	expect_nodata("web-0.web.demo.svc.cluster.local", LDNS_RR_TYPE_TXT);
	/* dual family headless without hostnames: dashed names, 0 at the ends */
	expect("mixed.demo.svc.cluster.local", LDNS_RR_TYPE_A,
	       "mixed.demo.svc.cluster.local. 5 IN A 10.244.3.4\n", NULL);
	expect("mixed.demo.svc.cluster.local", LDNS_RR_TYPE_AAAA,
	       "mixed.demo.svc.cluster.local. 5 IN AAAA ::5\n"
	       "mixed.demo.svc.cluster.local. 5 IN AAAA fd00:10:244:3::\n",
	       NULL);
	expect("fd00-10-244-3--0.mixed.demo.svc.cluster.local", LDNS_RR_TYPE_AAAA,
	       "fd00-10-244-3--0.mixed.demo.svc.cluster.local. 5 IN AAAA fd00:10:244:3::\n", NULL);
	expect("0--5.mixed.demo.svc.cluster.local", LDNS_RR_TYPE_AAAA,
	       "0--5.mixed.demo.svc.cluster.local. 5 IN AAAA ::5\n", NULL);
	expect("10-244-3-4.mixed.demo.svc.cluster.local", LDNS_RR_TYPE_A,
	       "10-244-3-4.mixed.demo.svc.cluster.local. 5 IN A 10.244.3.4\n", NULL);
}

static void test_headless_none_ready(void **state)
{
	(void)state;
	/* spec: SHOULD be NXDOMAIN, for the name and everything below */
	expect_nx("noready.demo.svc.cluster.local", LDNS_RR_TYPE_A);
	expect_nx("noready.demo.svc.cluster.local", LDNS_RR_TYPE_AAAA);
	expect_nx("noready.demo.svc.cluster.local", LDNS_RR_TYPE_SRV);
	expect_nx("_http._tcp.noready.demo.svc.cluster.local", LDNS_RR_TYPE_SRV);
	expect_nx("10-244-9-9.noready.demo.svc.cluster.local", LDNS_RR_TYPE_A);
	/* a slice without its Service serves nothing */
	expect_nx("ghost.demo.svc.cluster.local", LDNS_RR_TYPE_A);
	expect_not_mine("8.8.244.10.in-addr.arpa", LDNS_RR_TYPE_PTR);
}

static void test_srv(void **state)
{
	(void)state;
	expect("_https._tcp.kubernetes.default.svc.cluster.local", LDNS_RR_TYPE_SRV,
	       "_https._tcp.kubernetes.default.svc.cluster.local. 5 IN SRV 0 100 443 "
	       "kubernetes.default.svc.cluster.local.\n",
	       "kubernetes.default.svc.cluster.local. 5 IN A 10.96.0.1\n");
	/* headless: one per ready endpoint, ports from the slices */
	expect("_http._tcp.web.demo.svc.cluster.local", LDNS_RR_TYPE_SRV,
	       "_http._tcp.web.demo.svc.cluster.local. 5 IN SRV 0 33 8080 web-0.web.demo.svc.cluster.local.\n"
	       "_http._tcp.web.demo.svc.cluster.local. 5 IN SRV 0 33 8080 web-1.web.demo.svc.cluster.local.\n"
	       "_http._tcp.web.demo.svc.cluster.local. 5 IN SRV 0 33 8080 web-2.web.demo.svc.cluster.local.\n",
	       "web-0.web.demo.svc.cluster.local. 5 IN A 10.244.1.10\n"
	       "web-1.web.demo.svc.cluster.local. 5 IN A 10.244.2.11\n"
	       "web-2.web.demo.svc.cluster.local. 5 IN A 10.244.1.12\n");
	/* dual-stack ClusterIP: both addresses in additional */
	expect("_http._tcp.api.demo.svc.cluster.local", LDNS_RR_TYPE_SRV,
	       "_http._tcp.api.demo.svc.cluster.local. 5 IN SRV 0 100 80 api.demo.svc.cluster.local.\n",
	       "api.demo.svc.cluster.local. 5 IN A 10.96.45.12\n"
	       "api.demo.svc.cluster.local. 5 IN AAAA fd00:10:96::2d0c\n");
	/* protocol per port */
	expect("_dns._udp.kube-dns.kube-system.svc.cluster.local", LDNS_RR_TYPE_SRV,
	       "_dns._udp.kube-dns.kube-system.svc.cluster.local. 5 IN SRV 0 100 53 "
	       "kube-dns.kube-system.svc.cluster.local.\n",
	       "kube-dns.kube-system.svc.cluster.local. 5 IN A 10.96.0.10\n");
	expect_nx("_dns._tcp.kube-dns.kube-system.svc.cluster.local", LDNS_RR_TYPE_SRV);
	expect_nx("_dns-tcp._udp.kube-dns.kube-system.svc.cluster.local", LDNS_RR_TYPE_SRV);
	/* bare Service name: every numbered port, one record per port number */
	expect("kube-dns.kube-system.svc.cluster.local", LDNS_RR_TYPE_SRV,
	       "kube-dns.kube-system.svc.cluster.local. 5 IN SRV 0 50 53 kube-dns.kube-system.svc.cluster.local.\n"
	       "kube-dns.kube-system.svc.cluster.local. 5 IN SRV 0 50 9153 kube-dns.kube-system.svc.cluster.local.\n",
	       "kube-dns.kube-system.svc.cluster.local. 5 IN A 10.96.0.10\n");
	/* headless bare name and endpoint name: slice ports, unnamed included */
	expect("mixed.demo.svc.cluster.local", LDNS_RR_TYPE_SRV,
	       "mixed.demo.svc.cluster.local. 5 IN SRV 0 25 53 0--5.mixed.demo.svc.cluster.local.\n"
	       "mixed.demo.svc.cluster.local. 5 IN SRV 0 25 53 10-244-3-4.mixed.demo.svc.cluster.local.\n"
	       "mixed.demo.svc.cluster.local. 5 IN SRV 0 25 7000 10-244-3-4.mixed.demo.svc.cluster.local.\n"
	       "mixed.demo.svc.cluster.local. 5 IN SRV 0 25 53 fd00-10-244-3--0.mixed.demo.svc.cluster.local.\n",
	       "0--5.mixed.demo.svc.cluster.local. 5 IN AAAA ::5\n"
	       "10-244-3-4.mixed.demo.svc.cluster.local. 5 IN A 10.244.3.4\n"
	       "fd00-10-244-3--0.mixed.demo.svc.cluster.local. 5 IN AAAA fd00:10:244:3::\n");
	expect("_dns-tcp._tcp.mixed.demo.svc.cluster.local", LDNS_RR_TYPE_SRV,
	       "_dns-tcp._tcp.mixed.demo.svc.cluster.local. 5 IN SRV 0 100 53 10-244-3-4.mixed.demo.svc.cluster.local.\n",
	       "10-244-3-4.mixed.demo.svc.cluster.local. 5 IN A 10.244.3.4\n");
	expect("web-0.web.demo.svc.cluster.local", LDNS_RR_TYPE_SRV,
	       "web-0.web.demo.svc.cluster.local. 5 IN SRV 0 100 8080 web-0.web.demo.svc.cluster.local.\n",
	       "web-0.web.demo.svc.cluster.local. 5 IN A 10.244.1.10\n");
	/* names that do not exist, and names that exist without the type */
	expect_nx("_http._udp.web.demo.svc.cluster.local", LDNS_RR_TYPE_SRV);
	expect_nx("_nope._tcp.kubernetes.default.svc.cluster.local", LDNS_RR_TYPE_SRV);
	expect_nx("https.tcp.kubernetes.default.svc.cluster.local", LDNS_RR_TYPE_SRV);
	expect_nx("_https._xyz.kubernetes.default.svc.cluster.local", LDNS_RR_TYPE_SRV);
	expect_nx("_._tcp.kubernetes.default.svc.cluster.local", LDNS_RR_TYPE_SRV);
	expect_nodata("_https._tcp.kubernetes.default.svc.cluster.local", LDNS_RR_TYPE_A);
	expect_nodata("_https._tcp.kubernetes.default.svc.cluster.local", LDNS_RR_TYPE_AAAA);
	expect_nodata("orphan.nonsobj.svc.cluster.local", LDNS_RR_TYPE_SRV);
	/* empty non-terminals */
	expect_nodata("_tcp.kubernetes.default.svc.cluster.local", LDNS_RR_TYPE_SRV);
	expect_nodata("_TCP.kubernetes.default.svc.cluster.local", LDNS_RR_TYPE_A);
	expect_nx("_udp.kubernetes.default.svc.cluster.local", LDNS_RR_TYPE_SRV);
	expect_nodata("_tcp.web.demo.svc.cluster.local", LDNS_RR_TYPE_SRV);
	expect_nodata("_udp.mixed.demo.svc.cluster.local", LDNS_RR_TYPE_SRV);
	expect_nx("_sctp.mixed.demo.svc.cluster.local", LDNS_RR_TYPE_SRV);
	expect_nx("x._http._tcp.web.demo.svc.cluster.local", LDNS_RR_TYPE_SRV);
}

static void test_ptr(void **state)
{
	(void)state;
	expect("1.0.96.10.in-addr.arpa", LDNS_RR_TYPE_PTR,
	       "1.0.96.10.in-addr.arpa. 5 IN PTR kubernetes.default.svc.cluster.local.\n", NULL);
	expect("11.2.244.10.IN-ADDR.ARPA", LDNS_RR_TYPE_PTR,
	       "11.2.244.10.IN-ADDR.ARPA. 5 IN PTR web-1.web.demo.svc.cluster.local.\n", NULL);
	expect("5.1.244.10.in-addr.arpa", LDNS_RR_TYPE_PTR,
	       "5.1.244.10.in-addr.arpa. 5 IN PTR 10-244-1-5.api.demo.svc.cluster.local.\n", NULL);
	/* one address behind two Services: one PTR each */
	expect("10.1.244.10.in-addr.arpa", LDNS_RR_TYPE_PTR,
	       "10.1.244.10.in-addr.arpa. 5 IN PTR 10-244-1-10.shared.demo.svc.cluster.local.\n"
	       "10.1.244.10.in-addr.arpa. 5 IN PTR web-0.web.demo.svc.cluster.local.\n",
	       NULL);
	/* IPv6, ClusterIP and endpoint */
	expect("c.0.d.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.1.0.0.0.0.d.f.ip6.arpa",
	       LDNS_RR_TYPE_PTR,
	       "c.0.d.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.1.0.0.0.0.d.f.ip6.arpa. 5 IN PTR "
	       "api.demo.svc.cluster.local.\n",
	       NULL);
	expect("5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.4.4.2.0.0.1.0.0.0.0.D.F.ip6.arpa",
	       LDNS_RR_TYPE_PTR,
	       "5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.4.4.2.0.0.1.0.0.0.0.D.F.ip6.arpa. 5 IN PTR "
	       "fd00-10-244-1--5.api.demo.svc.cluster.local.\n",
	       NULL);
	/* not ours: unknown addresses, partial and malformed reverse names */
	expect_not_mine("2.0.96.10.in-addr.arpa", LDNS_RR_TYPE_PTR);
	expect_not_mine("13.2.244.10.in-addr.arpa", LDNS_RR_TYPE_PTR); /* not ready */
	expect_not_mine("10.in-addr.arpa", LDNS_RR_TYPE_PTR);
	expect_not_mine("96.10.in-addr.arpa", LDNS_RR_TYPE_PTR);
	expect_not_mine("in-addr.arpa", LDNS_RR_TYPE_PTR);
	expect_not_mine("01.0.96.10.in-addr.arpa", LDNS_RR_TYPE_PTR);
	expect_not_mine("1.0.96.256.in-addr.arpa", LDNS_RR_TYPE_PTR);
	expect_not_mine("x.1.0.96.10.in-addr.arpa", LDNS_RR_TYPE_PTR);
	expect_not_mine("0.6.9.0.0.0.1.0.0.0.0.d.f.ip6.arpa", LDNS_RR_TYPE_PTR);
	expect_not_mine("c.0.d.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.1.0.0.0.0.d.g.ip6.arpa",
			LDNS_RR_TYPE_PTR);
	/* a known address, another type: NODATA with a reverse-zone SOA */
	ldns_pkt *p = ask("1.0.96.10.in-addr.arpa", LDNS_RR_TYPE_A);
	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
	assert_true(g_info.nodata);
	assert_int_equal(ldns_pkt_ancount(p), 0);
	check_sec(p, LDNS_SECTION_AUTHORITY,
		  "in-addr.arpa. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 "
		  "1800 86400 5\n");
	ldns_pkt_free(p);
}

/* A headless Service with 5,000 ready endpoints: too big for 64 KiB. Over
 * UDP TC=1 and no records; over a stream as many records as fit, no TC. An
 * ExternalName pointing at itself is SERVFAIL. */
static void test_answer_over_64k(void **state)
{
	struct k8s_store *s = k8s_store_new(&cfg);
	static char buf[100000];
	size_t o;
	ldns_pkt *p;
	uint8_t q[300];

	(void)state;
	ns(s, "big");
	put(s, K8S_SERVICE, "{'metadata':{'name':'many','namespace':'big'},'spec':{'clusterIP':'None'}}");
	put(s, K8S_SERVICE,
	    "{'metadata':{'name':'self','namespace':'big'},"
	    "'spec':{'type':'ExternalName','externalName':'SELF.big.svc.cluster.local'}}");
	for (int k = 0; k < 5; k++) { /* 5 slices of 1,000 */
		o = (size_t)snprintf(buf, sizeof(buf),
				     "{'metadata':{'name':'many-%d','namespace':'big','labels':"
				     "{'kubernetes.io/service-name':'many'}},'addressType':'IPv4',"
				     "'endpoints':[", k);
		for (int i = k * 1000; i < (k + 1) * 1000; i++)
			o += (size_t)snprintf(buf + o, sizeof(buf) - o,
					      "%s{'addresses':['10.2.%d.%d']}", i % 1000 ? "," : "",
					      i / 250, i % 250 + 1);
		snprintf(buf + o, sizeof(buf) - o, "]}");
		put(s, K8S_ENDPOINTSLICE, buf);
	}
	struct cluster_snapshot *sn = publish_once(s);
	size_t ql = wire_of("many.big.svc.cluster.local", q);

	p = ask_full(sn, &cfg, "many.big.svc.cluster.local", LDNS_RR_TYPE_A, 65535);
	assert_true(ldns_pkt_tc(p));
	assert_int_equal(ldns_pkt_ancount(p), 0);
	ldns_pkt_free(p);
	assert_int_equal(cluster_answer_stream(sn, &cfg, q, ql, LDNS_RR_TYPE_A, LDNS_RR_CLASS_IN,
					       g_wire, 65535 - 11, &g_len, &g_info),
			 CLUSTER_ANSWERED);
	assert_int_equal(ldns_wire2pkt(&p, g_wire, g_len), LDNS_STATUS_OK);
	assert_false(ldns_pkt_tc(p));
	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
	assert_true(ldns_pkt_ancount(p) > 4000 && ldns_pkt_ancount(p) < 5000);
	assert_true(g_len <= 65535 - 11 && g_len + 16 > 65535 - 11);
	ldns_pkt_free(p);

	p = ask_full(sn, &cfg, "self.big.svc.cluster.local", LDNS_RR_TYPE_A, 65535);
	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_SERVFAIL);
	assert_int_equal(ldns_pkt_ancount(p), 0);
	ldns_pkt_free(p);
	p = ask_full(sn, &cfg, "self.big.svc.cluster.local", LDNS_RR_TYPE_AAAA, 65535);
	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_SERVFAIL);
	ldns_pkt_free(p);

	cluster_snapshot_unref(sn);
	k8s_store_free(s);
}

static void test_external_name(void **state)
{
	static const uint8_t www[] = "\003www\007example\003com";
	ldns_pkt *p;

	(void)state;
	expect("search.demo.svc.cluster.local", LDNS_RR_TYPE_CNAME,
	       "search.demo.svc.cluster.local. 5 IN CNAME www.example.com.\n", NULL);
	assert_int_equal(g_info.chase_len, 0);
	expect("search.demo.svc.cluster.local", LDNS_RR_TYPE_A,
	       "search.demo.svc.cluster.local. 5 IN CNAME www.example.com.\n", NULL);
	assert_int_equal(g_info.chase_len, sizeof(www));
	assert_memory_equal(g_info.chase_name, www, sizeof(www));
	expect("Search.Demo.svc.cluster.local", LDNS_RR_TYPE_AAAA,
	       "Search.Demo.svc.cluster.local. 5 IN CNAME www.example.com.\n", NULL);
	assert_int_equal(g_info.chase_len, sizeof(www));
	/* other types: the CNAME, nothing to chase */
	expect("search.demo.svc.cluster.local", LDNS_RR_TYPE_TXT,
	       "search.demo.svc.cluster.local. 5 IN CNAME www.example.com.\n", NULL);
	assert_int_equal(g_info.chase_len, 0);
	/* nothing below an ExternalName */
	expect_nx("_http._tcp.search.demo.svc.cluster.local", LDNS_RR_TYPE_SRV);
	expect_nx("www.search.demo.svc.cluster.local", LDNS_RR_TYPE_A);
	/* in-zone target: resolved here */
	expect("alias.demo.svc.cluster.local", LDNS_RR_TYPE_A,
	       "alias.demo.svc.cluster.local. 5 IN CNAME api.demo.svc.cluster.local.\n"
	       "api.demo.svc.cluster.local. 5 IN A 10.96.45.12\n",
	       NULL);
	assert_int_equal(g_info.chase_len, 0);
	expect("hop.demo.svc.cluster.local", LDNS_RR_TYPE_A,
	       "hop.demo.svc.cluster.local. 5 IN CNAME search.demo.svc.cluster.local.\n"
	       "search.demo.svc.cluster.local. 5 IN CNAME www.example.com.\n",
	       NULL);
	assert_int_equal(g_info.chase_len, sizeof(www));
	/* in-zone target that does not exist: NXDOMAIN after the CNAME */
	p = ask("dangling.demo.svc.cluster.local", LDNS_RR_TYPE_A);
	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NXDOMAIN);
	check_sec(p, LDNS_SECTION_ANSWER,
		  "dangling.demo.svc.cluster.local. 5 IN CNAME nothere.demo.svc.cluster.local.\n");
	check_sec(p, LDNS_SECTION_AUTHORITY, soa(1));
	ldns_pkt_free(p);
	expect("alias.demo.svc.cluster.local", LDNS_RR_TYPE_AAAA,
	       "alias.demo.svc.cluster.local. 5 IN CNAME api.demo.svc.cluster.local.\n"
	       "api.demo.svc.cluster.local. 5 IN AAAA fd00:10:96::2d0c\n",
	       NULL);
	/* in-zone target without the type: NODATA after the CNAME */
	p = ask("tov4.demo.svc.cluster.local", LDNS_RR_TYPE_AAAA);
	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
	assert_true(g_info.nodata);
	check_sec(p, LDNS_SECTION_ANSWER,
		  "tov4.demo.svc.cluster.local. 5 IN CNAME kubernetes.default.svc.cluster.local.\n");
	check_sec(p, LDNS_SECTION_AUTHORITY, soa(1));
	ldns_pkt_free(p);
	/* a loop (loop1 -> loop2 -> loop1) is SERVFAIL, without records */
	p = ask("loop1.demo.svc.cluster.local", LDNS_RR_TYPE_A);
	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_SERVFAIL);
	assert_int_equal(ldns_pkt_ancount(p), 0);
	assert_int_equal(ldns_pkt_nscount(p), 0);
	assert_int_equal(g_info.chase_len, 0);
	ldns_pkt_free(p);
	/* the CNAME question itself is no loop: one record */
	expect("loop1.demo.svc.cluster.local", LDNS_RR_TYPE_CNAME,
	       "loop1.demo.svc.cluster.local. 5 IN CNAME loop2.demo.svc.cluster.local.\n", NULL);
	/* an IP literal is not a name: the Service exists without records */
	expect_nodata("iplit.demo.svc.cluster.local", LDNS_RR_TYPE_A);
}

static void test_pods(void **state)
{
	struct cluster_config off = cfg;
	ldns_pkt *p;

	(void)state;
	expect("10-244-1-2.default.pod.cluster.local", LDNS_RR_TYPE_A,
	       "10-244-1-2.default.pod.cluster.local. 5 IN A 10.244.1.2\n", NULL);
	expect_nodata("10-244-1-2.default.pod.cluster.local", LDNS_RR_TYPE_AAAA);
	expect("fd00--1.demo.pod.cluster.local", LDNS_RR_TYPE_AAAA,
	       "fd00--1.demo.pod.cluster.local. 5 IN AAAA fd00::1\n", NULL);
	expect_nodata("fd00--1.demo.pod.cluster.local", LDNS_RR_TYPE_A);
	expect_nx("10-244-1-2.nosuchns.pod.cluster.local", LDNS_RR_TYPE_A);
	expect_nx("blah.default.pod.cluster.local", LDNS_RR_TYPE_A);
	expect_nx("10-244-1-256.default.pod.cluster.local", LDNS_RR_TYPE_A);
	expect_nx("1-2-3-4-5-6-7-8-9.default.pod.cluster.local", LDNS_RR_TYPE_AAAA);
	expect_nodata("10-244--1.default.pod.cluster.local", LDNS_RR_TYPE_A); /* IPv6 10:244::1 */
	expect_nx("x.10-244-1-2.default.pod.cluster.local", LDNS_RR_TYPE_A);
	expect_nodata("default.pod.cluster.local", LDNS_RR_TYPE_A);
	expect_nodata("pod.cluster.local", LDNS_RR_TYPE_A);
	expect_nx("nosuchns.pod.cluster.local", LDNS_RR_TYPE_A);
	/* disabled */
	off.pods_insecure = false;
	p = ask_full(snap, &off, "10-244-1-2.default.pod.cluster.local", LDNS_RR_TYPE_A, 512);
	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NXDOMAIN);
	ldns_pkt_free(p);
	p = ask_full(snap, &off, "pod.cluster.local", LDNS_RR_TYPE_A, 512);
	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
	ldns_pkt_free(p);
}

static void test_apex_and_version(void **state)
{
	(void)state;
	expect("dns-version.cluster.local", LDNS_RR_TYPE_TXT,
	       "dns-version.cluster.local. 5 IN TXT \"1.1.0\"\n", NULL);
	expect_nodata("dns-version.cluster.local", LDNS_RR_TYPE_A);
	expect_nx("x.dns-version.cluster.local", LDNS_RR_TYPE_TXT);
	expect("cluster.local", LDNS_RR_TYPE_SOA,
	       "cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 "
	       "1800 86400 5\n",
	       NULL);
	expect("Cluster.Local", LDNS_RR_TYPE_NS, "Cluster.Local. 5 IN NS ns.dns.Cluster.Local.\n",
	       NULL);
	expect_nodata("cluster.local", LDNS_RR_TYPE_A);
	expect_nodata("cluster.local", LDNS_RR_TYPE_TXT);
	expect_nodata("dns.cluster.local", LDNS_RR_TYPE_A);
	expect_nodata("ns.dns.cluster.local", LDNS_RR_TYPE_A);
	expect_nx("x.dns.cluster.local", LDNS_RR_TYPE_A);
}

static void test_negative(void **state)
{
	(void)state;
	expect_nodata("svc.cluster.local", LDNS_RR_TYPE_A);
	expect_nodata("default.svc.cluster.local", LDNS_RR_TYPE_A);
	expect_nodata("empty.svc.cluster.local", LDNS_RR_TYPE_SRV);
	expect_nx("nosuchns.svc.cluster.local", LDNS_RR_TYPE_A);
	expect_nx("kubernetes.nosuchns.svc.cluster.local", LDNS_RR_TYPE_A);
	expect_nx("nosuchsvc.default.svc.cluster.local", LDNS_RR_TYPE_A);
	expect_nx("nosuchsvc.default.svc.cluster.local", LDNS_RR_TYPE_TXT);
	expect_nx("foo.cluster.local", LDNS_RR_TYPE_A);
	expect_nx("a.b.c.d.e.f.svc.cluster.local", LDNS_RR_TYPE_A);
	/* search-path expansions of names that live elsewhere */
	expect_nx("www.example.com.default.svc.cluster.local", LDNS_RR_TYPE_A);
	expect_nx("www.example.com.svc.cluster.local", LDNS_RR_TYPE_A);
	expect_nx("www.example.com.cluster.local", LDNS_RR_TYPE_AAAA);
	expect_nx("kubernetes.default.svc.cluster.local.default.svc.cluster.local", LDNS_RR_TYPE_A);
	expect_nx("_http._tcp.web.demo.svc.demo.svc.cluster.local", LDNS_RR_TYPE_SRV);
	expect_nx("kubernetes.default.default.svc.cluster.local", LDNS_RR_TYPE_A);
	expect_nx("x.y.kubernetes.default.svc.cluster.local", LDNS_RR_TYPE_A);
	/* not ours at all */
	expect_not_mine("www.example.com", LDNS_RR_TYPE_A);
	expect_not_mine("evilcluster.local", LDNS_RR_TYPE_A);
	expect_not_mine("local", LDNS_RR_TYPE_A);
	expect_not_mine(".", LDNS_RR_TYPE_NS);
	assert_true(cluster_in_zone(&cfg, (const uint8_t *)"\007cluster\005local", 15));
	assert_true(cluster_in_zone(&cfg, (const uint8_t *)"\001a\007CLUSTER\005local", 17));
	assert_false(cluster_in_zone(&cfg, (const uint8_t *)"\005local", 7));
	assert_false(cluster_in_zone(&cfg, (const uint8_t *)"\001a\001b", 5));
	assert_false(cluster_in_zone(&cfg, (const uint8_t *)"\007cluster\005local", 14));
	/* unsynced: nothing is answered */
	assert_int_equal(ask_raw(NULL, &cfg, "kubernetes.default.svc.cluster.local",
				 LDNS_RR_TYPE_A, 512),
			 CLUSTER_NOT_MINE);
}

static void test_malformed_qname(void **state)
{
	static const struct {
		const char *w;
		size_t len;
	} bad[] = {
		{ "", 0 },
		{ "\007cluster\005local", 14 },          /* no root */
		{ "\007cluster\005local\000\000", 17 },  /* trailing byte */
		{ "\300\014", 2 },                       /* compression pointer */
		{ "\100aaaa", 6 },                       /* label > 63 */
		{ "\010cluster\005local", 15 },          /* label runs past the end */
	};
	size_t len = 0;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(cluster_answer(snap, &cfg, (const uint8_t *)bad[i].w, bad[i].len,
						LDNS_RR_TYPE_A, 1, g_wire, sizeof(g_wire), &len,
						&g_info),
				 CLUSTER_NOT_MINE);
		assert_int_equal(len, 0);
	}
	/* too long a name */
	uint8_t q[300];
	size_t o = 0;
	for (int i = 0; i < 4; i++) {
		q[o++] = 63;
		memset(q + o, 'a', 63);
		o += 63;
	}
	memcpy(q + o, "\007cluster\005local", 15);
	o += 15;
	assert_int_equal(cluster_answer(snap, &cfg, q, o, LDNS_RR_TYPE_A, 1, g_wire, sizeof(g_wire),
					&len, NULL),
			 CLUSTER_NOT_MINE);
	/* NULL info is fine */
	assert_int_equal(cluster_answer(snap, &cfg, (const uint8_t *)"\007cluster\005local", 15,
					LDNS_RR_TYPE_SOA, 1, g_wire, sizeof(g_wire), &len, NULL),
			 CLUSTER_ANSWERED);
	/* a malformed configured domain serves nothing */
	struct cluster_config bc = cfg;
	strcpy(bc.domain, "a..b");
	assert_int_equal(ask_raw(snap, &bc, "x.a..b", LDNS_RR_TYPE_A, 512), CLUSTER_NOT_MINE);
}

/* Random names must never crash and every answer must parse. */
static void test_random_names(void **state)
{
	static const char *parts[] = { "cluster", "local", "svc", "pod", "default", "demo", "web",
				       "web-0", "_http", "_tcp", "in-addr", "arpa", "ip6", "10", "96",
				       "0", "1", "dns", "ns", "dns-version", "kubernetes", "a", "_",
				       "mixed", "search", "alias", "loop1", "0--5", "CLUSTER", "Svc" };
	static const uint16_t types[] = { 1, 2, 5, 6, 12, 16, 28, 33, 255, 15 };
	unsigned seed = 12345;

	(void)state;
	for (int i = 0; i < 20000; i++) {
		uint8_t q[256];
		size_t o = 0;
		int nl = (int)(rand_r(&seed) % 8);
		for (int k = 0; k < nl; k++) {
			const char *p = parts[rand_r(&seed) % (sizeof(parts) / sizeof(parts[0]))];
			size_t l = strlen(p);
			q[o++] = (uint8_t)l;
			memcpy(q + o, p, l);
			o += l;
		}
		if (rand_r(&seed) % 2) {
			memcpy(q + o, "\007cluster\005local", 14);
			o += 14;
		}
		q[o++] = 0;
		size_t cap = rand_r(&seed) % 3 ? 65535 : (size_t)(rand_r(&seed) % 600);
		size_t len;
		enum cluster_verdict v = cluster_answer(snap, &cfg, q, o,
							types[rand_r(&seed) % 10], 1, g_wire,
							cap, &len, &g_info);
		if (v == CLUSTER_ANSWERED && len >= 12 + o + 4) {
			ldns_pkt *p = NULL;
			assert_true(len <= cap);
			assert_int_equal(ldns_wire2pkt(&p, g_wire, len), LDNS_STATUS_OK);
			ldns_pkt_free(p);
		}
	}
}

static void test_truncation(void **state)
{
	struct k8s_store *s = k8s_store_new(&cfg);
	struct cluster_snapshot *sn;
	char buf[100000];
	size_t o = 0;
	ldns_pkt *p;

	(void)state;
	ns(s, "big");
	put(s, K8S_SERVICE,
	    "{'metadata':{'name':'many','namespace':'big'},'spec':{'clusterIP':'None',"
	    "'ports':[{'name':'http','port':80}]}}");
	o += (size_t)snprintf(buf + o, sizeof(buf) - o,
			      "{'metadata':{'name':'many-1','namespace':'big','labels':"
			      "{'kubernetes.io/service-name':'many'}},'addressType':'IPv4',"
			      "'ports':[{'name':'http','port':80}],'endpoints':[");
	for (int i = 0; i < 300; i++)
		o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%s{'addresses':['10.1.%d.%d']}",
				      i ? "," : "", i / 200, i % 200 + 1);
	snprintf(buf + o, sizeof(buf) - o, "]}");
	put(s, K8S_ENDPOINTSLICE, buf);
	sn = publish_once(s);

	/* too big for 512: TC, no records */
	p = ask_full(sn, &cfg, "many.big.svc.cluster.local", LDNS_RR_TYPE_A, 512);
	assert_true(ldns_pkt_tc(p));
	assert_int_equal(ldns_pkt_ancount(p), 0);
	assert_int_equal(ldns_pkt_nscount(p), 0);
	assert_int_equal(ldns_pkt_arcount(p), 0);
	assert_int_equal(g_len, 12 + 28 + 4);
	ldns_pkt_free(p);
	/* fits in 65535 */
	p = ask_full(sn, &cfg, "many.big.svc.cluster.local", LDNS_RR_TYPE_A, 65535);
	assert_false(ldns_pkt_tc(p));
	assert_int_equal(ldns_pkt_ancount(p), 300);
	ldns_pkt_free(p);
	/* exactly the size it needs: fits; one byte less: TC */
	size_t need = g_len;
	p = ask_full(sn, &cfg, "many.big.svc.cluster.local", LDNS_RR_TYPE_A, need);
	assert_false(ldns_pkt_tc(p));
	ldns_pkt_free(p);
	p = ask_full(sn, &cfg, "many.big.svc.cluster.local", LDNS_RR_TYPE_A, need - 1);
	assert_true(ldns_pkt_tc(p));
	ldns_pkt_free(p);
	/* SRV: the answers fit in 65535 with the additional addresses */
	p = ask_full(sn, &cfg, "_http._tcp.many.big.svc.cluster.local", LDNS_RR_TYPE_SRV, 65535);
	assert_false(ldns_pkt_tc(p));
	assert_int_equal(ldns_pkt_ancount(p), 300);
	assert_int_equal(ldns_pkt_arcount(p), 300);
	size_t full = g_len;
	ldns_pkt_free(p);
	/* answers fit but the additional section does not: dropped, no TC */
	p = ask_full(sn, &cfg, "_http._tcp.many.big.svc.cluster.local", LDNS_RR_TYPE_SRV,
		     full - 1);
	assert_false(ldns_pkt_tc(p));
	assert_int_equal(ldns_pkt_ancount(p), 300);
	assert_int_equal(ldns_pkt_arcount(p), 0);
	ldns_pkt_free(p);
	/* over a stream: the same answers whole, or as many whole records as
	 * fit, never TC */
	uint8_t q[300];
	size_t ql = wire_of("many.big.svc.cluster.local", q);
	for (size_t cap2 = 100; cap2 <= 65535; cap2 += 997) {
		assert_int_equal(cluster_answer_stream(sn, &cfg, q, ql, LDNS_RR_TYPE_A,
						       LDNS_RR_CLASS_IN, g_wire, cap2, &g_len,
						       &g_info), CLUSTER_ANSWERED);
		assert_true(g_len <= cap2);
		assert_int_equal(ldns_wire2pkt(&p, g_wire, g_len), LDNS_STATUS_OK);
		assert_false(ldns_pkt_tc(p));
		assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
		size_t an = ldns_pkt_ancount(p);
		assert_true(an == 300 || g_len + 16 > cap2); /* 16: one more A record */
		assert_true(an >= (cap2 - 12 - 28 - 4) / 16 || an == 300);
		ldns_pkt_free(p);
	}
	/* a cap below the question: an empty truncated header, or nothing */
	size_t len;
	assert_int_equal(ask_raw(sn, &cfg, "many.big.svc.cluster.local", LDNS_RR_TYPE_A, 20),
			 CLUSTER_ANSWERED);
	assert_int_equal(g_len, 12);
	assert_true(g_wire[2] & 0x02);
	assert_int_equal(cluster_answer(sn, &cfg, (const uint8_t *)"\007cluster\005local", 15,
					LDNS_RR_TYPE_SOA, 1, g_wire, 5, &len, NULL),
			 CLUSTER_ANSWERED);
	assert_int_equal(len, 0);
	cluster_snapshot_unref(sn);
	k8s_store_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_clusterip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dual_stack, setup, teardown),
		cmocka_unit_test_setup_teardown(test_case, setup, teardown),
		cmocka_unit_test_setup_teardown(test_headless, setup, teardown),
		cmocka_unit_test_setup_teardown(test_headless_none_ready, setup, teardown),
		cmocka_unit_test_setup_teardown(test_srv, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ptr, setup, teardown),
		cmocka_unit_test_setup_teardown(test_external_name, setup, teardown),
		cmocka_unit_test(test_answer_over_64k),
		cmocka_unit_test_setup_teardown(test_pods, setup, teardown),
		cmocka_unit_test_setup_teardown(test_apex_and_version, setup, teardown),
		cmocka_unit_test_setup_teardown(test_negative, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed_qname, setup, teardown),
		cmocka_unit_test_setup_teardown(test_random_names, setup, teardown),
		cmocka_unit_test_setup_teardown(test_truncation, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
