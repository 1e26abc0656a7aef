/* src/node/netsetup.c - node setup: the listen addresses on an interface, NOTRACK/ACCEPT rules.
 *
 * Interfaces and addresses go through rtnetlink (libmnl), one short-lived
 * socket per pass with a receive timeout. Rules go through iptables-save
 * (to see what is there) and iptables-restore --noflush (to change it in one
 * atomic batch per family, under the xtables lock). Every rule carries a
 * unique comment, so presence is "a line in its chain with that comment",
 * whatever the iptables version prints for the matches.
 */
#include "nodedns/node/netsetup.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libmnl/libmnl.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>

#include "nodedns/util/log.h"

extern char **environ;

#define TAG "netsetup"
#define NL_BUF_BYTES 32768
#define MAX_OWNED 64
#define SAVE_MAX_BYTES (64u << 20)   /* iptables-save output we are willing to read */
#define RESTORE_MAX_BYTES (256u << 10)
#define STATE_LOCK_WAIT_MS 2000
#define STATE_MAX_BYTES 16384

/* ------------------------------------------------------------ state */

/* Something nodedns created on the node, recorded so that whichever instance
 * tears down removes it, and nothing else. */
enum owned_kind { OWN_LINK, OWN_ADDR };
struct owned {
	enum owned_kind kind;
	int ifindex;
	int family;       /* OWN_ADDR */
	uint8_t ip[16];   /* OWN_ADDR */
	char name[IFNAMSIZ]; /* OWN_LINK */
};
struct owned_set {
	struct owned v[MAX_OWNED];
	size_t n;
};

struct bins {
	char save[PATH_MAX];
	char restore[PATH_MAX];
};

struct netsetup {
	struct netsetup_config cfg; /* ifname and state_path point at the copies below */
	char *ifname, *state_path;
	struct netsetup_stats *st;
	struct netsetup_rule rules[NETSETUP_MAX_RULES];
	size_t nrules;
	bool fam[2]; /* [0] IPv4 rules wanted, [1] IPv6 */
	struct owned_set mem; /* ownership when there is no state file */

	enum netsetup_backend backend; /* resolved: never AUTO after detection */
	bool backend_sure;             /* configured, or KUBE-* chains seen */
	bool detected;
	enum netsetup_backend rules_backend; /* where our rules were last put */
	bool rules_maybe;                    /* rules of ours may be installed */
	bool iface_established, rules_established;
	bool warned_down;
	uint32_t seq;
};

