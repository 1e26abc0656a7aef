/* src/node/link.c - rtnetlink for node setup: the dummy link and its host addresses.
 *
 * Requests are built with libmnl into the socket's buffer and sent one at a
 * time; nl_talk() reads the replies until the ACK or NLMSG_DONE, bounded by
 * the socket's receive timeout.
 */
#include "nodedns/node/link.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <libmnl/libmnl.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>

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

size_t link_msg_newlink_dummy(void *buf, size_t len, uint32_t seq, const char *ifname)
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

size_t link_msg_addr(void *buf, size_t len, uint32_t seq, bool add, int ifindex,
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
	size_t alen = netsetup_ip_len(a->family);
	if (a->family == AF_INET && !mnl_attr_put_check(nlh, len, IFA_LOCAL, alen, a->ip))
		return 0;
	if (!mnl_attr_put_check(nlh, len, IFA_ADDRESS, alen, a->ip))
		return 0;
	return nlh->nlmsg_len;
}

/* --------------------------------------------------- netlink socket */

int link_open(struct link_nl *nl, uint32_t *seq)
{
	nl->seq = seq;
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

void link_close(struct link_nl *nl)
{
	if (nl->s)
		mnl_socket_close(nl->s);
	nl->s = NULL;
}

/* Send the request in nl->buf and run @p cb on each reply until the ACK or
 * NLMSG_DONE. @return 0 or -errno (the kernel's, or -ETIMEDOUT). */
static int nl_talk(struct link_nl *nl, mnl_cb_t cb, void *data)
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

int link_get(struct link_nl *nl, const char *name, struct link_info *li)
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

static int nl_simple(struct link_nl *nl, uint16_t type, int ifindex, unsigned flags, unsigned change)
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

static int addr_cb(const struct nlmsghdr *nlh, void *data)
{
	struct link_addrs *d = data;
	if (nlh->nlmsg_type != RTM_NEWADDR)
		return MNL_CB_OK;
	const struct ifaddrmsg *ifa = mnl_nlmsg_get_payload(nlh);
	if ((int)ifa->ifa_index != d->ifindex || (ifa->ifa_family != AF_INET && ifa->ifa_family != AF_INET6))
		return MNL_CB_OK;
	size_t alen = netsetup_ip_len(ifa->ifa_family);
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

int link_dump_addrs(struct link_nl *nl, int ifindex, struct link_addrs *d)
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

bool link_addrs_has(const struct link_addrs *d, const struct netsetup_addr *a)
{
	for (size_t i = 0; i < d->n; i++)
		if (d->v[i].family == a->family && memcmp(d->v[i].ip, a->ip, netsetup_ip_len(a->family)) == 0)
			return true;
	return false;
}

int link_create_dummy(struct link_nl *nl, const char *name)
{
	size_t len = link_msg_newlink_dummy(nl->buf, sizeof(nl->buf), ++*nl->seq, name);
	return len ? nl_talk(nl, NULL, NULL) : -EINVAL;
}

int link_set_up(struct link_nl *nl, int ifindex)
{
	return nl_simple(nl, RTM_NEWLINK, ifindex, IFF_UP, IFF_UP);
}

int link_delete(struct link_nl *nl, int ifindex)
{
	return nl_simple(nl, RTM_DELLINK, ifindex, 0, 0);
}

int link_addr_change(struct link_nl *nl, bool add, int ifindex, const struct netsetup_addr *a)
{
	size_t len = link_msg_addr(nl->buf, sizeof(nl->buf), ++*nl->seq, add, ifindex, a);
	return len ? nl_talk(nl, NULL, NULL) : -EINVAL;
}
