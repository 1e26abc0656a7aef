/* src/node/supervisor.c - the supervisor: owner of the node setup, restarter of the resolver.
 *
 * One libuv loop in the main thread: signals, the resolver process, its
 * ready pipe, and four timers (re-ensure, restart backoff, ready deadline,
 * stop deadline). Node setup passes run one at a time on the libuv thread
 * pool; a request that comes while one runs is coalesced into one more pass.
 * The final teardown runs after the loop has ended, when nothing else runs.
 */
#include "nodedns/node/supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "nodedns/node/instance_lock.h"
#include "nodedns/util/log.h"

extern char **environ;

#define TAG "supervisor"

/* The signals the supervisor handles, in the order of struct sup's sigs. */
static const int SIGNALS[] = { SIGTERM, SIGINT, SIGHUP };
#define NSIGNALS (sizeof(SIGNALS) / sizeof(SIGNALS[0]))

enum job { JOB_ENSURE, JOB_REMOVE_RULES };

/* One resolver process: its handle and its ready pipe. Freed once libuv
 * has closed both, which may be after the next one started. */
struct child {
	struct sup *s;
	uv_process_t proc;
	uv_pipe_t pipe;
	int handles; /* open or closing */
	bool pipe_open;
	pid_t pid;
	char buf[16]; /* what the ready pipe carries is not used */
};

struct sup {
	const struct supervisor_config *sc;
	char **argv;
	char **env;
	uv_loop_t loop;
	uv_signal_t sigs[NSIGNALS];
	size_t nsigs; /* initialised, so closed at the end */
	uv_timer_t reensure, restart, ready_timer, kill_timer;
	struct child *child; /* the running resolver, NULL when none */
	uv_work_t work;
	bool handles_closed;
	bool work_busy, work_pending;
	enum job job;
	bool job_rules;
	int job_rc;

	struct netsetup *ns;
	struct supervisor_shared *shared;
	int memfd, lock_fd;

	bool stopping, child_ready, ever_ready, rules_down;
	int exit_code;
	uint64_t started_ms, ready_ms;
	uint64_t crash_ms[SUPERVISOR_CRASH_LIMIT];
	size_t ncrash;
	unsigned backoff_exp;
	int orig_oom;
	bool have_orig_oom;
	char own_env[4][64];
	const char *exe; /* /proc/self/exe: this very binary, even if replaced on disk */
};

static void request_sync(struct sup *s);
static void spawn_child(struct sup *s);

/* ----------------------------------------------------------- config */

static int env_u32(const char *name, uint32_t lo, uint32_t hi, uint32_t *out, char *err, size_t errlen)
{
	const char *v = getenv(name);
	if (!v || !*v)
		return 0;
	char *end;
	errno = 0;
	unsigned long n = strtoul(v, &end, 10);
	if (errno || *end || n < lo || n > hi) {
		snprintf(err, errlen, "%s: must be an integer from %u to %u (got '%s')", name, lo, hi, v);
		return -EINVAL;
	}
	*out = (uint32_t)n;
	return 0;
}

int supervisor_config_init(struct supervisor_config *sc, char *err, size_t errlen)
{
	memset(sc, 0, sizeof(*sc));
	snprintf(sc->run_dir, sizeof(sc->run_dir), "%s", SUPERVISOR_RUN_DIR);
	sc->reensure_ms = SUPERVISOR_REENSURE_MS;
	sc->stop_timeout_ms = SUPERVISOR_STOP_TIMEOUT_MS;
	sc->ready_timeout_ms = SUPERVISOR_READY_TIMEOUT_MS;
	const char *d = getenv("NODEDNS_RUN_DIR");
	if (d && *d) {
		if (d[0] != '/' || strlen(d) >= sizeof(sc->run_dir) - 32) {
			snprintf(err, errlen, "NODEDNS_RUN_DIR: must be an absolute path under %zu bytes (got '%s')",
				 sizeof(sc->run_dir) - 32, d);
			return -EINVAL;
		}
		snprintf(sc->run_dir, sizeof(sc->run_dir), "%s", d);
	}
	if (env_u32("NODEDNS_REENSURE_MS", 100, 3600000, &sc->reensure_ms, err, errlen) < 0)
		return -EINVAL;
	const char *b = getenv("NODEDNS_IPTABLES_BACKEND");
	if (b && *b && strcmp(b, "auto") != 0) {
		if (strcmp(b, "plain") == 0)
			sc->net.backend = NETSETUP_BACKEND_PLAIN;
		else if (strcmp(b, "legacy") == 0)
			sc->net.backend = NETSETUP_BACKEND_LEGACY;
		else if (strcmp(b, "nft") == 0)
			sc->net.backend = NETSETUP_BACKEND_NFT;
		else {
			snprintf(err, errlen, "NODEDNS_IPTABLES_BACKEND: must be auto, plain, legacy or nft (got '%s')", b);
			return -EINVAL;
		}
	}
	return 0;
}

