/* tests/unit/test_rules_backend.c - the automatic iptables backend choice (node/rules.h).
 *
 * Pure: rules_choose_backend() on what a node check could have seen, in
 * particular an iptables-legacy node where iptables-legacy-save fails
 * because the container has no NET_RAW.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "nodedns/node/rules.h"

static struct rules_probe both(int legacy_kube, int nft_kube, bool legacy_tables)
{
	struct rules_probe p = { .has_legacy = true, .has_nft = true, .has_plain = true,
				 .legacy_kube = legacy_kube, .nft_kube = nft_kube,
				 .legacy_tables = legacy_tables };
	return p;
}

static void test_choose_kube_chains(void **state)
{
	(void)state;
	enum rules_basis why;
	struct rules_probe p = both(40, 0, true);
	assert_int_equal(rules_choose_backend(&p, &why), NETSETUP_BACKEND_LEGACY);
	assert_int_equal(why, RULES_BASIS_KUBE);
	p = both(0, 12, false);
	assert_int_equal(rules_choose_backend(&p, &why), NETSETUP_BACKEND_NFT);
	assert_int_equal(why, RULES_BASIS_KUBE);
	/* Legacy unreadable, kube-proxy seen in nft: nft, sure. */
	p = both(-1, 12, true);
	assert_int_equal(rules_choose_backend(&p, &why), NETSETUP_BACKEND_NFT);
	assert_int_equal(why, RULES_BASIS_KUBE);
	p = both(2, 30, true);
	assert_int_equal(rules_choose_backend(&p, &why), NETSETUP_BACKEND_NFT);
	assert_int_equal(why, RULES_BASIS_KUBE);
}

static void test_choose_without_net_raw(void **state)
{
	(void)state;
	enum rules_basis why;
	/* iptables-legacy-save failed, nft holds nothing of kube-proxy, and
	 * the kernel lists legacy tables: legacy, as a guess (it used to be
	 * the system default, i.e. nft in the image). */
	struct rules_probe p = both(-1, 0, true);
	assert_int_equal(rules_choose_backend(&p, &why), NETSETUP_BACKEND_LEGACY);
	assert_int_equal(why, RULES_BASIS_LEGACY_TABLES);
	/* No legacy tables at all: the system default, a fallback. */
	p = both(-1, 0, false);
	assert_int_equal(rules_choose_backend(&p, &why), NETSETUP_BACKEND_PLAIN);
	assert_int_equal(why, RULES_BASIS_DEFAULT);
	/* Legacy readable and empty of KUBE-*: nothing to go on but the default. */
	p = both(0, 0, true);
	assert_int_equal(rules_choose_backend(&p, &why), NETSETUP_BACKEND_PLAIN);
	assert_int_equal(why, RULES_BASIS_DEFAULT);
	p = both(-1, -1, true);
	assert_int_equal(rules_choose_backend(&p, &why), NETSETUP_BACKEND_LEGACY);
	assert_int_equal(why, RULES_BASIS_LEGACY_TABLES);
}

static void test_choose_one_variant(void **state)
{
	(void)state;
	enum rules_basis why;
	struct rules_probe p = { .has_legacy = true, .legacy_kube = 0 };
	assert_int_equal(rules_choose_backend(&p, &why), NETSETUP_BACKEND_LEGACY);
	assert_int_equal(why, RULES_BASIS_DEFAULT);
	p = (struct rules_probe){ .has_nft = true };
	assert_int_equal(rules_choose_backend(&p, &why), NETSETUP_BACKEND_NFT);
	p = (struct rules_probe){ .has_plain = true, .has_nft = true };
	assert_int_equal(rules_choose_backend(&p, &why), NETSETUP_BACKEND_PLAIN);
	assert_int_equal(why, RULES_BASIS_DEFAULT);
}

static void test_legacy_tables_text(void **state)
{
	(void)state;
	assert_false(rules_has_legacy_tables(""));
	assert_false(rules_has_legacy_tables("\n"));
	assert_false(rules_has_legacy_tables(NULL));
	assert_true(rules_has_legacy_tables("nat\n"));
	assert_true(rules_has_legacy_tables("filter\nnat\nraw\n"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_choose_kube_chains),
		cmocka_unit_test(test_choose_without_net_raw),
		cmocka_unit_test(test_choose_one_variant),
		cmocka_unit_test(test_legacy_tables_text),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
