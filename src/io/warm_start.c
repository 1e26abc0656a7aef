/* src/io/warm_start.c - the warm-start file on disk: load before serving, save after the live data changed.
 *
 * The bytes are cluster/warm_file.c's; this file reads and writes them
 * (atomically: temporary file, fsync, rename, fsync of the directory) and
 * runs the two timers of the saver on the control loop. Encoding a
 * 10,000-Service store and writing it takes a few milliseconds, so it runs on
 * the loop itself (the workers, which answer queries, never wait for it).
 */
#include "nodedns/io/warm_start.h"

#include "nodedns/cluster/k8s_store.h"
#include "nodedns/cluster/warm_file.h"
#include "nodedns/io/k8s_kubeconfig.h"
#include "nodedns/io/k8s_watch.h"
#include "nodedns/util/log.h"
#include "nodedns/util/metrics.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TAG "warm-start"

struct warm_start {
	uv_loop_t *loop;
	uv_timer_t save_timer, refresh_timer;
	int open_handles;
	char *run_dir, *domain, *server;
	uint32_t save_delay_ms;
	const struct k8s_store *store;
	warm_start_progress_fn progress;
	void *arg;
	uint64_t progress_at_save;
	bool live;  /* the live data was published at least once */
	bool dirty; /* ... and changed since the last save */
	bool failing; /* the last save failed (log the next failure only once) */
	uint64_t saves, save_errors, bytes, save_us;
};

static uint64_t now_s(void)
{
	return (uint64_t)time(NULL);
}

static uint64_t mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ------------------------------------------------------------- identity */

/* The CRC-32 of a CA bundle file; 0 when it cannot be read. */
static uint32_t file_crc(const char *path)
{
	uint8_t buf[65536];
	uint32_t crc = 0;
	size_t n, total = 0;
	FILE *f = path ? fopen(path, "re") : NULL;

	if (!f)
		return 0;
	/* one bundle of at most 64 KiB is all we look at */
	n = fread(buf, 1, sizeof(buf), f);
	total += n;
	fclose(f);
	if (total)
		crc = warm_file_crc(buf, total);
	return crc;
}

int warm_start_identity(const char *kube_api, const char *kubeconfig, const char *ca_file,
			char *out, size_t outlen)
{
	struct k8s_kubeconfig kc;
	char *url = NULL;
	uint32_t crc = 0;

	memset(&kc, 0, sizeof(kc));
	if (kube_api) {
		crc = file_crc(ca_file);
		if (k8s_watch_check_url(kube_api, &url, NULL, 0) < 0)
			return -EINVAL;
	} else if (kubeconfig && k8s_kubeconfig_load(kubeconfig, &kc, NULL, 0) == 0) {
		crc = kc.ca_data ? warm_file_crc(kc.ca_data, kc.ca_len) : file_crc(kc.ca_file);
		int rc = k8s_watch_check_url(kc.server, &url, NULL, 0);
		k8s_kubeconfig_free(&kc);
		if (rc < 0)
			return -EINVAL;
	} else {
		return -EINVAL;
	}
	snprintf(out, outlen, "%s ca=%08x", url, (unsigned)crc);
	free(url);
	return 0;
}

/* ----------------------------------------------------------------- load */

static int read_all(const char *path, uint8_t **out, size_t *outlen)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	uint8_t *buf;
	size_t got = 0;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return -EINVAL;
	}
	if ((uint64_t)st.st_size > WARM_FILE_MAX_BYTES) {
		close(fd);
		return -EFBIG;
	}
	buf = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break; /* shorter than fstat said: the checks will tell */
		got += (size_t)n;
	}
	close(fd);
	*out = buf;
	*outlen = got;
	return 0;
}