/* ----------------------------------------------------- process setup */

static int read_oom(int *out)
{
	FILE *f = fopen("/proc/self/oom_score_adj", "re");
	if (!f)
		return -errno;
	int ok = fscanf(f, "%d", out) == 1;
	fclose(f);
	return ok ? 0 : -EINVAL;
}

static int make_shared(struct sup *s)
{
	s->memfd = memfd_create("nodedns-supervisor", MFD_CLOEXEC);
	if (s->memfd >= 0 && ftruncate(s->memfd, sizeof(struct supervisor_shared)) == 0) {
		void *p = mmap(NULL, sizeof(struct supervisor_shared), PROT_READ | PROT_WRITE, MAP_SHARED,
			       s->memfd, 0);
		if (p != MAP_FAILED) {
			s->shared = p;
			s->shared->magic = SUPERVISOR_SHARED_MAGIC;
			s->shared->size = sizeof(struct supervisor_shared);
			return 0;
		}
	}
	log_warn(TAG, "shared counters: %s (the resolver's /metrics will lack the node setup series)",
		 strerror(errno));
	if (s->memfd >= 0)
		close(s->memfd);
	s->memfd = -1;
	s->shared = calloc(1, sizeof(*s->shared));
	return s->shared ? 0 : -ENOMEM;
}

static void free_shared(struct sup *s)
{
	if (!s->shared)
		return;
	if (s->memfd >= 0) {
		munmap(s->shared, sizeof(*s->shared));
		close(s->memfd);
	} else {
		free(s->shared);
	}
	s->shared = NULL;
}

/* environ without our variables, plus ours (kept in s->own_env). */
static char **child_env(struct sup *s)
{
	size_t n = 0;
	while (environ[n])
		n++;
	char **env = calloc(n + 5, sizeof(*env));
	if (!env)
		return NULL;
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		const char *e = environ[i];
		if (strncmp(e, SUPERVISOR_ENV_SUPERVISED "=", sizeof(SUPERVISOR_ENV_SUPERVISED)) == 0 ||
		    strncmp(e, SUPERVISOR_ENV_PID "=", sizeof(SUPERVISOR_ENV_PID)) == 0 ||
		    strncmp(e, SUPERVISOR_ENV_OOM "=", sizeof(SUPERVISOR_ENV_OOM)) == 0 ||
		    strncmp(e, SUPERVISOR_LISTEN_FDS_ENV "=", sizeof(SUPERVISOR_LISTEN_FDS_ENV)) == 0)
			continue;
		env[k++] = (char *)e;
	}
	snprintf(s->own_env[0], sizeof(s->own_env[0]), SUPERVISOR_ENV_SUPERVISED "=1");
	snprintf(s->own_env[1], sizeof(s->own_env[1]), SUPERVISOR_ENV_PID "=%ld", (long)getpid());
	env[k++] = s->own_env[0];
	env[k++] = s->own_env[1];
	if (s->have_orig_oom) {
		snprintf(s->own_env[2], sizeof(s->own_env[2]), SUPERVISOR_ENV_OOM "=%d", s->orig_oom);
		env[k++] = s->own_env[2];
	}
	if (s->sc->nlisten_fds) {
		snprintf(s->own_env[3], sizeof(s->own_env[3]), SUPERVISOR_LISTEN_FDS_ENV "=%zu",
			 s->sc->nlisten_fds);
		env[k++] = s->own_env[3];
	}
	return env;
}

