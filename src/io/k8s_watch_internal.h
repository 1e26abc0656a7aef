/* src/io/k8s_watch_internal.h - what the files of the API watch share (not a public header).
 *
 * The watch (include/nodedns/io/k8s_watch.h) is four files around struct
 * k8s_watch and one struct res per resource:
 *  - k8s_watch.c         the list/watch state machine (client-go's Reflector),
 *                        backoff, publishing snapshots, start and close;
 *  - k8s_watch_events.c  response bodies: watch lines and list pages, applied
 *                        to the store;
 *  - k8s_watch_auth.c    the server URL, CA and client certificate (from the
 *                        flags or a kubeconfig) and the bearer token file;
 *  - k8s_watch_curl.c    libcurl's multi-socket API on uv_poll/uv_timer, and
 *                        starting and ending one transfer.
 * struct k8s_watch owns every struct res, every curl handle, socket context,
 * timer, list in progress and string in it; the store is borrowed. All of it
 * runs on the control loop thread.
 */
#ifndef NODEDNS_IO_K8S_WATCH_INTERNAL_H
#define NODEDNS_IO_K8S_WATCH_INTERNAL_H

#include "nodedns/io/k8s_watch.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nodedns/io/k8s_kubeconfig.h"
#include "nodedns/cluster/k8s_stream.h"
#include "nodedns/util/log.h"

#define TAG "k8s"

#define PAGE_LIMIT 500
#define DEFAULT_EVENT_BYTES (4u << 20)
#define MIN_EVENT_BYTES 1024u
/* All pages of one list together. Real servers answering from the watch cache
 * (resourceVersion=0) ignore "limit" and send everything in one response; a
 * 10k-Service cluster is about 20 MB of JSON, so this leaves ample room while
 * still bounding what a broken or hostile server can make us hold. */
#define LIST_MAX_BYTES ((size_t)256 << 20)
/* What decoding the items of one list may cost, as estimated by
 * k8s_stream_json_cost(): up to LIST_COST_RATIO x the list's text (real
 * lists: 10-20x) once over LIST_COST_FLOOR, and at most LIST_MAX_COST for
 * one page (each item's JSON is freed as soon as it is decoded into the
 * store's compact form, so a whole list is never held as JSON; the decoded
 * objects are bounded by the store's limits). An item is also bounded on its own: at most
 * LIST_ITEM_FACTOR x max_event_bytes of text (a watch event over
 * max_event_bytes relists, so the list must take a bit more) and
 * K8S_COST_RATIO x its text to decode. */
#define LIST_COST_RATIO 24
#define LIST_COST_FLOOR ((size_t)64 << 20)
#define LIST_MAX_COST ((size_t)1 << 30)
#define LIST_ITEM_FACTOR 4
/* A transfer's write callback that finds the loop busy for this long since
 * its poll returned pauses the transfer until the next turn of the loop, so
 * /health and the rest of the control loop keep answering while a big list
 * is decoded (libcurl hands over up to ~1.6 MB per socket action). */
#define SLICE_MS 20
/* A list response but its items ("metadata", "kind", ...; the continue token
 * is at most CONTINUE_MAX_BYTES). */
#define LIST_SHELL_MAX_BYTES (256 * 1024)
#define ERROR_BODY_MAX_BYTES (64 * 1024)
#define CONTINUE_MAX_BYTES (64 * 1024)
/* Pages of one list: 5,000 pages of 500 is 2.5 million objects, far beyond
 * any cluster; a server that keeps sending "continue" is cut off here. */
#define LIST_MAX_PAGES 5000
/* Every request has an overall deadline and a minimum transfer rate: a list
 * must finish within LIST_DEADLINE_DEFAULT_MS and never stay under
 * LOW_SPEED_BYTES/s for LOW_SPEED_S seconds (a drip); a watch ends at its
 * timeoutSeconds plus WATCH_DEADLINE_MARGIN_S (as client-go sets it). */
#define LIST_DEADLINE_DEFAULT_MS 300000
#define LOW_SPEED_BYTES 1024L
#define LOW_SPEED_S 30L
#define WATCH_DEADLINE_MARGIN_S 30
#define TOKEN_MAX_BYTES (64 * 1024)
#define URL_MAX_BYTES 2048
#define TOKEN_CHECK_MS 10000
#define UNAUTHORIZED_RETRY_MAX_MS 5000
/* Retries wait a random time in [BACKOFF_MIN_MS, cap] ("full jitter"), the
 * cap doubling from BACKOFF_INITIAL_MS to BACKOFF_MAX_MS: clients failing
 * together spread out instead of retrying in lock-step. */