int warm_start_load(const struct warm_start_config *c, struct k8s_store *store,
		    uint64_t *created_s)
{
	struct warm_file_expect exp = { c->domain, c->server, now_s(), c->max_age_s };
	struct warm_file_info info;
	struct k8s_store_stats st;
	char path[4096], err[512] = "";
	uint8_t *buf = NULL;
	size_t len = 0;
	uint64_t t0 = mono_us();
	int rc;

	snprintf(path, sizeof(path), "%s/%s", c->run_dir, WARM_START_FILE);
	rc = read_all(path, &buf, &len);
	if (rc == -ENOENT) {
		log_info(TAG, "no %s: cluster names are answered once the watch has synced", path);
		return rc;
	}
	if (rc < 0) {
		log_warn(TAG, "%s ignored: %s", path, strerror(-rc));
		return rc;
	}
	rc = warm_file_load(store, buf, len, &exp, &info, err, sizeof(err));
	free(buf);
	if (rc < 0) {
		log_warn(TAG, "%s ignored: %s", path, err[0] ? err : strerror(-rc));
		return rc;
	}
	k8s_store_get_stats(store, &st);
	*created_s = info.created_s;
	log_info(TAG, "loaded %s (%zu bytes, %llu s old) in %.1f ms: %llu services, "
		 "%llu endpointslices, %llu namespaces; served until the watch has synced",
		 path, len, (unsigned long long)(exp.now_s > info.created_s ? exp.now_s - info.created_s : 0),
		 (double)(mono_us() - t0) / 1000.0, (unsigned long long)st.services,
		 (unsigned long long)st.endpointslices, (unsigned long long)st.namespaces);
	return 0;
}

/* ----------------------------------------------------------------- save */

static int write_all(int fd, const uint8_t *p, size_t len)
{
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Write @p buf as the file: temporary, fsync, rename, fsync of the directory.
 * The temporary file has a unique name: during a rolling update two
 * instances (maybe with the same pid, in two containers) save at once. */
static int write_file(const char *dir, const uint8_t *buf, size_t len)
{
	char path[4096], tmp[4096 + 8];
	int fd, rc;

	snprintf(path, sizeof(path), "%s/%s", dir, WARM_START_FILE);
	snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path);
	fd = mkostemp(tmp, O_CLOEXEC); /* mode 0600 */
	if (fd < 0)
		return -errno;
	rc = write_all(fd, buf, len);
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc < 0) {
		unlink(tmp);
		return rc;
	}
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
	return 0;
}

/* Temporary files of a save that was killed half-way (older than a minute:
 * not one another instance is writing now). */
static void remove_stale(const char *dir)
{
	size_t plen = strlen(WARM_START_FILE);
	DIR *d = opendir(dir);
	struct dirent *e;
	struct stat st;

	if (!d)
		return;
	while ((e = readdir(d))) {
		if (strncmp(e->d_name, WARM_START_FILE ".", plen + 1) != 0 ||
		    strlen(e->d_name) != plen + 7)
			continue;
		if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISREG(st.st_mode) && st.st_mtime + 60 < time(NULL))
			unlinkat(dirfd(d), e->d_name, 0);
	}
	closedir(d);
}

static void save(struct warm_start *ws)
{
	uint64_t t0 = mono_us();
	uint8_t *buf = NULL;
	size_t len = 0;
	int rc;

	rc = warm_file_encode(ws->store, ws->domain, ws->server, now_s(), &buf, &len);
	if (rc == 0)
		rc = write_file(ws->run_dir, buf, len);
	free(buf);
	ws->dirty = false; /* a failed save is retried at the next change or refresh */
	if (ws->progress)
		ws->progress_at_save = ws->progress(ws->arg);
	if (rc < 0) {
		ws->save_errors++;
		if (!ws->failing)
			log_warn(TAG, "cannot save %s/%s: %s (the next start waits for the API)",
				 ws->run_dir, WARM_START_FILE, strerror(-rc));
		ws->failing = true;
		return;
	}
	if (ws->failing)
		log_info(TAG, "saved %s/%s again", ws->run_dir, WARM_START_FILE);
	ws->failing = false;
	ws->saves++;
	ws->bytes = len;
	ws->save_us = mono_us() - t0;
	log_debug(TAG, "saved %zu bytes in %.1f ms", len, (double)ws->save_us / 1000.0);
}

static void on_save_timer(uv_timer_t *t)
{
	struct warm_start *ws = t->data;

	if (ws->dirty)
		save(ws);
}

/* A quiet cluster: rewrite the same content while the watch is alive, so
 * the file's age says how long ago it was known to be current. */
