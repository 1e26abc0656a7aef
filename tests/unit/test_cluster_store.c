/* tests/unit/test_cluster_store.c - unit tests for the cluster store, the publisher and snapshots. */
#include "cluster_fixture.h"

/* ------------------------------------------------------------------ tests */

static void test_snapshots(void **state)
{
	struct cluster_snapshot *s1, *s2, *s3;
	struct k8s_store_stats st;
	struct pm_val *a1 = NULL, *a2 = NULL;
	ldns_pkt *p;
	int shared = 0;

	(void)state;
	s1 = snap;
	assert_int_equal(s1->serial, 1);
	/* nothing changed: the same snapshot */
	s2 = cluster_publisher_publish(pub, store);
	assert_ptr_equal(s2, s1);
	cluster_snapshot_unref(s2);

	/* change one Service: a new snapshot, the old one still answers */
	put(store, K8S_SERVICE,
	    "{'metadata':{'name':'kubernetes','namespace':'default'},"
	    "'spec':{'clusterIP':'10.96.0.2','ports':[{'name':'https','port':443}]}}");
	del(store, K8S_SERVICE, "{'metadata':{'name':'search','namespace':'demo'}}");
	s2 = cluster_publisher_publish(pub, store);
	assert_ptr_not_equal(s2, s1);
	assert_int_equal(s2->serial, 2);
	expect_neg_snap(s2, "search.demo.svc.cluster.local", LDNS_RR_TYPE_CNAME,
			LDNS_RCODE_NXDOMAIN);
	p = ask_full(s2, &cfg, "kubernetes.default.svc.cluster.local", LDNS_RR_TYPE_A, 512);
	check_sec(p, LDNS_SECTION_ANSWER, "kubernetes.default.svc.cluster.local. 5 IN A 10.96.0.2\n");
	ldns_pkt_free(p);
	p = ask_full(s1, &cfg, "kubernetes.default.svc.cluster.local", LDNS_RR_TYPE_A, 512);
	check_sec(p, LDNS_SECTION_ANSWER, "kubernetes.default.svc.cluster.local. 5 IN A 10.96.0.1\n");
	ldns_pkt_free(p);
	p = ask_full(s1, &cfg, "search.demo.svc.cluster.local", LDNS_RR_TYPE_CNAME, 512);
	assert_int_equal(ldns_pkt_ancount(p), 1);
	ldns_pkt_free(p);
	/* reverse entries moved with the ClusterIP */
	assert_int_equal(ask_raw(s2, &cfg, "1.0.96.10.in-addr.arpa", LDNS_RR_TYPE_PTR, 512),
			 CLUSTER_NOT_MINE);
	assert_int_equal(ask_raw(s2, &cfg, "2.0.96.10.in-addr.arpa", LDNS_RR_TYPE_PTR, 512),
			 CLUSTER_ANSWERED);
	assert_int_equal(ask_raw(s1, &cfg, "1.0.96.10.in-addr.arpa", LDNS_RR_TYPE_PTR, 512),
			 CLUSTER_ANSWERED);
	/* the SOA serial is the generation */
	expect_neg_snap(s2, "nope.default.svc.cluster.local", LDNS_RR_TYPE_A, 3);

	/* unchanged records and most shards are shared */
	assert_true(cluster_pmap_get(&s1->svc, &s1->hkey, "demo/api", 8, &a1));
	assert_true(cluster_pmap_get(&s2->svc, &s2->hkey, "demo/api", 8, &a2));
	assert_ptr_equal(a1, a2);
	for (unsigned i = 0; i < PMAP_LEAVES; i++)
		shared += cluster_pmap_leaf(&s1->svc, i) == cluster_pmap_leaf(&s2->svc, i);
	assert_true(shared >= (int)PMAP_LEAVES - 2);
	/* the namespaces did not change: that whole map is shared */
	assert_ptr_equal(s1->ns.root, s2->ns.root);

	/* a modification DNS cannot see shares everything */
	put(store, K8S_ENDPOINTSLICE,
	    "{'metadata':{'name':'web-a','namespace':'demo',"
	    "'labels':{'kubernetes.io/service-name':'web','extra':'x'}},'addressType':'IPv4',"
	    "'endpoints':["
	    "{'addresses':['10.244.1.10'],'hostname':'web-0','conditions':{'ready':true}},"
	    "{'addresses':['10.244.2.11'],'hostname':'web-1'},"
	    "{'addresses':['10.244.2.14'],'hostname':'web-4','conditions':{'ready':false}}],"
	    "'ports':[{'name':'http','port':8080,'protocol':'TCP'}]}");
	s3 = cluster_publisher_publish(pub, store);
	assert_ptr_equal(s3, s2);
	cluster_snapshot_unref(s3);

	/* a relist that brings back the same content: still the same snapshot */
	k8s_store_clear_kind(store, K8S_SERVICE);
	k8s_store_clear_kind(store, K8S_ENDPOINTSLICE);
	k8s_store_clear_kind(store, K8S_NAMESPACE);
	build_base(store);
	put(store, K8S_SERVICE,
	    "{'metadata':{'name':'kubernetes','namespace':'default'},"
	    "'spec':{'clusterIP':'10.96.0.2','ports':[{'name':'https','port':443}]}}");
	del(store, K8S_SERVICE, "{'metadata':{'name':'search','namespace':'demo'}}");
	s3 = cluster_publisher_publish(pub, store);
	assert_ptr_equal(s3, s2);
	cluster_snapshot_unref(s3);

	/* a relist that drops things */
	k8s_store_clear_kind(store, K8S_SERVICE);
	k8s_store_clear_kind(store, K8S_NAMESPACE);
	s3 = cluster_publisher_publish(pub, store);
	assert_ptr_not_equal(s3, s2);
	expect_neg_snap(s3, "kubernetes.default.svc.cluster.local", LDNS_RR_TYPE_A, 3);
	expect_neg_snap(s3, "default.svc.cluster.local", LDNS_RR_TYPE_A, 3);
	assert_int_equal(ask_raw(s3, &cfg, "2.0.96.10.in-addr.arpa", LDNS_RR_TYPE_PTR, 512),
			 CLUSTER_NOT_MINE);
	assert_int_equal(ask_raw(s3, &cfg, "10.1.244.10.in-addr.arpa", LDNS_RR_TYPE_PTR, 512),
			 CLUSTER_NOT_MINE);
	assert_null(s3->svc.root);
	assert_null(s3->rev.root);
	k8s_store_get_stats(store, &st);
	assert_int_equal(st.services, 0);
	assert_int_equal(st.namespaces, 0);
	assert_true(st.endpointslices > 0);
	assert_int_equal(cluster_publisher_count(pub), 3);

	/* the old ones still work after the store moved on, in any order */
	cluster_snapshot_unref(s2);
	p = ask_full(s1, &cfg, "web.demo.svc.cluster.local", LDNS_RR_TYPE_A, 512);
	assert_int_equal(ldns_pkt_ancount(p), 3);
	ldns_pkt_free(p);
	cluster_snapshot_ref(s3);
	cluster_snapshot_unref(s3);
	cluster_snapshot_unref(s3);
	cluster_snapshot_unref(NULL);
	/* s1 (snap) is released by teardown, after the store's own reference */
}

