/* include/nodedns/cluster/k8s_stream.h - framing and decoding of a Kubernetes watch stream.
 *
 * Pure (no libuv, no curl): k8s_watch feeds it the bytes libcurl hands over,
 * in pieces split anywhere (mid-line, mid-UTF-8), and gets back complete
 * lines, one watch event each ({"type":"ADDED","object":{...}}\n, as the API
 * server's JSON encoder writes them). k8s_stream_decode() turns one line into
 * a typed event. Everything here treats its input as untrusted.
 *
 * Glossary:
 *  - line: the bytes before a '\n', without the '\n' and without one trailing
 *    '\r' (CRLF is accepted). Empty lines are skipped silently.
 *  - oversized line: more than max_line_bytes bytes before its '\n'. It is
 *    dropped whole (the bytes up to and including the next '\n' are discarded)
 *    and counted; the lines after it are delivered normally.
 *  - resourceVersion (RV): an opaque string from the server. We accept at most
 *    K8S_RV_MAX - 1 bytes of [0-9A-Za-z._~-] (the URL-unreserved characters;
 *    real servers send decimal digits), since it goes back into a URL.
 */
#ifndef NODEDNS_K8S_STREAM_H
#define NODEDNS_K8S_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct json_t;

#define K8S_RV_MAX 64	   /* bytes of a resourceVersion, NUL included */
#define K8S_REASON_MAX 64  /* bytes of a Status reason, NUL included (truncated) */

/* -------------------------------------------------------------- framing */

/** Line splitter state. Embed it; all fields are private except the counters. */
struct k8s_stream {
	char *buf;	      /* the partial line carried over between feeds */
	size_t len, cap;
	size_t max_line_bytes;
	bool skipping;	      /* inside an oversized line: drop up to the next '\n' */
	uint64_t lines;	      /* non-empty lines delivered */
	uint64_t oversized;   /* oversized lines dropped */
};

/**
 * Called once per complete non-empty line. @p line (borrowed for the call, not
 * NUL-terminated) has @p len bytes, 1 <= len <= max_line_bytes. Return 0 to
 * go on; any other value stops k8s_stream_feed(), which returns it (the bytes
 * after that line are then dropped: the caller is expected to end the stream).
 */
typedef int (*k8s_stream_line_cb)(void *arg, const char *line, size_t len);

/** Prepare @p s for lines of at most @p max_line_bytes (>= 1) bytes. No allocation. */
void k8s_stream_init(struct k8s_stream *s, size_t max_line_bytes);

/** Free the carried-over buffer. @p s may be fed again after k8s_stream_init(). */
void k8s_stream_deinit(struct k8s_stream *s);

/** Forget any partial line (a new response starts); counters are kept. */
void k8s_stream_reset(struct k8s_stream *s);

/**
 * Consume @p len bytes of @p data (borrowed; may be NULL when len is 0) and
 * call @p cb for every line they complete. Memory held between calls is
 * bounded by max_line_bytes. @return 0; -ENOMEM when the partial line cannot
 * be kept (the stream is then in skipping mode, as for an oversized line);
 * or the first non-zero value returned by @p cb.
 */
int k8s_stream_feed(struct k8s_stream *s, const char *data, size_t len,
		    k8s_stream_line_cb cb, void *arg);

/* -------------------------------------------------------- decoding cost */

/* What decoding JSON costs is not its size: jansson spends ~224 bytes on an
 * object, ~136 on an array, ~80 on a string or a member, ~42 on a number, so
 * "{}," is 3 bytes of text and ~240 of tree. k8s_stream_json_cost() adds such
 * amounts to the text's bytes; it puts real Kubernetes objects at 10-20x
 * their text (measured: a Service as the API server writes it 10.5x, a
 * minimal one 15x), "{}," at 81x, "[]," at 52x. Anything above
 * K8S_COST_RATIO x its text (and above K8S_COST_FLOOR, so small texts always
 * pass) is refused before it is decoded. */
#define K8S_COST_RATIO 32
#define K8S_COST_FLOOR ((size_t)64 << 10)

/** Estimated bytes jansson allocates to decode @p len bytes of @p text. */
size_t k8s_stream_json_cost(const char *text, size_t len);

/** True when @p cost for @p len bytes of text is within the bound above. */
bool k8s_stream_cost_ok(size_t cost, size_t len);

/* ------------------------------------------------------- list splitting */

/**
 * A list response ({"metadata":{...},"items":[{...},...]}) split as it
 * arrives: each element of the top-level "items" array is handed over as its
 * own JSON text, and everything else (the "shell", with "items":[] left in
 * it) is kept for decoding at the end. So a list never sits in memory whole,
 * each item is decoded on its own (bounded in bytes and in decoding cost),
 * and the work is spread over the transfer's callbacks.
 * Owned by the caller; the buffers inside are owned by the splitter.
 */
struct k8s_split_buf {
	char *p;
	size_t len, cap;
};

