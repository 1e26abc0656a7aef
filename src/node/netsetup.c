/* src/node/netsetup.c - node setup: the listen addresses on an interface, NOTRACK/ACCEPT rules.
 *
 * The orchestration: which link and addresses to ensure and which records
 * of ownership to keep (node/link.h, node/nodestate.h), and which rules to
 * insert or delete with iptables-save (to see what is there) and
 * iptables-restore --noflush (to change it in one atomic batch per family,
 * under the xtables lock) (node/rules.h, node/subprocess.h). Every rule
 * carries a unique comment, so presence is "a line in its chain with that
 * comment", whatever the iptables version prints for the matches.
 */
#include "nodedns/node/netsetup.h"

#include <errno.h>
#include <limits.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nodedns/node/link.h"
#include "nodedns/node/nodestate.h"
#include "nodedns/node/rules.h"
#include "nodedns/node/subprocess.h"
#include "nodedns/util/log.h"

#define TAG "netsetup"
#define SAVE_MAX_BYTES (64u << 20)   /* iptables-save output we are willing to read */
#define RESTORE_MAX_BYTES (256u << 10)

struct netsetup {
	struct netsetup_config cfg; /* ifname and state_path point at the copies below */
	char *ifname, *state_path;
	struct netsetup_stats *st;
	struct rules_rule rules[NETSETUP_MAX_RULES];
	size_t nrules;
	bool fam[2]; /* [0] IPv4 rules wanted, [1] IPv6 */
	struct nodestate_set mem; /* ownership when there is no state file */