/* --------------------------------------------------- node setup jobs */

static void work_cb(uv_work_t *w)
{
	struct sup *s = w->data;
	if (s->job == JOB_REMOVE_RULES) {
		int rc = netsetup_remove_rules(s->ns);
		int r = netsetup_ensure(s->ns, false);
		s->job_rc = rc < 0 ? rc : r;
	} else {
		s->job_rc = netsetup_ensure(s->ns, s->job_rules);
	}
}

static void after_work_cb(uv_work_t *w, int status)
{
	struct sup *s = w->data;
	(void)status;
	s->work_busy = false;
	if (s->work_pending && !s->stopping) {
		s->work_pending = false;
		request_sync(s);
	}
}

/* Bring the node to what the resolver's state asks for: the interface
 * always; the rules while a resolver serves; no rules while none can
 * (unless another instance serves on the same addresses). */
static void request_sync(struct sup *s)
{
	if (s->stopping)
		return;
	if (s->work_busy) {
		s->work_pending = true;
		return;
	}
	s->job = JOB_ENSURE;
	s->job_rules = s->sc->net.iptables && s->child_ready;
	if (s->rules_down && s->sc->net.iptables) {
		if (instance_lock_other_alive(s->lock_fd))
			log_info(TAG, "another nodedns instance is alive: leaving the rules in place");
		else
			s->job = JOB_REMOVE_RULES;
	}
	s->work.data = s;
	int rc = uv_queue_work(&s->loop, &s->work, work_cb, after_work_cb);
	if (rc < 0) {
		log_error(TAG, "node setup: %s", uv_strerror(rc));
		return;
	}
	s->work_busy = true;
}

static void on_reensure(uv_timer_t *t)
{
	request_sync(t->data);
}

/* -------------------------------------------------------- lifecycle */

static void on_closed(uv_handle_t *h)
{
	(void)h;
}

static void on_child_handle_closed(uv_handle_t *h)
{
	struct child *c = h->data;
	if (--c->handles == 0)
		free(c);
}

static void child_close_pipe(struct child *c)
{
	if (!c->pipe_open)
		return;
	c->pipe_open = false;
	uv_close((uv_handle_t *)&c->pipe, on_child_handle_closed);
}

/* Close every handle: the loop ends once a job in flight has finished. */
static void finish(struct sup *s)
{
	if (s->handles_closed || s->child)
		return;
	s->handles_closed = true;
	for (size_t i = 0; i < s->nsigs; i++)
		uv_close((uv_handle_t *)&s->sigs[i], on_closed);
	uv_close((uv_handle_t *)&s->reensure, on_closed);
	uv_close((uv_handle_t *)&s->restart, on_closed);
	uv_close((uv_handle_t *)&s->ready_timer, on_closed);
	uv_close((uv_handle_t *)&s->kill_timer, on_closed);
}

static void on_restart_timer(uv_timer_t *t)
{
	struct sup *s = t->data;
	if (!s->stopping && !s->child)
		spawn_child(s);
}

/* The resolver died (or could not be started): restart it at once, or
 * after a backoff when it keeps dying. */