struct k8s_stream_list {
	size_t max_item_bytes, max_shell_bytes;
	struct k8s_split_buf item, shell;
	size_t item_cost;
	char prev;	 /* for the cost of numbers (k8s_stream.c) */
	size_t depth;	 /* container nesting of the byte being read */
	bool in_str, esc;
	bool key_next;	 /* depth 1: the next string is a key */
	bool key_on;	 /* reading a depth-1 key */
	unsigned key_len; /* bytes of it that match "items" so far (99: no match) */
	bool key_items;	 /* the last depth-1 key read was "items" */
	bool want_items; /* after "items": a '[' opens the items */
	bool in_items;	 /* inside the items array */
	bool in_item;	 /* an element of it has started */
	bool item_skip;	 /* that element is over max_item_bytes: skipped */
	uint64_t items;	    /* elements handed over */
	uint64_t oversized; /* elements dropped: over max_item_bytes or the cost bound */
};

/**
 * Called once per element of "items": @p text (borrowed for the call, not
 * NUL-terminated, @p len bytes, at most max_item_bytes) is the element's JSON
 * (any JSON value: the caller checks it is an object), @p cost its
 * k8s_stream_json_cost(), already within k8s_stream_cost_ok(). Return 0 to go
 * on; any other value stops k8s_stream_list_feed(), which returns it.
 */
typedef int (*k8s_stream_item_cb)(void *arg, const char *text, size_t len, size_t cost);

/** Prepare @p s. No allocation. */
void k8s_stream_list_init(struct k8s_stream_list *s, size_t max_item_bytes, size_t max_shell_bytes);

/** A new response starts: forget the state (keeps small buffers; counters too). */
void k8s_stream_list_reset(struct k8s_stream_list *s);

/** Free the buffers. */
void k8s_stream_list_deinit(struct k8s_stream_list *s);

/**
 * Consume @p len bytes of a response body (borrowed, split anywhere).
 * @return 0; -E2BIG when the shell outgrows max_shell_bytes; -ENOMEM; or
 * the first non-zero value of @p cb.
 */
int k8s_stream_list_feed(struct k8s_stream_list *s, const char *data, size_t len,
			k8s_stream_item_cb cb, void *arg);

/** The shell so far (borrowed; not NUL-terminated; NULL when empty). */
const char *k8s_stream_list_shell(const struct k8s_stream_list *s, size_t *len);

/* ------------------------------------------------------------- decoding */

enum k8s_ev_type {
	K8S_EV_ADDED = 0,
	K8S_EV_MODIFIED,
	K8S_EV_DELETED,
	K8S_EV_BOOKMARK,
	K8S_EV_ERROR,
};

/** One decoded watch event. Owned by caller, release with k8s_stream_event_clear(). */
struct k8s_stream_event {
	enum k8s_ev_type type;
	struct json_t *root;	      /* the whole decoded line (one reference) */
	const struct json_t *object;  /* borrowed from root: the "object" member */
	char rv[K8S_RV_MAX];	      /* object's metadata.resourceVersion; "" if absent */
	/* ERROR only: the Status object's "code" (0 when absent or not an
	 * integer in [0, 999]) and "reason" ("" when absent or not a string). */
	int code;
	char reason[K8S_REASON_MAX];
};

/**
 * Decode one line. Rules (anything else is -EINVAL, with a reason in @p err,
 * which may be NULL):
 *  - the line is one JSON object with a string "type" among ADDED, MODIFIED,
 *    DELETED, BOOKMARK, ERROR and an "object" that is a JSON object;
 *  - ADDED/MODIFIED/DELETED: "object.metadata", when present, is an object;
 *    "metadata.resourceVersion", when present, is a valid RV (see above);
 *  - BOOKMARK: "object.metadata.resourceVersion" is present and valid;
 *  - ERROR: the object is taken as a Status; its fields are read leniently
 *    (wrong types become 0 / ""), since an ERROR ends the stream anyway.
 * On success @p ev holds a reference to the decoded tree. On failure @p ev is
 * cleared (safe to pass to k8s_stream_event_clear()). A line whose decoding
 * cost is over the bound of k8s_stream_cost_ok() is not decoded: -E2BIG.
 * @return 0, -EINVAL, -E2BIG or -ENOMEM.
 */
int k8s_stream_decode(const char *line, size_t len, struct k8s_stream_event *ev,
		      char *err, size_t errlen);

/** Drop the reference held by @p ev and zero it. Safe on a cleared event. */
void k8s_stream_event_clear(struct k8s_stream_event *ev);

/** True when an ERROR event means "your resourceVersion is too old": code
 * 410, or reason "Expired" or "Gone" (pre-1.18 servers). */
bool k8s_stream_event_is_expired(const struct k8s_stream_event *ev);

/** "ADDED", "MODIFIED", ... for logs. */
const char *k8s_ev_type_name(enum k8s_ev_type t);

/** True when @p rv (NUL-terminated) is a valid resourceVersion by the rules above. */
bool k8s_rv_valid(const char *rv);

#endif
