/* src/node/subprocess.c - run one short command with stdin fed, output captured, and a deadline.
 *
 * Each run has its own libuv loop: the process, up to three pipes and a
 * timer. The loop ends when every handle is closed: stdout and stderr at
 * their EOF, the process at its exit, all of them at the deadline or when
 * stdout goes over its bound (the command is killed then).
 */
#include "nodedns/node/subprocess.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#define OUT_CHUNK_BYTES 65536u
#define ERR_CHUNK_BYTES 4096u

struct run {
	uv_loop_t loop;
	uv_process_t proc;
	uv_pipe_t in, out, err;
	uv_timer_t timer;
	uv_write_t wreq;
	struct subprocess_result *res;
	size_t max_out, outcap, errlen;
	bool in_open, out_open, err_open, timer_open, proc_open, exited;
	int rc;
	int64_t exit_status;
	int term_signal;
	char errbuf[ERR_CHUNK_BYTES];
};

static void on_closed(uv_handle_t *h)
{
	(void)h;
}

static void close_one(uv_handle_t *h, bool *open)
{
	if (!*open)
		return;
	*open = false;
	uv_close(h, on_closed);
}

/* Stop everything: kill the command if it still runs, close every pipe and
 * the timer. The process handle closes at its exit. */
static void run_abort(struct run *r, int rc)
{
	if (r->rc == 0)
		r->rc = rc;
	if (!r->exited)
		uv_process_kill(&r->proc, SIGKILL);
	close_one((uv_handle_t *)&r->in, &r->in_open);
	close_one((uv_handle_t *)&r->out, &r->out_open);
	close_one((uv_handle_t *)&r->err, &r->err_open);
	close_one((uv_handle_t *)&r->timer, &r->timer_open);
}

/* Done once the command exited and both outputs reached their EOF. */
static void maybe_done(struct run *r)
{
	if (!r->exited || r->out_open || r->err_open)
		return;
	close_one((uv_handle_t *)&r->in, &r->in_open);
	close_one((uv_handle_t *)&r->timer, &r->timer_open);
}

static void on_exit_cb(uv_process_t *p, int64_t exit_status, int term_signal)
{
	struct run *r = p->data;
	r->exited = true;
	r->exit_status = exit_status;
	r->term_signal = term_signal;
	close_one((uv_handle_t *)p, &r->proc_open);
	maybe_done(r);
}

static void on_timeout(uv_timer_t *t)
{
	run_abort(t->data, -ETIMEDOUT);
}

/* EPIPE (it stopped reading) included: its status tells. */
static void on_written(uv_write_t *w, int status)
{
	struct run *r = w->data;
	(void)status;
	close_one((uv_handle_t *)&r->in, &r->in_open);
}

static void out_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct run *r = h->data;
	struct subprocess_result *res = r->res;
	(void)hint;
	if (res->outlen + OUT_CHUNK_BYTES + 1 > r->outcap) {
		size_t ncap = r->outcap ? r->outcap * 2 : OUT_CHUNK_BYTES * 2;
		char *nb = realloc(res->out, ncap);
		if (!nb) {
			*buf = uv_buf_init(NULL, 0); /* read_cb gets UV_ENOBUFS */
			return;
		}
		res->out = nb;
		r->outcap = ncap;
	}
	*buf = uv_buf_init(res->out + res->outlen, (unsigned)(r->outcap - res->outlen - 1));
}

static void out_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
	struct run *r = st->data;
	(void)buf;
	if (n == UV_ENOBUFS) {
		run_abort(r, -ENOMEM);
	} else if (n > 0) {
		r->res->outlen += (size_t)n;
		if (r->res->outlen > r->max_out)
			run_abort(r, -EFBIG);
	} else if (n < 0) {
		close_one((uv_handle_t *)&r->out, &r->out_open);
		maybe_done(r);
	}
}

static void err_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct run *r = h->data;
	(void)hint;
	*buf = uv_buf_init(r->errbuf, sizeof(r->errbuf));
}

/* Keep what fits in res->err, read and drop the rest. */
static void err_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
	struct run *r = st->data;
	if (n > 0) {
		size_t room = sizeof(r->res->err) - 1 - r->errlen;
		size_t k = (size_t)n < room ? (size_t)n : room;
		memcpy(r->res->err + r->errlen, buf->base, k);
		r->errlen += k;
	} else if (n < 0) {
		close_one((uv_handle_t *)&r->err, &r->err_open);
		maybe_done(r);
	}
}