static int fam_idx(int family)
{
	return family == AF_INET6 ? 1 : 0;
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void count_error(struct netsetup *ns, enum netsetup_error e)
{
	atomic_fetch_add_explicit(&ns->st->errors[e], 1, memory_order_relaxed);
}

static void count_repair(struct netsetup *ns, enum netsetup_repair r, uint64_t n)
{
	atomic_fetch_add_explicit(&ns->st->repairs[r], n, memory_order_relaxed);
}

static const char *ip_text(int family, const uint8_t *ip, char *buf, size_t len)
{
	if (!inet_ntop(family, ip, buf, (socklen_t)len))
		snprintf(buf, len, "?");
	return buf;
}

static bool ip_unspecified(const struct netsetup_addr *a)
{
	static const uint8_t zero[16];
	return memcmp(a->ip, zero, a->family == AF_INET ? 4 : 16) == 0;
}

static bool ip_loopback(const struct netsetup_addr *a)
{
	static const uint8_t v6lo[16] = { [15] = 1 };
	return a->family == AF_INET ? a->ip[0] == 127 : memcmp(a->ip, v6lo, 16) == 0;
}

static size_t ip_len(int family)
{
	return family == AF_INET ? 4 : 16;
}

/* ------------------------------------------------- netlink messages */

static struct nlmsghdr *msg_start(void *buf, size_t len, uint16_t type, uint16_t flags,
				  uint32_t seq, size_t extra)
{
	if (len < MNL_NLMSG_HDRLEN + MNL_ALIGN(extra))
		return NULL;
	memset(buf, 0, len); /* attribute padding included: requests are deterministic */
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = flags;
	nlh->nlmsg_seq = seq;
	mnl_nlmsg_put_extra_header(nlh, extra);
	return nlh;
}

size_t netsetup_msg_newlink_dummy(void *buf, size_t len, uint32_t seq, const char *ifname)
{
	struct nlmsghdr *nlh = msg_start(buf, len, RTM_NEWLINK,
					 NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, seq,
					 sizeof(struct ifinfomsg));
	if (!nlh)
		return 0;
	struct ifinfomsg *ifm = mnl_nlmsg_get_payload(nlh);
	ifm->ifi_family = AF_UNSPEC;
	if (!mnl_attr_put_strz_check(nlh, len, IFLA_IFNAME, ifname))
		return 0;
	struct nlattr *info = mnl_attr_nest_start_check(nlh, len, IFLA_LINKINFO);
	if (!info || !mnl_attr_put_strz_check(nlh, len, IFLA_INFO_KIND, "dummy"))
		return 0;
	mnl_attr_nest_end(nlh, info);
	return nlh->nlmsg_len;
}

size_t netsetup_msg_addr(void *buf, size_t len, uint32_t seq, bool add, int ifindex,
			 const struct netsetup_addr *a)
{
	uint16_t flags = NLM_F_REQUEST | NLM_F_ACK;
	if (add)
		flags |= NLM_F_CREATE | NLM_F_EXCL;
	struct nlmsghdr *nlh = msg_start(buf, len, add ? RTM_NEWADDR : RTM_DELADDR, flags, seq,
					 sizeof(struct ifaddrmsg));
	if (!nlh)
		return 0;
	struct ifaddrmsg *ifa = mnl_nlmsg_get_payload(nlh);
	ifa->ifa_family = (uint8_t)a->family;
	ifa->ifa_prefixlen = a->family == AF_INET ? 32 : 128;
	ifa->ifa_flags = a->family == AF_INET6 ? IFA_F_NODAD : 0;
	ifa->ifa_scope = RT_SCOPE_UNIVERSE;
	ifa->ifa_index = (uint32_t)ifindex;
	size_t alen = ip_len(a->family);
	if (a->family == AF_INET && !mnl_attr_put_check(nlh, len, IFA_LOCAL, alen, a->ip))
		return 0;
	if (!mnl_attr_put_check(nlh, len, IFA_ADDRESS, alen, a->ip))
		return 0;
	return nlh->nlmsg_len;
}

/* --------------------------------------------------- netlink socket */

struct nl {
	struct mnl_socket *s;
	uint32_t portid;
	uint32_t *seq;
	char buf[NL_BUF_BYTES];
};

static int nl_open(struct netsetup *ns, struct nl *nl)
{
	nl->seq = &ns->seq;
	nl->s = mnl_socket_open(NETLINK_ROUTE);
	if (!nl->s)
		return -errno;
	if (mnl_socket_bind(nl->s, 0, MNL_SOCKET_AUTOPID) < 0) {
		int e = -errno;
		mnl_socket_close(nl->s);
		nl->s = NULL;
		return e;
	}
	struct timeval tv = { .tv_sec = NETSETUP_NL_TIMEOUT_MS / 1000,
			      .tv_usec = (NETSETUP_NL_TIMEOUT_MS % 1000) * 1000 };
	setsockopt(mnl_socket_get_fd(nl->s), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	nl->portid = mnl_socket_get_portid(nl->s);
	return 0;
}

static void nl_close(struct nl *nl)
{
	if (nl->s)
		mnl_socket_close(nl->s);
	nl->s = NULL;
}

/* Send the request in nl->buf and run @p cb on each reply until the ACK or
 * NLMSG_DONE. @return 0 or -errno (the kernel's, or -ETIMEDOUT). */
static int nl_talk(struct nl *nl, mnl_cb_t cb, void *data)
{
	struct nlmsghdr *req = (struct nlmsghdr *)nl->buf;
	uint32_t seq = req->nlmsg_seq;
	if (mnl_socket_sendto(nl->s, req, req->nlmsg_len) < 0)
		return -errno;
	for (;;) {
		ssize_t n = mnl_socket_recvfrom(nl->s, nl->buf, sizeof(nl->buf));
		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
		int r = mnl_cb_run(nl->buf, (size_t)n, seq, nl->portid, cb, data);
		if (r == MNL_CB_ERROR)
			return errno ? -errno : -EPROTO;
		if (r == MNL_CB_STOP)
			return 0;
	}
}

struct link_info {
	int index;
	unsigned flags;
	char kind[32];
};

static int linkinfo_attr_cb(const struct nlattr *a, void *data)
{
	struct link_info *li = data;
	if (mnl_attr_get_type(a) == IFLA_INFO_KIND && mnl_attr_validate(a, MNL_TYPE_STRING) == 0)
		snprintf(li->kind, sizeof(li->kind), "%s", mnl_attr_get_str(a));
	return MNL_CB_OK;
}

static int link_attr_cb(const struct nlattr *a, void *data)
{
	if (mnl_attr_get_type(a) == IFLA_LINKINFO && mnl_attr_validate(a, MNL_TYPE_NESTED) == 0)
		mnl_attr_parse_nested(a, linkinfo_attr_cb, data);
	return MNL_CB_OK;
}

static int link_cb(const struct nlmsghdr *nlh, void *data)
{
	struct link_info *li = data;
	if (nlh->nlmsg_type != RTM_NEWLINK)
		return MNL_CB_OK;
	const struct ifinfomsg *ifm = mnl_nlmsg_get_payload(nlh);
	li->index = ifm->ifi_index;
	li->flags = ifm->ifi_flags;
	mnl_attr_parse(nlh, sizeof(*ifm), link_attr_cb, li);
	return MNL_CB_OK;
}

/* @return 0 (found), -ENODEV (absent) or -errno. */
static int nl_get_link(struct nl *nl, const char *name, struct link_info *li)
{
	memset(li, 0, sizeof(*li));
	struct nlmsghdr *nlh = msg_start(nl->buf, sizeof(nl->buf), RTM_GETLINK,
					 NLM_F_REQUEST | NLM_F_ACK, ++*nl->seq,
					 sizeof(struct ifinfomsg));
	mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
	int rc = nl_talk(nl, link_cb, li);
	if (rc == 0 && li->index <= 0)
		rc = -ENODEV;
	return rc;
}

static int nl_simple(struct nl *nl, uint16_t type, int ifindex, unsigned flags, unsigned change)
{
	struct nlmsghdr *nlh = msg_start(nl->buf, sizeof(nl->buf), type,
					 NLM_F_REQUEST | NLM_F_ACK, ++*nl->seq,
					 sizeof(struct ifinfomsg));
	struct ifinfomsg *ifm = mnl_nlmsg_get_payload(nlh);
	ifm->ifi_family = AF_UNSPEC;
	ifm->ifi_index = ifindex;
	ifm->ifi_flags = flags;
	ifm->ifi_change = change;
	return nl_talk(nl, NULL, NULL);
}

struct addr_dump {
	int ifindex;
	struct netsetup_addr v[64];
	size_t n;
};

static int addr_cb(const struct nlmsghdr *nlh, void *data)
{
	struct addr_dump *d = data;
	if (nlh->nlmsg_type != RTM_NEWADDR)
		return MNL_CB_OK;
	const struct ifaddrmsg *ifa = mnl_nlmsg_get_payload(nlh);
	if ((int)ifa->ifa_index != d->ifindex || (ifa->ifa_family != AF_INET && ifa->ifa_family != AF_INET6))
		return MNL_CB_OK;
	size_t alen = ip_len(ifa->ifa_family);
	const struct nlattr *local = NULL, *address = NULL, *a;
	mnl_attr_for_each(a, nlh, sizeof(*ifa)) {
		if (mnl_attr_get_type(a) == IFA_LOCAL)
			local = a;
		else if (mnl_attr_get_type(a) == IFA_ADDRESS)
			address = a;
	}
	const struct nlattr *use = ifa->ifa_family == AF_INET && local ? local : address;
	if (!use || mnl_attr_get_payload_len(use) != alen || d->n >= sizeof(d->v) / sizeof(d->v[0]))
		return MNL_CB_OK;
	struct netsetup_addr *out = &d->v[d->n++];
	memset(out, 0, sizeof(*out));
	out->family = ifa->ifa_family;
	memcpy(out->ip, mnl_attr_get_payload(use), alen);
	return MNL_CB_OK;
}

static int nl_dump_addrs(struct nl *nl, int ifindex, struct addr_dump *d)
{
	memset(d, 0, sizeof(*d));
	d->ifindex = ifindex;
	struct nlmsghdr *nlh = msg_start(nl->buf, sizeof(nl->buf), RTM_GETADDR,
					 NLM_F_REQUEST | NLM_F_DUMP, ++*nl->seq,
					 sizeof(struct ifaddrmsg));
	struct ifaddrmsg *ifa = mnl_nlmsg_get_payload(nlh);
	ifa->ifa_family = AF_UNSPEC;
	return nl_talk(nl, addr_cb, d);
}

static bool dump_has(const struct addr_dump *d, const struct netsetup_addr *a)
{
	for (size_t i = 0; i < d->n; i++)
		if (d->v[i].family == a->family && memcmp(d->v[i].ip, a->ip, ip_len(a->family)) == 0)
			return true;
	return false;
}

/* -------------------------------------------------- ownership state */

static bool owned_eq(const struct owned *a, const struct owned *b)
{
	if (a->kind != b->kind || a->ifindex != b->ifindex)
		return false;
	if (a->kind == OWN_LINK)
		return strcmp(a->name, b->name) == 0;
	return a->family == b->family && memcmp(a->ip, b->ip, ip_len(a->family)) == 0;
}

static bool owned_has(const struct owned_set *s, const struct owned *o)
{
	for (size_t i = 0; i < s->n; i++)
		if (owned_eq(&s->v[i], o))
			return true;
	return false;
}

static void owned_add(struct owned_set *s, const struct owned *o)
{
	if (!owned_has(s, o) && s->n < MAX_OWNED)
		s->v[s->n++] = *o;
}

static void owned_del_at(struct owned_set *s, size_t i)
{
	s->v[i] = s->v[--s->n];
}

static void owned_parse(const char *text, struct owned_set *s)
{
	memset(s, 0, sizeof(*s));
	const char *p = text;
	while (*p) {
		const char *nl = strchr(p, '\n');
		if (!nl)
			break; /* a partial last line is ignored */
		char line[256];
		size_t l = (size_t)(nl - p);
		if (l < sizeof(line)) {
			memcpy(line, p, l);
			line[l] = '\0';
			struct owned o;
			memset(&o, 0, sizeof(o));
			char a[INET6_ADDRSTRLEN + 1], name[IFNAMSIZ + 1];
			if (sscanf(line, "link %d %16s", &o.ifindex, name) == 2 && o.ifindex > 0 &&
			    strlen(name) < IFNAMSIZ) {
				o.kind = OWN_LINK;
				memcpy(o.name, name, strlen(name) + 1);
				owned_add(s, &o);
			} else if (sscanf(line, "addr %d %46s", &o.ifindex, a) == 2 && o.ifindex > 0) {
				o.kind = OWN_ADDR;
				if (inet_pton(AF_INET, a, o.ip) == 1)
					o.family = AF_INET;
				else if (inet_pton(AF_INET6, a, o.ip) == 1)
					o.family = AF_INET6;
				if (o.family)
					owned_add(s, &o);
			}
		}
		p = nl + 1;
	}
}

static size_t owned_format(const struct owned_set *s, char *out, size_t len)
{
	size_t o = (size_t)snprintf(out, len, "# nodedns node setup: what nodedns created, removed at teardown\n");
	for (size_t i = 0; i < s->n && o < len; i++) {
		char a[INET6_ADDRSTRLEN];
		if (s->v[i].kind == OWN_LINK)
			o += (size_t)snprintf(out + o, len - o, "link %d %s\n", s->v[i].ifindex, s->v[i].name);
		else
			o += (size_t)snprintf(out + o, len - o, "addr %d %s\n", s->v[i].ifindex,
					      ip_text(s->v[i].family, s->v[i].ip, a, sizeof(a)));
	}
	return o < len ? o : len;
}

/* Open and lock the state file and read it into @p s. @p fd is -1 when
 * ownership lives in memory. On a state file error this falls back to
 * memory (logged, counted) so that setup still works. */
static void state_begin(struct netsetup *ns, int *fd, struct owned_set *s)
{
	*fd = -1;
	if (!ns->state_path) {
		*s = ns->mem;
		return;
	}
	int f = open(ns->state_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (f < 0) {
		log_error(TAG, "state file %s: %s (ownership kept in memory)", ns->state_path, strerror(errno));
		goto fallback;
	}
	uint64_t deadline = now_ms() + STATE_LOCK_WAIT_MS;
	while (flock(f, LOCK_EX | LOCK_NB) < 0) {
		if ((errno != EWOULDBLOCK && errno != EINTR) || now_ms() >= deadline) {
			log_error(TAG, "state file %s: cannot lock: %s", ns->state_path,
				  errno == EWOULDBLOCK ? "held too long by another process" : strerror(errno));
			close(f);
			goto fallback;
		}
		usleep(10000);
	}
	char buf[STATE_MAX_BYTES];
	ssize_t n = pread(f, buf, sizeof(buf) - 1, 0);
	buf[n > 0 ? n : 0] = '\0';
	owned_parse(buf, s);
	/* What this process recorded while the file was unusable still counts. */
	for (size_t i = 0; i < ns->mem.n; i++)
		owned_add(s, &ns->mem.v[i]);
	*fd = f;
	return;
fallback:
	count_error(ns, NETSETUP_ERR_STATE);
	*s = ns->mem;
}

static void state_end(struct netsetup *ns, int fd, const struct owned_set *s)
{
	if (fd < 0) {
		ns->mem = *s;
		return;
	}
	char buf[STATE_MAX_BYTES];
	size_t len = owned_format(s, buf, sizeof(buf));
	if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, len, 0) != (ssize_t)len) {
		log_error(TAG, "state file %s: write: %s (ownership kept in memory)", ns->state_path,
			  strerror(errno));
		count_error(ns, NETSETUP_ERR_STATE);
		ns->mem = *s;
	} else {
		memset(&ns->mem, 0, sizeof(ns->mem));
	}
	close(fd); /* releases the lock */
}

/* ------------------------------------------------------- interface */

/* Open rtnetlink and load the ownership records: what both interface passes
 * start with. On failure nothing is left open or locked. */
static int iface_begin(struct netsetup *ns, struct nl **nlp, int *sfd, struct owned_set *owned)
{
	struct nl *nl = malloc(sizeof(*nl));
	if (!nl)
		return -ENOMEM;
	int rc = nl_open(ns, nl);
	if (rc < 0) {
		log_error(TAG, "rtnetlink: %s", strerror(-rc));
		count_error(ns, NETSETUP_ERR_INTERFACE);
		free(nl);
		return rc;
	}
	state_begin(ns, sfd, owned);
	*nlp = nl;
	return 0;
}

/* Store the ownership records (releasing the state lock) and close rtnetlink. */
static void iface_end(struct netsetup *ns, struct nl *nl, int sfd, const struct owned_set *owned)
{
	state_end(ns, sfd, owned);
	nl_close(nl);
	free(nl);
}

static int ensure_interface(struct netsetup *ns)
{
	struct nl *nl;
	int sfd;
	struct owned_set owned;
	int rc = iface_begin(ns, &nl, &sfd, &owned);
	if (rc < 0)
		return rc;

	struct link_info li;
	rc = nl_get_link(nl, ns->ifname, &li);
	if (rc == -ENODEV) {
		size_t len = netsetup_msg_newlink_dummy(nl->buf, sizeof(nl->buf), ++ns->seq, ns->ifname);
		rc = len ? nl_talk(nl, NULL, NULL) : -EINVAL;
		if (rc == 0 || rc == -EEXIST) {
			bool created = rc == 0;
			rc = nl_get_link(nl, ns->ifname, &li);
			if (rc == 0 && created) {
				struct owned o = { .kind = OWN_LINK, .ifindex = li.index };
				snprintf(o.name, sizeof(o.name), "%s", ns->ifname);
				owned_add(&owned, &o);
				log_info(TAG, "created dummy link %s (index %d)", ns->ifname, li.index);
				if (ns->iface_established)
					count_repair(ns, NETSETUP_FIX_INTERFACE, 1);
			}
		} else {
			log_error(TAG, "cannot create dummy link %s: %s%s", ns->ifname, strerror(-rc),
				  rc == -EOPNOTSUPP ? " (no dummy link type in this kernel: load the "
						      "dummy module, or create the link beforehand)" : "");
		}
	} else if (rc < 0) {
		log_error(TAG, "link %s: %s", ns->ifname, strerror(-rc));
	}
	if (rc < 0) {
		count_error(ns, NETSETUP_ERR_INTERFACE);
		goto out;
	}

	/* Records for an older incarnation of the link are not ours any more. */
	for (size_t i = owned.n; i-- > 0;) {
		const struct owned *o = &owned.v[i];
		if ((o->kind == OWN_LINK && strcmp(o->name, ns->ifname) == 0 && o->ifindex != li.index) ||
		    (o->kind == OWN_ADDR && o->ifindex != li.index))
			owned_del_at(&owned, i);
	}
	struct owned self = { .kind = OWN_LINK, .ifindex = li.index };
	snprintf(self.name, sizeof(self.name), "%s", ns->ifname);
	bool ours = owned_has(&owned, &self);
	if (!(li.flags & IFF_UP)) {
		if (ours) {
			rc = nl_simple(nl, RTM_NEWLINK, li.index, IFF_UP, IFF_UP);
			if (rc < 0) {
				log_error(TAG, "cannot bring %s up: %s", ns->ifname, strerror(-rc));
				count_error(ns, NETSETUP_ERR_INTERFACE);
				goto out;
			}
		} else if (!ns->warned_down) {
			log_warn(TAG, "link %s (%s) is down; it was not created by nodedns, so it is left as it is",
				 ns->ifname, li.kind[0] ? li.kind : "unknown kind");
			ns->warned_down = true;
		}
	}

	struct addr_dump *d = malloc(sizeof(*d));
	if (!d) {
		rc = -ENOMEM;
		goto out;
	}
	rc = nl_dump_addrs(nl, li.index, d);
	if (rc < 0) {
		log_error(TAG, "addresses of %s: %s", ns->ifname, strerror(-rc));
		count_error(ns, NETSETUP_ERR_ADDRESS);
		free(d);
		goto out;
	}
	for (size_t i = 0; i < ns->cfg.naddrs; i++) {
		const struct netsetup_addr *a = &ns->cfg.addrs[i];
		if (ip_loopback(a) || dump_has(d, a))
			continue;
		char t[INET6_ADDRSTRLEN];
		int r = netsetup_msg_addr(nl->buf, sizeof(nl->buf), ++ns->seq, true, li.index, a)
				? nl_talk(nl, NULL, NULL) : -EINVAL;
		if (r == -EEXIST) {
			continue;
		} else if (r < 0) {
			log_error(TAG, "cannot add %s/%d to %s: %s", ip_text(a->family, a->ip, t, sizeof(t)),
				  a->family == AF_INET ? 32 : 128, ns->ifname, strerror(-r));
			count_error(ns, NETSETUP_ERR_ADDRESS);
			if (rc == 0)
				rc = r;
			continue;
		}
		struct owned o = { .kind = OWN_ADDR, .ifindex = li.index, .family = a->family };
		memcpy(o.ip, a->ip, ip_len(a->family));
		owned_add(&owned, &o);
		/* Mark it in the dump too: the same IP may be listed twice (two ports). */
		if (d->n < sizeof(d->v) / sizeof(d->v[0]))
			d->v[d->n++] = *a;
		log_info(TAG, "added %s/%d to %s", ip_text(a->family, a->ip, t, sizeof(t)),
			 a->family == AF_INET ? 32 : 128, ns->ifname);
		if (ns->iface_established)
			count_repair(ns, NETSETUP_FIX_ADDRESS, 1);
	}
	free(d);
out:
	iface_end(ns, nl, sfd, &owned);
	if (rc == 0)
		ns->iface_established = true;
	return rc;
}

static int teardown_interface(struct netsetup *ns)
{
	struct nl *nl;
	int sfd;
	struct owned_set owned;
	int rc = iface_begin(ns, &nl, &sfd, &owned);
	if (rc < 0)
		return rc;
	struct link_info li;
	rc = nl_get_link(nl, ns->ifname, &li);
	if (rc == -ENODEV) {
		rc = 0;
		li.index = -1; /* every record is stale */
	} else if (rc < 0) {
		log_error(TAG, "link %s: %s", ns->ifname, strerror(-rc));
		count_error(ns, NETSETUP_ERR_INTERFACE);
		goto out;
	}
	for (size_t i = owned.n; i-- > 0;) {
		struct owned *o = &owned.v[i];
		if (o->kind != OWN_ADDR)
			continue;
		if (o->ifindex == li.index) {
			struct netsetup_addr a = { .family = o->family };
			memcpy(a.ip, o->ip, ip_len(o->family));
			char t[INET6_ADDRSTRLEN];
			netsetup_msg_addr(nl->buf, sizeof(nl->buf), ++ns->seq, false, li.index, &a);
			int r = nl_talk(nl, NULL, NULL);
			if (r < 0 && r != -EADDRNOTAVAIL && r != -ENODEV) {
				log_error(TAG, "cannot remove %s from %s: %s", ip_text(a.family, a.ip, t, sizeof(t)),
					  ns->ifname, strerror(-r));
				count_error(ns, NETSETUP_ERR_ADDRESS);
				if (rc == 0)
					rc = r;
				continue;
			}
			if (r == 0)
				log_info(TAG, "removed %s from %s", ip_text(a.family, a.ip, t, sizeof(t)), ns->ifname);
		}
		owned_del_at(&owned, i);
	}
	for (size_t i = owned.n; i-- > 0;) {
		struct owned *o = &owned.v[i];
		if (o->kind != OWN_LINK || strcmp(o->name, ns->ifname) != 0)
			continue;
		if (o->ifindex == li.index) {
			int r = nl_simple(nl, RTM_DELLINK, li.index, 0, 0);
			if (r < 0 && r != -ENODEV) {
				log_error(TAG, "cannot delete link %s: %s", ns->ifname, strerror(-r));
				count_error(ns, NETSETUP_ERR_INTERFACE);
				if (rc == 0)
					rc = r;
				continue;
			}
			if (r == 0)
				log_info(TAG, "deleted link %s", ns->ifname);
		}
		owned_del_at(&owned, i);
	}
out:
	iface_end(ns, nl, sfd, &owned);
	if (rc == 0)
		ns->iface_established = false;
	return rc;
}

/* ------------------------------------------------------------ rules */

static bool same_ip(const struct netsetup_addr *a, const struct netsetup_addr *b)
{
	return a->family == b->family && memcmp(a->ip, b->ip, ip_len(a->family)) == 0;
}

static bool add_rule(struct netsetup_rule *out, size_t max, size_t *n, int family,
		     const char *table, const char *chain, const char *target, const char *match,
		     const char *comment)
{
	if (*n >= max)
		return false;
	struct netsetup_rule *r = &out[(*n)++];
	memset(r, 0, sizeof(*r));
	r->family = family;
	r->table = table;
	r->chain = chain;
	r->target = target;
	snprintf(r->match, sizeof(r->match), "%s", match);
	snprintf(r->comment, sizeof(r->comment), "nodedns: %.110s", comment);
	return true;
}

size_t netsetup_build_rules(const struct netsetup_addr *addrs, size_t n, uint16_t health_port,
			    struct netsetup_rule *out, size_t max)
{
	size_t k = 0;
	static const char *const protos[] = { "udp", "tcp" };
	for (size_t i = 0; i < n; i++) {
		const struct netsetup_addr *a = &addrs[i];
		bool dup_ip = false, dup = false;
		for (size_t j = 0; j < i; j++) {
			if (same_ip(&addrs[j], a)) {
				dup_ip = true;
				if (addrs[j].port == a->port)
					dup = true;
			}
		}
		if (dup)
			continue;
		char ip[INET6_ADDRSTRLEN], cidr[INET6_ADDRSTRLEN + 5], ipport[INET6_ADDRSTRLEN + 10];
		ip_text(a->family, a->ip, ip, sizeof(ip));
		snprintf(cidr, sizeof(cidr), "%s/%d", ip, a->family == AF_INET ? 32 : 128);
		if (a->family == AF_INET)
			snprintf(ipport, sizeof(ipport), "%s:%u", ip, a->port);
		else
			snprintf(ipport, sizeof(ipport), "[%s]:%u", ip, a->port);
		char m[128], c[112];
		for (size_t p = 0; p < 2; p++) {
			const char *pr = protos[p];
			snprintf(m, sizeof(m), "-d %s -p %s -m %s --dport %u", cidr, pr, pr, a->port);
			snprintf(c, sizeof(c), "skip conntrack for %s to %s", pr, ipport);
			add_rule(out, max, &k, a->family, "raw", "PREROUTING", "NOTRACK", m, c);
			add_rule(out, max, &k, a->family, "raw", "OUTPUT", "NOTRACK", m, c);
			snprintf(c, sizeof(c), "accept %s to %s", pr, ipport);
			add_rule(out, max, &k, a->family, "filter", "INPUT", "ACCEPT", m, c);
			snprintf(m, sizeof(m), "-s %s -p %s -m %s --sport %u", cidr, pr, pr, a->port);
			snprintf(c, sizeof(c), "skip conntrack for %s from %s", pr, ipport);
			add_rule(out, max, &k, a->family, "raw", "OUTPUT", "NOTRACK", m, c);
			snprintf(c, sizeof(c), "accept %s from %s", pr, ipport);
			add_rule(out, max, &k, a->family, "filter", "OUTPUT", "ACCEPT", m, c);
		}
		if (health_port && !dup_ip) {
			if (a->family == AF_INET)
				snprintf(ipport, sizeof(ipport), "%s:%u", ip, health_port);
			else
				snprintf(ipport, sizeof(ipport), "[%s]:%u", ip, health_port);
			snprintf(m, sizeof(m), "-d %s -p tcp -m tcp --dport %u", cidr, health_port);
			snprintf(c, sizeof(c), "skip conntrack for health checks to %s", ipport);
			add_rule(out, max, &k, a->family, "raw", "OUTPUT", "NOTRACK", m, c);
			snprintf(m, sizeof(m), "-s %s -p tcp -m tcp --sport %u", cidr, health_port);
			snprintf(c, sizeof(c), "skip conntrack for health checks from %s", ipport);
			add_rule(out, max, &k, a->family, "raw", "OUTPUT", "NOTRACK", m, c);
		}
	}
	return k;
}

/* The comment of an iptables-save "-A" line, unquoted, into @p out.
 * @return false when the line has none. */
static bool line_comment(const char *line, size_t len, char *out, size_t outlen)
{
	static const char key[] = " --comment ";
	const char *end = line + len;
	const char *p = memmem(line, len, key, sizeof(key) - 1);
	if (!p)
		return false;
	p += sizeof(key) - 1;
	size_t o = 0;
	if (p < end && *p == '"') {
		p++;
		while (p < end && *p != '"') {
			if (*p == '\\' && p + 1 < end)
				p++;
			if (o + 1 < outlen)
				out[o++] = *p;
			p++;
		}
	} else {
		while (p < end && *p != ' ') {
			if (o + 1 < outlen)
				out[o++] = *p;
			p++;
		}
	}
	out[o] = '\0';
	return true;
}

void netsetup_count_rules(const char *text, size_t len, const struct netsetup_rule *rules,
			  size_t n, int family, unsigned *counts)
{
	for (size_t i = 0; i < n; i++)
		counts[i] = 0;
	char table[32] = "";
	const char *p = text, *end = text + len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t l = nl ? (size_t)(nl - p) : (size_t)(end - p);
		if (l > 1 && p[0] == '*') {
			size_t tl = l - 1 < sizeof(table) - 1 ? l - 1 : sizeof(table) - 1;
			memcpy(table, p + 1, tl);
			table[tl] = '\0';
		} else if (l > 3 && memcmp(p, "-A ", 3) == 0) {
			const char *c = p + 3;
			const char *sp = memchr(c, ' ', l - 3);
			size_t cl = sp ? (size_t)(sp - c) : l - 3;
			char comment[256];
			if (line_comment(p, l, comment, sizeof(comment))) {
				for (size_t i = 0; i < n; i++) {
					const struct netsetup_rule *r = &rules[i];
					if (r->family != family || strlen(r->chain) != cl ||
					    memcmp(r->chain, c, cl) != 0 || strcmp(r->comment, comment) != 0)
						continue;
					if (table[0] && strcmp(table, r->table) != 0)
						continue;
					counts[i]++;
				}
			}
		}
		p += l + 1;
	}
}