static void test_events(void **state)
{
	struct k8s_store_stats st;
	struct cluster_snapshot *s2;
	ldns_pkt *p;

	(void)state;
	/* a slice arrives before its Service: served once the Service exists */
	put(store, K8S_SERVICE,
	    "{'metadata':{'name':'ghost','namespace':'demo'},'spec':{'clusterIP':'None'}}");
	/* a slice moves to another Service (label change), another is deleted */
	put(store, K8S_ENDPOINTSLICE,
	    "{'metadata':{'name':'web-b','namespace':'demo',"
	    "'labels':{'kubernetes.io/service-name':'ghost'}},'addressType':'IPv4',"
	    "'endpoints':[{'addresses':['10.244.1.12'],'hostname':'web-2'}],"
	    "'ports':[{'name':'http','port':8080}]}");
	del(store, K8S_ENDPOINTSLICE,
	    "{'metadata':{'name':'api-v6','namespace':'demo'},'addressType':'IPv6'}");
	del(store, K8S_ENDPOINTSLICE, "{'metadata':{'name':'never-was','namespace':'demo'}}");
	del(store, K8S_NAMESPACE, "{'metadata':{'name':'empty'}}");
	s2 = cluster_publisher_publish(pub, store);

	p = ask_full(s2, &cfg, "ghost.demo.svc.cluster.local", LDNS_RR_TYPE_A, 512);
	check_sec(p, LDNS_SECTION_ANSWER,
		  "ghost.demo.svc.cluster.local. 5 IN A 10.244.1.12\n"
		  "ghost.demo.svc.cluster.local. 5 IN A 10.244.8.8\n");
	ldns_pkt_free(p);
	p = ask_full(s2, &cfg, "web.demo.svc.cluster.local", LDNS_RR_TYPE_A, 512);
	check_sec(p, LDNS_SECTION_ANSWER,
		  "web.demo.svc.cluster.local. 5 IN A 10.244.1.10\n"
		  "web.demo.svc.cluster.local. 5 IN A 10.244.2.11\n");
	ldns_pkt_free(p);
	p = ask_full(s2, &cfg, "12.1.244.10.in-addr.arpa", LDNS_RR_TYPE_PTR, 512);
	check_sec(p, LDNS_SECTION_ANSWER,
		  "12.1.244.10.in-addr.arpa. 5 IN PTR web-2.ghost.demo.svc.cluster.local.\n");
	ldns_pkt_free(p);
	expect_neg_snap(s2, "fd00-10-244-1--5.api.demo.svc.cluster.local", LDNS_RR_TYPE_AAAA, 3);
	expect_neg_snap(s2, "empty.svc.cluster.local", LDNS_RR_TYPE_A, 3);
	/* the namespace of a Service survives its Namespace object */
	del(store, K8S_NAMESPACE, "{'metadata':{'name':'demo'}}");
	cluster_snapshot_unref(s2);
	s2 = cluster_publisher_publish(pub, store);
	expect_neg_snap(s2, "demo.svc.cluster.local", LDNS_RR_TYPE_A, 0);
	/* deleting the last Service of a namespace removes it */
	del(store, K8S_SERVICE, "{'metadata':{'name':'orphan','namespace':'nonsobj'}}");
	cluster_snapshot_unref(s2);
	s2 = cluster_publisher_publish(pub, store);
	expect_neg_snap(s2, "nonsobj.svc.cluster.local", LDNS_RR_TYPE_A, 3);
	cluster_snapshot_unref(s2);

	k8s_store_get_stats(store, &st);
	assert_int_equal(st.events_rejected, 0);
	assert_true(st.events_applied > 30);
	assert_int_equal(st.namespaces, 2);
}

