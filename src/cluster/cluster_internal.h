/* src/cluster/cluster_internal.h - shared internals of k8s_store.c, cluster_snapshot.c and cluster_zone.c.
 *
 * Three layers, one direction:
 *  - k8s_store.c decodes API objects into the compact structs below and keeps
 *    them in mutable hash maps (control thread only);
 *  - cluster_snapshot.c turns the objects of one Service into an immutable,
 *    reference-counted svc_rec and publishes snapshots made of persistent
 *    sharded maps (pmap) that share unchanged shards and records;
 *  - cluster_zone.c answers questions from a snapshot, read-only, any thread.
 *
 * Glossary:
 *  - svc key: "<ns>/<name>", lower case; '/' cannot occur in either part.
 *  - rev key: one family byte (4 or 6) followed by the 4 or 16 address bytes.
 *  - target: an endpoint name (hostname or dashed IP) under a Service, with
 *    every ready address carrying that name and the union of their ports.
 */
#ifndef NODEDNS_CLUSTER_INTERNAL_H
#define NODEDNS_CLUSTER_INTERNAL_H

#include "nodedns/cluster/cluster.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ----------------------------------------------------------------- limits */

#define K8S_LABEL_MAX 63              /* namespace, service, hostname, port name */
#define K8S_SLICE_NAME_MAX 253        /* EndpointSlice names are DNS subdomains */
#define K8S_KEY_MAX (K8S_LABEL_MAX * 2 + 2)
#define K8S_MAX_PORTS 100             /* per Service or EndpointSlice (API limit) */
#define K8S_MAX_ENDPOINTS 1000        /* per EndpointSlice (API limit) */
#define K8S_MAX_ADDRS_PER_ENDPOINT 100 /* API limit */
#define K8S_MAX_ADDRS_PER_SLICE 10000 /* the controller writes 1 per endpoint */
#define K8S_MAX_CLUSTER_IPS 2         /* API limit: one per family */
#define K8S_MAX_OBJECTS 1000000u      /* whole store */
#define K8S_MAX_ADDRS_TOTAL 4000000u  /* ready addresses, whole store */
#define K8S_MAX_TARGET_PORTS 1000     /* union of ports under one endpoint name */

enum k8s_proto { K8S_PROTO_TCP = 0, K8S_PROTO_UDP, K8S_PROTO_SCTP, K8S_PROTO_OTHER };
enum k8s_svc_kind { K8S_SVC_CLUSTERIP = 0, K8S_SVC_HEADLESS, K8S_SVC_EXTERNAL };

struct k8s_ip {
	uint8_t fam; /* 4 or 6 */
	uint8_t b[16];
};

struct k8s_port {
	uint16_t port; /* 0: none (an EndpointSlice port without a number) */
	uint8_t proto; /* enum k8s_proto */
	uint8_t name_len;
	char name[K8S_LABEL_MAX]; /* lower case, not terminated; "" = unnamed */
};

/* One ready address of an EndpointSlice with its DNS label. */
struct k8s_addr {
	struct k8s_ip ip;
	uint8_t label_len;
	char label[K8S_LABEL_MAX]; /* hostname, or the dashed IP; lower case */
};

struct k8s_service {
	char ns[K8S_LABEL_MAX + 1], name[K8S_LABEL_MAX + 1];
	uint8_t kind; /* enum k8s_svc_kind */
	uint8_t n_ips;
	struct k8s_ip ips[K8S_MAX_CLUSTER_IPS];
	uint8_t ext_len; /* wire length of the ExternalName target; 0: none */
	uint8_t ext[255];
	uint16_t n_ports;
	struct k8s_port *ports;
};

struct k8s_slice {
	char ns[K8S_LABEL_MAX + 1], name[K8S_SLICE_NAME_MAX + 1];
	char svc[K8S_LABEL_MAX + 1]; /* "" when the service-name label is absent */
	uint16_t n_ports;
	struct k8s_port *ports;
	uint32_t n_addrs; /* ready addresses only; FQDN slices have none */
	struct k8s_addr *addrs;
};

/* --------------------------------------------- mutable hash map (store) */

struct k8s_hnode {
	struct k8s_hnode *next;
	uint64_t hash;
	void *val;
	uint16_t klen;
	uint8_t key[];
};

struct k8s_hmap {
	struct k8s_hnode **b;
	size_t nb, n;
	uint64_t seed;
};

uint64_t k8s_hash(uint64_t seed, const void *key, size_t klen);
int k8s_hmap_init(struct k8s_hmap *m, uint64_t seed);
/** Free every node; @p free_val (may be NULL) is called on each value. */
void k8s_hmap_deinit(struct k8s_hmap *m, void (*free_val)(void *));
void *k8s_hmap_get(const struct k8s_hmap *m, const void *key, size_t klen);
/** Insert or replace; *old (may be NULL) gets the replaced value or NULL.
 * @return 0, or -ENOMEM with the map unchanged. */
int k8s_hmap_put(struct k8s_hmap *m, const void *key, size_t klen, void *val, void **old);
/** Remove; @return the value (NULL when absent; *found says which). */
void *k8s_hmap_del(struct k8s_hmap *m, const void *key, size_t klen, bool *found);
/** Remove every node, keeping the bucket array. */
void k8s_hmap_clear(struct k8s_hmap *m, void (*free_val)(void *));

