/* src/node/rules_probe.c - what the automatic iptables backend check looks at on the node. */
#include "nodedns/node/rules.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "nodedns/node/subprocess.h"

#define PROBE_SAVE_MAX_BYTES (64u << 20) /* iptables-save output we are willing to read */

/* KUBE-* in what @p save_path prints; -1 when it fails (@p why: its first
 * line of stderr, or the exit status). */
static int count_kube(const char *save_path, uint32_t timeout_ms, char *why, size_t whylen)
{
	char *argv[] = { (char *)save_path, NULL };
	struct subprocess_result r;
	int n = -1;
	int rc = subprocess_run(save_path, argv, NULL, 0, PROBE_SAVE_MAX_BYTES, timeout_ms, &r);
	if (rc == 0 && r.status == 0) {
		n = 0;
		for (const char *p = r.out; p && (p = strstr(p, "KUBE-")) != NULL; p += 5)
			n++;
	} else if (rc < 0) {
		snprintf(why, whylen, "%s", strerror(-rc));
	} else if (r.err[0]) {
		snprintf(why, whylen, "%.*s", (int)strcspn(r.err, "\n"), r.err);
	} else {
		snprintf(why, whylen, "exit status %d", r.status);
	}
	subprocess_result_free(&r);
	return n;
}

/* Legacy iptables tables exist in this network namespace (the list is
 * readable without NET_RAW, unlike the tables themselves). */
static bool legacy_tables_present(void)
{
	char buf[256] = "";
	FILE *f = fopen(NETSETUP_IP_TABLES_NAMES, "re");
	if (!f)
		return false;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return rules_has_legacy_tables(buf);
}

/* See rules.h. */
void rules_probe_node(struct rules_probe *p, uint32_t timeout_ms, char *why, size_t whylen)
{
	char l[PATH_MAX], n[PATH_MAX], plain[PATH_MAX], nwhy[32];
	memset(p, 0, sizeof(*p));
	if (whylen)
		why[0] = '\0';
	p->has_legacy = rules_find_bin("iptables-legacy-save", l, sizeof(l));
	p->has_nft = rules_find_bin("iptables-nft-save", n, sizeof(n));
	p->has_plain = rules_find_bin("iptables-save", plain, sizeof(plain));
	if (!p->has_legacy || !p->has_nft)
		return;
	p->legacy_kube = count_kube(l, timeout_ms, why, whylen);
	p->nft_kube = count_kube(n, timeout_ms, nwhy, sizeof(nwhy));
	p->legacy_tables = legacy_tables_present();
}
