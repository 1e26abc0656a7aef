/* include/nodedns/cluster/k8s_store.h - the cluster store: Services, EndpointSlices, Namespaces.
 *
 * The control thread's private, mutable view of the cluster, fed with
 * Kubernetes objects as the API server encodes them (jansson), from the watch
 * (k8s_watch) or from a snapshot file. It remembers what changed since a
 * publisher (cluster_publish.h) last turned its content into a snapshot.
 * Pure: no libuv, no curl, no threads; one thread uses a store.
 */
#ifndef NODEDNS_CLUSTER_K8S_STORE_H
#define NODEDNS_CLUSTER_K8S_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "nodedns/cluster/k8s_stream.h"

struct json_t;
struct cluster_config;

struct k8s_store;

enum k8s_kind { K8S_SERVICE = 0, K8S_ENDPOINTSLICE, K8S_NAMESPACE, K8S_KIND_COUNT };
enum k8s_event { K8S_ADDED = 0, K8S_MODIFIED, K8S_DELETED };

struct k8s_store_stats {
	uint64_t services, endpointslices, namespaces; /* objects held */
	uint64_t events_applied, events_rejected;      /* rejected: malformed objects */
	uint64_t addresses; /* ready endpoint addresses held */
	/* The store's own count of the bytes it holds (malloc's overhead not
	 * included): its objects and indexes, and of the last snapshot
	 * published from it, the records (Services, reverse entries) and the
	 * persistent maps over them. */
	uint64_t bytes_objects, bytes_records, bytes_maps;
};

struct mbuf;
/** Render @p s, and @p snapshots (cluster_publisher_count()) as
 * nodedns_cluster_snapshots_total (src/cluster/k8s_store_metrics.c). */
void k8s_store_metrics_render(struct mbuf *b, const struct k8s_store_stats *s, uint64_t snapshots);

/** An empty store, owned by the caller (k8s_store_free()). @p cfg (copied;
 * may be NULL) is the zone the content is served under. NULL: no memory. */
struct k8s_store *k8s_store_new(const struct cluster_config *cfg);
/** Free the store and every object in it. NULL is fine. Snapshots published
 * from it live on. */
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

/** k8s_store_apply_line(): the line is left to k8s_stream_decode() and
 * k8s_store_apply(). */
#define K8S_LINE_UNHANDLED 1

/**
 * The fast path for one watch event line (as k8s_stream_feed() delivers it)
 * of a watch on @p kind whose objects are of kind @p obj_kind: an
 * EndpointSlice ADDED, MODIFIED or DELETED is decoded without a JSON tree
 * and applied as k8s_store_apply() would (same result, same counts); *ev is
 * the event and @p rv the object's resourceVersion ("" when absent).
 * @return what k8s_store_apply() would, or K8S_LINE_UNHANDLED (nothing
 * done, rv ""): any other kind or event type, and any line this path is
 * not sure to read exactly as the generic one (malformed ones included), is
 * left to the generic path; so is a line over the decoding-cost bound
 * (k8s_stream_cost_ok()), which k8s_stream_decode() then refuses.
 */
int k8s_store_apply_line(struct k8s_store *s, enum k8s_kind kind, const char *obj_kind,
			 const char *line, size_t len, enum k8s_event *ev, char rv[K8S_RV_MAX],
			 char *err, size_t errlen);

/** Remove every object of @p kind (a relist replaces the whole set). */
void k8s_store_clear_kind(struct k8s_store *s, enum k8s_kind kind);

/*
 * A list in progress: the objects of one kind, decoded as each arrives (its
 * JSON can be freed at once) and kept apart from the store until the list
 * is complete, when they replace that kind's objects in one step. Objects
 * go into the current page; a page that fails is dropped whole (its retry
 * adds them again), a good one joins the list. Store limits count the
 * store's objects of the other kinds.
 */
struct k8s_store_stage;

/** A stage for a list of @p kind for store @p s (borrowed, read for its
 * zone and counts). NULL: no memory. */
struct k8s_store_stage *k8s_store_stage_new(const struct k8s_store *s, enum k8s_kind kind);
/** Free the stage and every object in it. NULL is fine. */
void k8s_store_stage_free(struct k8s_store_stage *st);
/** Decode @p obj (borrowed) into the current page, as an ADDED event would:
 * 0, -EINVAL (malformed; err says why), -ENOSPC (a store limit), -ENOMEM. */
int k8s_store_stage_add(struct k8s_store_stage *st, const struct json_t *obj, char *err,
			size_t errlen);
/** The fast path of k8s_store_apply_line() for the events of a streaming
 * list: an EndpointSlice ADDED line is decoded without a JSON tree into the
 * current page, as k8s_store_stage_add() would add its object. @return as
 * k8s_store_stage_add(), or K8S_LINE_UNHANDLED (nothing done) for any
 * other kind, event type or line (left to k8s_stream_decode()). */
int k8s_store_stage_add_line(struct k8s_store_stage *st, const char *obj_kind, const char *line,
			     size_t len, char *err, size_t errlen);
/** Forget the objects of the current page. */
void k8s_store_stage_page_drop(struct k8s_store_stage *st);
/** The current page joins the list. @return the objects it held that a
 * store limit refused (counted, not kept), or -ENOMEM (then the page is dropped). */
int k8s_store_stage_page_keep(struct k8s_store_stage *st);
/** Objects in the list so far (the current page included). */
size_t k8s_store_stage_count(const struct k8s_store_stage *st);
/** Replace every object of the stage's kind in @p s with the stage's
 * (current page included) and free the stage. @return the objects a store
 * limit refused, or -ENOMEM when the stage could not be merged (@p s is then
 * unchanged; the stage is freed either way). */
int k8s_store_stage_commit(struct k8s_store *s, struct k8s_store_stage *st);

/**
 * Replace the whole store content with the objects of a `kubectl get
 * services,endpointslices,namespaces -A -o json` document (a v1 List, or a
 * single object) read from @p path. On any error the store is unchanged.
 * @return 0, -errno for I/O (-EFBIG over 1 GiB), -EINVAL for bad JSON or a
 * malformed object (err says where), -ENOSPC for store limits.
 */
int k8s_store_load_file(struct k8s_store *s, const char *path, char *err, size_t errlen);

void k8s_store_get_stats(const struct k8s_store *s, struct k8s_store_stats *out);

#endif