static int put(char *out, size_t outlen, size_t *o, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int put(char *out, size_t outlen, size_t *o, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int k = vsnprintf(out + *o, outlen - *o, fmt, ap);
	va_end(ap);
	if (k < 0 || (size_t)k >= outlen - *o)
		return -ENOSPC;
	*o += (size_t)k;
	return 0;
}

int netsetup_restore_text(const struct netsetup_rule *rules, size_t n, int family,
			  const unsigned *counts, unsigned want, char *out, size_t outlen)
{
	static const char *const tables[] = { "raw", "filter" };
	size_t o = 0;
	if (outlen == 0)
		return -ENOSPC;
	out[0] = '\0';
	for (size_t t = 0; t < 2; t++) {
		bool any = false;
		for (size_t i = 0; i < n; i++)
			if (rules[i].family == family && strcmp(rules[i].table, tables[t]) == 0 &&
			    counts[i] != want)
				any = true;
		if (!any)
			continue;
		if (put(out, outlen, &o, "*%s\n", tables[t]) < 0)
			return -ENOSPC;
		for (size_t i = 0; i < n; i++) {
			const struct netsetup_rule *r = &rules[i];
			if (r->family != family || strcmp(r->table, tables[t]) != 0)
				continue;
			for (unsigned k = want; k < counts[i]; k++)
				if (put(out, outlen, &o, "-D %s %s -m comment --comment \"%s\" -j %s\n",
					r->chain, r->match, r->comment, r->target) < 0)
					return -ENOSPC;
		}
		for (size_t i = n; i-- > 0;) {
			const struct netsetup_rule *r = &rules[i];
			if (r->family != family || strcmp(r->table, tables[t]) != 0 || counts[i] >= want)
				continue;
			if (put(out, outlen, &o, "-I %s 1 %s -m comment --comment \"%s\" -j %s\n",
				r->chain, r->match, r->comment, r->target) < 0)
				return -ENOSPC;
		}
		if (put(out, outlen, &o, "COMMIT\n") < 0)
			return -ENOSPC;
	}
	return (int)o;
}

/* --------------------------------------------------------- commands */

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

int netsetup_run(const char *path, char *const argv[], const char *in, size_t inlen,
		 size_t max_out, uint32_t timeout_ms, struct netsetup_cmd *res)
{
	memset(res, 0, sizeof(*res));
	res->status = -1;
	int pin[2] = { -1, -1 }, pout[2] = { -1, -1 }, perr[2] = { -1, -1 };
	int rc = 0;
	size_t outcap = 0, errlen = 0, inoff = 0;
	if (pipe2(pin, O_CLOEXEC) < 0 || pipe2(pout, O_CLOEXEC) < 0 || pipe2(perr, O_CLOEXEC) < 0) {
		rc = -errno;
		goto out;
	}
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&at);
	posix_spawn_file_actions_adddup2(&fa, pin[0], 0);
	if (max_out)
		posix_spawn_file_actions_adddup2(&fa, pout[1], 1);
	else
		posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, perr[1], 2);
	sigset_t none, all;
	sigemptyset(&none);
	sigfillset(&all);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setsigdefault(&at, &all);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	pid_t pid;
	int e = posix_spawn(&pid, path, &fa, &at, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	close_fd(&pin[0]);
	close_fd(&pout[1]);
	close_fd(&perr[1]);
	if (e != 0) {
		rc = -e;
		goto out;
	}
	fcntl(pin[1], F_SETFL, O_NONBLOCK);
	fcntl(pout[0], F_SETFL, O_NONBLOCK);
	fcntl(perr[0], F_SETFL, O_NONBLOCK);
	if (!in || inlen == 0)
		close_fd(&pin[1]);
	if (!max_out)
		close_fd(&pout[0]); /* its stdout is /dev/null */

	uint64_t deadline = now_ms() + timeout_ms;
	int status = 0;
	bool exited = false;
	while (pout[0] >= 0 || perr[0] >= 0 || !exited) {
		uint64_t now = now_ms();
		if (now >= deadline) {
			rc = -ETIMEDOUT;
			break;
		}
		if (pout[0] < 0 && perr[0] < 0) {
			/* Output closed: wait for the exit, polling (no SIGCHLD here). */
			pid_t w = waitpid(pid, &status, WNOHANG);
			if (w == pid) {
				exited = true;
				break;
			}
			if (w < 0 && errno != EINTR) {
				rc = -errno;
				break;
			}
			usleep(2000);
			continue;
		}
		struct pollfd pf[3];
		int np = 0, iin = -1, iout = -1, ierr = -1;
		if (pin[1] >= 0) {
			pf[np] = (struct pollfd){ .fd = pin[1], .events = POLLOUT };
			iin = np++;
		}
		if (pout[0] >= 0) {
			pf[np] = (struct pollfd){ .fd = pout[0], .events = POLLIN };
			iout = np++;
		}
		if (perr[0] >= 0) {
			pf[np] = (struct pollfd){ .fd = perr[0], .events = POLLIN };
			ierr = np++;
		}
		int pr = poll(pf, (nfds_t)np, (int)(deadline - now));
		if (pr < 0 && errno != EINTR) {
			rc = -errno;
			break;
		}
		if (pr <= 0)
			continue;
		if (iin >= 0 && pf[iin].revents) {
			ssize_t w = write(pin[1], in + inoff, inlen - inoff);
			if (w > 0)
				inoff += (size_t)w;
			if ((w < 0 && errno != EAGAIN && errno != EINTR) || inoff >= inlen)
				close_fd(&pin[1]); /* EPIPE: it stopped reading; its status tells */
		}
		if (iout >= 0 && pf[iout].revents) {
			if (res->outlen + 65536 + 1 > outcap) {
				size_t ncap = outcap ? outcap * 2 : 65536 * 2;
				char *nb = realloc(res->out, ncap);
				if (!nb) {
					rc = -ENOMEM;
					break;
				}
				res->out = nb;
				outcap = ncap;
			}
			ssize_t r = read(pout[0], res->out + res->outlen, outcap - res->outlen - 1);
			if (r > 0) {
				res->outlen += (size_t)r;
				if (res->outlen > max_out) {
					rc = -EFBIG;
					break;
				}
			} else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
				close_fd(&pout[0]);
			}
		}
		if (ierr >= 0 && pf[ierr].revents) {
			char tmp[4096];
			ssize_t r = read(perr[0], tmp, sizeof(tmp));
			if (r > 0) {
				size_t room = sizeof(res->err) - 1 - errlen;
				size_t k = (size_t)r < room ? (size_t)r : room;
				memcpy(res->err + errlen, tmp, k);
				errlen += k;
			} else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
				close_fd(&perr[0]);
			}
		}
	}
	if (!exited) {
		kill(pid, SIGKILL);
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
		if (rc == 0)
			rc = -ETIMEDOUT;
	}
	if (rc == 0 || rc == -EFBIG)
		res->status = WIFEXITED(status) ? WEXITSTATUS(status)
			      : WIFSIGNALED(status) ? 128 + WTERMSIG(status) : -1;
	if (rc == -EFBIG)
		res->status = -1;
