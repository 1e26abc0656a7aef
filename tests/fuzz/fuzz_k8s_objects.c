/* tests/fuzz/fuzz_k8s_objects.c - libFuzzer target for the cluster store's object decoder.
 *
 * Build and run: tests/fuzz/run.sh (FUZZ_TARGETS=k8s_objects for this one).
 * Reproduce a crash: build-fuzz/fuzz_k8s_objects crash-<sha1>
 *
 * Hostile Kubernetes objects straight into k8s_store_apply(), and whole
 * documents into k8s_store_load_file():
 *
 *   input := record*
 *   record:= ctl [amp] json-value      (values read one after the other)
 *   ctl   :  bits 0-1 kind: Service, EndpointSlice, Namespace, or 3 = the
 *            object's own "kind" (an unknown one is passed as is: the
 *            store must refuse it); bits 2-3 event: ADDED, MODIFIED,
 *            DELETED, or 3 = an invalid event; bit 4 publish a snapshot and
 *            ask it about the objects seen (fuzz_cluster.h); bit 5 clear
 *            the kind first (a relist); bit 6 an amp byte follows; bit 7:
 *            the rest of the input is a file for k8s_store_load_file()
 *   amp   :  overwrite one field (low nibble: metadata.name, .namespace,
 *            spec.clusterIP, .clusterIPs, .externalName, .ports[0].name,
 *            .ports[0].port, endpoints[0].addresses, endpoints[0].hostname,
 *            the service-name label, addressType, spec.type, ports[0].port,
 *            endpoints[0].conditions.ready, endpoints, spec.ports) with a
 *            hostile value (high nibble: a 1 MiB string, strings at and just
 *            over the length limits, a NUL inside, integers out of range, a
 *            real, a boolean, null, an object, 10001 elements, nesting 2000
 *            deep, an IPv6 address): the inputs a mutator rarely reaches.
 *
 * Checked: apply returns 0, -EINVAL with a reason, or -ENOSPC (never
 * anything else, the store unchanged on failure as far as counts show);
 * load_file the same; every snapshot answer is well formed; after clearing
 * every kind, every name seen is NXDOMAIN.
 */
#define FUZZ_NAME "fuzz_k8s_objects"
#include "nodedns/cluster/cluster_publisher.h"
#include "nodedns/cluster/cluster_snapshot.h"
#include "nodedns/cluster/cluster_zone.h"
#include "nodedns/cluster/k8s_store.h"
#include "nodedns/util/log.h"

#include "fuzz_cluster.h"

#include <errno.h>
#include <unistd.h>

static char g_path[512];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_setup(LOGL_ERROR, false);
	const char *tmp = getenv("TMPDIR");
	if (!tmp || !*tmp || strlen(tmp) > 400)
		tmp = "/tmp";
	snprintf(g_path, sizeof(g_path), "%s/nodedns-fuzz-objects-%d.json", tmp, (int)getpid());
	return 0;
}

static void cleanup(void)
{
	unlink(g_path);
}

/* ------------------------------------------------------- amplification */

static const char *const amp_paths[16][4] = {
	{ "metadata", "name" },
	{ "metadata", "namespace" },
	{ "spec", "clusterIP" },
	{ "spec", "clusterIPs" },
	{ "spec", "externalName" },
	{ "spec", "ports", "#0", "name" },
	{ "spec", "ports", "#0", "port" },
	{ "endpoints", "#0", "addresses" },
	{ "endpoints", "#0", "hostname" },
	{ "metadata", "labels", "kubernetes.io/service-name" },
	{ "addressType" },
	{ "spec", "type" },
	{ "ports", "#0", "port" },
	{ "endpoints", "#0", "conditions", "ready" },
	{ "endpoints" },
	{ "spec", "ports" },
};

static json_t *str_of(char c, size_t n)
{
	char *b = malloc(n);
	CHECK(b);
	memset(b, c, n);
	json_t *s = json_stringn_nocheck(b, n);
	free(b);
	return s;
}

/* "a.a.a...": a domain of @p n characters. */
static json_t *domain_of(size_t n)
{
	char b[300];
	for (size_t i = 0; i < n; i++)
		b[i] = (i & 1) ? '.' : 'a';
	if (n && b[n - 1] == '.')
		b[n - 1] = 'b';
	return json_stringn(b, n);
}