static void schedule_restart(struct sup *s)
{
	uint64_t now = uv_now(&s->loop);
	if (s->ready_ms && now - s->ready_ms >= SUPERVISOR_STABLE_MS) {
		s->backoff_exp = 0;
		s->ncrash = 0;
	}
	if (s->ncrash == SUPERVISOR_CRASH_LIMIT) {
		memmove(s->crash_ms, s->crash_ms + 1, sizeof(s->crash_ms[0]) * (SUPERVISOR_CRASH_LIMIT - 1));
		s->ncrash--;
	}
	s->crash_ms[s->ncrash++] = now;
	if (s->ncrash == SUPERVISOR_CRASH_LIMIT && now - s->crash_ms[0] <= SUPERVISOR_CRASH_WINDOW_MS) {
		uint64_t delay = (uint64_t)SUPERVISOR_BACKOFF_MIN_MS << (s->backoff_exp < 5 ? s->backoff_exp : 5);
		if (delay > SUPERVISOR_BACKOFF_MAX_MS)
			delay = SUPERVISOR_BACKOFF_MAX_MS;
		s->backoff_exp++;
		atomic_fetch_add_explicit(&s->shared->crash_loops, 1, memory_order_relaxed);
		log_error(TAG, "the resolver died %d times within %d s: next start in %llu ms%s",
			  SUPERVISOR_CRASH_LIMIT, SUPERVISOR_CRASH_WINDOW_MS / 1000, (unsigned long long)delay,
			  s->sc->net.iptables ? "; the NOTRACK rules are removed until it serves again" : "");
		s->rules_down = true;
		request_sync(s);
		uv_timer_start(&s->restart, on_restart_timer, delay, 0);
		return;
	}
	spawn_child(s);
}

static void on_child_exit(uv_process_t *p, int64_t exit_status, int term_signal)
{
	struct child *c = p->data;
	struct sup *s = c->s;
	s->child = NULL;
	s->child_ready = false;
	uv_close((uv_handle_t *)p, on_child_handle_closed);
	child_close_pipe(c);
	uv_timer_stop(&s->ready_timer);
	char how[64];
	if (term_signal)
		snprintf(how, sizeof(how), "killed by signal %d (%s)", term_signal, strsignal(term_signal));
	else
		snprintf(how, sizeof(how), "exited with status %lld", (long long)exit_status);
	if (s->stopping) {
		uv_timer_stop(&s->kill_timer);
		log_info(TAG, "resolver (pid %ld) %s", (long)c->pid, how);
		finish(s);
		return;
	}
	if (!s->ever_ready) {
		log_error(TAG, "resolver (pid %ld) %s before it served: stopping", (long)c->pid, how);
		s->exit_code = !term_signal && exit_status == 2 ? 2 : 1;
		s->stopping = true;
		finish(s);
		return;
	}
	log_warn(TAG, "resolver (pid %ld) %s after %.1f s: restarting it", (long)c->pid, how,
		 (double)(uv_now(&s->loop) - s->started_ms) / 1000.0);
	schedule_restart(s);
}

static void on_ready_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct child *c = h->data;
	(void)hint;
	*buf = uv_buf_init(c->buf, sizeof(c->buf));
}

static void on_ready_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
	struct child *c = st->data;
	struct sup *s = c->s;
	(void)buf;
	if (nread > 0 && s->child == c && !s->child_ready) {
		s->child_ready = true;
		s->ready_ms = uv_now(&s->loop);
		uv_timer_stop(&s->ready_timer);
		log_info(TAG, "%sresolver (pid %ld) is serving after %llu ms", s->ever_ready ? "restarted " : "",
			 (long)c->pid, (unsigned long long)(s->ready_ms - s->started_ms));
		s->ever_ready = true;
		s->rules_down = false;
		request_sync(s);
	}
	if (nread < 0)
		child_close_pipe(c);
}

static void on_ready_timeout(uv_timer_t *t)
{
	struct sup *s = t->data;
	if (s->child_ready || !s->child)
		return;
	log_warn(TAG, "resolver (pid %ld) is not serving %u ms after its start%s", (long)s->child->pid,
		 s->sc->ready_timeout_ms,
		 s->sc->net.iptables && s->ever_ready ? ": removing the rules until it does" : "");
	if (s->ever_ready) {
		s->rules_down = true;
		request_sync(s);
	}
}

/* A child record with its ready pipe open in the loop; the write end of
 * the pipe (for the child's fd 4) into @p wfd. @return NULL (logged). */
