/* tests/fuzz/fuzz_warm_file.c - libFuzzer target for the warm-start file loader.
 *
 * Build and run: tests/fuzz/run.sh (FUZZ_TARGETS=warm_file for this one).
 * Reproduce a crash: build-fuzz/fuzz_warm_file crash-<sha1>
 *
 *   input := mode file
 *   mode  :  bit 0: repair the length and checksum of the file first, so
 *            the record decoder sees what the mutator made of the records
 *            (without it almost every input stops at the checksum);
 *            bit 1: load into a store that already holds one Service
 *
 * The file is expected for cluster domain "cluster.local" and API server
 * "https://api:443 ca=00000000", of any age. Checked: warm_file_load()
 * returns 0 or one of its documented errors with a reason; on failure the
 * target store is unchanged (its counts); on success the store re-encodes,
 * the re-encoded buffer loads again to the same counts and the same length,
 * and a snapshot of it answers every name it holds well-formed
 * (fuzz_cluster.h).
 */
#define FUZZ_NAME "fuzz_warm_file"
#include "nodedns/cluster/cluster_publisher.h"
#include "nodedns/cluster/cluster_snapshot.h"
#include "nodedns/cluster/cluster_zone.h"
#include "nodedns/cluster/k8s_store.h"
#include "nodedns/cluster/warm_file.h"
#include "nodedns/util/log.h"
#include "nodedns/util/wire.h"

#include "cluster/k8s_store_internal.h"
#include "fuzz_cluster.h"

#include <errno.h>

#define SERVER "https://api:443 ca=00000000"

static const struct cluster_config g_cfg = { .domain = "cluster.local", .ttl_s = 5,
					     .pods_insecure = true };
static const struct warm_file_expect g_exp = { "cluster.local", SERVER, 1ull << 40, 0 };

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_setup(LOGL_ERROR, false);
	return 0;
}

static void fill_ip(struct fc_names *nm, size_t i, const struct k8s_ip *ip)
{
	memset(&nm->n[i].ip, 0, sizeof(nm->n[i].ip));
	nm->n[i].v4 = ip->fam == 4;
	if (ip->fam == 4) {
		nm->n[i].ip.s6_addr[10] = nm->n[i].ip.s6_addr[11] = 0xff;
		memcpy(nm->n[i].ip.s6_addr + 12, ip->b, 4);
	} else {
		memcpy(nm->n[i].ip.s6_addr, ip->b, 16);
	}
	nm->n[i].has_ip = true;
}

static int name_service(void *arg, const void *obj, size_t len)
{
	struct fc_names *nm = arg;
	const struct k8s_service *svc = obj;
	size_t i = nm->count;

	(void)len;
	if (i >= FC_MAX_NAMES)
		return -1;
	memset(&nm->n[i], 0, sizeof(nm->n[i]));
	memcpy(nm->n[i].ns, svc->ns, strlen(svc->ns) + 1);
	memcpy(nm->n[i].svc, svc->name, strlen(svc->name) + 1);
	if (svc->n_ports)
		memcpy(nm->n[i].port, svc->ports[0].name, svc->ports[0].name_len);
	if (svc->n_ips)
		fill_ip(nm, i, &svc->ips[0]);
	nm->count++;
	return 0;
}

static int name_slice(void *arg, const void *obj, size_t len)
{
	struct fc_names *nm = arg;
	const struct k8s_slice *sl = obj;
	size_t i = nm->count;

	(void)len;
	if (i >= FC_MAX_NAMES)
		return -1;
	if (!sl->svc[0] || !sl->n_addrs)
		return 0;
	memset(&nm->n[i], 0, sizeof(nm->n[i]));
	memcpy(nm->n[i].ns, sl->ns, strlen(sl->ns) + 1);
	memcpy(nm->n[i].svc, sl->svc, strlen(sl->svc) + 1);
	char buf[K8S_LABEL_MAX];
	uint8_t n;
	const char *label = k8s_objects_addr_label(sl, &sl->addrs[0], buf, &n);
	memcpy(nm->n[i].host, label, n);
	fill_ip(nm, i, &sl->addrs[0].ip);
	nm->count++;
	return 0;
}

static uint64_t count(const struct k8s_store *s)
{
	struct k8s_store_stats st;
	k8s_store_get_stats(s, &st);
	return st.services * 1000003 + st.endpointslices * 1009 + st.namespaces;
}

/* A loaded store: re-encode, load again, ask a snapshot. */
static void check_loaded(struct k8s_store *s)
{
	uint8_t *buf = NULL, *buf2 = NULL;
	size_t len = 0, len2 = 0;
	struct k8s_store *t = k8s_store_new(&g_cfg);
	struct fc_names nm;

	CHECK(t);
	CHECK(warm_file_encode(s, "cluster.local", SERVER, 1000, &buf, &len) == 0);
	CHECK(warm_file_load(t, buf, len, &g_exp, NULL, NULL, 0) == 0);
	CHECK(count(t) == count(s));
	CHECK(warm_file_encode(t, "cluster.local", SERVER, 1000, &buf2, &len2) == 0);
	CHECK(len2 == len);
	free(buf);
	free(buf2);
	k8s_store_free(t);

	memset(&nm, 0, sizeof(nm));
	k8s_store_foreach_object(s, K8S_SERVICE, name_service, &nm);
	k8s_store_foreach_object(s, K8S_ENDPOINTSLICE, name_slice, &nm);
	struct cluster_publisher *p = cluster_publisher_new();
	CHECK(p);
	struct cluster_snapshot *snap = cluster_publisher_publish(p, s);
	CHECK(snap);
	fc_probe(snap, &g_cfg, &nm, false);
	cluster_snapshot_unref(snap);
	cluster_publisher_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct k8s_store *s;
	uint8_t *buf;
	char err[512] = "";
	uint64_t before;
	int rc;

	if (size < 1)
		return 0;
	uint8_t mode = data[0];
	size--;
	buf = malloc(size ? size : 1);
	CHECK(buf);
	memcpy(buf, data + 1, size);
	if ((mode & 1) && size >= WARM_FILE_HEADER_BYTES) {
		wire_put32(buf + 16, (uint32_t)((uint64_t)size >> 32));
		wire_put32(buf + 20, (uint32_t)size);
		wire_put32(buf + 12, warm_file_crc(buf + 16, size - 16));
	}
	s = k8s_store_new(&g_cfg);
	CHECK(s);
	if (mode & 2) {
		struct k8s_service *svc = calloc(1, sizeof(*svc));
		CHECK(svc);
		strcpy(svc->ns, "default");
		strcpy(svc->name, "keep");
		CHECK(k8s_store_put_service(s, svc, NULL, 0) == 0);
	}
	before = count(s);
	rc = warm_file_load(s, buf, size, &g_exp, NULL, err, sizeof(err));
	CHECK(rc == 0 || rc == -EBADMSG || rc == -EPROTONOSUPPORT || rc == -EREMCHG ||
	      rc == -ESTALE || rc == -ENOSPC || rc == -EFBIG);
	if (rc < 0) {
		CHECK(err[0] != '\0');
		CHECK(count(s) == before);
	} else {
		check_loaded(s);
	}
	k8s_store_free(s);
	free(buf);
	return 0;
}