static void expect_ptrs(struct cluster_snapshot *sn, const char *name, const char *want)
{
	ldns_pkt *p = ask_full(sn, &cfg, name, LDNS_RR_TYPE_PTR, 512);

	check_sec(p, LDNS_SECTION_ANSWER, want);
	ldns_pkt_free(p);
}

/* Issue 10.7: a ready endpoint address held by several Services answers one
 * PTR per Service (README, CoreDNS), also when the Services come and go one
 * publish at a time (the reverse entries are diffed, not rebuilt), and as
 * the conformance-test cluster has it (a headless Service with a hostname and
 * a ClusterIP Service whose endpoint gets its dashed name). */
static void test_ptr_per_service_incremental(void **state)
{
	struct cluster_snapshot *s2;
	const char *rev = "10.1.245.10.in-addr.arpa";

	(void)state;
	ns(store, "e2e");
	put(store, K8S_SERVICE,
	    "{'metadata':{'name':'dns-test-service','namespace':'e2e'},'spec':{'clusterIP':'None'}}");
	put(store, K8S_ENDPOINTSLICE,
	    "{'metadata':{'name':'dts-1','namespace':'e2e','labels':{'kubernetes.io/service-name':"
	    "'dns-test-service'}},'addressType':'IPv4','endpoints':[{'addresses':['10.245.1.10'],"
	    "'hostname':'dns-querier-1','conditions':{'ready':true},'targetRef':{'kind':'Pod',"
	    "'namespace':'e2e','name':'dns-querier-1'}}],'ports':[]}");
	s2 = cluster_publisher_publish(pub, store);
	expect_ptrs(s2, rev,
		    "10.1.245.10.in-addr.arpa. 5 IN PTR "
		    "dns-querier-1.dns-test-service.e2e.svc.cluster.local.\n");
	cluster_snapshot_unref(s2);

	put(store, K8S_SERVICE,
	    "{'metadata':{'name':'test-service-2','namespace':'e2e'},'spec':{'clusterIP':'10.96.20.2',"
	    "'clusterIPs':['10.96.20.2']}}");
	put(store, K8S_ENDPOINTSLICE,
	    "{'metadata':{'name':'ts2-1','namespace':'e2e','labels':{'kubernetes.io/service-name':"
	    "'test-service-2'}},'addressType':'IPv4','endpoints':[{'addresses':['10.245.1.10'],"
	    "'conditions':{'ready':true},'targetRef':{'kind':'Pod','namespace':'e2e',"
	    "'name':'dns-querier-1'}}],'ports':[]}");
	put(store, K8S_SERVICE,
	    "{'metadata':{'name':'third','namespace':'other'},'spec':{'clusterIP':'None'}}");
	put(store, K8S_ENDPOINTSLICE,
	    "{'metadata':{'name':'t-1','namespace':'other','labels':{'kubernetes.io/service-name':"
	    "'third'}},'addressType':'IPv4','endpoints':[{'addresses':['10.245.1.10']}],'ports':[]}");
	s2 = cluster_publisher_publish(pub, store);
	expect_ptrs(s2, rev,
		    "10.1.245.10.in-addr.arpa. 5 IN PTR "
		    "dns-querier-1.dns-test-service.e2e.svc.cluster.local.\n"
		    "10.1.245.10.in-addr.arpa. 5 IN PTR "
		    "10-245-1-10.test-service-2.e2e.svc.cluster.local.\n"
		    "10.1.245.10.in-addr.arpa. 5 IN PTR "
		    "10-245-1-10.third.other.svc.cluster.local.\n");
	cluster_snapshot_unref(s2);

	/* One Service's endpoint turns not ready, another Service goes. */
	put(store, K8S_ENDPOINTSLICE,
	    "{'metadata':{'name':'dts-1','namespace':'e2e','labels':{'kubernetes.io/service-name':"
	    "'dns-test-service'}},'addressType':'IPv4','endpoints':[{'addresses':['10.245.1.10'],"
	    "'hostname':'dns-querier-1','conditions':{'ready':false}}],'ports':[]}");
	del(store, K8S_SERVICE, "{'metadata':{'name':'third','namespace':'other'}}");
	s2 = cluster_publisher_publish(pub, store);
	expect_ptrs(s2, rev,
		    "10.1.245.10.in-addr.arpa. 5 IN PTR "
		    "10-245-1-10.test-service-2.e2e.svc.cluster.local.\n");
	cluster_snapshot_unref(s2);
}

