/* src/io/k8s_watch_pods.c - the Pods of this node for autopath: a fourth watched resource.
 *
 * Only with --autopath. The state machine of k8s_watch.c lists and watches
 * /api/v1/pods like any other resource, with the node's field selector on
 * every request; its events and lists land here instead of the store: in
 * the pod set (cluster/pod_set.h), whose table of addresses goes to the
 * workers through the pods callback whenever it changed. The pods resource
 * is left out of "all listed": readiness and the first cluster snapshot
 * never wait for it, and until it has listed autopath simply finds no pod.
 */
#include "k8s_watch_internal.h"

static const struct res_def pods_def = { RES_PODS, "pods", "/api/v1/pods", "Pod" };

int k8s_watch_pods_configure(struct k8s_watch *w, const struct k8s_watch_config *cfg, char *err,
			     size_t errlen)
{
	if (!cfg->pod_node)
		return 0;
	if (!cfg->pods || !cfg->pods_cb)
		return k8s_watch_failv(err, errlen, -EINVAL, "pods of %s: no pod set", cfg->pod_node);
	char *esc = curl_easy_escape(NULL, cfg->pod_node, 0);
	if (!esc)
		return -ENOMEM;
	int rc = asprintf(&w->pod_selector, "fieldSelector=spec.nodeName%%3D%s", esc);
	curl_free(esc);
	if (rc < 0) {
		w->pod_selector = NULL;
		return -ENOMEM;
	}
	w->pods = cfg->pods;
	w->pods_cb = cfg->pods_cb;
	w->res[RES_PODS].def = &pods_def;
	w->nres = RES_MAX;
	return 0;
}

int k8s_watch_pods_apply(struct res *r, bool deleted, const json_t *obj, char *err, size_t errlen)
{
	int rc = pod_set_apply(r->w->pods, deleted, obj, err, errlen);
	if (rc == 0)
		r->w->pods_dirty = true;
	else if (rc == -E2BIG)
		snprintf(err, errlen, "more than %d pods on the node", POD_SET_MAX);
	return rc;
}

int k8s_watch_pods_stage(struct res *r, json_t *it)
{
	/* More than the set takes would be refused at the commit: count them
	 * now and keep no more JSON than that. */
	if (json_array_size(r->pods_pending) >= POD_SET_MAX) {
		json_decref(it);
		STAT_INC(r->w, bad_events);
		r->page_rejected++;
		if (k8s_watch_may_log(r))
			log_warn(TAG, "pods: listed pod skipped: more than %d pods on the node",
				 POD_SET_MAX);
		return 0;
	}
	if (!r->pods_pending && !(r->pods_pending = json_array())) {
		json_decref(it);
		return -ENOMEM;
	}
	return json_array_append_new(r->pods_pending, it) < 0 ? -ENOMEM : 0;
}

void k8s_watch_pods_page_drop(struct res *r)
{
	while (json_array_size(r->pods_pending) > r->list_items)
		json_array_remove(r->pods_pending, json_array_size(r->pods_pending) - 1);
}

void k8s_watch_pods_commit(struct res *r, const char *rv)
{
	struct k8s_watch *w = r->w;
	size_t i, rejected = 0;
	json_t *it;
	char err[200];
	bool nomem = false;

	pod_set_clear(w->pods);
	json_array_foreach(r->pods_pending, i, it) {
		int rc = pod_set_apply(w->pods, false, it, err, sizeof(err));
		if (rc == -ENOMEM) {
			nomem = true;
		} else if (rc < 0) {
			rejected++;
			if (k8s_watch_may_log(r))
				log_warn(TAG, "pods: listed pod rejected: %s",
					 rc == -E2BIG ? "too many pods on the node" : err);
		}
	}
	if (rejected)
		STAT_ADD(w, bad_events, rejected);
	size_t n = json_array_size(r->pods_pending) - rejected;
	k8s_watch_drop_list(r);
	memcpy(r->rv, rv, strlen(rv) + 1);
	r->list_mode = LIST_NOT_OLDER;
	r->listed = true;
	r->watched = false;
	w->pods_dirty = true;
	STAT_INC(w, lists);
	log_info(TAG, "pods: listed %zu pods of the node at resourceVersion %s (%zu rejected)", n,
		 r->rv, rejected);
	if (nomem) {
		STAT_INC(w, errors);
		log_error(TAG, "pods: out of memory while applying the list, relisting");
		k8s_watch_schedule(r, PH_LIST, k8s_watch_backoff(r));
		return;
	}
	k8s_watch_start_watch(r);
}

void k8s_watch_pods_publish(struct k8s_watch *w)
{
	if (!w->pods_dirty || w->closing || !w->res[RES_PODS].listed)
		return;
	struct pod_table *t = pod_set_build(w->pods);
	if (!t) {
		log_error(TAG, "pods: cannot build the table: out of memory");
		return; /* stays dirty: the next batch retries */
	}
	w->pods_dirty = false;
	w->pods_cb(w->cb_arg, t);
}