out:
	close_fd(&pin[0]);
	close_fd(&pin[1]);
	close_fd(&pout[0]);
	close_fd(&pout[1]);
	close_fd(&perr[0]);
	close_fd(&perr[1]);
	res->err[errlen] = '\0';
	while (errlen > 0 && (res->err[errlen - 1] == '\n' || res->err[errlen - 1] == '\r'))
		res->err[--errlen] = '\0';
	for (size_t i = 0; i < errlen; i++) /* one log line */
		if (res->err[i] == '\n')
			res->err[i] = ' ';
	if (res->out)
		res->out[res->outlen] = '\0';
	if (max_out && !res->out && rc == 0) {
		res->out = calloc(1, 1);
		if (!res->out)
			rc = -ENOMEM;
	}
	return rc;
}

static void cmd_free(struct netsetup_cmd *r)
{
	free(r->out);
	r->out = NULL;
}

/* -------------------------------------------------------- backends */

static const char *backend_name(enum netsetup_backend b)
{
	switch (b) {
	case NETSETUP_BACKEND_LEGACY: return "iptables-legacy";
	case NETSETUP_BACKEND_NFT: return "iptables-nft";
	default: return "iptables";
	}
}

/* Look @p name up in $PATH and the sbin directories ($PATH often lacks them
 * outside containers). */
