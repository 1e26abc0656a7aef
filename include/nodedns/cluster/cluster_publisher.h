/* include/nodedns/cluster/cluster_publisher.h - make snapshots of the store at the cost of what changed.
 *
 * The publisher owns the last snapshot it made and its serial (the zone's SOA
 * serial). On each publish it asks the store what changed since the last one,
 * rebuilds the records of those Services and namespaces only, and shares
 * everything else with the last snapshot. Control thread only, as the store;
 * the snapshots it returns may go to any thread.
 */
#ifndef NODEDNS_CLUSTER_PUBLISHER_H
#define NODEDNS_CLUSTER_PUBLISHER_H

#include <stdint.h>

struct cluster_snapshot;
struct k8s_store;

struct cluster_publisher;

/** A publisher that has published nothing yet, owned by the caller. NULL: no memory. */
struct cluster_publisher *cluster_publisher_new(void);
/** Drop the publisher and its reference to the last snapshot. NULL is fine. */
void cluster_publisher_free(struct cluster_publisher *p);

/**
 * Publish the current content of @p s as a new snapshot with one reference
 * owned by the caller, and tell the store its changes are taken. Costs in
 * proportion to what changed since the last publish; when nothing DNS-visible
 * changed it returns the last snapshot again (one more reference, same
 * serial). One publisher serves one store. @return NULL on allocation failure
 * (the changes stay pending in the store for the next call).
 */
struct cluster_snapshot *cluster_publisher_publish(struct cluster_publisher *p,
						   struct k8s_store *s);

/** Snapshots made so far (a returned "last snapshot again" is not counted). */
uint64_t cluster_publisher_count(const struct cluster_publisher *p);

#endif
