/* src/node/privdrop.c - give up privileges once the resolver's sockets are bound. */
#include "nodedns/node/privdrop.h"

#include <errno.h>
#include <stdbool.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <unistd.h>

/* Remove every capability from the bounding set (needs CAP_SETPCAP, so this
 * comes before the other sets are cleared). */
static int drop_bounding(void)
{
	for (cap_value_t c = 0; c <= CAP_LAST_CAP || cap_valid(c); c++) {
		if (cap_get_bound(c) <= 0)
			continue;
		if (cap_drop_bound(c) < 0 && errno != EINVAL)
			return -errno;
	}
	return 0;
}

static int clear_sets(void)
{
	cap_t none = cap_init(); /* all sets empty */
	if (!none)
		return -ENOMEM;
	int rc = cap_set_proc(none) < 0 ? -errno : 0;
	cap_free(none);
	if (rc == 0 && CAP_AMBIENT_SUPPORTED())
		cap_reset_ambient();
	return rc;
}

int privdrop_apply(const char *user, char *what, size_t whatlen, char *err, size_t errlen)
{
	bool root = geteuid() == 0;
	bool switch_user = root && user && *user && strcmp(user, "root") != 0;
	struct passwd *pw = NULL;
	int rc;

	if (switch_user) {
		errno = 0;
		pw = getpwnam(user);
		if (!pw) {
			snprintf(err, errlen, "--user %s: no such user", user);
			return errno ? -errno : -ENOENT;
		}
	}
	/* The bounding set needs CAP_SETPCAP, which goes with the rest. */
	if ((rc = drop_bounding()) < 0 && rc != -EPERM) {
		snprintf(err, errlen, "dropping the capability bounding set: %s", strerror(-rc));
		return rc;
	}
	if (switch_user) {
		if (initgroups(pw->pw_name, pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 ||
		    setuid(pw->pw_uid) < 0) {
			rc = -errno;
			snprintf(err, errlen, "--user %s: %s", user, strerror(-rc));
			return rc;
		}
		if (setuid(0) == 0) {
			snprintf(err, errlen, "--user %s: could still become root again", user);
			return -EPERM;
		}
	}
	if ((rc = clear_sets()) < 0) {
		snprintf(err, errlen, "dropping capabilities: %s", strerror(-rc));
		return rc;
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		rc = -errno;
		snprintf(err, errlen, "no_new_privs: %s", strerror(-rc));
		return rc;
	}
	if (switch_user)
		snprintf(what, whatlen, "running as %s (uid %u), no capabilities", pw->pw_name,
			 (unsigned)pw->pw_uid);
	else
		snprintf(what, whatlen, "running as uid %u, no capabilities", (unsigned)geteuid());
	return 0;
}