static void on_refresh_timer(uv_timer_t *t)
{
	struct warm_start *ws = t->data;

	if (ws->live && (ws->dirty || !ws->progress || ws->progress(ws->arg) != ws->progress_at_save))
		save(ws);
}

int warm_start_new(uv_loop_t *loop, const struct warm_start_config *c,
		   const struct k8s_store *store, warm_start_progress_fn progress, void *arg,
		   struct warm_start **out)
{
	struct warm_start *ws = calloc(1, sizeof(*ws));
	uint64_t refresh = (uint64_t)c->max_age_s * 1000 / 4;

	*out = NULL;
	if (!ws || !(ws->run_dir = strdup(c->run_dir)) || !(ws->domain = strdup(c->domain)) ||
	    !(ws->server = strdup(c->server))) {
		if (ws) {
			free(ws->run_dir);
			free(ws->domain);
		}
		free(ws);
		return -ENOMEM;
	}
	if (mkdir(c->run_dir, 0755) < 0 && errno != EEXIST)
		log_warn(TAG, "cannot create %s: %s (the next start waits for the API)", c->run_dir,
			 strerror(errno));
	remove_stale(c->run_dir);
	ws->loop = loop;
	ws->store = store;
	ws->progress = progress;
	ws->arg = arg;
	ws->save_delay_ms = c->save_delay_ms ? c->save_delay_ms : WARM_START_SAVE_DELAY_MS;
	uv_timer_init(loop, &ws->save_timer);
	uv_timer_init(loop, &ws->refresh_timer);
	ws->save_timer.data = ws->refresh_timer.data = ws;
	ws->open_handles = 2;
	if (refresh < WARM_START_REFRESH_MIN_MS)
		refresh = WARM_START_REFRESH_MIN_MS;
	if (refresh > WARM_START_REFRESH_MAX_MS)
		refresh = WARM_START_REFRESH_MAX_MS;
	uv_timer_start(&ws->refresh_timer, on_refresh_timer, refresh, refresh);
	*out = ws;
	return 0;
}

void warm_start_changed(struct warm_start *ws)
{
	if (!ws)
		return;
	ws->live = true;
	ws->dirty = true;
	if (!uv_is_active((uv_handle_t *)&ws->save_timer))
		uv_timer_start(&ws->save_timer, on_save_timer, ws->save_delay_ms, 0);
}

static void on_closed(uv_handle_t *h)
{
	struct warm_start *ws = h->data;

	if (--ws->open_handles > 0)
		return;
	free(ws->run_dir);
	free(ws->domain);
	free(ws->server);
	free(ws);
}

void warm_start_close(struct warm_start *ws)
{
	if (!ws)
		return;
	if (ws->live && ws->dirty)
		save(ws);
	uv_close((uv_handle_t *)&ws->save_timer, on_closed);
	uv_close((uv_handle_t *)&ws->refresh_timer, on_closed);
}

/* -------------------------------------------------------------- metrics */

void warm_start_metrics_render(struct mbuf *b, const struct warm_start *ws,
			       enum warm_start_source src, uint64_t age_s)
{
	static const char *names[] = { "none", "file", "live" };

	metrics_header(b, "nodedns_cluster_source", "gauge",
		       "1 for where the served cluster zone comes from: none yet, the warm-start "
		       "file, or live data (the API watch, or --kube-snapshot).");
	for (int i = WARM_SOURCE_NONE; i <= WARM_SOURCE_LIVE; i++) {
		char labels[32];
		snprintf(labels, sizeof(labels), "source=\"%s\"", names[i]);
		metrics_u64(b, "nodedns_cluster_source", labels, (int)src == i ? 1 : 0);
	}
	metrics_gauge(b, "nodedns_cluster_warm_start_age_seconds",
		      "Age of the warm-start file data being served; 0 when it is not served.",
		      src == WARM_SOURCE_FILE ? (int64_t)age_s : 0);
	if (!ws)
		return;
	metrics_counter(b, "nodedns_warm_start_saves_total", "Warm-start files written.",
			ws->saves);
	metrics_counter(b, "nodedns_warm_start_save_errors_total",
			"Warm-start files that could not be written.", ws->save_errors);
	metrics_gauge(b, "nodedns_warm_start_file_bytes", "Size of the last warm-start file written.",
		      (int64_t)ws->bytes);
}
