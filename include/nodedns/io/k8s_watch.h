/* include/nodedns/io/k8s_watch.h - list+watch of Services, EndpointSlices and Namespaces.
 *
 * Runs on the control thread's libuv loop: libcurl's multi interface driven by
 * uv_poll/uv_timer, JSON decoded with jansson, objects pushed into the
 * k8s_store (k8s_store.h). For each resource it lists with a streaming list
 * (WatchList: watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan,
 * the objects as ADDED events up to the bookmark annotated
 * k8s.io/initial-events-end, whose resourceVersion the stream then watches
 * from), or, once a server refused (400/422) or ignored that (a plain watch),
 * paginated lists (limit=500 with continue) and a watch from the list's
 * resourceVersion. The first list asks for resourceVersion=0 (the watch
 * cache), a relist for NotOlderThan the last one, a list after a 410 for the
 * latest. Watches have allowWatchBookmarks=true and a random timeoutSeconds
 * in [300, 600]. Events update the store; BOOKMARK moves the
 * resourceVersion; an ERROR event with 410 (or a 410 response) relists; a
 * clean end or a cut stream resumes from the last resourceVersion (a cut one
 * after a random delay under reconnect_spread_ms). Errors back off with full
 * jitter (a random delay under a cap doubling from 0.8 s to 30 s); 429
 * honours Retry-After. The bearer token is
 * re-read when its file changes and after a 401. TLS is always verified.
 * The last good data stays in the store while the API is unreachable.
 * What a server can make us spend is bounded: a list is split into its items
 * as it arrives (k8s_stream_list_*), each bounded in bytes and decoding cost,
 * the list in cost, bytes, pages (a repeated continue token ends it) and time
 * (a deadline and a minimum rate); a transfer pauses when decoding has held
 * the loop for 20 ms (k8s_watch_internal.h has the numbers).
 *
 * After each batch of events (everything one read callback delivered), the
 * watcher publishes a new snapshot through the publish callback.
 *
 * Implemented by src/io/k8s_watch*.c (their shared types: k8s_watch_internal.h).
 */
#ifndef NODEDNS_K8S_WATCH_H
#define NODEDNS_K8S_WATCH_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "nodedns/cluster/cluster_publisher.h"
#include "nodedns/cluster/cluster_snapshot.h"
#include "nodedns/cluster/k8s_store.h"
#include "nodedns/cluster/pod_set.h"

/* Default bound on one watch event (no option). */
#define K8S_WATCH_MAX_EVENT_BYTES_DEFAULT (4u << 20)

struct k8s_watch_config {
	const char *api_url;    /* "https://10.96.0.1:443"; NULL: from kubeconfig */
	const char *token_file; /* bearer token; NULL: none (client cert from kubeconfig) */
	const char *ca_file;    /* CA bundle; NULL: system default */
	const char *kubeconfig; /* when set, server/CA/token/client cert come from it */
	uint32_t max_event_bytes; /* bound on one watch line (a list item: 4x), default 4 MiB */
	/* Added by k8s_watch.c: a transfer that receives no byte for this long
	 * is aborted and restarted (watch streams get a bookmark about every
	 * minute). 0: 150000 (150 s). Tests set it low. */
	uint32_t idle_timeout_ms;
	/* A list request that has not completed after this long is aborted
	 * and retried after the backoff, however steadily bytes arrive (a drip).
	 * 0: 300000 (5 min). Tests set it low. Watches end at their
	 * timeoutSeconds plus 30 s. */
	uint32_t list_deadline_ms;
	/* Test hook: the timeoutSeconds of every watch. 0: random in
	 * [300, 600] s. The watch's own deadline stays timeoutSeconds + 30 s. */
	uint32_t watch_timeout_s;
	/* A watch cut after it delivered (an API server restart, a GOAWAY, a
	 * stream reset) resumes after a random delay in [0, this): thousands of
	 * nodes cut at once come back spread out, not in lock-step.
	 * 0: 1000 ms. */
	uint32_t reconnect_spread_ms;
	/* Streaming lists (WatchList): 0 use them when the server offers them,
	 * falling back to paginated lists when it refuses or ignores them;
	 * -1 never (paginated lists only). */
	int watch_list;
	/* --autopath: also list+watch the Pods of node `pod_node`
	 * (fieldSelector=spec.nodeName=<pod_node>) into `pods` (borrowed for the
	 * life of the watch), and hand each new table of their addresses to
	 * `pods_cb` (with the publish callback's arg; the callee owns the one
	 * reference). Pods never go through the store, never delay the first
	 * snapshot and never count towards stats.synced. NULL: no pods. */
	const char *pod_node;
	struct pod_set *pods;
	void (*pods_cb)(void *arg, struct pod_table *t);
};

