/* src/cluster/cluster_snapshot_internal.h - inside snapshots: records, the persistent map, building.
 *
 * Shared by cluster_snapshot.c (values, snapshots), cluster_pmap.c (the
 * persistent sharded map), cluster_records.c (building one Service's record),
 * cluster_publisher.c (which edits maps into new snapshots) and
 * cluster_zone*.c (which only read them). Nothing here refers to the store
 * or to JSON: records are built from the compact structs of
 * k8s_objects_internal.h that the caller hands over.
 *
 * Glossary:
 *  - svc key: "<ns>/<name>", lower case; '/' cannot occur in either part.
 *  - rev key: one family byte (4 or 6) followed by the 4 or 16 address bytes.
 *  - target: an endpoint name (hostname or dashed IP) under a Service, with
 *    every ready address carrying that name and the union of their ports.
 */
#ifndef NODEDNS_CLUSTER_SNAPSHOT_INTERNAL_H
#define NODEDNS_CLUSTER_SNAPSHOT_INTERNAL_H

#include "nodedns/cluster/cluster_snapshot.h"

#include "k8s_objects_internal.h"
#include "nodedns/util/hash.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------- immutable shared values */

enum { PM_VAL_SVC = 1, PM_VAL_REV };

struct pm_val {
	atomic_uint refs;
	uint8_t type;
};

/** One more reference / one less (the last frees the record). NULL is fine. */
void cluster_snapshot_val_ref(struct pm_val *v);
void cluster_snapshot_val_unref(struct pm_val *v);

struct rec_portset {
	uint32_t off, n; /* into svc_rec.pool, sorted by (port, proto, name) */
};

struct rec_target {
	uint32_t ep_first, ep_n; /* into svc_rec.eps, sorted by family then bytes */
	uint32_t portset;        /* index into svc_rec.psets */
	uint32_t label_off;      /* into svc_rec.labels (rec_label()) */
	uint8_t label_len;
};

/* Everything needed to answer for one Service and the names below it. Every
 * array is owned by the record (malloc). */
struct svc_rec {
	struct pm_val hdr;
	struct svc_name *sname; /* one reference; the same as ns and name */
	uint8_t kind; /* enum k8s_svc_kind */
	uint8_t ns_len, name_len;
	char ns[K8S_LABEL_MAX], name[K8S_LABEL_MAX];
	uint8_t n_cips;
	struct k8s_ip cips[K8S_MAX_CLUSTER_IPS];
	uint8_t ext_len;
	uint8_t *ext;            /* wire, lower case; NULL when ext_len is 0 */
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
	char *labels;            /* the targets' labels, back to back */
};

/** The label of target @p t of @p r (t->label_len bytes, not terminated). */
static inline const char *rec_label(const struct svc_rec *r, const struct rec_target *t)
{
	return r->labels + t->label_off;
}

enum { REV_CLUSTERIP = 0, REV_ENDPOINT = 1 };

/* The name of a Service, shared by its successive records and by the
 * reverse entries that point at it, so a rebuilt record leaves the reverse
 * entries of its unchanged addresses alone. */
struct svc_name {
	atomic_uint refs;
	uint8_t ns_len, name_len;
	char s[]; /* ns, then name; not terminated */
};

/** A new name (one reference), NULL: no memory. */
struct svc_name *cluster_snapshot_name_new(const char *ns, size_t ns_len, const char *name,
					   size_t name_len);
void cluster_snapshot_name_ref(const struct svc_name *n);
void cluster_snapshot_name_unref(const struct svc_name *n);

/* One PTR target: a Service name, or an endpoint name under it. */
struct rev_item {
	const struct svc_name *sn; /* one reference */
	uint16_t label_off;        /* into rev_labels() */
	uint8_t label_len;         /* 0: a ClusterIP's (none), or the dashed address */
	uint8_t kind;              /* REV_CLUSTERIP first in a record */
};

/* The PTR targets of one IP address, ordered by (kind, ns, name, label),
 * followed by the labels that are not the dashed address. */
struct rev_rec {
	struct pm_val hdr;
	uint32_t n;
	struct rev_item items[];
};

static inline const char *rev_labels(const struct rev_rec *rr)
{
	return (const char *)(rr->items + rr->n);
}

/** Fill @p key with the rev key of @p ip; @return its length. */
size_t cluster_snapshot_rev_key(uint8_t key[17], const struct k8s_ip *ip);

/* ------------------------------------------ persistent sharded hash map */

/* A map is a two-level tree of PMAP_FANOUT x PMAP_FANOUT leaves (immutable
 * open-addressing shards) chosen by the top bits of the keyed hash. Every
 * node is reference-counted and shared between snapshots: an edit copies
 * the root, the middle node above each leaf it touches and that leaf, so its
 * cost does not grow with the number of leaves, and sharing a whole map is
 * one reference. */
#define PMAP_FANOUT_BITS 6
#define PMAP_FANOUT (1u << PMAP_FANOUT_BITS)
#define PMAP_LEAVES (PMAP_FANOUT * PMAP_FANOUT)