/* 10001 elements shaped for the field at @p path. */
static json_t *many(unsigned path)
{
	json_t *a = json_array();
	for (unsigned i = 0; i < 10001; i++) {
		char ip[32];
		snprintf(ip, sizeof(ip), "10.%u.%u.%u", (i >> 16) & 255, (i >> 8) & 255, i & 255);
		json_t *v;
		if (path == 14) /* endpoints */
			v = json_pack("{s:[s],s:s}", "addresses", ip, "hostname", "h");
		else if (path == 15) /* spec.ports */
			v = json_pack("{s:i,s:s#}", "port", (int)(i % 65535) + 1, "name", ip, 2);
		else
			v = json_string(ip);
		json_array_append_new(a, v);
	}
	return a;
}

static json_t *hostile(unsigned kind, unsigned path)
{
	switch (kind) {
	case 0: return str_of('a', 1u << 20);
	case 1: return str_of('a', 63);
	case 2: return str_of('a', 64);
	case 3: return domain_of(253);
	case 4: return domain_of(255);
	case 5: return json_stringn("ab\0cd", 5);
	case 6: return json_integer(-1);
	case 7: return json_integer(65536);
	case 8: return json_integer((json_int_t)1 << 62);
	case 9: return json_real(80.0);
	case 10: return json_true();
	case 11: return json_null();
	case 12: return json_object();
	case 13: return many(path);
	case 14: {
		json_t *v = json_array();
		for (int i = 0; i < 2000; i++) {
			json_t *outer = json_array();
			json_array_append_new(outer, v);
			v = outer;
		}
		return v;
	}
	default: return json_string("fd00::1");
	}
}

/* Set the field at path @p amp & 15 of @p obj to hostile value @p amp >> 4,
 * creating what is missing on the way. */
static void amplify(json_t *obj, uint8_t amp)
{
	const char *const *path = amp_paths[amp & 15];
	json_t *cur = obj;
	size_t depth = 0;
	while (depth < 4 && path[depth])
		depth++;
	for (size_t i = 0; i + 1 < depth; i++) {
		bool want_array = path[i + 1][0] == '#';
		json_t *next;
		if (path[i][0] == '#') {
			if (!json_is_array(cur))
				return;
			next = json_array_get(cur, 0);
			if (!next) {
				next = want_array ? json_array() : json_object();
				json_array_append_new(cur, next);
			}
		} else {
			if (!json_is_object(cur))
				return;
			next = json_object_get(cur, path[i]);
			if (!next) {
				next = want_array ? json_array() : json_object();
				json_object_set_new(cur, path[i], next);
			}
		}
		cur = next;
	}
	json_t *v = hostile(amp >> 4, amp & 15);
	CHECK(v);
	const char *last = path[depth - 1];
	if (last[0] == '#') {
		if (json_is_array(cur))
			json_array_append_new(cur, v);
		else
			json_decref(v);
	} else if (json_is_object(cur)) {
		json_object_set_new(cur, last, v);
	} else {
		json_decref(v);
	}
}

/* ---------------------------------------------------------------- store */

struct state {
	struct k8s_store *store;
	struct cluster_publisher *pub; /* publishes store */
	struct cluster_config cfg;
	struct fc_names names;
};

static int kind_of(const json_t *obj)
{
	const char *k = json_string_value(json_object_get(obj, "kind"));
	if (!k)
		return K8S_KIND_COUNT;
	if (strcmp(k, "Service") == 0)
		return K8S_SERVICE;
	if (strcmp(k, "EndpointSlice") == 0)
		return K8S_ENDPOINTSLICE;
	if (strcmp(k, "Namespace") == 0)
		return K8S_NAMESPACE;
	return K8S_KIND_COUNT;
}

static void probe(struct state *st)
{
	struct cluster_snapshot *snap = cluster_publisher_publish(st->pub, st->store);
	CHECK(snap);
	fc_probe(snap, &st->cfg, &st->names, false);
	cluster_snapshot_unref(snap);
}

static uint64_t total_objects(const struct k8s_store *s)
{
	struct k8s_store_stats x;
	k8s_store_get_stats(s, &x);
	return x.services + x.endpointslices + x.namespaces;
}