static bool find_bin(const char *name, char *out, size_t len)
{
	const char *path = getenv("PATH");
	char dirs[4096];
	snprintf(dirs, sizeof(dirs), "%s:/usr/sbin:/sbin:/usr/local/sbin:/usr/bin:/bin", path ? path : "");
	char *save = NULL;
	for (char *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
		if (*d != '/')
			continue;
		int k = snprintf(out, len, "%s/%s", d, name);
		if (k > 0 && (size_t)k < len && access(out, X_OK) == 0)
			return true;
	}
	return false;
}

static bool resolve_bins(enum netsetup_backend b, int family, struct bins *out)
{
	const char *base = family == AF_INET6 ? "ip6tables" : "iptables";
	const char *mid = b == NETSETUP_BACKEND_LEGACY ? "-legacy" : b == NETSETUP_BACKEND_NFT ? "-nft" : "";
	char n[64];
	snprintf(n, sizeof(n), "%s%s-save", base, mid);
	if (!find_bin(n, out->save, sizeof(out->save)))
		return false;
	snprintf(n, sizeof(n), "%s%s-restore", base, mid);
	return find_bin(n, out->restore, sizeof(out->restore));
}

enum netsetup_backend netsetup_pick_backend(unsigned legacy_kube, unsigned nft_kube)
{
	if (legacy_kube == 0 && nft_kube == 0)
		return NETSETUP_BACKEND_PLAIN;
	return legacy_kube > nft_kube ? NETSETUP_BACKEND_LEGACY : NETSETUP_BACKEND_NFT;
}

