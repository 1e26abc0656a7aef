/* include/nodedns/cluster/pod_set.h - the control thread's set of the node's pods.
 *
 * The API watch applies Pod events and lists here (only with --autopath);
 * pod_set_build() turns the set into the immutable table the workers read
 * (pod_table.h). The set keeps every pod of the node by "<ns>/<name>", the
 * ineligible ones too (so that a MODIFIED event that makes a pod ineligible
 * removes its addresses), and is bounded: a node runs at most a few hundred
 * pods, and a server that sends more than POD_SET_MAX is refused (-E2BIG).
 * Pods do not go through the cluster store, and never gate readiness.
 * Not thread-safe: one thread (the control loop) owns it; its counters are
 * relaxed atomics for /metrics.
 */
#ifndef NODEDNS_CLUSTER_POD_SET_H
#define NODEDNS_CLUSTER_POD_SET_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nodedns/cluster/pod_table.h"

#define POD_SET_MAX 8192

struct json_t;
struct pod_set;

struct pod_set_stats {
	_Atomic uint64_t pods;      /* gauge: pods of the node in the set */
	_Atomic uint64_t eligible;  /* gauge: of them, autopathed */
	_Atomic uint64_t addresses; /* gauge: addresses in the last table built */
	_Atomic uint64_t rejected;  /* Pods that did not decode */
};

/** An empty set for node @p node (copied; NULL: any node). NULL on ENOMEM. */
struct pod_set *pod_set_new(const char *node);
void pod_set_free(struct pod_set *s);

/**
 * Apply one Pod (@p obj, borrowed): added or modified when !@p deleted,
 * removed when @p deleted (only its metadata is read then).
 * @return 0, -EINVAL (malformed; @p err says why; the set unchanged),
 * -E2BIG (the set holds POD_SET_MAX pods) or -ENOMEM.
 */
int pod_set_apply(struct pod_set *s, bool deleted, const struct json_t *obj, char *err,
		  size_t errlen);

/** Forget every pod (a list replaces the set: clear, then apply each item). */
void pod_set_clear(struct pod_set *s);

/** The table of the eligible pods' addresses, with one reference, or NULL
 * when out of memory. */
struct pod_table *pod_set_build(struct pod_set *s);

const struct pod_set_stats *pod_set_stats(const struct pod_set *s);

struct mbuf;
/** The autopath pod gauges on /metrics (src/cluster/pod_set.c). */
void pod_set_metrics_render(struct mbuf *b, const struct pod_set_stats *st);

#endif