#define K8S_HMAP_FOREACH(m, node)                                              \
	for (size_t hm_i_ = 0; hm_i_ < (m)->nb; hm_i_++)                       \
		for (struct k8s_hnode *node = (m)->b[hm_i_]; node; node = node->next)

/** "<ns>/<name>" into @p buf (K8S_KEY_MAX bytes); @return its length. */
size_t k8s_svc_key(char *buf, const char *ns, size_t ns_len, const char *name, size_t name_len);

/* ------------------------------------------------------------- the store */

/* Slices attached to one Service (by the kubernetes.io/service-name label). */
struct k8s_slice_list {
	uint32_t n, cap;
	struct k8s_slice **v;
};

struct k8s_store {
	struct cluster_config cfg;
	uint64_t seed;
	struct k8s_hmap svcs;       /* svc key -> struct k8s_service */
	struct k8s_hmap slices;     /* "<ns>/<slice>" -> struct k8s_slice */
	struct k8s_hmap nss;        /* "<ns>" -> (void *)1: Namespace objects */
	struct k8s_hmap svc_slices; /* svc key -> struct k8s_slice_list */
	struct k8s_hmap ns_svcs;    /* "<ns>" -> (uintptr_t) number of Services */
	struct k8s_hmap dirty_svc;  /* svc keys changed since the last publish */
	struct k8s_hmap dirty_ns;   /* namespaces changed since the last publish */
	bool all_dirty;             /* compare everything at the next publish */
	uint64_t n_addrs;           /* ready addresses held */
	uint32_t generation;        /* serial of the last published snapshot */
	struct cluster_snapshot *last; /* one reference, NULL before the first publish */
	struct k8s_store_stats stats;
};

/* ---------------------------------------------- immutable shared values */

enum { PM_VAL_SVC = 1, PM_VAL_REV };

struct pm_val {
	atomic_uint refs;
	uint8_t type;
};

void cluster_val_ref(struct pm_val *v);
void cluster_val_unref(struct pm_val *v);

struct rec_portset {
	uint32_t off, n; /* into svc_rec.pool, sorted by (port, proto, name) */
};

struct rec_target {
	uint32_t ep_first, ep_n; /* into svc_rec.eps, sorted by family then bytes */
	uint32_t portset;        /* index into svc_rec.psets */
	uint8_t label_len;
	char label[K8S_LABEL_MAX];
};

/* Everything needed to answer for one Service and the names below it. */
struct svc_rec {
	struct pm_val hdr;
	uint8_t kind; /* enum k8s_svc_kind */
	uint8_t ns_len, name_len;
	char ns[K8S_LABEL_MAX], name[K8S_LABEL_MAX];
	uint8_t n_cips;
	struct k8s_ip cips[K8S_MAX_CLUSTER_IPS];
	uint8_t ext_len;
	uint8_t ext[255];        /* wire, lower case */
	uint8_t svc_protos;      /* bit per k8s_proto: a named Service port exists */
	uint8_t ep_protos;       /* bit per k8s_proto: a named endpoint port exists */
	uint32_t n_ports;
	struct k8s_port *ports;  /* Service ports sorted by (port, proto, name) */
	uint32_t n_targets;
	struct rec_target *targets; /* ready endpoint names, sorted by label */
	uint32_t n_eps;
	struct k8s_ip *eps;      /* addresses of each target */
	uint32_t n_v4, n_v6;
	struct k8s_ip *ips;      /* distinct ready addresses: n_v4 IPv4, then n_v6 IPv6 */
	uint32_t n_psets;
	struct rec_portset *psets;
	uint32_t n_pool;
	struct k8s_port *pool;
};

enum { REV_CLUSTERIP = 0, REV_ENDPOINT = 1 };

struct rev_item {
	uint8_t kind; /* REV_CLUSTERIP first in a record */
	uint8_t ns_len, name_len, label_len;
	char ns[K8S_LABEL_MAX], name[K8S_LABEL_MAX], label[K8S_LABEL_MAX];
};

/* The PTR targets of one IP address. */
struct rev_rec {
	struct pm_val hdr;
	uint32_t n;
	struct rev_item items[];
};

/* ------------------------------------------ persistent sharded hash map */

#define PMAP_SHARD_BITS 8
#define PMAP_SHARDS (1u << PMAP_SHARD_BITS)

struct pm_slot {
	uint64_t hash;
	const uint8_t *key; /* NULL: empty slot */
	uint16_t klen;
	struct pm_val *val; /* may be NULL (a set) */
};

/* Immutable once published; shared by snapshots through refs. */
struct pm_shard {
	atomic_uint refs;
	uint32_t n, mask;
	struct pm_slot *slots;
};

struct pmap {
	struct pm_shard *shard[PMAP_SHARDS]; /* NULL: empty shard */
};

/** Find @p key; @return true when present (*val gets the value, may be NULL). */
bool cluster_pmap_get(const struct pmap *m, uint64_t seed, const void *key, size_t klen,
		      struct pm_val **val);

struct cluster_snapshot {
	atomic_uint refs;
	uint32_t serial;
	uint64_t seed;
	struct pmap svc; /* svc key -> struct svc_rec */
	struct pmap ns;  /* "<ns>" -> NULL: namespaces that exist */
	struct pmap rev; /* rev key -> struct rev_rec */
};

/** Fill @p key with the rev key of @p ip; @return its length. */
size_t cluster_rev_key(uint8_t key[17], const struct k8s_ip *ip);

#endif