static unsigned count_kube(const char *save_path, uint32_t timeout_ms)
{
	char *argv[] = { (char *)save_path, NULL };
	struct netsetup_cmd r;
	unsigned n = 0;
	if (netsetup_run(save_path, argv, NULL, 0, SAVE_MAX_BYTES, timeout_ms, &r) == 0 && r.status == 0) {
		for (const char *p = r.out; (p = strstr(p, "KUBE-")) != NULL; p += 5)
			n++;
	}
	cmd_free(&r);
	return n;
}

/* Pick the backend kube-proxy uses. @return 0 or -ENOENT (no iptables). */
static int detect_backend(struct netsetup *ns)
{
	if (ns->backend_sure)
		return 0;
	enum netsetup_backend prev = ns->backend;
	if (ns->cfg.backend != NETSETUP_BACKEND_AUTO) {
		ns->backend = ns->cfg.backend;
		ns->backend_sure = true;
	} else {
		char l[PATH_MAX], n[PATH_MAX];
		bool hl = find_bin("iptables-legacy-save", l, sizeof(l));
		bool hn = find_bin("iptables-nft-save", n, sizeof(n));
		enum netsetup_backend b = NETSETUP_BACKEND_PLAIN;
		if (hl && hn)
			b = netsetup_pick_backend(count_kube(l, ns->cfg.cmd_timeout_ms),
						  count_kube(n, ns->cfg.cmd_timeout_ms));
		if (b != NETSETUP_BACKEND_PLAIN) {
			ns->backend_sure = true;
		} else {
			char p[PATH_MAX];
			if (!find_bin("iptables-save", p, sizeof(p)))
				b = hl ? NETSETUP_BACKEND_LEGACY : NETSETUP_BACKEND_NFT;
		}
		ns->backend = b;
	}
	struct bins bi;
	if (!resolve_bins(ns->backend, AF_INET, &bi)) {
		log_error(TAG, "%s-save/-restore not found (searched $PATH and the sbin directories)",
			  backend_name(ns->backend));
		count_error(ns, NETSETUP_ERR_IPTABLES);
		ns->backend_sure = false;
		return -ENOENT;
	}
	if (!ns->detected)
		ns->rules_backend = ns->backend;
	if (!ns->detected || prev != ns->backend)
		log_info(TAG, "using %s (%s)", backend_name(ns->backend),
			 ns->cfg.backend != NETSETUP_BACKEND_AUTO ? "configured"
			 : ns->backend_sure ? "it holds kube-proxy's KUBE-* chains"
					    : "no KUBE-* chains found yet: the system default");
	ns->detected = true;
	return 0;
}

