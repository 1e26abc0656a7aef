/* include/nodedns/cluster/cluster.h - the cluster store and the cluster zone answerer.
 *
 * Three parts, all pure (no libuv, no curl):
 *  - k8s_store: the control thread's mutable indexes of Services,
 *    EndpointSlices and Namespaces, fed with decoded Kubernetes objects
 *    (jansson) from the watch or from a snapshot file;
 *  - cluster_snapshot: an immutable, reference-counted view published from the
 *    store; workers read it without locks and drop their reference when a newer
 *    one arrives;
 *  - cluster_answer(): snapshot + question -> a complete DNS answer, per the
 *    Kubernetes DNS-Based Service Discovery specification 1.1.0.
 *
 * Answers are produced as a "body": a complete DNS response without an OPT
 * record, ID 0, the question exactly as the client asked it (case preserved),
 * QR=1 AA=1 RA=1. The caller patches the ID and RD/CD bits, appends its own
 * OPT record and applies the client's UDP size limit (TC).
 */
#ifndef NODEDNS_CLUSTER_H
#define NODEDNS_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Defaults (--cluster-domain, --cluster-ttl). */
#define CLUSTER_DOMAIN_DEFAULT "cluster.local"
#define CLUSTER_TTL_S_DEFAULT 5

struct json_t;

struct cluster_config {
	char domain[256];   /* "cluster.local": lower-case, no trailing dot */
	uint32_t ttl_s;     /* TTL of every record and of the SOA minimum */
	bool pods_insecure; /* answer a-b-c-d.NS.pod.DOMAIN */
};

/* ------------------------------------------------------------------ store */

struct k8s_store;

enum k8s_kind { K8S_SERVICE = 0, K8S_ENDPOINTSLICE, K8S_NAMESPACE, K8S_KIND_COUNT };
enum k8s_event { K8S_ADDED = 0, K8S_MODIFIED, K8S_DELETED };

struct k8s_store_stats {
	uint64_t services, endpointslices, namespaces; /* objects held */
	uint64_t events_applied, events_rejected;      /* rejected: malformed objects */
	uint64_t snapshots_published;
};
struct mbuf;
/** Render @p s (src/cluster/k8s_store_metrics.c). */
void k8s_store_metrics_render(struct mbuf *b, const struct k8s_store_stats *s);

struct k8s_store *k8s_store_new(const struct cluster_config *cfg);
void k8s_store_free(struct k8s_store *s);

/**
 * Apply one event for one object (a Service, EndpointSlice or Namespace as the
 * API server encodes it; borrowed). ADDED and MODIFIED replace the object with
 * the same namespace/name; DELETED removes it. Malformed objects are rejected
 * with -EINVAL and @p err (may be NULL) says why; the store is unchanged.
 * Also -ENOSPC (a store limit: objects, ready addresses) and -ENOMEM, with
 * the store unchanged as well.
 */
int k8s_store_apply(struct k8s_store *s, enum k8s_kind kind, enum k8s_event ev,
		    const struct json_t *obj, char *err, size_t errlen);

/** Remove every object of @p kind (a relist replaces the whole set). */
void k8s_store_clear_kind(struct k8s_store *s, enum k8s_kind kind);

/**
 * Replace the whole store content with the objects of a `kubectl get
 * services,endpointslices,namespaces -A -o json` document (a v1 List, or a
 * single object) read from @p path. On any error the store is unchanged.
 * @return 0, -errno for I/O (-EFBIG over 1 GiB), -EINVAL for bad JSON or a
 * malformed object (err says where), -ENOSPC for store limits.
 */
int k8s_store_load_file(struct k8s_store *s, const char *path, char *err, size_t errlen);

void k8s_store_get_stats(const struct k8s_store *s, struct k8s_store_stats *out);

/* --------------------------------------------------------------- snapshot */

struct cluster_snapshot;

/**
 * Publish the store's current content as a new snapshot with one reference
 * owned by the caller. Costs in proportion to what changed since the last
 * publish; when nothing DNS-visible changed it returns the last snapshot again
 * (one more reference, same serial). @return NULL on allocation failure (the
 * changes stay pending for the next call).
 */
struct cluster_snapshot *k8s_store_publish(struct k8s_store *s);

/** Take one more reference (any thread). */
void cluster_snapshot_ref(struct cluster_snapshot *snap);
/** Drop one reference (any thread); the last one frees it. NULL is fine. */
void cluster_snapshot_unref(struct cluster_snapshot *snap);

/* ----------------------------------------------------------------- answer */

enum cluster_verdict {
	CLUSTER_NOT_MINE = 0, /* not in the cluster zone (or an unknown reverse name): forward */
	CLUSTER_ANSWERED,     /* *outlen bytes of body in out */
};

struct cluster_answer_info {
	int rcode;               /* 0 NOERROR, 3 NXDOMAIN */
	bool nodata;             /* NOERROR without an answer for the type */
	/* ExternalName: for A/AAAA, the CNAME target outside the zone that the
	 * caller should resolve and append (wire form, lower-case). */
	uint8_t chase_name[255];
	size_t chase_len;        /* 0: nothing to chase */
};

/**
 * Answer the question (@p qname wire form as the client sent it, uncompressed,
 * @p qname_len bytes including the root label) from @p snap (may be NULL for
 * "not synced yet": then names in the zone return CLUSTER_ANSWERED never; the
 * caller must handle the unsynced case first, see cluster_in_zone()).
 * The body goes to @p out (capacity @p cap); if it does not fit, the answer is
 * a body with TC=1 and no records. Additional records that do not fit are
 * dropped without TC (RFC 2181 9). If not even the question fits: a bare
 * 12-byte header with TC=1 and QDCOUNT 0 (*outlen 0 when cap < 12).
 * @p info may be NULL. Any thread; @p snap is only read.
 */
enum cluster_verdict cluster_answer(const struct cluster_snapshot *snap,
				    const struct cluster_config *cfg, const uint8_t *qname,
				    size_t qname_len, uint16_t qtype, uint16_t qclass,
				    uint8_t *out, size_t cap, size_t *outlen,
				    struct cluster_answer_info *info);

/** True when @p qname (wire form) is the cluster domain or below it. Reverse
 * names are not "in zone" by this test: they are answered only when known. */
bool cluster_in_zone(const struct cluster_config *cfg, const uint8_t *qname, size_t qname_len);

#endif
