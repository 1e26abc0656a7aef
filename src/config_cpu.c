/* src/config_cpu.c - the default of --threads: the cgroup CPU quota, rounded up, at most the online CPUs.
 *
 * A pod with a CPU limit of 100m on a 32-CPU node gets a CFS quota of 10 ms
 * per 100 ms; eight workers would share it and be throttled together. The
 * quota is read where the kernel keeps it for this process: cgroup v2
 * cpu.max ("QUOTA PERIOD" or "max PERIOD"), cgroup v1 cpu.cfs_quota_us and
 * cpu.cfs_period_us (-1: none) in the cpu controller's mount. The path comes
 * from /proc/self/cgroup; the cgroup and every parent up to the mount are
 * looked at (a limit on a parent binds too; inside a container's cgroup
 * namespace the mount itself is the container's cgroup), and the smallest
 * quota wins.
 */
#include "config_internal.h"

#include <stdbool.h>

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The v1 mount points of the cpu controller under the cgroup root. */
static const char *const v1_mounts[] = { "cpu", "cpu,cpuacct", "cpuacct,cpu" };

/* Read the first line of @p path into @p buf. @return 0 or -1. */
static int read_line(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return -1;
	bool ok = fgets(buf, (int)len, f) != NULL;
	fclose(f);
	return ok ? 0 : -1;
}

/* CPUs the quota in @p dir allows, rounded up; 0 when there is none. */
static uint64_t dir_cpus(const char *dir)
{
	char path[PATH_MAX + 32], line[128], a[64], b[64];
	uint64_t quota = 0, period = 0;
	char *end;

	snprintf(path, sizeof(path), "%s/cpu.max", dir);
	if (read_line(path, line, sizeof(line)) == 0) {
		if (sscanf(line, "%63s %63s", a, b) != 2 || strcmp(a, "max") == 0)
			return 0;
		quota = strtoull(a, &end, 10);
		if (*end)
			return 0;
		period = strtoull(b, &end, 10);
		if (*end)
			return 0;
	} else {
		snprintf(path, sizeof(path), "%s/cpu.cfs_quota_us", dir);
		if (read_line(path, a, sizeof(a)) < 0 || a[0] == '-')
			return 0;
		quota = strtoull(a, &end, 10);
		if (end == a || (*end && *end != '\n'))
			return 0;
		snprintf(path, sizeof(path), "%s/cpu.cfs_period_us", dir);
		if (read_line(path, b, sizeof(b)) < 0)
			return 0;
		period = strtoull(b, &end, 10);
		if (end == b || (*end && *end != '\n'))
			return 0;
	}
	if (quota == 0 || period == 0)
		return 0;
	return quota / period + (quota % period != 0);
}

/* The smallest quota on @p mount/@p rel and each of its parents up to
 * @p mount (0: none). */
static uint64_t walk_cpus(const char *mount, const char *rel)
{
	char dir[PATH_MAX];
	uint64_t best = 0;
	int n = snprintf(dir, sizeof(dir), "%s%s", mount, rel ? rel : "");
	if (n < 0 || (size_t)n >= sizeof(dir))
		return 0;
	size_t base = strlen(mount);
	for (;;) {
		size_t len = strlen(dir);
		while (len > base && dir[len - 1] == '/')
			dir[--len] = '\0';
		uint64_t c = dir_cpus(dir);
		if (c && (!best || c < best))
			best = c;
		if (len <= base)
			break;
		char *slash = strrchr(dir + base, '/');
		if (!slash)
			dir[base] = '\0';
		else
			*slash = '\0';
	}
	return best;
}

static uint64_t min_nonzero(uint64_t a, uint64_t b)
{
	return !a ? b : !b ? a : a < b ? a : b;
}

/* True when the comma-separated @p list names the "cpu" controller. */
static bool has_cpu(const char *list)
{
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", list);
	char *save = NULL;
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save))
		if (strcmp(t, "cpu") == 0)
			return true;
	return false;
}

/* The quota of every hierarchy /proc/self/cgroup names (0: none). */
static uint64_t self_cpus(const char *root, const char *self_cgroup)
{
	char mount[PATH_MAX], line[PATH_MAX + 64];
	uint64_t best = 0;
	FILE *f = self_cgroup ? fopen(self_cgroup, "re") : NULL;
	while (f && fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
		if (!c2)
			continue;
		*c2 = '\0';
		const char *ctrls = c1 + 1, *rel = c2 + 1;
		if (*ctrls == '\0') { /* "0::/path": the unified hierarchy */
			best = min_nonzero(best, walk_cpus(root, rel));
			continue;
		}
		if (!has_cpu(ctrls))
			continue;
		for (size_t i = 0; i < sizeof(v1_mounts) / sizeof(v1_mounts[0]); i++) {
			snprintf(mount, sizeof(mount), "%s/%s", root, v1_mounts[i]);
			best = min_nonzero(best, walk_cpus(mount, rel));
		}
	}
	if (f)
		fclose(f);
	return best;
}

/* See config.h. */
unsigned config_default_threads(const char *cgroup_root, const char *self_cgroup, long online)
{
	char mount[PATH_MAX];
	uint64_t n = online < 1 ? 1 : (uint64_t)online;
	if (n > DEFAULT_THREADS_MAX)
		n = DEFAULT_THREADS_MAX;
	/* The mounts themselves, for when /proc/self/cgroup names paths that
	 * are not visible here (a container without its own cgroup namespace). */
	uint64_t q = min_nonzero(self_cpus(cgroup_root, self_cgroup), dir_cpus(cgroup_root));
	for (size_t i = 0; i < sizeof(v1_mounts) / sizeof(v1_mounts[0]); i++) {
		snprintf(mount, sizeof(mount), "%s/%s", cgroup_root, v1_mounts[i]);
		q = min_nonzero(q, dir_cpus(mount));
	}
	if (q && q < n)
		n = q;
	return (unsigned)n;
}