static enum netsetup_error classify(int rc, const struct netsetup_cmd *r)
{
	if (rc == -ETIMEDOUT)
		return NETSETUP_ERR_IPTABLES_TIMEOUT;
	if (r->status == 4 || strstr(r->err, "xtables lock"))
		return NETSETUP_ERR_IPTABLES_LOCK;
	return NETSETUP_ERR_IPTABLES;
}

static int cmd_failed(struct netsetup *ns, int rc, const struct netsetup_cmd *r, const char *what)
{
	enum netsetup_error e = classify(rc, r);
	count_error(ns, e);
	if (rc == -ETIMEDOUT)
		log_error(TAG, "%s: killed after %u ms%s%s", what, ns->cfg.cmd_timeout_ms,
			  r->err[0] ? ": " : "", r->err);
	else if (rc < 0)
		log_error(TAG, "%s: %s", what, strerror(-rc));
	else
		log_error(TAG, "%s: exit %d: %s", what, r->status, r->err[0] ? r->err : "(no message)");
	return rc < 0 ? rc : e == NETSETUP_ERR_IPTABLES_LOCK ? -EBUSY : -EIO;
}

/* iptables-save -t raw, then -t filter, concatenated into *out (owned). */
static int save_tables(struct netsetup *ns, const struct bins *bi, char **out, size_t *outlen)
{
	static const char *const tables[] = { "raw", "filter" };
	char *acc = NULL;
	size_t len = 0;
	for (size_t t = 0; t < 2; t++) {
		char *argv[] = { (char *)bi->save, "-t", (char *)tables[t], NULL };
		struct netsetup_cmd r;
		int rc = netsetup_run(bi->save, argv, NULL, 0, SAVE_MAX_BYTES, ns->cfg.cmd_timeout_ms, &r);
		if (rc == 0 && r.status != 0 && strstr(r.err, "does not exist")) {
			/* A table not loaded yet is empty; restore will load it. */
			cmd_free(&r);
			continue;
		}
		if (rc < 0 || r.status != 0) {
			char what[PATH_MAX + 32];
			snprintf(what, sizeof(what), "%s -t %s", bi->save, tables[t]);
			rc = cmd_failed(ns, rc, &r, what);
			cmd_free(&r);
			free(acc);
			return rc;
		}
		char *n = realloc(acc, len + r.outlen + 1);
		if (!n) {
			cmd_free(&r);
			free(acc);
			return -ENOMEM;
		}
		acc = n;
		memcpy(acc + len, r.out, r.outlen);
		len += r.outlen;
		acc[len] = '\0';
		cmd_free(&r);
	}
	if (!acc && !(acc = calloc(1, 1)))
		return -ENOMEM;
	*out = acc;
	*outlen = len;
	return 0;
}

static int restore(struct netsetup *ns, const struct bins *bi, const char *text, size_t len)
{
	char wait[16];
	snprintf(wait, sizeof(wait), "%u", ns->cfg.lock_wait_s);
	char *argv[] = { (char *)bi->restore, "-w", wait, "--noflush", NULL };
	struct netsetup_cmd r;
	int rc = netsetup_run(bi->restore, argv, text, len, 0, ns->cfg.cmd_timeout_ms, &r);
	if (rc == 0 && r.status == 0)
		return 0;
	char what[PATH_MAX + 32];
	snprintf(what, sizeof(what), "%s --noflush", bi->restore);
	return cmd_failed(ns, rc, &r, what);
}

/* Bring the rules of @p family to @p want copies (1 or 0) in backend @p b.
 * @p present receives how many of the family's rules are there afterwards. */
static int sync_family(struct netsetup *ns, enum netsetup_backend b, int family, unsigned want,
		       unsigned *present)
{
	struct bins bi;
	const char *fname = family == AF_INET ? "IPv4" : "IPv6";
	*present = 0;
	if (!resolve_bins(b, family, &bi)) {
		log_error(TAG, "%s: %s save/restore commands not found", fname, backend_name(b));
		count_error(ns, NETSETUP_ERR_IPTABLES);
		return -ENOENT;
	}
	unsigned counts[NETSETUP_MAX_RULES];
	char *text = malloc(RESTORE_MAX_BYTES);
	if (!text)
		return -ENOMEM;
	int rc = -EAGAIN;
	for (int attempt = 0; attempt < 4; attempt++) {
		char *save = NULL;
		size_t savelen = 0;
		rc = save_tables(ns, &bi, &save, &savelen);
		if (rc < 0)
			break;
		netsetup_count_rules(save, savelen, ns->rules, ns->nrules, family, counts);
		free(save);
		unsigned missing = 0, extra = 0, have = 0;
		for (size_t i = 0; i < ns->nrules; i++) {
			if (ns->rules[i].family != family)
				continue;
			have += counts[i] ? 1 : 0;
			if (counts[i] < want)
				missing += want - counts[i];
			else
				extra += counts[i] - want;
		}
		*present = have;
		if (missing == 0 && extra == 0) {
			rc = 0;
			break;
		}
		int len = netsetup_restore_text(ns->rules, ns->nrules, family, counts, want, text,
						RESTORE_MAX_BYTES);
		if (len < 0) {
			rc = len;
			break;
		}
		rc = restore(ns, &bi, text, (size_t)len);
		if (rc == 0) {
			if (want) {
				*present = have + missing;
				if (missing)
					log_info(TAG, "%s: inserted %u rules%s", fname, missing,
						 ns->rules_established ? " (they had been removed)" : "");
				if (extra)
					log_info(TAG, "%s: removed %u duplicate rules", fname, extra);
				if (ns->rules_established && missing)
					count_repair(ns, NETSETUP_FIX_RULE, missing);
				break;
			}
			log_info(TAG, "%s: removed %u rules from %s", fname, extra, backend_name(b));
			rc = -EAGAIN; /* look again: the loop ends when none is left */
			continue;
		}
		/* A deletion fails when the rule went away in between: look again.
		 * Anything else (lock, timeout, a missing extension) will not
		 * get better by retrying now. */
		if (rc == -EBUSY || rc == -ETIMEDOUT || extra == 0)
			break;
	}
	free(text);
	return rc;
}

static int sync_rules(struct netsetup *ns, enum netsetup_backend b, unsigned want)
{
	int rc = 0;
	unsigned total = 0;
	for (int f = 0; f < 2; f++) {
		if (!ns->fam[f])
			continue;
		unsigned present = 0;
		int r = sync_family(ns, b, f ? AF_INET6 : AF_INET, want, &present);
		total += present;
		if (r < 0 && rc == 0)
			rc = r;
	}
	atomic_store_explicit(&ns->st->rules, (int64_t)total, memory_order_relaxed);
	return rc;
}

