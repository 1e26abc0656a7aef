/* src/cluster/k8s_stream.c - split a watch stream into lines and decode watch events. */
#include "nodedns/cluster/k8s_stream.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A carried-over buffer bigger than this is freed once it is empty again, so
 * one large event does not pin max_line_bytes per stream for good. */
#define STREAM_KEEP_BYTES (64 * 1024)

void k8s_stream_init(struct k8s_stream *s, size_t max_line_bytes)
{
	memset(s, 0, sizeof(*s));
	if (max_line_bytes < 1)
		max_line_bytes = 1;
	if (max_line_bytes > SIZE_MAX / 4)
		max_line_bytes = SIZE_MAX / 4;
	s->max_line_bytes = max_line_bytes;
}

void k8s_stream_deinit(struct k8s_stream *s)
{
	free(s->buf);
	s->buf = NULL;
	s->len = s->cap = 0;
	s->skipping = false;
}

void k8s_stream_reset(struct k8s_stream *s)
{
	s->len = 0;
	s->skipping = false;
	if (s->cap > STREAM_KEEP_BYTES) {
		free(s->buf);
		s->buf = NULL;
		s->cap = 0;
	}
}

/* Append to the carried-over buffer; the caller has checked the bound
 * (len + n <= max_line_bytes + 1). */
static int append(struct k8s_stream *s, const char *p, size_t n)
{
	if (n == 0)
		return 0;
	if (s->len + n > s->cap) {
		size_t limit = s->max_line_bytes + 1;
		size_t ncap = s->cap ? s->cap : 256;
		while (ncap < s->len + n)
			ncap = ncap > limit / 2 ? limit : ncap * 2;
		if (ncap > limit)
			ncap = limit;
		char *nb = realloc(s->buf, ncap);
		if (!nb)
			return -ENOMEM;
		s->buf = nb;
		s->cap = ncap;
	}
	memcpy(s->buf + s->len, p, n);
	s->len += n;
	return 0;
}

/* Enter skipping mode for an over-long partial line. */
static void start_skipping(struct k8s_stream *s)
{
	s->oversized++;
	s->skipping = true;
	s->len = 0;
}

int k8s_stream_feed(struct k8s_stream *s, const char *data, size_t len,
		    k8s_stream_line_cb cb, void *arg)
{
	const char *p = data, *end = data ? data + len : data;
	/* A line may be max_line_bytes plus one '\r' before its '\n'. */
	size_t room = s->max_line_bytes + 1;
	int rc = 0;

	while (p && p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		if (s->skipping) {
			if (!nl)
				break;
			s->skipping = false;
			p = nl + 1;
			continue;
		}
		if (!nl) {
			size_t rest = (size_t)(end - p);
			if (rest > room - s->len) {
				start_skipping(s);
			} else if (append(s, p, rest) < 0) {
				s->skipping = true;
				s->len = 0;
				rc = -ENOMEM;
			}
			break;
		}
		size_t seg = (size_t)(nl - p);
		const char *line;
		size_t llen;
		if (s->len == 0) {
			line = p;
			llen = seg;
		} else if (seg > room - s->len) {
			line = NULL; /* complete but too long */
			llen = room + 1;
		} else {
			if (append(s, p, seg) < 0) {
				/* Cannot assemble this line: drop it like an oversized one. */
				s->len = 0;
				p = nl + 1;
				rc = -ENOMEM;
				continue;
			}
			line = s->buf;
			llen = s->len;
		}
		p = nl + 1;
		if (line && llen > 0 && line[llen - 1] == '\r')
			llen--;
		if (llen > s->max_line_bytes) {
			s->oversized++;
		} else if (llen > 0) {
			s->lines++;
			int r = cb(arg, line, llen);
			if (r != 0) {
				s->len = 0;
				rc = r;
				break;
			}
		}
		s->len = 0;
	}
	if (s->len == 0 && s->cap > STREAM_KEEP_BYTES) {
		free(s->buf);
		s->buf = NULL;
		s->cap = 0;
	}
	return rc;
}

/* ------------------------------------------------------------- decoding */

static const char *const type_names[] = {
	[K8S_EV_ADDED] = "ADDED",	[K8S_EV_MODIFIED] = "MODIFIED",
	[K8S_EV_DELETED] = "DELETED",	[K8S_EV_BOOKMARK] = "BOOKMARK",
	[K8S_EV_ERROR] = "ERROR",
};