/* Every malformed object is rejected with -EINVAL and a reason, and leaves
 * the store unchanged. */
static void test_malformed_objects(void **state)
{
	static const struct {
		enum k8s_kind kind;
		const char *json;
	} bad[] = {
		{ K8S_SERVICE, "[]" },
		{ K8S_SERVICE, "{'spec':{}}" },
		{ K8S_SERVICE, "{'metadata':[]}" },
		{ K8S_SERVICE, "{'metadata':{'namespace':'x'}}" },
		{ K8S_SERVICE, "{'metadata':{'name':'a'}}" },
		{ K8S_SERVICE, "{'metadata':{'name':7,'namespace':'x'}}" },
		{ K8S_SERVICE, "{'metadata':{'name':'a','namespace':null}}" },
		{ K8S_SERVICE, "{'metadata':{'name':'','namespace':'x'}}" },
		{ K8S_SERVICE, "{'metadata':{'name':'a.b','namespace':'x'}}" },
		{ K8S_SERVICE, "{'metadata':{'name':'a','namespace':'x/y'}}" },
		{ K8S_SERVICE, "{'metadata':{'name':'a\\u0000b','namespace':'x'}}" },
		{ K8S_SERVICE,
		  "{'metadata':{'name':'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',"
		  "'namespace':'x'}}" },
		{ K8S_SERVICE, "{'metadata':{'name':'a','namespace':'x'},'spec':[]}" },
		{ K8S_SERVICE, "{'metadata':{'name':'a','namespace':'x'},'spec':{'type':1}}" },
		{ K8S_SERVICE, "{'metadata':{'name':'a','namespace':'x'},'spec':{'clusterIP':1}}" },
		{ K8S_SERVICE,
		  "{'metadata':{'name':'a','namespace':'x'},'spec':{'clusterIP':'10.0.0.256'}}" },
		{ K8S_SERVICE,
		  "{'metadata':{'name':'a','namespace':'x'},'spec':{'clusterIPs':'10.0.0.1'}}" },
		{ K8S_SERVICE,
		  "{'metadata':{'name':'a','namespace':'x'},'spec':{'clusterIPs':[1]}}" },
		{ K8S_SERVICE, "{'metadata':{'name':'a','namespace':'x'},'spec':{'clusterIPs':"
			       "['10.0.0.1','fd00::1','10.0.0.2']}}" },
		{ K8S_SERVICE,
		  "{'metadata':{'name':'a','namespace':'x'},'spec':{'clusterIPs':['fe80::1%eth0']}}" },
		{ K8S_SERVICE, "{'metadata':{'name':'a','namespace':'x'},'spec':{'type':'ExternalName',"
			       "'externalName':['x']}}" },
		{ K8S_SERVICE, "{'metadata':{'name':'a','namespace':'x'},'spec':{'type':'ExternalName',"
			       "'externalName':'bad name.com'}}" },
		{ K8S_SERVICE, "{'metadata':{'name':'a','namespace':'x'},'spec':{'type':'ExternalName',"
			       "'externalName':'a..com'}}" },
		{ K8S_SERVICE, "{'metadata':{'name':'a','namespace':'x'},'spec':{'ports':{}}}" },
		{ K8S_SERVICE, "{'metadata':{'name':'a','namespace':'x'},'spec':{'ports':[1]}}" },
		{ K8S_SERVICE, "{'metadata':{'name':'a','namespace':'x'},'spec':{'ports':[{}]}}" },
		{ K8S_SERVICE,
		  "{'metadata':{'name':'a','namespace':'x'},'spec':{'ports':[{'port':'80'}]}}" },
		{ K8S_SERVICE,
		  "{'metadata':{'name':'a','namespace':'x'},'spec':{'ports':[{'port':0}]}}" },
		{ K8S_SERVICE,
		  "{'metadata':{'name':'a','namespace':'x'},'spec':{'ports':[{'port':65536}]}}" },
		{ K8S_SERVICE,
		  "{'metadata':{'name':'a','namespace':'x'},'spec':{'ports':[{'port':1.5}]}}" },
		{ K8S_SERVICE, "{'metadata':{'name':'a','namespace':'x'},'spec':{'ports':"
			       "[{'port':80,'name':5}]}}" },
		{ K8S_SERVICE, "{'metadata':{'name':'a','namespace':'x'},'spec':{'ports':"
			       "[{'port':80,'name':'a b'}]}}" },
		{ K8S_SERVICE, "{'metadata':{'name':'a','namespace':'x'},'spec':{'ports':"
			       "[{'port':80,'protocol':6}]}}" },
		{ K8S_ENDPOINTSLICE, "{'metadata':{'name':'s','namespace':'x'}}" },
		{ K8S_ENDPOINTSLICE, "{'metadata':{'name':'s','namespace':'x'},'addressType':4}" },
		{ K8S_ENDPOINTSLICE, "{'metadata':{'name':'s'},'addressType':'IPv4'}" },
		{ K8S_ENDPOINTSLICE,
		  "{'metadata':{'name':'s','namespace':'x','labels':[]},'addressType':'IPv4'}" },
		{ K8S_ENDPOINTSLICE, "{'metadata':{'name':'s','namespace':'x','labels':"
				     "{'kubernetes.io/service-name':3}},'addressType':'IPv4'}" },
		{ K8S_ENDPOINTSLICE, "{'metadata':{'name':'s','namespace':'x','labels':"
				     "{'kubernetes.io/service-name':'a.b'}},'addressType':'IPv4'}" },
		{ K8S_ENDPOINTSLICE,
		  "{'metadata':{'name':'s','namespace':'x'},'addressType':'IPv4','endpoints':{}}" },
		{ K8S_ENDPOINTSLICE,
		  "{'metadata':{'name':'s','namespace':'x'},'addressType':'IPv4','endpoints':[1]}" },
		{ K8S_ENDPOINTSLICE, "{'metadata':{'name':'s','namespace':'x'},'addressType':'IPv4',"
				     "'endpoints':[{'addresses':'10.0.0.1'}]}" },
		{ K8S_ENDPOINTSLICE, "{'metadata':{'name':'s','namespace':'x'},'addressType':'IPv4',"
				     "'endpoints':[{'addresses':[1]}]}" },
		{ K8S_ENDPOINTSLICE, "{'metadata':{'name':'s','namespace':'x'},'addressType':'IPv4',"
				     "'endpoints':[{'addresses':['fd00::1']}]}" },
		{ K8S_ENDPOINTSLICE, "{'metadata':{'name':'s','namespace':'x'},'addressType':'IPv6',"
				     "'endpoints':[{'addresses':['10.0.0.1']}]}" },
		{ K8S_ENDPOINTSLICE, "{'metadata':{'name':'s','namespace':'x'},'addressType':'IPv4',"
				     "'endpoints':[{'addresses':['10.0.0.1'],'conditions':[]}]}" },
		{ K8S_ENDPOINTSLICE, "{'metadata':{'name':'s','namespace':'x'},'addressType':'IPv4',"
				     "'endpoints':[{'addresses':['10.0.0.1'],'conditions':"
				     "{'ready':'true'}}]}" },
		{ K8S_ENDPOINTSLICE, "{'metadata':{'name':'s','namespace':'x'},'addressType':'IPv4',"
				     "'endpoints':[{'addresses':['10.0.0.1'],'hostname':1}]}" },
		{ K8S_ENDPOINTSLICE, "{'metadata':{'name':'s','namespace':'x'},'addressType':'IPv4',"
				     "'endpoints':[{'addresses':['10.0.0.1'],'hostname':'a.b'}]}" },
		{ K8S_ENDPOINTSLICE,
		  "{'metadata':{'name':'s','namespace':'x'},'addressType':'IPv4','ports':{}}" },
		{ K8S_ENDPOINTSLICE, "{'metadata':{'name':'s','namespace':'x'},'addressType':'IPv4',"
				     "'ports':[{'port':-1}]}" },
		{ K8S_ENDPOINTSLICE, "{'metadata':{'name':'s','namespace':'x'},'addressType':'IPv4',"
				     "'ports':[{'port':'80'}]}" },
		{ K8S_ENDPOINTSLICE, "{'metadata':{'name':'s','namespace':'x'},'addressType':'IPv4',"
				     "'ports':[{'port':80,'name':[]}]}" },
		{ K8S_NAMESPACE, "{'metadata':{}}" },
		{ K8S_NAMESPACE, "{'metadata':{'name':false}}" },
		{ K8S_NAMESPACE, "{'metadata':{'name':'UPPER CASE'}}" },
		{ K8S_NAMESPACE, "'string'" },
		{ K8S_KIND_COUNT, "{'metadata':{'name':'a','namespace':'b'}}" },
	};
	struct k8s_store_stats before, after;
	struct cluster_snapshot *s2;
	char err[256];

	(void)state;
	k8s_store_get_stats(store, &before);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		for (int ev = K8S_ADDED; ev <= K8S_MODIFIED; ev++) {
			err[0] = '\0';
			int rc = apply_rc(store, bad[i].kind, (enum k8s_event)ev, bad[i].json, err,
					  sizeof(err));
			if (rc != -EINVAL)
				fail_msg("case %zu accepted (%d): %s", i, rc, bad[i].json);
			assert_true(strlen(err) > 0);
		}
	}
	/* err may be NULL */
	assert_int_equal(apply_rc(store, K8S_NAMESPACE, K8S_ADDED, "{}", NULL, 0), -EINVAL);
	assert_int_equal(k8s_store_apply(store, K8S_NAMESPACE, K8S_ADDED, NULL, NULL, 0), -EINVAL);
	/* DELETED needs metadata only */
	assert_int_equal(apply_rc(store, K8S_SERVICE, K8S_DELETED, "{'spec':{}}", err, sizeof(err)),
			 -EINVAL);
	k8s_store_get_stats(store, &after);
	assert_int_equal(after.services, before.services);
	assert_int_equal(after.endpointslices, before.endpointslices);
	assert_int_equal(after.namespaces, before.namespaces);
	assert_int_equal(after.events_applied, before.events_applied);
	assert_int_equal(after.events_rejected,
			 before.events_rejected + 2 * sizeof(bad) / sizeof(bad[0]) + 3);
	s2 = cluster_publisher_publish(pub, store);
	assert_ptr_equal(s2, snap);
	cluster_snapshot_unref(s2);

	/* what is tolerated: unknown types and kinds, FQDN slices, nulls */
	put(store, K8S_SERVICE,
	    "{'metadata':{'name':'np','namespace':'demo'},'spec':{'type':'NodePort',"
	    "'clusterIP':'10.96.9.1','ports':[{'port':80,'protocol':'XYZ','nodePort':30080}],"
	    "'externalName':null,'selector':null}}");
	put(store, K8S_ENDPOINTSLICE,
	    "{'metadata':{'name':'fq','namespace':'demo','labels':"
	    "{'kubernetes.io/service-name':'np'}},'addressType':'FQDN',"
	    "'endpoints':[{'addresses':['example.com']}],'ports':null}");
	put(store, K8S_ENDPOINTSLICE,
	    "{'metadata':{'name':'nulls','namespace':'demo','labels':null},"
	    "'addressType':'IPv4','endpoints':null}");
	s2 = cluster_publisher_publish(pub, store);
	ldns_pkt *p = ask_full(s2, &cfg, "np.demo.svc.cluster.local", LDNS_RR_TYPE_A, 512);
	check_sec(p, LDNS_SECTION_ANSWER, "np.demo.svc.cluster.local. 5 IN A 10.96.9.1\n");
	ldns_pkt_free(p);
	/* a port of an unknown protocol: only in the bare-name SRV */
	p = ask_full(s2, &cfg, "np.demo.svc.cluster.local", LDNS_RR_TYPE_SRV, 512);
	assert_int_equal(ldns_pkt_ancount(p), 1);
	ldns_pkt_free(p);
	expect_neg_snap(s2, "_tcp.np.demo.svc.cluster.local", LDNS_RR_TYPE_SRV, 3);
	cluster_snapshot_unref(s2);
}