static int ensure_rules(struct netsetup *ns)
{
	int rc = detect_backend(ns);
	if (rc < 0)
		return rc;
	if (ns->rules_maybe && ns->rules_backend != ns->backend) {
		log_info(TAG, "moving the rules from %s to %s", backend_name(ns->rules_backend),
			 backend_name(ns->backend));
		sync_rules(ns, ns->rules_backend, 0);
	}
	ns->rules_backend = ns->backend;
	ns->rules_maybe = true;
	rc = sync_rules(ns, ns->backend, 1);
	if (rc == 0)
		ns->rules_established = true;
	return rc;
}

int netsetup_remove_rules(struct netsetup *ns)
{
	if (!ns->cfg.iptables)
		return 0;
	int rc = detect_backend(ns);
	if (rc < 0)
		return rc;
	if (ns->rules_backend != ns->backend)
		sync_rules(ns, ns->rules_backend, 0);
	rc = sync_rules(ns, ns->backend, 0);
	ns->rules_established = false;
	if (rc == 0)
		ns->rules_maybe = false;
	return rc;
}

/* ----------------------------------------------------------- public */

int netsetup_new(const struct netsetup_config *cfg, struct netsetup_stats *stats,
		 struct netsetup **out)
{
	*out = NULL;
	struct netsetup *ns = calloc(1, sizeof(*ns));
	if (!ns)
		return -ENOMEM;
	ns->cfg = *cfg;
	ns->cfg.naddrs = 0;
	ns->st = stats;
	for (size_t i = 0; i < cfg->naddrs && i < NETSETUP_MAX_ADDRS; i++) {
		const struct netsetup_addr *a = &cfg->addrs[i];
		if (a->family != AF_INET && a->family != AF_INET6) {
			free(ns);
			return -EINVAL;
		}
		if (ip_unspecified(a)) {
			log_warn(TAG, "listen address %s is a wildcard: no node setup for it",
				 a->family == AF_INET ? "0.0.0.0" : "[::]");
			continue;
		}
		ns->cfg.addrs[ns->cfg.naddrs++] = *a;
		ns->fam[fam_idx(a->family)] = true;
	}
	if (ns->cfg.naddrs == 0) {
		free(ns);
		return -EINVAL;
	}
	if (!ns->cfg.cmd_timeout_ms)
		ns->cfg.cmd_timeout_ms = NETSETUP_CMD_TIMEOUT_MS;
	if (!ns->cfg.lock_wait_s)
		ns->cfg.lock_wait_s = NETSETUP_LOCK_WAIT_S;
	if (cfg->ifname && (strlen(cfg->ifname) == 0 || strlen(cfg->ifname) >= IFNAMSIZ)) {
		free(ns);
		return -EINVAL;
	}
	ns->ifname = cfg->ifname ? strdup(cfg->ifname) : NULL;
	ns->state_path = cfg->state_path ? strdup(cfg->state_path) : NULL;
	if ((cfg->ifname && !ns->ifname) || (cfg->state_path && !ns->state_path)) {
		netsetup_free(ns);
		return -ENOMEM;
	}
	ns->cfg.ifname = ns->ifname;
	ns->cfg.state_path = ns->state_path;
	ns->nrules = netsetup_build_rules(ns->cfg.addrs, ns->cfg.naddrs, cfg->health_port, ns->rules,
					  NETSETUP_MAX_RULES);
	/* Rules of a previous instance may be there: a broken interface must
	 * remove them. */
	ns->rules_maybe = true;
	ns->backend = NETSETUP_BACKEND_PLAIN;
	ns->rules_backend = NETSETUP_BACKEND_PLAIN;
	*out = ns;
	return 0;
}

int netsetup_ensure(struct netsetup *ns, bool rules)
{
	int rc = 0;
	bool iface_ok = true;
	atomic_fetch_add_explicit(&ns->st->ensures, 1, memory_order_relaxed);
	if (ns->ifname) {
		rc = ensure_interface(ns);
		iface_ok = rc == 0;
	}
	if (ns->cfg.iptables) {
		int r = 0;
		if (rules && iface_ok) {
			r = ensure_rules(ns);
		} else if (!iface_ok && ns->rules_maybe) {
			log_warn(TAG, "the listen addresses are not in place: removing the NOTRACK rules "
				 "so that they cannot black-hole the node's DNS");
			r = netsetup_remove_rules(ns);
		}
		if (rc == 0)
			rc = r;
	}
	atomic_store_explicit(&ns->st->ok, rc == 0 ? 1 : 0, memory_order_relaxed);
	return rc;
}

int netsetup_teardown(struct netsetup *ns)
{
	int rc = 0;
	if (ns->cfg.iptables)
		rc = netsetup_remove_rules(ns);
	if (ns->ifname) {
		int r = teardown_interface(ns);
		if (rc == 0)
			rc = r;
	}
	atomic_store_explicit(&ns->st->ok, 0, memory_order_relaxed);
	return rc;
}

void netsetup_free(struct netsetup *ns)
{
	if (!ns)
		return;
	free(ns->ifname);
	free(ns->state_path);
	free(ns);
}

/* ---------------------------------------------------------- metrics */

void netsetup_render_metrics(const struct netsetup_stats *st, struct mbuf *b)
{
	static const char *const errs[] = {
#define XX(e, s) s,
		NETSETUP_ERRORS(XX)
#undef XX
	};
	static const char *const fixes[] = {
#define XX(e, s) s,
		NETSETUP_REPAIRS(XX)
#undef XX
	};
	char lab[64];
	metrics_header(b, "nodedns_node_setup_errors_total", "counter",
		       "Node setup failures (interface, addresses, iptables), by kind.");
	for (size_t i = 0; i < NETSETUP_ERR_KINDS; i++) {
		snprintf(lab, sizeof(lab), "kind=\"%s\"", errs[i]);
		metrics_u64(b, "nodedns_node_setup_errors_total", lab,
			    atomic_load_explicit(&st->errors[i], memory_order_relaxed));
	}
	metrics_header(b, "nodedns_node_setup_repairs_total", "counter",
		       "Links, addresses and rules found missing by a re-ensure and put back.");
	for (size_t i = 0; i < NETSETUP_FIX_KINDS; i++) {
		snprintf(lab, sizeof(lab), "kind=\"%s\"", fixes[i]);
		metrics_u64(b, "nodedns_node_setup_repairs_total", lab,
			    atomic_load_explicit(&st->repairs[i], memory_order_relaxed));
	}
	metrics_header(b, "nodedns_node_setup_ensures_total", "counter", "Node setup ensure passes.");
	metrics_u64(b, "nodedns_node_setup_ensures_total", NULL,
		    atomic_load_explicit(&st->ensures, memory_order_relaxed));
	metrics_header(b, "nodedns_node_setup_ok", "gauge",
		       "1 when the last ensure pass left the node set up as wanted.");
	metrics_i64(b, "nodedns_node_setup_ok", NULL, atomic_load_explicit(&st->ok, memory_order_relaxed));
	metrics_header(b, "nodedns_node_setup_rules", "gauge",
		       "nodedns iptables rules present after the last pass.");
	metrics_i64(b, "nodedns_node_setup_rules", NULL, atomic_load_explicit(&st->rules, memory_order_relaxed));
}
