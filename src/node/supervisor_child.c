/* src/node/supervisor_child.c - the resolver's side of the supervisor: attach, ready, shared counters. */
#include "nodedns/node/supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

int supervisor_write_oom(int v)
{
	int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	char buf[16];
	int n = snprintf(buf, sizeof(buf), "%d", v);
	int rc = write(fd, buf, (size_t)n) == n ? 0 : -errno;
	close(fd);
	return rc;
}

/* Map the supervisor's counters page from its fd, when it is one. */
static void map_shared(struct supervisor_child *c)
{
	struct stat st;
	if (fstat(SUPERVISOR_CHILD_STATS_FD, &st) != 0)
		return;
	if (S_ISREG(st.st_mode) && st.st_size == (off_t)sizeof(struct supervisor_shared)) {
		void *p = mmap(NULL, sizeof(struct supervisor_shared), PROT_READ, MAP_SHARED,
			       SUPERVISOR_CHILD_STATS_FD, 0);
		if (p != MAP_FAILED) {
			if (((const struct supervisor_shared *)p)->magic == SUPERVISOR_SHARED_MAGIC)
				c->shared = p;
			else
				munmap(p, sizeof(struct supervisor_shared));
		}
	}
	/* The mapping outlives the fd; /dev/null (no shared page) goes too. */
	if (S_ISREG(st.st_mode) || S_ISCHR(st.st_mode))
		close(SUPERVISOR_CHILD_STATS_FD);
}

int supervisor_child_attach(struct supervisor_child *c)
{
	memset(c, 0, sizeof(*c));
	c->ready_fd = -1;
	const char *e = getenv(SUPERVISOR_ENV_SUPERVISED);
	if (!e || strcmp(e, "1") != 0)
		return 0;
	c->supervised = true;
	/* SIGTERM (a graceful stop) if the supervisor dies; if it died before
	 * this line, getppid() is no longer its pid. */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	const char *pp = getenv(SUPERVISOR_ENV_PID);
	if (pp && strtol(pp, NULL, 10) != (long)getppid())
		return -ESRCH;
	const char *oom = getenv(SUPERVISOR_ENV_OOM);
	if (oom && *oom)
		supervisor_write_oom((int)strtol(oom, NULL, 10));

	struct stat st;
	if (fstat(SUPERVISOR_CHILD_READY_FD, &st) == 0 && S_ISFIFO(st.st_mode)) {
		fcntl(SUPERVISOR_CHILD_READY_FD, F_SETFD, FD_CLOEXEC);
		c->ready_fd = SUPERVISOR_CHILD_READY_FD;
	}
	map_shared(c);
	return 1;
}

void supervisor_child_ready(struct supervisor_child *c)
{
	if (c->ready_fd < 0)
		return;
	ssize_t n;
	do
		n = write(c->ready_fd, "R", 1);
	while (n < 0 && errno == EINTR);
	close(c->ready_fd);
	c->ready_fd = -1;
}

void supervisor_child_render_metrics(const struct supervisor_child *c, struct mbuf *b)
{
	if (!c->shared)
		return;
	netsetup_render_metrics(&c->shared->net, b);
	metrics_header(b, "nodedns_resolver_restarts_total", "counter",
		       "Resolver processes restarted by the supervisor after one died.");
	metrics_u64(b, "nodedns_resolver_restarts_total", NULL,
		    atomic_load_explicit(&c->shared->restarts, memory_order_relaxed));
	metrics_header(b, "nodedns_resolver_crash_loops_total", "counter",
		       "Times the resolver died too often and restarts were delayed.");
	metrics_u64(b, "nodedns_resolver_crash_loops_total", NULL,
		    atomic_load_explicit(&c->shared->crash_loops, memory_order_relaxed));
}

void supervisor_child_detach(struct supervisor_child *c)
{
	if (c->shared)
		munmap((void *)c->shared, sizeof(struct supervisor_shared));
	c->shared = NULL;
	if (c->ready_fd >= 0)
		close(c->ready_fd);
	c->ready_fd = -1;
}