#define BACKOFF_MIN_MS 50
#define BACKOFF_INITIAL_MS 800
#define BACKOFF_MAX_MS 30000
#define BACKOFF_RESET_MS 120000
#define WATCH_TIMEOUT_MIN_S 300
#define WATCH_TIMEOUT_MAX_S 600
#define IDLE_DEFAULT_MS 150000
#define CONNECT_TIMEOUT_MS 10000
#define SHORT_WATCH_MS 1000
#define RETRY_AFTER_MAX_S 60
#define LOG_INTERVAL_MS 10000
#define PUBLISH_MIN_INTERVAL_MS 20 /* see publish() */
/* A watch cut after it delivered resumes after a random [0, spread) ms. */
#define RECONNECT_SPREAD_DEFAULT_MS 1000
/* The bookmark annotation that ends a streaming list's initial events. */
#define INITIAL_EVENTS_END "k8s.io/initial-events-end"

#define STAT_INC(w, f) atomic_fetch_add_explicit(&(w)->stats.f, 1, memory_order_relaxed)
#define STAT_ADD(w, f, n) atomic_fetch_add_explicit(&(w)->stats.f, (n), memory_order_relaxed)

/* The Pods of one node (--autopath): a resource after the store's kinds,
 * with its own decoder and table (k8s_watch_pods.c), not in the store. */
#define RES_PODS ((enum k8s_kind)K8S_KIND_COUNT)
#define RES_MAX K8S_WATCH_RESOURCES

struct res_def {
	enum k8s_kind kind;
	const char *name;     /* for logs */
	const char *path;     /* collection path below the server URL */
	const char *obj_kind; /* "kind" of the objects in watch events */
};

enum phase { PH_IDLE = 0, PH_LIST, PH_WATCH };

/* How the first page of the next list asks for its resourceVersion. */
enum list_mode {
	LIST_ANY = 0,	/* resourceVersion=0: from the watch cache (first list) */
	LIST_NOT_OLDER, /* resourceVersion=<last>&resourceVersionMatch=NotOlderThan */
	LIST_LATEST,	/* no resourceVersion: a consistent read (after a 410) */
};

/* Why we ended a transfer ourselves. */
/* AB_FALLBACK: the server ignored a streaming list (paginated lists from
 * now on); AB_STREAM_RESTART: the streaming list must start over (its
 * initial events over the list bounds or deadline); AB_SCHEDULED: what comes
 * next is already scheduled. */
enum abort_reason {
	AB_NONE = 0,
	AB_RELIST,
	AB_NOMEM,
	AB_TOOBIG,
	AB_COSTLY,
	AB_FALLBACK,
	AB_STREAM_RESTART,
	AB_SCHEDULED,
};

struct sock_ctx {
	uv_poll_t poll;
	curl_socket_t fd;
	int events; /* UV_READABLE/UV_WRITABLE: what curl wants (polled less UV_READABLE while held) */
	struct k8s_watch *w;
	struct sock_ctx *next; /* in k8s_watch.socks while polled */
};

struct buf {
	char *p;
	size_t len, cap;
};

struct res {
	struct k8s_watch *w;
	const struct res_def *def;
	CURL *easy; /* the transfer in flight, or NULL */
	struct curl_slist *hdrs;
	enum phase phase, next; /* next: what retry_timer starts */
	uv_timer_t retry_timer, idle_timer;
	uv_timer_t slice_timer; /* resumes a transfer paused at SLICE_MS */
	bool paused;
	bool resuming; /* inside curl_easy_pause(CONTINUE): never pause again */
	bool discard;  /* a paused transfer being ended: its held data is dropped */
	char rv[K8S_RV_MAX]; /* last resourceVersion seen ("" before the first list) */
	enum list_mode list_mode;
	bool listed;  /* at least one list applied */
	bool watched; /* a watch ran since the last list: the next one is a restart */
	char *cont;   /* continue token of the next page */
	unsigned pages; /* pages of the list in progress */
	unsigned watch_timeout_s; /* timeoutSeconds of the watch in flight */
	/* A streaming list in flight whose initial events have not ended:
	 * ADDED events go to the list in progress (k8s_watch_list_add), the
	 * initial-events-end bookmark commits it and the stream goes on as the
	 * watch. stream_bytes: the text of its initial events so far. */
	bool initial;
	size_t stream_bytes;
	bool interrupted; /* the last watch was cut: the next one is a reconnect */
	bool live; /* the watch in flight delivered an event or bookmark */
	/* The list in progress: its objects decoded as they arrive, apart
	 * from the store until the list is complete (k8s_store.h). */
	struct k8s_store_stage *stage;
	/* The same for the node's Pods (--autopath; at most POD_SET_MAX
	 * of them), which do not go through the store: their JSON. */
	json_t *pods_pending;
	/* The pages kept in the stage so far: their items, text bytes,
	 * estimated decoding cost and rejected objects. A page that fails is
	 * dropped from the stage before its retry. */
	size_t list_items, list_bytes, list_cost, list_rejected;
	size_t page_bytes, page_cost, page_rejected; /* the page in flight */
	struct k8s_stream_list split; /* splits a list page into its items */
	struct buf body; /* an error body */
	bool body_truncated;
	struct k8s_stream stream;
	long http_code;
	bool got_code;
	long retry_after_s; /* -1: none */
	enum abort_reason abort;
	uint64_t start_ms, lines;
	uint64_t backoff_ms, last_fail_ms;
	struct log_limit loglim;
	char errbuf[CURL_ERROR_SIZE];
};