static void apply_one(struct state *st, uint8_t ctl, json_t *obj)
{
	int kind = (ctl & 3) == 3 ? kind_of(obj) : ctl & 3;
	int ev = (ctl >> 2) & 3;
	char err[200];
	if ((ctl & 0x20) && kind < K8S_KIND_COUNT)
		k8s_store_clear_kind(st->store, (enum k8s_kind)kind);
	uint64_t before = total_objects(st->store);
	memset(err, 'x', sizeof(err));
	int rc = k8s_store_apply(st->store, (enum k8s_kind)kind, (enum k8s_event)ev, obj, err,
				 sizeof(err));
	CHECK(rc == 0 || rc == -EINVAL || rc == -ENOSPC);
	CHECK(memchr(err, '\0', sizeof(err)) != NULL);
	if (rc < 0) {
		CHECK(err[0] != '\0');
		CHECK(total_objects(st->store) == before);
	}
	if (kind >= K8S_KIND_COUNT || ev > K8S_DELETED)
		CHECK(rc == -EINVAL);
	if (rc == 0 && ev != K8S_DELETED)
		fc_add(&st->names, (enum k8s_kind)kind, obj);
	if (ctl & 0x10)
		probe(st);
}

/* The rest of the input as a snapshot file. */
static void load_file(struct state *st, const uint8_t *data, size_t size)
{
	FILE *f = fopen(g_path, "wb");
	CHECK(f);
	CHECK(fwrite(data, 1, size, f) == size);
	CHECK(fclose(f) == 0);
	char err[256];
	uint64_t before = total_objects(st->store);
	int rc = k8s_store_load_file(st->store, g_path, err, sizeof(err));
	CHECK(rc == 0 || rc == -EINVAL || rc == -ENOSPC);
	if (rc < 0) {
		CHECK(err[0] != '\0');
		CHECK(total_objects(st->store) == before);
		return;
	}
	/* Remember the names the file brought. */
	json_t *doc = json_loadb((const char *)data, size, 0, NULL);
	const json_t *items = json_object_get(doc, "items");
	size_t i;
	const json_t *it;
	if (items) {
		json_array_foreach(items, i, it) {
			int k = kind_of(it);
			if (k < K8S_KIND_COUNT)
				fc_add(&st->names, (enum k8s_kind)k, it);
		}
	} else if (doc && kind_of(doc) < K8S_KIND_COUNT) {
		fc_add(&st->names, (enum k8s_kind)kind_of(doc), doc);
	}
	json_decref(doc);
	probe(st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool registered;
	if (!registered) {
		atexit(cleanup);
		registered = true;
	}
	struct state st;
	memset(&st, 0, sizeof(st));
	strcpy(st.cfg.domain, "cluster.local");
	st.cfg.ttl_s = 30;
	st.cfg.pods_insecure = true;
	st.store = k8s_store_new(&st.cfg);
	st.pub = cluster_publisher_new();
	CHECK(st.store && st.pub);

	size_t pos = 0;
	while (pos < size) {
		uint8_t ctl = data[pos++];
		if (ctl & 0x80) {
			load_file(&st, data + pos, size - pos);
			break;
		}
		uint8_t amp = 0;
		if (ctl & 0x40) {
			if (pos >= size)
				break;
			amp = data[pos++];
		}
		json_error_t jerr;
		json_t *obj = json_loadb((const char *)data + pos, size - pos,
					 JSON_DISABLE_EOF_CHECK | JSON_DECODE_ANY | JSON_ALLOW_NUL,
					 &jerr);
		if (!obj)
			break;
		CHECK(jerr.position > 0 && (size_t)jerr.position <= size - pos);
		pos += (size_t)jerr.position;
		if (ctl & 0x40)
			amplify(obj, amp);
		apply_one(&st, ctl, obj);
		json_decref(obj);
	}

	probe(&st);
	for (int k = 0; k < K8S_KIND_COUNT; k++)
		k8s_store_clear_kind(st.store, (enum k8s_kind)k);
	CHECK(total_objects(st.store) == 0);
	struct cluster_snapshot *empty = cluster_publisher_publish(st.pub, st.store);
	CHECK(empty);
	cluster_publisher_free(st.pub);
	k8s_store_free(st.store);
	fc_probe(empty, &st.cfg, &st.names, true);
	cluster_snapshot_unref(empty);
	return 0;
}