static struct child *child_new(struct sup *s, int *wfd)
{
	int p[2] = { -1, -1 };
	struct child *c = calloc(1, sizeof(*c));
	if (!c || pipe2(p, O_CLOEXEC) < 0) {
		log_error(TAG, "cannot start the resolver: %s", strerror(c ? errno : ENOMEM));
		free(c);
		return NULL;
	}
	c->s = s;
	uv_pipe_init(&s->loop, &c->pipe, 0);
	c->pipe.data = c;
	c->handles = 1;
	c->pipe_open = true;
	int rc = uv_pipe_open(&c->pipe, p[0]);
	if (rc < 0) {
		log_error(TAG, "cannot start the resolver: %s", uv_strerror(rc));
		close(p[0]);
		close(p[1]);
		child_close_pipe(c);
		return NULL;
	}
	*wfd = p[1];
	return c;
}

/* The resolver's fds: 0-2 ours, 3 the counters page, 4 the ready pipe
 * (@p wfd), then the listening sockets. @return NULL on ENOMEM. */
static uv_stdio_container_t *child_stdio(const struct sup *s, int wfd, size_t *count)
{
	size_t nstdio = SUPERVISOR_LISTEN_FD_BASE + s->sc->nlisten_fds;
	uv_stdio_container_t *stdio = calloc(nstdio, sizeof(*stdio));
	if (!stdio)
		return NULL;
	for (size_t i = 0; i < s->sc->nlisten_fds; i++) {
		stdio[SUPERVISOR_LISTEN_FD_BASE + i].flags = UV_INHERIT_FD;
		stdio[SUPERVISOR_LISTEN_FD_BASE + i].data.fd = s->sc->listen_fds[i];
	}
	for (int i = 0; i < 3; i++) {
		stdio[i].flags = UV_INHERIT_FD;
		stdio[i].data.fd = i;
	}
	stdio[SUPERVISOR_CHILD_STATS_FD].flags = s->memfd >= 0 ? UV_INHERIT_FD : UV_IGNORE;
	stdio[SUPERVISOR_CHILD_STATS_FD].data.fd = s->memfd;
	stdio[SUPERVISOR_CHILD_READY_FD].flags = UV_INHERIT_FD;
	stdio[SUPERVISOR_CHILD_READY_FD].data.fd = wfd;
	*count = nstdio;
	return stdio;
}

/* Start resolver @p c with the write end @p wfd of its ready pipe (closed
 * here). @return 0 or a negative errno (logged; @p c is being closed). */
static int child_start(struct sup *s, struct child *c, int wfd)
{
	size_t nstdio = 0;
	uv_stdio_container_t *stdio = child_stdio(s, wfd, &nstdio);
	if (!stdio) {
		log_error(TAG, "cannot start the resolver: out of memory");
		close(wfd);
		child_close_pipe(c);
		return -ENOMEM;
	}
	uv_process_options_t o;
	memset(&o, 0, sizeof(o));
	o.exit_cb = on_child_exit;
	o.file = s->exe;
	o.args = s->argv;
	o.env = s->env;
	o.stdio_count = (int)nstdio;
	o.stdio = stdio;
	c->proc.data = c;
	c->handles++;
	int rc = uv_spawn(&s->loop, &c->proc, &o);
	free(stdio);
	close(wfd);
	if (rc < 0) {
		log_error(TAG, "cannot start the resolver (%s): %s", s->exe, uv_strerror(rc));
		uv_close((uv_handle_t *)&c->proc, on_child_handle_closed);
		child_close_pipe(c);
	}
	return rc;
}

static void spawn_child(struct sup *s)
{
	int wfd = -1;
	struct child *c = child_new(s, &wfd);
	if (!c || child_start(s, c, wfd) < 0) {
		if (!s->ever_ready) {
			s->exit_code = 1;
			s->stopping = true;
			finish(s);
			return;
		}
		schedule_restart(s);
		return;
	}
	c->pid = c->proc.pid;
	s->child = c;
	s->started_ms = uv_now(&s->loop);
	uv_read_start((uv_stream_t *)&c->pipe, on_ready_alloc, on_ready_read);
	uv_timer_start(&s->ready_timer, on_ready_timeout, s->sc->ready_timeout_ms, 0);
	if (s->ever_ready)
		atomic_fetch_add_explicit(&s->shared->restarts, 1, memory_order_relaxed);
	log_debug(TAG, "started resolver pid %ld", (long)c->pid);
}