struct k8s_watch {
	uv_loop_t *loop;
	CURLM *multi;
	uv_timer_t curl_timer;
	struct sock_ctx *socks;
	struct res res[RES_MAX];
	int nres; /* K8S_KIND_COUNT, or RES_MAX with pods */
	/* --autopath (nres == RES_MAX): the node's Pods, borrowed */
	struct pod_set *pods;
	char *pod_selector; /* "fieldSelector=spec.nodeName%3D<node>" */
	void (*pods_cb)(void *arg, struct pod_table *t);
	bool pods_dirty;
	struct k8s_store *store;
	struct cluster_publisher *pub;
	k8s_watch_publish_cb cb;
	void *cb_arg;
	struct k8s_watch_stats stats;

	char *server; /* no trailing '/' */
	struct k8s_kubeconfig kc; /* CA / client cert (paths or data), when from a kubeconfig */
	char *ca_file;		  /* from the config, when no kubeconfig */

	char *token_file, *token;
	struct stat tok_st;
	uint64_t tok_checked_ms;
	struct log_limit tok_loglim;

	size_t max_event_bytes;
	uint64_t idle_ms;
	uint64_t list_deadline_ms;
	unsigned watch_timeout_s; /* test hook; 0: random */
	uint64_t reconnect_spread_ms;
	bool watch_list_off; /* refused or ignored once (or never wanted): paginated lists */
	uint64_t rng;
	bool dirty; /* the store changed since the last publish */
	bool trim_after_publish; /* a list was applied: give the publish's garbage back */
	uv_timer_t publish_timer; /* a publish held back by PUBLISH_MIN_INTERVAL_MS */
	bool reads_held; /* between publishes: see k8s_watch_hold_reads() */
	uint64_t last_publish_ms;
	bool closing;
	int open_handles; /* timers still to close before the final free */
	bool curl_global;
};

/* k8s_watch.c: the list/watch state machine, publishing, start and close */
/* The loop's time in ms. */
uint64_t k8s_watch_now_ms(struct k8s_watch *w);

/* Whether @p r may log a warning now (rate-limited per resource). */
bool k8s_watch_may_log(struct res *r);

/* Exponential backoff with full jitter: a random delay up to a cap that
 * doubles from 0.8 s to 30 s, reset after 2 minutes without a failure
 * (client-go's constants). */
uint64_t k8s_watch_backoff(struct res *r);

/* A random number (jitter only). */
uint64_t k8s_watch_rnd(struct k8s_watch *w);

/* The bearer token changed: forget the backoff of every resource and bring
 * a retry that waits for it forward (it may have been failing on the old
 * token). */
void k8s_watch_token_changed(struct k8s_watch *w);

/* A server-supplied string made safe for one log line. */
void k8s_watch_printable(char *dst, size_t cap, const char *src, size_t n);

/* End @p r's phase and start @p next after @p delay_ms. */
void k8s_watch_schedule(struct res *r, enum phase next, uint64_t delay_ms);

/* Forget the list in progress (its pages and continue token). */
void k8s_watch_drop_list(struct res *r);

/* Request the next list page of @p r (the first one per its list_mode), or
 * a streaming list when the server has not refused one. */
void k8s_watch_start_list(struct res *r);

/* Add @p item (its reference is stolen) to the list in progress of @p r.
 * @return 0, or -ENOMEM / -E2BIG: abort the list. */
int k8s_watch_list_add(struct res *r, json_t *item);

/* The list in progress is complete at @p rv: swap it into the store and
 * watch from @p rv (for a streaming list: go on with its stream). May be
 * called with no item added since k8s_watch_drop_list() (an empty list). */
void k8s_watch_commit_list(struct res *r, const char *rv);

/* The server refused or ignored a streaming list: use paginated lists from
 * now on (all resources). */
void k8s_watch_list_fallback(struct res *r, const char *why);

/* Start a watch of @p r from its resourceVersion. */
void k8s_watch_start_watch(struct res *r);

/* Publish what changed, at most once per PUBLISH_MIN_INTERVAL_MS: under a
 * stream of events a snapshot per event costs the control thread (and the
 * CPU it shares with the workers) more than it gains; a change still reaches
 * the workers within the interval. The first snapshot goes out at once. */
