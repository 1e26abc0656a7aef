/* src/io/worker.c - one worker thread: its loop, listeners, upstream pool and query state. */
#include "nodedns/io/worker.h"

#include <errno.h>
#include <string.h>

#include "nodedns/cluster/pod_table.h"
#include "nodedns/util/log.h"

/* query_upstream_ops.send for the query path: the worker's upstream pool.
 * The callback shapes are the same, so it goes to upstream_query() as is. */
static int send_upstream(void *ctx, const struct upstream_group *group, const uint8_t *query,
			 size_t len, query_upstream_done_cb cb, void *arg)
{
	if (!group || group->nservers == 0)
		return -ENOENT;
	return upstream_query(ctx, group, query, len, cb, arg);
}

static void finish(struct worker *w)
{
	/* Fails what is still in flight with SERVFAIL (or stale answers),
	 * then closes the sockets and every handle. */
	upstream_close(w->up);
	w->up = NULL;
	server_close(w->server);
	w->server = NULL;
	uv_close((uv_handle_t *)&w->async, NULL);
	uv_close((uv_handle_t *)&w->drain, NULL);
}

static void drain_tick(uv_timer_t *t)
{
	struct worker *w = t->data;
	if (query_pending(w->qw) == 0 || uv_now(&w->loop) >= w->drain_deadline_ms) {
		if (query_pending(w->qw))
			log_warn("worker", "worker %d: stopping with %zu queries unanswered", w->id,
				 query_pending(w->qw));
		uv_timer_stop(t);
		finish(w);
	}
}

static void on_async(uv_async_t *a)
{
	struct worker *w = a->data;
	pthread_mutex_lock(&w->mu);
	struct cluster_snapshot *snap = w->next_snap;
	struct pod_table *pods = w->next_pods;
	bool have_snap = w->snap_pending, have_pods = w->pods_pending, stop = w->stop_requested;
	w->next_snap = NULL;
	w->snap_pending = false;
	w->next_pods = NULL;
	w->pods_pending = false;
	pthread_mutex_unlock(&w->mu);
	if (have_snap)
		query_worker_set_snapshot(w->qw, snap);
	if (have_pods)
		query_worker_set_pods(w->qw, pods);
	if (stop && !uv_is_active((uv_handle_t *)&w->drain) && w->server) {
		server_stop_listening(w->server);
		w->drain_deadline_ms = uv_now(&w->loop) + WORKER_DRAIN_MS;
		uv_timer_start(&w->drain, drain_tick, 0, 20);
	}
}

static void thread_main(void *arg)
{
	struct worker *w = arg;
	struct query_io io;
	struct query_upstream_ops up_ops = { send_upstream, NULL };
	int rc = uv_loop_init(&w->loop);
	if (rc < 0)
		goto fail_early;
	w->async.data = w;
	w->drain.data = w;
	uv_async_init(&w->loop, &w->async, on_async);
	uv_timer_init(&w->loop, &w->drain);
	rc = server_start(&w->loop, &w->sh->server, w->fds, w->nfds, &w->server);
	if (rc < 0)
		goto fail;
	rc = upstream_new(&w->loop, &w->sh->upstream, &w->up);
	if (rc < 0)
		goto fail;
	server_query_io(w->server, &io);
	up_ops.ctx = w->up;
	w->qw = query_worker_new(w->sh->env, &up_ops, &io);
	if (!w->qw) {
		rc = UV_ENOMEM;
		goto fail;
	}
	if (w->sh->initial_snap) {
		cluster_snapshot_ref(w->sh->initial_snap);
		query_worker_set_snapshot(w->qw, w->sh->initial_snap);
	}
	server_set_query(w->server, w->qw);
	w->start_rc = 0;
	uv_sem_post(&w->started);
	uv_run(&w->loop, UV_RUN_DEFAULT);
	query_worker_free(w->qw);
	w->qw = NULL;
	if (uv_loop_close(&w->loop) != 0)
		log_warn("worker", "worker %d: handles left open at exit", w->id);
	return;
fail:
	finish(w);
	uv_run(&w->loop, UV_RUN_DEFAULT);
	uv_loop_close(&w->loop);
fail_early:
	server_close_fds(w->fds, w->nfds);
	w->start_rc = rc;
	uv_sem_post(&w->started);
}

int worker_start(struct worker *w, int id, const struct worker_shared *sh,
		 const struct server_fds *fds, size_t nfds)
{
	memset(w, 0, sizeof(*w));
	w->id = id;
	w->sh = sh;
	w->nfds = nfds;
	memcpy(w->fds, fds, nfds * sizeof(*fds));
	pthread_mutex_init(&w->mu, NULL);
	uv_sem_init(&w->started, 0);
	int rc = uv_thread_create(&w->thread, thread_main, w);
	if (rc < 0) {
		server_close_fds(w->fds, w->nfds);
		return rc;
	}
	uv_sem_wait(&w->started);
	if (w->start_rc < 0) {
		uv_thread_join(&w->thread);
		return w->start_rc;
	}
	return 0;
}

void worker_publish(struct worker *w, struct cluster_snapshot *snap)
{
	pthread_mutex_lock(&w->mu);
	struct cluster_snapshot *old = w->snap_pending ? w->next_snap : NULL;
	w->next_snap = snap;
	w->snap_pending = true;
	pthread_mutex_unlock(&w->mu);
	cluster_snapshot_unref(old);
	uv_async_send(&w->async);
}

void worker_publish_pods(struct worker *w, struct pod_table *pods)
{
	pthread_mutex_lock(&w->mu);
	struct pod_table *old = w->pods_pending ? w->next_pods : NULL;
	w->next_pods = pods;
	w->pods_pending = true;
	pthread_mutex_unlock(&w->mu);
	pod_table_unref(old);
	uv_async_send(&w->async);
}

void worker_stop(struct worker *w)
{
	pthread_mutex_lock(&w->mu);
	w->stop_requested = true;
	pthread_mutex_unlock(&w->mu);
	uv_async_send(&w->async);
}

void worker_join(struct worker *w)
{
	uv_thread_join(&w->thread);
	pthread_mutex_lock(&w->mu);
	if (w->snap_pending)
		cluster_snapshot_unref(w->next_snap);
	w->next_snap = NULL;
	w->snap_pending = false;
	if (w->pods_pending)
		pod_table_unref(w->next_pods);
	w->next_pods = NULL;
	w->pods_pending = false;
	pthread_mutex_unlock(&w->mu);
	pthread_mutex_destroy(&w->mu);
	uv_sem_destroy(&w->started);
}
