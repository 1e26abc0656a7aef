/* src/node/instance_lock.c - the instance lock: which nodedns on the node tears the node setup down.
 *
 * A shared flock (released by a failed upgrade at teardown, see
 * instance_lock_teardown_allowed) and an OFD read lock on byte 0, through
 * which instance_lock_other_alive() sees other instances without touching
 * ours. flock and OFD locks do not interact on Linux.
 */
#include "nodedns/node/instance_lock.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "nodedns/util/log.h"

#define TAG "supervisor"

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int mkdir_p(const char *path)
{
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof(tmp), "%s", path);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

int instance_lock_take(const char *run_dir, int *out)
{
	char path[PATH_MAX];
	*out = -1;
	int rc = mkdir_p(run_dir);
	if (rc < 0) {
		log_warn(TAG, "cannot create %s: %s; without the instance lock every exit tears the "
			 "node setup down, even during a rolling update", run_dir, strerror(-rc));
		return rc;
	}
	snprintf(path, sizeof(path), "%s/instance.lock", run_dir);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = -errno;
		log_warn(TAG, "cannot open %s: %s; every exit will tear the node setup down", path,
			 strerror(-rc));
		return rc;
	}
	uint64_t deadline = mono_ms() + INSTANCE_LOCK_WAIT_MS;
	bool said = false;
	while (flock(fd, LOCK_SH | LOCK_NB) < 0) {
		if (errno == EINTR)
			continue;
		if (errno != EWOULDBLOCK || mono_ms() >= deadline) {
			log_warn(TAG, "cannot lock %s: %s; going on without it", path,
				 errno == EWOULDBLOCK ? "an exiting instance held it too long" : strerror(errno));
			close(fd);
			return -EBUSY;
		}
		if (!said)
			log_info(TAG, "waiting for a departing nodedns to finish its teardown (%s)", path);
		said = true;
		usleep(50000);
	}
	struct flock fl = { .l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1 };
	if (fcntl(fd, F_OFD_SETLK, &fl) < 0)
		log_warn(TAG, "%s: OFD lock: %s", path, strerror(errno));
	*out = fd;
	return 0;
}

bool instance_lock_other_alive(int fd)
{
	if (fd < 0)
		return false;
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1 };
	if (fcntl(fd, F_OFD_GETLK, &fl) < 0)
		return false;
	return fl.l_type != F_UNLCK;
}

bool instance_lock_teardown_allowed(int fd, const char *run_dir)
{
	if (fd < 0)
		return true;
	if (flock(fd, LOCK_EX | LOCK_NB) == 0)
		return true;
	if (errno == EWOULDBLOCK) {
		log_info(TAG, "another nodedns instance holds %s/instance.lock: leaving the "
			 "interface, the addresses and the rules to it", run_dir);
		return false;
	}
	log_warn(TAG, "instance lock: %s; tearing down", strerror(errno));
	return true;
}