void k8s_watch_publish(struct k8s_watch *w);

/* The transfer of @p r ended with @p result: choose what comes next. */
void k8s_watch_transfer_done(struct res *r, CURLcode result);

/* k8s_watch_events.c: response bodies */
/* Free @p b's memory and zero it. */
void k8s_watch_buf_release(struct buf *b);

/* The transfer of @p r was paused by its write callback: resume it on the
 * next turn of the loop. */
void k8s_watch_pause_until_next_turn(struct res *r);

/* curl's write callback: the body of a list page, or watch lines. */
size_t k8s_watch_on_write(char *data, size_t size, size_t nmemb, void *userp);

/* curl's header callback: only restarts the idle watchdog. */
size_t k8s_watch_on_header(char *data, size_t size, size_t nmemb, void *userp);

/* One list page arrived with 200. @return 0 (next page started or list
 * committed) or -EINVAL (malformed). */
int k8s_watch_list_page(struct res *r, char *why, size_t whylen);

/* k8s_watch_pods.c: the Pods of the node (--autopath) */
/* Set up res[RES_PODS] from @p cfg (nothing without cfg->pod_node).
 * @return 0, -EINVAL (err says why) or -ENOMEM. */
int k8s_watch_pods_configure(struct k8s_watch *w, const struct k8s_watch_config *cfg, char *err,
	size_t errlen);

/* One Pod event (DELETED when @p deleted): into the pod set. @return as
 * pod_set_apply(). */
int k8s_watch_pods_apply(struct res *r, bool deleted, const json_t *obj, char *err, size_t errlen);

/* One listed Pod (@p it's reference is stolen) into the list in progress
 * (r->pods_pending). @return 0 or -ENOMEM. */
int k8s_watch_pods_stage(struct res *r, json_t *it);

/* A retried page: take out what its failed attempt added. */
void k8s_watch_pods_page_drop(struct res *r);

/* A complete list of Pods (r->pods_pending): replace the set, then watch. */
void k8s_watch_pods_commit(struct res *r, const char *rv);

/* Hand the workers a new table when the set changed. */
void k8s_watch_pods_publish(struct k8s_watch *w);

/* k8s_watch_auth.c: credentials and TLS */
/* Zero a secret string and free it. NULL is fine. */
void k8s_watch_wipe_str(char *s);

/* Re-read the token file when it changed (checked at most every 10 s) or
 * when @p force (after a 401). The old token stays on any failure. */
void k8s_watch_token_refresh(struct k8s_watch *w, bool force);

/* TLS options of one request: verification, CA, client certificate. */
int k8s_watch_set_tls(struct k8s_watch *w, CURL *e);

/* Write the message to @p err (may be NULL) and return @p rc. */
int k8s_watch_failv(char *err, size_t errlen, int rc, const char *fmt, const char *arg);

/* Server, CA, client certificate and token from @p cfg (and its
 * kubeconfig). @return 0, -EINVAL with @p err set, -ENOMEM. */
int k8s_watch_configure(struct k8s_watch *w, const struct k8s_watch_config *cfg, char *err,
	size_t errlen);

/* k8s_watch_curl.c: transfers on the loop */
/* Stop polling @p c and free it once libuv is done with it. The fd itself
 * belongs to libcurl. */
void k8s_watch_sock_close(struct k8s_watch *w, struct sock_ctx *c);

/* CURLMOPT_SOCKETFUNCTION: poll @p fd for what curl wants. */
int k8s_watch_on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp,
	void *socketp);

/* Stop reading the API sockets until k8s_watch_release_reads() (writing
 * goes on). Called after each publish: what arrives in the next
 * PUBLISH_MIN_INTERVAL_MS could not be published sooner anyway, so it is read
 * in one pass when the interval ends instead of one wake-up, TLS read and
 * curl pass per event (at 100 changes a second about half the control
 * thread's CPU per change was that). */
void k8s_watch_hold_reads(struct k8s_watch *w);

/* Poll the sockets for reading again and read what is waiting on them now. */
void k8s_watch_release_reads(struct k8s_watch *w);

/* CURLMOPT_TIMERFUNCTION: arm the one curl timer. */
int k8s_watch_on_curl_timer(CURLM *multi, long timeout_ms, void *userp);

/* End the transfer of @p r, if any: never call from a curl callback. */
void k8s_watch_finish_transfer(struct res *r);

/* Start a GET of @p query on the resource's collection. */
int k8s_watch_start_request(struct res *r, const char *query);

/* No byte for idle_ms: the connection is presumed dead (libcurl does not
 * notice a silent peer on its own). Not a curl callback, so the transfer may
 * be removed here. */
void k8s_watch_on_idle(uv_timer_t *t);

#endif
