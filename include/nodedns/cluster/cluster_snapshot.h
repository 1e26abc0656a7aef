/* include/nodedns/cluster/cluster_snapshot.h - immutable, reference-counted views of the cluster.
 *
 * A snapshot is what the workers answer from (cluster_zone.h). A publisher
 * (cluster_publisher.h) makes them; each holder owns one reference. They are
 * read without locks, and may be used and released from any thread; the
 * last reference frees the snapshot and whatever no other snapshot shares.
 * This module knows nothing of the store or of JSON.
 */
#ifndef NODEDNS_CLUSTER_SNAPSHOT_H
#define NODEDNS_CLUSTER_SNAPSHOT_H

struct cluster_snapshot;

/** Take one more reference (any thread). */
void cluster_snapshot_ref(struct cluster_snapshot *snap);
/** Drop one reference (any thread); the last one frees it. NULL is fine. */
void cluster_snapshot_unref(struct cluster_snapshot *snap);

#endif
