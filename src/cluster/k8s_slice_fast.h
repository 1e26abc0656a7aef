/* src/cluster/k8s_slice_fast.h - EndpointSlice watch events decoded without a JSON tree (inside the layer).
 *
 * See k8s_slice_fast.c: a fast path in front of the generic decoder
 * (k8s_stream_decode() + k8s_objects_slice()) that either decodes a watch
 * event line exactly as the generic path would, or leaves it to it.
 */
#ifndef NODEDNS_CLUSTER_K8S_SLICE_FAST_H
#define NODEDNS_CLUSTER_K8S_SLICE_FAST_H

#include "k8s_objects_internal.h"

#include "nodedns/cluster/k8s_store.h"
#include "nodedns/cluster/k8s_stream.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** k8s_fast_slice_event(): not decoded here, use the generic path. */
#define K8S_FAST_UNHANDLED 1

struct text;
struct endpoint;

/** Buffers kept from one line to the next (zero it to start; owned by the caller). */
struct k8s_fast {
	char *buf; /* address and hostname texts of the line being decoded */
	size_t len, cap;
	struct endpoint *eps;
	size_t n_eps, eps_cap;
	struct text *addrs;
	size_t n_addrs, addrs_cap;
	size_t cost; /* k8s_stream_json_cost() of the last line read whole (0: none) */
};

/** Free the buffers of @p c (it may be used again). */
void k8s_fast_deinit(struct k8s_fast *c);

/**
 * Decode one watch event line (as k8s_stream_feed() delivers it) of an
 * EndpointSlice watch whose objects are of kind @p obj_kind into the zeroed
 * @p sl: *ev is the event, @p rv the object's resourceVersion ("" when
 * absent). A DELETED event fills only sl->ns and sl->name, as the generic
 * path does. Returns 0 when the line decodes the generic way to the same
 * event, rv and slice (and is accepted there); K8S_FAST_UNHANDLED when the
 * caller must decode it the generic way (anything unusual, malformed, over
 * the decoding-cost bound of k8s_stream_cost_ok(), or another event type);
 * -ENOMEM. On anything but 0 the caller frees what
 * @p sl holds (k8s_objects_slice_free()) and rv is "".
 */
int k8s_fast_slice_event(struct k8s_fast *c, const char *line, size_t len, const char *obj_kind,
			 enum k8s_event *ev, char rv[K8S_RV_MAX], struct k8s_slice *sl);

#endif