/* Watched resources: the store's kinds, then the node's Pods (--autopath). */
#define K8S_WATCH_RESOURCES (K8S_KIND_COUNT + 1)

/* What one resource cost the API server (nodedns_watch_*{resource}). */
struct k8s_watch_res_stats {
	_Atomic uint64_t requests, /* lists (pages), watches and streaming lists sent */
		bytes,	   /* response bytes received: headers and body (inflated) */
		relists,   /* lists after the first one, for any reason */
		reconnects, /* watches started again after a cut or a failed attempt */
		established; /* watches that delivered an event or bookmark (a
			      * streaming list: its initial-events-end) */
};

struct k8s_watch_stats {
	_Atomic uint64_t lists, watches, watch_restarts, relists_410, events,
		bookmarks, errors, throttled_429, unauthorized_401, token_reloads,
		oversized_events, bad_events,
		list_loops, /* lists abandoned: a repeated continue token or too many pages */
		list_timeouts, /* requests ended by the deadline or the minimum rate */
		watch_lists,   /* streaming lists completed (initial-events-end) */
		watch_list_fallbacks, /* the server refused or ignored a streaming list */
		watch_deadlines, /* watches ended by timeoutSeconds + 30 s */
		interrupted;   /* watch streams cut by the transport (reset, GOAWAY,
				* a truncated frame or chunk, a closed connection) */
	struct k8s_watch_res_stats res[K8S_WATCH_RESOURCES]; /* by enum k8s_kind, then pods */
	_Atomic int synced; /* 1 once all three resources have been listed once */
};
struct mbuf;
/** Render @p s (borrowed) but .synced, which the caller combines with other
 * sources of cluster data (src/io/k8s_watch_metrics.c). */
void k8s_watch_metrics_render(struct mbuf *b, const struct k8s_watch_stats *s);

struct k8s_watch;

/**
 * Called on the control loop after a batch of changes was applied to the
 * store, with a new snapshot whose single reference now belongs to the callee.
 * The first call comes once all three resources have been listed (just before
 * stats.synced becomes 1); none before, so a partial store is never served.
 * The callback must not call k8s_watch_close().
 */
typedef void (*k8s_watch_publish_cb)(void *arg, struct cluster_snapshot *snap);

/** Start syncing. @p store, and @p pub that publishes it, are borrowed for
 * the life of the watch. @return 0, -EINVAL for an unusable config (err says
 * why), -ENOMEM. */
int k8s_watch_start(uv_loop_t *loop, const struct k8s_watch_config *cfg,
		    struct k8s_store *store, struct cluster_publisher *pub,
		    k8s_watch_publish_cb cb, void *arg,
		    struct k8s_watch **out, char *err, size_t errlen);

const struct k8s_watch_stats *k8s_watch_stats(const struct k8s_watch *w);

/** Abort every transfer, close handles, free once libuv has closed them. NULL is fine. */
void k8s_watch_close(struct k8s_watch *w);

/**
 * Check an API server URL as the watch will use it: printable ASCII, at most
 * a few KiB, parsed by libcurl as https with a host and no user, password,
 * options, query or fragment. @p normalized (may be NULL) gets libcurl's
 * normal form of it (malloc'ed, the caller frees). @return 0, -EINVAL (err
 * says why) or -ENOMEM. Any thread.
 */
int k8s_watch_check_url(const char *url, char **normalized, char *err, size_t errlen);

#endif