static void run_init(struct run *r, struct subprocess_result *res, size_t max_out)
{
	r->res = res;
	r->max_out = max_out;
	uv_pipe_init(&r->loop, &r->in, 0);
	uv_pipe_init(&r->loop, &r->out, 0);
	uv_pipe_init(&r->loop, &r->err, 0);
	uv_timer_init(&r->loop, &r->timer);
	r->in.data = r->out.data = r->err.data = r->timer.data = r->proc.data = r->wreq.data = r;
	r->in_open = r->out_open = r->err_open = r->timer_open = true;
}

/* Start the command with its pipes. @return 0 or a negative errno. */
static int run_start(struct run *r, const char *path, char *const argv[], bool feed)
{
	uv_stdio_container_t stdio[3];
	memset(stdio, 0, sizeof(stdio));
	/* UV_IGNORE is /dev/null for fds 0-2: EOF on stdin, output dropped. */
	stdio[0].flags = feed ? UV_CREATE_PIPE | UV_READABLE_PIPE : UV_IGNORE;
	stdio[0].data.stream = (uv_stream_t *)&r->in;
	stdio[1].flags = r->max_out ? UV_CREATE_PIPE | UV_WRITABLE_PIPE : UV_IGNORE;
	stdio[1].data.stream = (uv_stream_t *)&r->out;
	stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
	stdio[2].data.stream = (uv_stream_t *)&r->err;
	uv_process_options_t o;
	memset(&o, 0, sizeof(o));
	o.exit_cb = on_exit_cb;
	o.file = path;
	o.args = (char **)argv;
	o.stdio_count = 3;
	o.stdio = stdio;
	r->proc_open = true; /* closed even when the spawn fails */
	int rc = uv_spawn(&r->loop, &r->proc, &o);
	if (rc < 0) {
		r->exited = true;
		close_one((uv_handle_t *)&r->proc, &r->proc_open);
		return rc;
	}
	if (!feed)
		close_one((uv_handle_t *)&r->in, &r->in_open);
	if (!r->max_out)
		close_one((uv_handle_t *)&r->out, &r->out_open);
	if (r->out_open)
		uv_read_start((uv_stream_t *)&r->out, out_alloc, out_read);
	uv_read_start((uv_stream_t *)&r->err, err_alloc, err_read);
	return 0;
}

/* The stderr text as one log line: no trailing newline, others as spaces. */
static void tidy_err(struct subprocess_result *res, size_t errlen)
{
	res->err[errlen] = '\0';
	while (errlen > 0 && (res->err[errlen - 1] == '\n' || res->err[errlen - 1] == '\r'))
		res->err[--errlen] = '\0';
	for (size_t i = 0; i < errlen; i++)
		if (res->err[i] == '\n')
			res->err[i] = ' ';
}

int subprocess_run(const char *path, char *const argv[], const char *in, size_t inlen,
		   size_t max_out, uint32_t timeout_ms, struct subprocess_result *res)
{
	memset(res, 0, sizeof(*res));
	res->status = -1;
	struct run *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	int rc = uv_loop_init(&r->loop);
	if (rc < 0) {
		free(r);
		return rc;
	}
	bool feed = in && inlen > 0;
	run_init(r, res, max_out);
	rc = run_start(r, path, argv, feed);
	if (rc == 0) {
		uv_timer_start(&r->timer, on_timeout, timeout_ms, 0);
		uv_buf_t b = uv_buf_init((char *)in, (unsigned)inlen);
		if (feed && uv_write(&r->wreq, (uv_stream_t *)&r->in, &b, 1, on_written) < 0)
			close_one((uv_handle_t *)&r->in, &r->in_open);
	} else {
		run_abort(r, rc);
	}
	uv_run(&r->loop, UV_RUN_DEFAULT);
	rc = r->rc;
	if (rc == 0)
		res->status = r->term_signal ? 128 + r->term_signal : (int)r->exit_status;
	tidy_err(res, r->errlen);
	uv_loop_close(&r->loop);
	free(r);
	if (res->out)
		res->out[res->outlen] = '\0';
	if (max_out && !res->out && rc == 0) {
		res->out = calloc(1, 1);
		if (!res->out)
			rc = -ENOMEM;
	}
	return rc;
}

void subprocess_result_free(struct subprocess_result *res)
{
	free(res->out);
	res->out = NULL;
}