static void on_kill_timer(uv_timer_t *t)
{
	struct sup *s = t->data;
	if (!s->child)
		return;
	log_warn(TAG, "resolver (pid %ld) still running %u ms after the stop signal: killing it",
		 (long)s->child->pid, s->sc->stop_timeout_ms);
	uv_process_kill(&s->child->proc, SIGKILL);
}

static void on_signal(uv_signal_t *h, int signum)
{
	struct sup *s = h->data;
	if (signum == SIGHUP) {
		if (s->child) {
			log_info(TAG, "SIGHUP: passed on to the resolver");
			uv_process_kill(&s->child->proc, SIGHUP);
		}
		return;
	}
	if (s->stopping) {
		log_info(TAG, "%s: already stopping", strsignal(signum));
		return;
	}
	s->stopping = true;
	s->work_pending = false;
	uv_timer_stop(&s->reensure);
	uv_timer_stop(&s->restart);
	uv_timer_stop(&s->ready_timer);
	log_info(TAG, "received %s: stopping the resolver, then the node setup",
		 signum == SIGTERM ? "SIGTERM" : "SIGINT");
	if (s->child) {
		uv_process_kill(&s->child->proc, signum);
		uv_timer_start(&s->kill_timer, on_kill_timer, s->sc->stop_timeout_ms, 0);
	} else {
		finish(s);
	}
}

/* ------------------------------------------------------------- main */

/* The loop, its signal watchers and timers. @return 0 or a negative errno
 * (logged); what was initialised is closed by finish(). */
static int init_loop(struct sup *s)
{
	/* The timers first: finish() closes them whatever happens next. */
	uv_timer_init(&s->loop, &s->reensure);
	uv_timer_init(&s->loop, &s->restart);
	uv_timer_init(&s->loop, &s->ready_timer);
	uv_timer_init(&s->loop, &s->kill_timer);
	s->reensure.data = s->restart.data = s->ready_timer.data = s->kill_timer.data = s;
	for (size_t i = 0; i < NSIGNALS; i++) {
		int rc = uv_signal_init(&s->loop, &s->sigs[i]);
		if (rc < 0) {
			log_error(TAG, "cannot watch %s: %s", strsignal(SIGNALS[i]), uv_strerror(rc));
			return rc;
		}
		s->nsigs++;
		s->sigs[i].data = s;
		rc = uv_signal_start(&s->sigs[i], on_signal, SIGNALS[i]);
		if (rc < 0) {
			log_error(TAG, "cannot watch %s: %s", strsignal(SIGNALS[i]), uv_strerror(rc));
			return rc;
		}
	}
	return 0;
}

/* Lower our own OOM score; note the resolver's (see child_env). */
static void setup_oom(struct sup *s)
{
	if (read_oom(&s->orig_oom) == 0) {
		s->have_orig_oom = true;
		int rc = supervisor_write_oom(SUPERVISOR_OOM_SCORE_ADJ);
		/* Without CAP_SYS_RESOURCE the score can only go up: expected in
		 * a pod (kubelet already gives Guaranteed pods -997). */
		if (rc < 0)
			log_msg(rc == -EACCES || rc == -EPERM ? LOGL_INFO : LOGL_WARN, TAG,
				"cannot set oom_score_adj to %d (%s): keeping %d", SUPERVISOR_OOM_SCORE_ADJ,
				strerror(-rc), s->orig_oom);
	}
	/* The resolver's score: the operator's NODEDNS_OOM_SCORE_ADJ (a process
	 * may always raise its own), else what we were started with. It should
	 * be above the supervisor's, so the OOM killer takes the resolver, which
	 * the supervisor restarts at once. */
	const char *want = getenv(SUPERVISOR_ENV_OOM);
	if (want && *want) {
		char *end = NULL;
		long v = strtol(want, &end, 10);
		if (*end == '\0' && v >= -1000 && v <= 1000) {
			s->orig_oom = (int)v;
			s->have_orig_oom = true;
		} else {
			log_warn(TAG, "%s=%s: not an integer from -1000 to 1000, ignored", SUPERVISOR_ENV_OOM, want);
		}
	}
}