static void test_load_file(void **state)
{
	struct k8s_store_stats st;
	struct cluster_snapshot *s2;
	char err[512];
	ldns_pkt *p;

	(void)state;
	/* a List replaces everything; other kinds are skipped */
	assert_int_equal(k8s_store_load_file(store, DATA_DIR "list.json", err, sizeof(err)), 0);
	k8s_store_get_stats(store, &st);
	assert_int_equal(st.services, 1);
	assert_int_equal(st.endpointslices, 1);
	assert_int_equal(st.namespaces, 1);
	s2 = cluster_publisher_publish(pub, store);
	assert_int_equal(s2->serial, 2);
	p = ask_full(s2, &cfg, "cart.shop.svc.cluster.local", LDNS_RR_TYPE_A, 512);
	check_sec(p, LDNS_SECTION_ANSWER, "cart.shop.svc.cluster.local. 5 IN A 10.0.0.50\n");
	ldns_pkt_free(p);
	p = ask_full(s2, &cfg, "10-1-0-5.cart.shop.svc.cluster.local", LDNS_RR_TYPE_A, 512);
	check_sec(p, LDNS_SECTION_ANSWER,
		  "10-1-0-5.cart.shop.svc.cluster.local. 5 IN A 10.1.0.5\n");
	ldns_pkt_free(p);
	expect_neg_snap(s2, "kubernetes.default.svc.cluster.local", LDNS_RR_TYPE_A, 3);
	assert_int_equal(ask_raw(s2, &cfg, "1.0.96.10.in-addr.arpa", LDNS_RR_TYPE_PTR, 512),
			 CLUSTER_NOT_MINE);

	/* all or nothing: errors leave the store as it was */
	err[0] = '\0';
	assert_int_equal(k8s_store_load_file(store, DATA_DIR "bad-item.json", err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "items[2]"));
	assert_non_null(strstr(err, "port"));
	assert_int_equal(k8s_store_load_file(store, DATA_DIR "bad-json.json", err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "bad-json.json"));
	assert_int_equal(k8s_store_load_file(store, DATA_DIR "wrong-kind.json", err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(k8s_store_load_file(store, DATA_DIR "missing.json", err, sizeof(err)),
			 -ENOENT);
	assert_int_equal(k8s_store_load_file(store, DATA_DIR "missing.json", NULL, 0), -ENOENT);
	k8s_store_get_stats(store, &st);
	assert_int_equal(st.services, 1);
	struct cluster_snapshot *s3 = cluster_publisher_publish(pub, store);
	assert_ptr_equal(s3, s2);
	cluster_snapshot_unref(s3);
	cluster_snapshot_unref(s2);

	/* a typed list (items without kind) and a single object */
	assert_int_equal(k8s_store_load_file(store, DATA_DIR "services-typed.json", err,
					     sizeof(err)),
			 0);
	s2 = cluster_publisher_publish(pub, store);
	p = ask_full(s2, &cfg, "ledger.bank.svc.cluster.local", LDNS_RR_TYPE_SRV, 512);
	check_sec(p, LDNS_SECTION_ANSWER,
		  "ledger.bank.svc.cluster.local. 5 IN SRV 0 100 443 ledger.bank.svc.cluster.local.\n");
	ldns_pkt_free(p);
	expect_neg_snap(s2, "vault.bank.svc.cluster.local", LDNS_RR_TYPE_A, 3);
	expect_neg_snap(s2, "cart.shop.svc.cluster.local", LDNS_RR_TYPE_A, 3);
	cluster_snapshot_unref(s2);
	assert_int_equal(k8s_store_load_file(store, DATA_DIR "service.json", err, sizeof(err)), 0);
	s2 = cluster_publisher_publish(pub, store);
	p = ask_full(s2, &cfg, "_grpc._tcp.solo.one.svc.cluster.local", LDNS_RR_TYPE_SRV, 512);
	assert_int_equal(ldns_pkt_ancount(p), 1);
	ldns_pkt_free(p);
	cluster_snapshot_unref(s2);
}

static void test_demo_file(void **state)
{
	struct k8s_store *s = k8s_store_new(&cfg);
	struct cluster_snapshot *sn;
	char err[512];
	ldns_pkt *p;

	(void)state;
	if (k8s_store_load_file(s, DEMO_FILE, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	sn = publish_once(s);
	p = ask_full(sn, &cfg, "kubernetes.default.svc.cluster.local", LDNS_RR_TYPE_A, 512);
	check_sec(p, LDNS_SECTION_ANSWER, "kubernetes.default.svc.cluster.local. 5 IN A 10.96.0.1\n");
	ldns_pkt_free(p);
	p = ask_full(sn, &cfg, "kube-dns.kube-system.svc.cluster.local", LDNS_RR_TYPE_SRV, 512);
	assert_int_equal(ldns_pkt_ancount(p), 2);
	ldns_pkt_free(p);
	p = ask_full(sn, &cfg, "api.demo.svc.cluster.local", LDNS_RR_TYPE_AAAA, 512);
	check_sec(p, LDNS_SECTION_ANSWER, "api.demo.svc.cluster.local. 5 IN AAAA fd00:10:96::2d0c\n");
	ldns_pkt_free(p);
	p = ask_full(sn, &cfg, "_http._tcp.web.demo.svc.cluster.local", LDNS_RR_TYPE_SRV, 512);
	assert_int_equal(ldns_pkt_ancount(p), 3);
	assert_int_equal(ldns_pkt_arcount(p), 3);
	ldns_pkt_free(p);
	p = ask_full(sn, &cfg, "search.demo.svc.cluster.local", LDNS_RR_TYPE_A, 512);
	assert_int_equal(g_info.chase_len, 17);
	ldns_pkt_free(p);
	assert_int_equal(ask_raw(sn, &cfg, "13.2.244.10.in-addr.arpa", LDNS_RR_TYPE_PTR, 512),
			 CLUSTER_NOT_MINE);
	cluster_snapshot_unref(sn);
	k8s_store_free(s);
}

/* Limits: too many endpoints, ports, addresses. */
static void test_limits(void **state)
{
	size_t cap = 200000, o = 0;
	char *buf = malloc(cap);
	char err[256];

	(void)state;
	o += (size_t)snprintf(buf + o, cap - o, "{'metadata':{'name':'s','namespace':'demo'},"
						 "'addressType':'IPv4','endpoints':[");
	for (int i = 0; i < K8S_MAX_ENDPOINTS + 1; i++)
		o += (size_t)snprintf(buf + o, cap - o, "%s{'addresses':['10.9.%d.%d']}",
				      i ? "," : "", i / 250, i % 250);
	snprintf(buf + o, cap - o, "]}");
	assert_int_equal(apply_rc(store, K8S_ENDPOINTSLICE, K8S_ADDED, buf, err, sizeof(err)),
			 -EINVAL);

	o = (size_t)snprintf(buf, cap, "{'metadata':{'name':'s','namespace':'demo'},"
				       "'spec':{'ports':[");
	for (int i = 0; i < K8S_MAX_PORTS + 1; i++)
		o += (size_t)snprintf(buf + o, cap - o, "%s{'port':%d}", i ? "," : "", i + 1);
	snprintf(buf + o, cap - o, "]}}");
	assert_int_equal(apply_rc(store, K8S_SERVICE, K8S_ADDED, buf, err, sizeof(err)), -EINVAL);

	o = (size_t)snprintf(buf, cap, "{'metadata':{'name':'s','namespace':'demo'},"
				       "'addressType':'IPv4','endpoints':[{'addresses':[");
	for (int i = 0; i < K8S_MAX_ADDRS_PER_ENDPOINT + 1; i++)
		o += (size_t)snprintf(buf + o, cap - o, "%s'10.8.0.%d'", i ? "," : "", i);
	snprintf(buf + o, cap - o, "]}]}");
	assert_int_equal(apply_rc(store, K8S_ENDPOINTSLICE, K8S_ADDED, buf, err, sizeof(err)),
			 -EINVAL);

	/* exactly at the limits is fine */
	o = (size_t)snprintf(buf, cap, "{'metadata':{'name':'s','namespace':'demo'},"
				       "'spec':{'ports':[");
	for (int i = 0; i < K8S_MAX_PORTS; i++)
		o += (size_t)snprintf(buf + o, cap - o, "%s{'port':%d,'name':'p%d'}", i ? "," : "",
				      i + 1, i);
	snprintf(buf + o, cap - o, "],'clusterIP':'10.96.99.99'}}");
	put(store, K8S_SERVICE, buf);
	free(buf);
	struct cluster_snapshot *s2 = cluster_publisher_publish(pub, store);
	ldns_pkt *p = ask_full(s2, &cfg, "s.demo.svc.cluster.local", LDNS_RR_TYPE_SRV, 65535);
	assert_int_equal(ldns_pkt_ancount(p), K8S_MAX_PORTS);
	ldns_pkt_free(p);
	cluster_snapshot_unref(s2);
}

static int stage_add(struct k8s_store_stage *st, const char *json)
{
	char err[256];
	json_t *j = jq(json);
	int rc = k8s_store_stage_add(st, j, err, sizeof(err));

	json_decref(j);
	return rc;
}

/* A list in progress: pages kept or dropped, and the kind replaced at commit. */
static void test_stage(void **state)
{
	struct k8s_store_stage *st;
	struct cluster_snapshot *s2;
	struct k8s_store_stats before, after;
	ldns_pkt *p;

	(void)state;
	k8s_store_get_stats(store, &before);
	st = k8s_store_stage_new(store, K8S_SERVICE);
	assert_non_null(st);
	/* page 1: kept */
	assert_int_equal(stage_add(st, "{'metadata':{'name':'one','namespace':'demo'},"
				       "'spec':{'clusterIP':'10.96.5.1'}}"), 0);
	assert_int_equal(stage_add(st, "{'metadata':{'namespace':'demo'}}"), -EINVAL);
	assert_int_equal(k8s_store_stage_page_keep(st), 0);
	/* page 2: fails and is dropped, then comes again with one object less */
	assert_int_equal(stage_add(st, "{'metadata':{'name':'two','namespace':'demo'},"
				       "'spec':{'clusterIP':'10.96.5.2'}}"), 0);
	assert_int_equal(stage_add(st, "{'metadata':{'name':'gone','namespace':'demo'},"
				       "'spec':{'clusterIP':'10.96.5.3'}}"), 0);
	assert_int_equal(k8s_store_stage_count(st), 3);
	k8s_store_stage_page_drop(st);
	assert_int_equal(k8s_store_stage_count(st), 1);
	assert_int_equal(stage_add(st, "{'metadata':{'name':'two','namespace':'demo'},"
				       "'spec':{'clusterIP':'10.96.5.2'}}"), 0);
	/* the same name again in a later page replaces the earlier one */
	assert_int_equal(stage_add(st, "{'metadata':{'name':'one','namespace':'demo'},"
				       "'spec':{'clusterIP':'10.96.5.9'}}"), 0);
	/* the store is untouched until the commit */
	s2 = cluster_publisher_publish(pub, store);
	assert_ptr_equal(s2, snap);
	cluster_snapshot_unref(s2);
	assert_int_equal(k8s_store_stage_commit(store, st), 0); /* frees st, page 2 included */
	k8s_store_get_stats(store, &after);
	assert_int_equal(after.services, 2);
	assert_int_equal(after.endpointslices, before.endpointslices);
	assert_true(after.bytes_objects > 0);
	s2 = cluster_publisher_publish(pub, store);
	expect_neg_snap(s2, "gone.demo.svc.cluster.local", LDNS_RR_TYPE_A, 3);
	expect_neg_snap(s2, "kubernetes.default.svc.cluster.local", LDNS_RR_TYPE_A, 3);
	p = ask_full(s2, &cfg, "one.demo.svc.cluster.local", LDNS_RR_TYPE_A, 512);
	check_sec(p, LDNS_SECTION_ANSWER, "one.demo.svc.cluster.local. 5 IN A 10.96.5.9\n");
	ldns_pkt_free(p);
	k8s_store_get_stats(store, &after);
	assert_true(after.bytes_records > 0 && after.bytes_maps > 0);
	cluster_snapshot_unref(s2);

	/* a stage dropped before its commit leaves nothing behind */
	st = k8s_store_stage_new(store, K8S_ENDPOINTSLICE);
	assert_non_null(st);
	assert_int_equal(stage_add(st, "{'metadata':{'name':'x','namespace':'demo',"
				       "'labels':{'kubernetes.io/service-name':'one'}},"
				       "'addressType':'IPv4','endpoints':[{'addresses':['10.1.1.1']}]}"),
			 0);
	k8s_store_stage_free(st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_snapshots, setup, teardown),
		cmocka_unit_test_setup_teardown(test_events, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ptr_per_service_incremental, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed_objects, setup, teardown),
		cmocka_unit_test_setup_teardown(test_load_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_demo_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stage, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