	enum netsetup_backend backend; /* resolved: never AUTO after detection */
	bool backend_sure;             /* configured, or KUBE-* chains seen */
	enum rules_basis basis;        /* of the last auto check */
	bool detected;
	bool warned_legacy_save;       /* iptables-legacy-save failed: said once */
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

static void count_error(struct netsetup *ns, enum netsetup_error e)
{
	atomic_fetch_add_explicit(&ns->st->errors[e], 1, memory_order_relaxed);
}

static void count_repair(struct netsetup *ns, enum netsetup_repair r, uint64_t n)
{
	atomic_fetch_add_explicit(&ns->st->repairs[r], n, memory_order_relaxed);
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

/* -------------------------------------------------- ownership state */

/* Lock the state file and read it into @p s. @p fd is -1 when ownership
 * lives in memory. On a state file error this falls back to memory
 * (logged, counted) so that setup still works. */
static void state_begin(struct netsetup *ns, int *fd, struct nodestate_set *s)
{
	*fd = -1;
	if (!ns->state_path) {
		*s = ns->mem;
		return;
	}
	if (nodestate_load(ns->state_path, s, fd) < 0) {
		count_error(ns, NETSETUP_ERR_STATE);
		*s = ns->mem;
		return;
	}
	/* What this process recorded while the file was unusable still counts. */
	for (size_t i = 0; i < ns->mem.n; i++)
		nodestate_add(s, &ns->mem.v[i]);
}

static void state_end(struct netsetup *ns, int fd, const struct nodestate_set *s)
{
	if (fd < 0) {
		ns->mem = *s;
		return;
	}
	if (nodestate_store(fd, ns->state_path, s) < 0) {
		count_error(ns, NETSETUP_ERR_STATE);
		ns->mem = *s;
	} else {
		memset(&ns->mem, 0, sizeof(ns->mem));
	}
}

/* ------------------------------------------------------- interface */

/* What both interface passes work with: rtnetlink, the ownership records
 * and the link as found. */
struct iface_pass {
	struct link_nl nl;
	int sfd;
	struct nodestate_set owned;
	struct link_info li;
	struct link_addrs addrs;
};

/* Open rtnetlink and load the ownership records. On failure nothing is
 * left open or locked. */
static int iface_begin(struct netsetup *ns, struct iface_pass **out)
{
	struct iface_pass *p = malloc(sizeof(*p));
	if (!p)
		return -ENOMEM;
	int rc = link_open(&p->nl, &ns->seq);
	if (rc < 0) {
		log_error(TAG, "rtnetlink: %s", strerror(-rc));
		count_error(ns, NETSETUP_ERR_INTERFACE);
		free(p);
		return rc;
	}
	state_begin(ns, &p->sfd, &p->owned);
	*out = p;
	return 0;
}

/* Store the ownership records (releasing the state lock) and close rtnetlink. */
static void iface_end(struct netsetup *ns, struct iface_pass *p)
{
	state_end(ns, p->sfd, &p->owned);
	link_close(&p->nl);
	free(p);
}

static void own_link(struct iface_pass *p, const char *ifname)
{
	struct nodestate_rec o = { .kind = NODESTATE_LINK, .ifindex = p->li.index };
	snprintf(o.name, sizeof(o.name), "%s", ifname);
	nodestate_add(&p->owned, &o);
}

/* Find the link, creating it (and recording it as ours) when absent. */
static int find_or_create_link(struct netsetup *ns, struct iface_pass *p)
{
	int rc = link_get(&p->nl, ns->ifname, &p->li);
	if (rc == -ENODEV) {
		rc = link_create_dummy(&p->nl, ns->ifname);
		if (rc == 0 || rc == -EEXIST) {
			bool created = rc == 0;
			rc = link_get(&p->nl, ns->ifname, &p->li);
			if (rc == 0 && created) {
				own_link(p, ns->ifname);
				log_info(TAG, "created dummy link %s (index %d)", ns->ifname, p->li.index);
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
	if (rc < 0)
		count_error(ns, NETSETUP_ERR_INTERFACE);
	return rc;
}

/* Records for an older incarnation of the link are not ours any more. */
static void drop_stale_records(struct netsetup *ns, struct iface_pass *p)
{
	for (size_t i = p->owned.n; i-- > 0;) {
		const struct nodestate_rec *o = &p->owned.v[i];
		if ((o->kind == NODESTATE_LINK && strcmp(o->name, ns->ifname) == 0 &&
		     o->ifindex != p->li.index) ||
		    (o->kind == NODESTATE_ADDR && o->ifindex != p->li.index))
			nodestate_del_at(&p->owned, i);
	}
}

/* Bring the link up when it is ours; else only say once that it is down. */
static int bring_up(struct netsetup *ns, struct iface_pass *p)
{
	if (p->li.flags & IFF_UP)
		return 0;
	struct nodestate_rec self = { .kind = NODESTATE_LINK, .ifindex = p->li.index };
	snprintf(self.name, sizeof(self.name), "%s", ns->ifname);
	if (nodestate_has(&p->owned, &self)) {
		int rc = link_set_up(&p->nl, p->li.index);
		if (rc < 0) {
			log_error(TAG, "cannot bring %s up: %s", ns->ifname, strerror(-rc));
			count_error(ns, NETSETUP_ERR_INTERFACE);
		}
		return rc;
	}
	if (!ns->warned_down) {
		log_warn(TAG, "link %s (%s) is down; it was not created by nodedns, so it is left as it is",
			 ns->ifname, p->li.kind[0] ? p->li.kind : "unknown kind");
		ns->warned_down = true;
	}
	return 0;
}

/* Add listen address @p a when missing (recording it as ours).
 * @return 0 or -errno. */
static int add_address(struct netsetup *ns, struct iface_pass *p, const struct netsetup_addr *a)
{
	if (ip_loopback(a) || link_addrs_has(&p->addrs, a))
		return 0;
	char t[INET6_ADDRSTRLEN];
	int plen = a->family == AF_INET ? 32 : 128;
	int r = link_addr_change(&p->nl, true, p->li.index, a);
	if (r == -EEXIST)
		return 0;
	if (r < 0) {
		log_error(TAG, "cannot add %s/%d to %s: %s", netsetup_ip_text(a->family, a->ip, t, sizeof(t)),
			  plen, ns->ifname, strerror(-r));
		count_error(ns, NETSETUP_ERR_ADDRESS);
		return r;
	}
	struct nodestate_rec o = { .kind = NODESTATE_ADDR, .ifindex = p->li.index, .family = a->family };
	memcpy(o.ip, a->ip, netsetup_ip_len(a->family));
	nodestate_add(&p->owned, &o);
	/* Mark it in the dump too: the same IP may be listed twice (two ports). */
	if (p->addrs.n < LINK_MAX_DUMP_ADDRS)
		p->addrs.v[p->addrs.n++] = *a;
	log_info(TAG, "added %s/%d to %s", netsetup_ip_text(a->family, a->ip, t, sizeof(t)), plen,
		 ns->ifname);
	if (ns->iface_established)
		count_repair(ns, NETSETUP_FIX_ADDRESS, 1);
	return 0;
}

static int ensure_addresses(struct netsetup *ns, struct iface_pass *p)
{
	int rc = link_dump_addrs(&p->nl, p->li.index, &p->addrs);
	if (rc < 0) {
		log_error(TAG, "addresses of %s: %s", ns->ifname, strerror(-rc));
		count_error(ns, NETSETUP_ERR_ADDRESS);
		return rc;
	}
	for (size_t i = 0; i < ns->cfg.naddrs; i++) {
		int r = add_address(ns, p, &ns->cfg.addrs[i]);
		if (r < 0 && rc == 0)
			rc = r;
	}
	return rc;
}

static int ensure_interface(struct netsetup *ns)
{
	struct iface_pass *p;
	int rc = iface_begin(ns, &p);
	if (rc < 0)
		return rc;
	rc = find_or_create_link(ns, p);
	if (rc == 0) {
		drop_stale_records(ns, p);
		rc = bring_up(ns, p);
	}
	if (rc == 0)
		rc = ensure_addresses(ns, p);
	iface_end(ns, p);
	if (rc == 0)
		ns->iface_established = true;
	return rc;
}

/* Remove the addresses recorded as ours on the link (records of another
 * incarnation are dropped). @return 0 or the first -errno. */
static int remove_addresses(struct netsetup *ns, struct iface_pass *p)
{
	int rc = 0;
	for (size_t i = p->owned.n; i-- > 0;) {
		const struct nodestate_rec *o = &p->owned.v[i];
		if (o->kind != NODESTATE_ADDR)
			continue;
		if (o->ifindex == p->li.index) {
			struct netsetup_addr a = { .family = o->family };
			memcpy(a.ip, o->ip, netsetup_ip_len(o->family));
			char t[INET6_ADDRSTRLEN];
			int r = link_addr_change(&p->nl, false, p->li.index, &a);
			if (r < 0 && r != -EADDRNOTAVAIL && r != -ENODEV) {
				log_error(TAG, "cannot remove %s from %s: %s",
					  netsetup_ip_text(a.family, a.ip, t, sizeof(t)), ns->ifname, strerror(-r));
				count_error(ns, NETSETUP_ERR_ADDRESS);
				if (rc == 0)
					rc = r;
				continue;
			}
			if (r == 0)
				log_info(TAG, "removed %s from %s", netsetup_ip_text(a.family, a.ip, t, sizeof(t)),
					 ns->ifname);
		}
		nodestate_del_at(&p->owned, i);
	}
	return rc;
}

/* Delete the link when it is recorded as ours. @return 0 or -errno. */
static int remove_link(struct netsetup *ns, struct iface_pass *p)
{
	int rc = 0;
	for (size_t i = p->owned.n; i-- > 0;) {
		const struct nodestate_rec *o = &p->owned.v[i];
		if (o->kind != NODESTATE_LINK || strcmp(o->name, ns->ifname) != 0)
			continue;
		if (o->ifindex == p->li.index) {
			int r = link_delete(&p->nl, p->li.index);
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
		nodestate_del_at(&p->owned, i);
	}
	return rc;
}

static int teardown_interface(struct netsetup *ns)
{
	struct iface_pass *p;
	int rc = iface_begin(ns, &p);
	if (rc < 0)
		return rc;
	rc = link_get(&p->nl, ns->ifname, &p->li);
	if (rc == -ENODEV) {
		rc = 0;
		p->li.index = -1; /* every record is stale */
	} else if (rc < 0) {
		log_error(TAG, "link %s: %s", ns->ifname, strerror(-rc));
		count_error(ns, NETSETUP_ERR_INTERFACE);
	}
	if (rc == 0) {
		rc = remove_addresses(ns, p);
		int r = remove_link(ns, p);
		if (rc == 0)
			rc = r;
	}
	iface_end(ns, p);
	if (rc == 0)
		ns->iface_established = false;
	return rc;
}

/* ------------------------------------------------------------ rules */

/* Look at the node (rules_probe_node()); warn once when legacy cannot be read. */
static void probe_backends(struct netsetup *ns, struct rules_probe *p)
{
	char why[160] = "";
	rules_probe_node(p, ns->cfg.cmd_timeout_ms, why, sizeof(why));
	if (p->legacy_kube < 0 && !ns->warned_legacy_save) {
		ns->warned_legacy_save = true;
		log_warn(TAG, "iptables-legacy-save failed (%s): without NET_RAW the legacy backend can "
			 "be neither read nor changed; grant the container NET_RAW (the DaemonSet of "
			 "deploy/ does) or set NODEDNS_IPTABLES_BACKEND", why[0] ? why : "no reason given");
	}
}

/* The warning of a fallback choice (the first time, and on a change). */
static void warn_fallback(const struct netsetup *ns)
{
	if (ns->basis == RULES_BASIS_LEGACY_TABLES)
		log_warn(TAG, "using %s without seeing kube-proxy's KUBE-* chains: a guess, because "
			 "iptables-legacy-save failed and %s lists legacy tables; counted in "
			 "nodedns_node_setup_backend_fallbacks_total", rules_backend_name(ns->backend),
			 NETSETUP_IP_TABLES_NAMES);
	else
		log_warn(TAG, "using %s, the system default: no backend holds kube-proxy's KUBE-* "
			 "chains (yet); if kube-proxy runs in the other one our rules have no effect "
			 "there, set NODEDNS_IPTABLES_BACKEND; counted in "
			 "nodedns_node_setup_backend_fallbacks_total", rules_backend_name(ns->backend));
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
		struct rules_probe p;
		enum rules_basis prev_basis = ns->basis;
		probe_backends(ns, &p);
		ns->backend = rules_choose_backend(&p, &ns->basis);
		ns->backend_sure = ns->basis == RULES_BASIS_KUBE;
		atomic_store_explicit(&ns->st->backend_fallback, ns->backend_sure ? 0 : 1,
				      memory_order_relaxed);
		if (!ns->backend_sure) {
			atomic_fetch_add_explicit(&ns->st->backend_fallbacks, 1, memory_order_relaxed);
			if (!ns->detected || prev != ns->backend || prev_basis != ns->basis)
				warn_fallback(ns);
		}
	}
	struct rules_bins bi;
	if (!rules_resolve_bins(ns->backend, AF_INET, &bi)) {
		log_error(TAG, "%s-save/-restore not found (searched $PATH and the sbin directories)",
			  rules_backend_name(ns->backend));
		count_error(ns, NETSETUP_ERR_IPTABLES);
		ns->backend_sure = false;
		return -ENOENT;
	}
	if (!ns->detected)
		ns->rules_backend = ns->backend;
	if ((!ns->detected || prev != ns->backend) && ns->backend_sure)
		log_info(TAG, "using %s (%s)", rules_backend_name(ns->backend),
			 ns->cfg.backend != NETSETUP_BACKEND_AUTO ? "configured"
			 : "it holds kube-proxy's KUBE-* chains");
	ns->detected = true;
	return 0;
}

static enum netsetup_error classify(int rc, const struct subprocess_result *r)
{
	if (rc == -ETIMEDOUT)
		return NETSETUP_ERR_IPTABLES_TIMEOUT;
	if (r->status == 4 || strstr(r->err, "xtables lock"))
		return NETSETUP_ERR_IPTABLES_LOCK;
	return NETSETUP_ERR_IPTABLES;
}

static int cmd_failed(struct netsetup *ns, int rc, const struct subprocess_result *r, const char *what)
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
static int save_tables(struct netsetup *ns, const struct rules_bins *bi, char **out, size_t *outlen)
{
	static const char *const tables[] = { "raw", "filter" };
	char *acc = NULL;
	size_t len = 0;
	for (size_t t = 0; t < 2; t++) {
		char *argv[] = { (char *)bi->save, "-t", (char *)tables[t], NULL };
		struct subprocess_result r;
		int rc = subprocess_run(bi->save, argv, NULL, 0, SAVE_MAX_BYTES, ns->cfg.cmd_timeout_ms, &r);
		if (rc == 0 && r.status != 0 && strstr(r.err, "does not exist")) {
			/* A table not loaded yet is empty; restore will load it. */
			subprocess_result_free(&r);
			continue;
		}
		if (rc < 0 || r.status != 0) {
			char what[PATH_MAX + 32];
			snprintf(what, sizeof(what), "%s -t %s", bi->save, tables[t]);
			rc = cmd_failed(ns, rc, &r, what);
			subprocess_result_free(&r);
			free(acc);
			return rc;
		}
		char *n = realloc(acc, len + r.outlen + 1);
		if (!n) {
			subprocess_result_free(&r);
			free(acc);
			return -ENOMEM;
		}
		acc = n;
		memcpy(acc + len, r.out, r.outlen);
		len += r.outlen;
		acc[len] = '\0';
		subprocess_result_free(&r);
	}
	if (!acc && !(acc = calloc(1, 1)))
		return -ENOMEM;
	*out = acc;
	*outlen = len;
	return 0;
}

static int restore(struct netsetup *ns, const struct rules_bins *bi, const char *text, size_t len)
{
	char wait[16];
	snprintf(wait, sizeof(wait), "%u", ns->cfg.lock_wait_s);
	char *argv[] = { (char *)bi->restore, "-w", wait, "--noflush", NULL };
	struct subprocess_result r;
	int rc = subprocess_run(bi->restore, argv, text, len, 0, ns->cfg.cmd_timeout_ms, &r);
	if (rc == 0 && r.status == 0)
		return 0;
	char what[PATH_MAX + 32];
	snprintf(what, sizeof(what), "%s --noflush", bi->restore);
	return cmd_failed(ns, rc, &r, what);
}

/* How far the rules of @p family are from @p want copies each. */
struct family_diff {
	unsigned counts[NETSETUP_MAX_RULES];
	unsigned missing, extra, have;
};

/* Read the tables with iptables-save and compare them with the rules. */
static int diff_family(struct netsetup *ns, const struct rules_bins *bi, int family, unsigned want,
		       struct family_diff *d)
{
	char *save = NULL;
	size_t savelen = 0;
	int rc = save_tables(ns, bi, &save, &savelen);
	if (rc < 0)
		return rc;
	rules_count(save, savelen, ns->rules, ns->nrules, family, d->counts);
	free(save);
	d->missing = d->extra = d->have = 0;
	for (size_t i = 0; i < ns->nrules; i++) {
		if (ns->rules[i].family != family)
			continue;
		d->have += d->counts[i] ? 1 : 0;
		if (d->counts[i] < want)
			d->missing += want - d->counts[i];
		else
			d->extra += d->counts[i] - want;
	}
	return 0;
}

/* Bring the rules of @p family to @p want copies (1 or 0) in backend @p b.
 * @p present receives how many of the family's rules are there afterwards. */
static int sync_family(struct netsetup *ns, enum netsetup_backend b, int family, unsigned want,
		       unsigned *present)
{
	struct rules_bins bi;
	const char *fname = family == AF_INET ? "IPv4" : "IPv6";
	*present = 0;
	if (!rules_resolve_bins(b, family, &bi)) {
		log_error(TAG, "%s: %s save/restore commands not found", fname, rules_backend_name(b));
		count_error(ns, NETSETUP_ERR_IPTABLES);
		return -ENOENT;
	}
	struct family_diff *d = malloc(sizeof(*d));
	char *text = malloc(RESTORE_MAX_BYTES);
	int rc = d && text ? 0 : -ENOMEM;
	bool again = rc == 0;
	for (int attempt = 0; again && attempt < 4; attempt++) {
		again = false;
		rc = diff_family(ns, &bi, family, want, d);
		if (rc < 0)
			break;
		*present = d->have;
		if (d->missing == 0 && d->extra == 0)
			break;
		int len = rules_restore_text(ns->rules, ns->nrules, family, d->counts, want, text,
					     RESTORE_MAX_BYTES);
		if (len < 0) {
			rc = len;
			break;
		}
		rc = restore(ns, &bi, text, (size_t)len);
		if (rc == 0 && want) {
			*present = d->have + d->missing;
			if (d->missing)
				log_info(TAG, "%s: inserted %u rules%s", fname, d->missing,
					 ns->rules_established ? " (they had been removed)" : "");
			if (d->extra)
				log_info(TAG, "%s: removed %u duplicate rules", fname, d->extra);
			if (ns->rules_established && d->missing)
				count_repair(ns, NETSETUP_FIX_RULE, d->missing);
		} else if (rc == 0) {
			log_info(TAG, "%s: removed %u rules from %s", fname, d->extra, rules_backend_name(b));
			rc = -EAGAIN; /* look again: the loop ends when none is left */
			again = true;
		} else if (rc != -EBUSY && rc != -ETIMEDOUT && d->extra != 0) {
			/* A deletion fails when the rule went away in between: look
			 * again. Anything else (lock, timeout, a missing extension)
			 * will not get better by retrying now. */
			again = true;
		}
	}
	free(text);
	free(d);
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
		log_info(TAG, "moving the rules from %s to %s", rules_backend_name(ns->rules_backend),
			 rules_backend_name(ns->backend));
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
	ns->nrules = rules_build(ns->cfg.addrs, ns->cfg.naddrs, cfg->health_port, ns->rules,
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
	metrics_header(b, "nodedns_node_setup_backend_fallbacks_total", "counter",
		       "Automatic iptables backend checks that saw no kube-proxy chains and fell back "
		       "to a guess or the system default.");
	metrics_u64(b, "nodedns_node_setup_backend_fallbacks_total", NULL,
		    atomic_load_explicit(&st->backend_fallbacks, memory_order_relaxed));
	metrics_header(b, "nodedns_node_setup_backend_fallback", "gauge",
		       "1 while the iptables backend in use is such a fallback.");
	metrics_i64(b, "nodedns_node_setup_backend_fallback", NULL,
		    atomic_load_explicit(&st->backend_fallback, memory_order_relaxed));
}