/* The instance lock, the shared counters, the node setup and the
 * resolver's environment. @return 0 or a negative errno (logged). */
static int prepare(struct sup *s)
{
	instance_lock_take(s->sc->run_dir, &s->lock_fd);
	char state_path[PATH_MAX];
	struct netsetup_config nc = s->sc->net;
	if (s->lock_fd >= 0) {
		snprintf(state_path, sizeof(state_path), "%s/netsetup.state", s->sc->run_dir);
		nc.state_path = state_path;
	}
	if (make_shared(s) < 0) {
		log_error(TAG, "out of memory");
		return -ENOMEM;
	}
	int rc = netsetup_new(&nc, &s->shared->net, &s->ns);
	if (rc < 0) {
		log_error(TAG, "node setup: %s", rc == -EINVAL ? "no usable listen address" : strerror(-rc));
		return rc;
	}
	s->env = child_env(s);
	if (!s->env) {
		log_error(TAG, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

/* Run the resolver until the loop ends, then tear down unless another
 * instance is there. @return the exit status. */
static int supervise(struct sup *s)
{
	const struct supervisor_config *sc = s->sc;
	log_info(TAG, "supervising the resolver (pid %ld): interface %s, iptables %s, re-ensure every %u ms",
		 (long)getpid(), sc->net.ifname ? sc->net.ifname : "off", sc->net.iptables ? "on" : "off",
		 sc->reensure_ms);
	/* The interface first (the resolver can bind before it: IP_FREEBIND);
	 * the rules once the resolver serves. */
	netsetup_ensure(s->ns, false);
	spawn_child(s);
	if (!s->stopping)
		uv_timer_start(&s->reensure, on_reensure, sc->reensure_ms, sc->reensure_ms);
	uv_run(&s->loop, UV_RUN_DEFAULT);

	if (instance_lock_teardown_allowed(s->lock_fd, s->sc->run_dir)) {
		log_info(TAG, "tearing down the node setup");
		if (netsetup_teardown(s->ns) == 0)
			log_info(TAG, "node setup removed");
		else
			log_error(TAG, "node setup teardown incomplete (see above)");
	}
	log_info(TAG, "stopped");
	return s->exit_code;
}

static void sup_free(struct sup *s)
{
	if (!s->handles_closed) {
		s->stopping = true;
		finish(s);
		uv_run(&s->loop, UV_RUN_DEFAULT);
	}
	uv_loop_close(&s->loop);
	netsetup_free(s->ns);
	free(s->env);
	free_shared(s);
	if (s->lock_fd >= 0)
		close(s->lock_fd);
	free(s);
}

int supervisor_run(const struct supervisor_config *sc, char **argv)
{
	struct sup *s = calloc(1, sizeof(*s));
	if (!s) {
		log_error(TAG, "out of memory");
		return 1;
	}
	s->sc = sc;
	s->argv = argv;
	s->memfd = -1;
	s->lock_fd = -1;
	/* NODEDNS_EXE is for running the supervisor under valgrind, where
	 * /proc/self/exe is the tool. */
	s->exe = getenv("NODEDNS_EXE") && *getenv("NODEDNS_EXE") ? getenv("NODEDNS_EXE") : "/proc/self/exe";
	signal(SIGPIPE, SIG_IGN);
	int rc = uv_loop_init(&s->loop);
	if (rc < 0) {
		log_error(TAG, "event loop: %s", uv_strerror(rc));
		free(s);
		return 1;
	}
	int code = 1;
	if (init_loop(s) == 0) {
		setup_oom(s);
		if (prepare(s) == 0)
			code = supervise(s);
	}
	sup_free(s);
	return code;
}