struct pm_slot {
	uint64_t hash;
	const uint8_t *key; /* NULL: empty slot */
	uint16_t klen;
	struct pm_val *val; /* one reference; may be NULL (a set) */
};

/* Immutable once published; shared by snapshots through refs. */
struct pm_shard {
	atomic_uint refs;
	uint32_t n, mask;
	uint32_t bytes; /* of this allocation */
	struct pm_slot *slots;
};

struct pm_mid {
	atomic_uint refs;
	struct pm_shard *leaf[PMAP_FANOUT]; /* NULL: empty leaf */
};

struct pm_root {
	atomic_uint refs;
	struct pm_mid *mid[PMAP_FANOUT]; /* NULL: no leaf under it */
};

struct pmap {
	struct pm_root *root; /* one reference; NULL: empty map */
	uint64_t bytes;       /* of every node and leaf under root */
};

/** Leaf @p i (< PMAP_LEAVES) of @p m, NULL when empty. */
static inline const struct pm_shard *cluster_pmap_leaf(const struct pmap *m, uint32_t i)
{
	const struct pm_mid *mid = m->root ? m->root->mid[i >> PMAP_FANOUT_BITS] : NULL;

	return mid ? mid->leaf[i & (PMAP_FANOUT - 1)] : NULL;
}

/** Find @p key hashed under @p hk; @return true when present (*val, may be
 * NULL, gets the value, borrowed from the map). */
bool cluster_pmap_get(const struct pmap *m, const struct hash_key *hk, const void *key,
		      size_t klen, struct pm_val **val);

/* Pending changes to one map, applied all at once to make a new one. */
struct pm_edit {
	uint64_t hash;
	const uint8_t *key; /* borrowed: the caller's, until the edits are applied or freed */
	struct pm_val *val; /* one reference, moved into the new shard */
	uint16_t klen;
	bool del;
};

struct pm_edits {
	size_t n, cap;
	struct pm_edit *v;
};

/** Queue setting (@p del false; @p val's reference moves in, may be NULL) or
 * deleting @p key (at most K8S_KEY_MAX bytes; borrowed: it must stay put
 * until the edits are applied or freed). @return 0 or -ENOMEM, when the
 * caller keeps @p val. */
int cluster_pmap_edit(struct pm_edits *e, const struct hash_key *hk, const void *key,
		      size_t klen, bool del, struct pm_val *val);
/** Room for @p n more edits at once (a large batch then grows without
 * doubling copies). @return 0 or -ENOMEM. */
int cluster_pmap_edits_reserve(struct pm_edits *e, size_t n);
/** Drop the queued edits and the references they hold. */
void cluster_pmap_edits_free(struct pm_edits *e);
/** Rebuild the leaves of @p m that the edits touch, and the nodes above
 * them (the edits are sorted and their values moved into @p m). @return 0
 * or -ENOMEM (@p m stays valid, partly edited). */
int cluster_pmap_apply(struct pmap *m, struct pm_edits *e);
/** Make @p dst (empty) share all of @p src (one more reference). */
void cluster_pmap_share(struct pmap *dst, const struct pmap *src);
/** Drop @p m's reference; @p m is empty after. */
void cluster_pmap_release(struct pmap *m);

#define PMAP_FOREACH(m, slot)                                                          \
	for (uint32_t pm_i_ = 0; (m)->root && pm_i_ < PMAP_LEAVES; pm_i_++)              \
		for (const struct pm_shard *pm_s_ = cluster_pmap_leaf((m), pm_i_); pm_s_;   \
		     pm_s_ = NULL)                                                          \
			for (uint32_t pm_j_ = 0; pm_j_ <= pm_s_->mask; pm_j_++)              \
				for (const struct pm_slot *slot = &pm_s_->slots[pm_j_];      \
				     slot && slot->key; slot = NULL)

/* ------------------------------------------------------------ snapshots */

struct cluster_snapshot {
	atomic_uint refs;
	uint32_t serial;
	struct hash_key hkey; /* of every map: the same in every snapshot of one publisher */
	struct pmap svc;      /* svc key -> struct svc_rec */
	struct pmap ns;       /* "<ns>" -> NULL: namespaces that exist */
	struct pmap rev;      /* rev key -> struct rev_rec */
};

/* ---------------------------------------------------- building records */

/** The record of Service @p svc with its EndpointSlices @p slices[0..n)
 * (all borrowed), one reference owned by the caller; it shares the name of
 * @p prev (the Service's last record, may be NULL). NULL: no memory. */
struct svc_rec *cluster_records_build(const struct k8s_service *svc,
				      struct k8s_slice *const *slices, uint32_t n,
				      const struct svc_rec *prev);
/** Same DNS content (either may be NULL: equal only when both are). */
bool cluster_records_equal(const struct svc_rec *a, const struct svc_rec *b);
/** Orders used inside records (memcmp-like results). */
int cluster_records_ip_cmp(const void *a, const void *b);
int cluster_records_label_cmp(const char *a, size_t alen, const char *b, size_t blen);

#endif
