/* include/nodedns/io/warm_start.h - the warm-start file on disk: load at start, save after changes.
 *
 * A resolver restarted (OOM kill, crash, rolling update) answers cluster
 * names from the last state its predecessor published until its own watch
 * has synced. This module does the file I/O around the pure format of
 * cluster/warm_file.h:
 *  - warm_start_load() reads RUN_DIR/cluster.warm into the store before the
 *    workers start; a missing, truncated, corrupt, foreign or too old file
 *    is ignored with a warning (never a failed start);
 *  - a saver, on the control loop, rewrites the file after the live data
 *    changed (at most once per save delay, coalesced), every refresh period
 *    while the watch shows signs of life (so a quiet cluster's file does not
 *    age out), and once more on a clean stop. A write goes to a temporary
 *    file, is fsync'ed, renamed over the old one, and the directory fsync'ed:
 *    a crash leaves the old file or the new one, never a mix.
 * The saver writes only after the live data has been published once: the
 * content of a file that was loaded is never written back as new.
 */
#ifndef NODEDNS_IO_WARM_START_H
#define NODEDNS_IO_WARM_START_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct k8s_store;
struct mbuf;

#define WARM_START_FILE "cluster.warm"
#define WARM_START_MAX_AGE_S_DEFAULT 3600
#define WARM_START_SAVE_DELAY_MS 5000u
#define WARM_START_ID_MAX 1025u /* bytes of an identity, with its NUL (warm_file.h's bound) */
/* Rewritten at least this often while the watch is alive: max age / 4,
 * within these bounds. */
#define WARM_START_REFRESH_MIN_MS 10000u
#define WARM_START_REFRESH_MAX_MS 900000u

struct warm_start_config {
	const char *run_dir; /* the directory of the file (created if missing) */
	const char *domain;  /* the cluster domain */
	const char *server;  /* the API server identity (warm_start_identity()) */
	uint32_t max_age_s;  /* older files are not loaded; > 0 */
	uint32_t save_delay_ms; /* 0: WARM_START_SAVE_DELAY_MS */
};

/** Where the served cluster data comes from (for the metrics). */
enum warm_start_source { WARM_SOURCE_NONE = 0, WARM_SOURCE_FILE, WARM_SOURCE_LIVE };

/**
 * The identity of the API server a file belongs to: the normalized URL (of
 * @p kube_api, or of the current context of @p kubeconfig) and the checksum
 * of its CA bundle (@p ca_file, or the kubeconfig's), into @p out.
 * @return 0, or -EINVAL when no URL can be found.
 */
int warm_start_identity(const char *kube_api, const char *kubeconfig, const char *ca_file,
			char *out, size_t outlen);

/**
 * Replace the content of @p store with the file of @p c, logging the outcome
 * (a warning when the file is there but unusable). *created_s gets the time
 * the file's content was current. @return 0 when loaded, -ENOENT when there
 * is no file, another negative errno when it was ignored.
 */
int warm_start_load(const struct warm_start_config *c, struct k8s_store *store,
		    uint64_t *created_s);

/** Returns a number that grows while the watch is alive (events, bookmarks). */
typedef uint64_t (*warm_start_progress_fn)(void *arg);

struct warm_start;

/**
 * A saver of @p store (borrowed, read on the loop's thread only) to the file
 * of @p c (copied). @return 0 or -ENOMEM; a run dir that cannot be created
 * is a warning, not an error.
 */
int warm_start_new(uv_loop_t *loop, const struct warm_start_config *c,
		   const struct k8s_store *store, warm_start_progress_fn progress, void *arg,
		   struct warm_start **out);

/** The live data was published: save it within the save delay. NULL is fine. */
void warm_start_changed(struct warm_start *ws);

/** Save now when the live data changed since the last save, stop the timers
 * and free the saver once libuv has closed them. NULL is fine. */
void warm_start_close(struct warm_start *ws);

/**
 * The metrics: nodedns_cluster_source{source=...}, the age of the file data
 * being served (@p age_s, 0 unless @p src is the file), and the saver's
 * counters when @p ws is not NULL.
 */
void warm_start_metrics_render(struct mbuf *b, const struct warm_start *ws,
			       enum warm_start_source src, uint64_t age_s);

#endif
