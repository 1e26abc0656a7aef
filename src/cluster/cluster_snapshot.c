/* src/cluster/cluster_snapshot.c - immutable cluster snapshots: shared records, reference counts.
 *
 * A snapshot is three persistent hash maps (services, namespaces, reverse
 * addresses; cluster_pmap.c), each split into PMAP_SHARDS immutable shards.
 * A shard holds references to immutable records: one svc_rec per Service
 * (everything needed to answer for it and the names below it, its
 * EndpointSlices already merged and deduplicated; cluster_records.c) and one
 * rev_rec per IP address (its PTR targets). Shards and records carry atomic
 * reference counts and are shared by every snapshot that has them; the
 * publisher (cluster_publisher.c) makes new snapshots from old ones.
 *
 * Threads. Snapshots are read-only and may be used and released from any
 * thread. The last reference, wherever it is dropped, frees the snapshot and
 * every shard and record no other snapshot holds.
 */
#include "nodedns/cluster/cluster_snapshot.h"

#include "cluster_snapshot_internal.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------- shared values */

static void rec_free(struct svc_rec *r)
{
	free(r->ports);
	free(r->targets);
	free(r->eps);
	free(r->ips);
	free(r->psets);
	free(r->pool);
	free(r->labels);
	free(r->ext);
	cluster_snapshot_name_unref(r->sname);
	free(r);
}

void cluster_snapshot_val_ref(struct pm_val *v)
{
	if (v)
		atomic_fetch_add_explicit(&v->refs, 1, memory_order_relaxed);
}

void cluster_snapshot_val_unref(struct pm_val *v)
{
	if (!v || atomic_fetch_sub_explicit(&v->refs, 1, memory_order_acq_rel) != 1)
		return;
	if (v->type == PM_VAL_SVC) {
		rec_free((struct svc_rec *)v);
		return;
	}
	struct rev_rec *rr = (struct rev_rec *)v;
	for (uint32_t i = 0; i < rr->n; i++)
		cluster_snapshot_name_unref(rr->items[i].sn);
	free(rr);
}

struct svc_name *cluster_snapshot_name_new(const char *ns, size_t ns_len, const char *name,
					   size_t name_len)
{
	struct svc_name *n = malloc(sizeof(*n) + ns_len + name_len);

	if (!n)
		return NULL;
	atomic_init(&n->refs, 1);
	n->ns_len = (uint8_t)ns_len;
	n->name_len = (uint8_t)name_len;
	memcpy(n->s, ns, ns_len);
	memcpy(n->s + ns_len, name, name_len);
	return n;
}

void cluster_snapshot_name_ref(const struct svc_name *n)
{
	if (n)
		atomic_fetch_add_explicit(&((struct svc_name *)n)->refs, 1, memory_order_relaxed);
}

void cluster_snapshot_name_unref(const struct svc_name *n)
{
	if (n && atomic_fetch_sub_explicit(&((struct svc_name *)n)->refs, 1,
					   memory_order_acq_rel) == 1)
		free((struct svc_name *)n);
}

size_t cluster_snapshot_rev_key(uint8_t key[17], const struct k8s_ip *ip)
{
	size_t n = ip->fam == 4 ? 4 : 16;

	key[0] = ip->fam;
	memcpy(key + 1, ip->b, n);
	return n + 1;
}

/* ------------------------------------------------------------ snapshots */

void cluster_snapshot_ref(struct cluster_snapshot *snap)
{
	if (snap)
		atomic_fetch_add_explicit(&snap->refs, 1, memory_order_relaxed);
}

void cluster_snapshot_unref(struct cluster_snapshot *snap)
{
	if (!snap || atomic_fetch_sub_explicit(&snap->refs, 1, memory_order_acq_rel) != 1)
		return;
	cluster_pmap_release(&snap->svc);
	cluster_pmap_release(&snap->ns);
	cluster_pmap_release(&snap->rev);
	free(snap);
}