const char *k8s_ev_type_name(enum k8s_ev_type t)
{
	if ((unsigned)t < sizeof(type_names) / sizeof(type_names[0]))
		return type_names[t];
	return "?";
}

bool k8s_rv_valid(const char *rv)
{
	size_t n = 0;
	for (const char *c = rv; *c; c++, n++) {
		if (n >= K8S_RV_MAX - 1)
			return false;
		if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'z') ||
		      (*c >= 'A' && *c <= 'Z') || *c == '.' || *c == '_' || *c == '~' ||
		      *c == '-'))
			return false;
	}
	return n > 0;
}

void k8s_stream_event_clear(struct k8s_stream_event *ev)
{
	json_decref(ev->root);
	memset(ev, 0, sizeof(*ev));
}

bool k8s_stream_event_is_expired(const struct k8s_stream_event *ev)
{
	return ev->type == K8S_EV_ERROR &&
	       (ev->code == 410 || strcmp(ev->reason, "Expired") == 0 ||
		strcmp(ev->reason, "Gone") == 0);
}

static int fail(struct k8s_stream_event *ev, char *err, size_t errlen, const char *why)
{
	k8s_stream_event_clear(ev);
	if (err && errlen)
		snprintf(err, errlen, "%s", why);
	return -EINVAL;
}

/* Copy a server string for logs: bounded, printable ASCII only. */
static void copy_printable(char *dst, size_t cap, const char *src)
{
	size_t i = 0;
	for (; src[i] && i + 1 < cap; i++) {
		unsigned char c = (unsigned char)src[i];
		dst[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	dst[i] = '\0';
}

int k8s_stream_decode(const char *line, size_t len, struct k8s_stream_event *ev,
		      char *err, size_t errlen)
{
	json_error_t jerr;

	memset(ev, 0, sizeof(*ev));
	if (err && errlen)
		err[0] = '\0';
	ev->root = json_loadb(line, len, 0, &jerr);
	if (!ev->root) {
		if (json_error_code(&jerr) == json_error_out_of_memory) {
			k8s_stream_event_clear(ev);
			return -ENOMEM;
		}
		if (err && errlen) {
			char text[JSON_ERROR_TEXT_LENGTH + 1];
			copy_printable(text, sizeof(text), jerr.text);
			snprintf(err, errlen, "bad JSON at byte %d: %s", jerr.position, text);
		}
		return -EINVAL;
	}
	if (!json_is_object(ev->root))
		return fail(ev, err, errlen, "event is not a JSON object");

	const char *type = json_string_value(json_object_get(ev->root, "type"));
	if (!type)
		return fail(ev, err, errlen, "event has no string \"type\"");
	size_t t;
	for (t = 0; t < sizeof(type_names) / sizeof(type_names[0]); t++)
		if (strcmp(type, type_names[t]) == 0)
			break;
	if (t == sizeof(type_names) / sizeof(type_names[0]))
		return fail(ev, err, errlen, "unknown event type");
	ev->type = (enum k8s_ev_type)t;

	const json_t *obj = json_object_get(ev->root, "object");
	if (!json_is_object(obj))
		return fail(ev, err, errlen, "event has no \"object\" object");
	ev->object = obj;

	if (ev->type == K8S_EV_ERROR) {
		const json_t *code = json_object_get(obj, "code");
		if (json_is_integer(code) && json_integer_value(code) >= 0 &&
		    json_integer_value(code) <= 999)
			ev->code = (int)json_integer_value(code);
		const char *reason = json_string_value(json_object_get(obj, "reason"));
		if (reason)
			copy_printable(ev->reason, sizeof(ev->reason), reason);
		return 0;
	}

	const json_t *meta = json_object_get(obj, "metadata");
	if (meta && !json_is_object(meta))
		return fail(ev, err, errlen, "object.metadata is not an object");
	const json_t *rvj = meta ? json_object_get(meta, "resourceVersion") : NULL;
	if (rvj) {
		const char *rv = json_string_value(rvj);
		if (!rv || !k8s_rv_valid(rv))
			return fail(ev, err, errlen, "invalid metadata.resourceVersion");
		memcpy(ev->rv, rv, strlen(rv) + 1);
	} else if (ev->type == K8S_EV_BOOKMARK) {
		return fail(ev, err, errlen, "BOOKMARK without metadata.resourceVersion");
	}
	return 0;
}
