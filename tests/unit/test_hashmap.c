/* tests/unit/test_hashmap.c - unit tests for util/hashmap (the store's mutable map). */
#include "nodedns/util/hashmap.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static int freed;

static void count_free(void *v)
{
	(void)v;
	freed++;
}

static void test_put_get_del(void **state)
{
	struct hash_key k;
	struct hmap m;
	void *old = (void *)1;
	bool found = true;

	(void)state;
	hash_key_random(&k);
	assert_int_equal(hmap_init(&m, &k), 0);
	assert_null(hmap_get(&m, "a", 1));
	assert_int_equal(hmap_put(&m, "a", 1, (void *)10, &old), 0);
	assert_null(old);
	assert_int_equal(hmap_put(&m, "ab", 2, (void *)20, NULL), 0);
	assert_int_equal(hmap_put(&m, "", 0, (void *)30, NULL), 0); /* the empty key is a key */
	assert_int_equal(hmap_count(&m), 3);
	assert_ptr_equal(hmap_get(&m, "a", 1), (void *)10);
	assert_ptr_equal(hmap_get(&m, "ab", 2), (void *)20);
	assert_ptr_equal(hmap_get(&m, "", 0), (void *)30);
	assert_null(hmap_get(&m, "ab", 1 + 2)); /* length is part of the key */

	/* replace keeps the count and hands back the old value */
	assert_int_equal(hmap_put(&m, "a", 1, (void *)11, &old), 0);
	assert_ptr_equal(old, (void *)10);
	assert_int_equal(hmap_count(&m), 3);

	assert_ptr_equal(hmap_del(&m, "a", 1, &found), (void *)11);
	assert_true(found);
	assert_null(hmap_del(&m, "a", 1, &found));
	assert_false(found);
	assert_null(hmap_del(&m, "zz", 2, NULL));
	assert_int_equal(hmap_count(&m), 2);

	freed = 0;
	hmap_clear(&m, count_free);
	assert_int_equal(freed, 2);
	assert_int_equal(hmap_count(&m), 0);
	assert_null(hmap_get(&m, "ab", 2));
	assert_int_equal(hmap_put(&m, "ab", 2, (void *)21, NULL), 0); /* usable after clear */
	freed = 0;
	hmap_deinit(&m, count_free);
	assert_int_equal(freed, 1);
	hmap_deinit(&m, count_free); /* twice is fine */
}

static void test_grow_and_foreach(void **state)
{
	enum { N = 5000 };
	struct hash_key k = { 1, 2 };
	struct hmap m;
	char key[32];
	size_t seen = 0;
	uintptr_t sum = 0;

	(void)state;
	assert_int_equal(hmap_init(&m, &k), 0);
	for (uintptr_t i = 1; i <= N; i++) {
		int n = snprintf(key, sizeof(key), "ns-%lu/svc", (unsigned long)i);
		assert_int_equal(hmap_put(&m, key, (size_t)n, (void *)i, NULL), 0);
	}
	assert_int_equal(hmap_count(&m), N);
	assert_true(m.nb >= N); /* buckets doubled along */
	for (uintptr_t i = 1; i <= N; i++) {
		int n = snprintf(key, sizeof(key), "ns-%lu/svc", (unsigned long)i);
		assert_ptr_equal(hmap_get(&m, key, (size_t)n), (void *)i);
	}
	HMAP_FOREACH(&m, node)
	{
		seen++;
		sum += (uintptr_t)node->val;
	}
	assert_int_equal(seen, N);
	assert_int_equal(sum, (uintptr_t)N * (N + 1) / 2);
	hmap_deinit(&m, NULL);
}

static void test_limits_and_keys(void **state)
{
	struct hash_key k1 = { 1, 2 }, k2 = { 3, 4 };
	struct hmap a, b, tmp;
	static uint8_t big[UINT16_MAX + 1];

	(void)state;
	assert_int_equal(hmap_init(&a, &k1), 0);
	assert_int_equal(hmap_init(&b, &k2), 0);
	assert_int_equal(hmap_put(&a, big, sizeof(big), (void *)1, NULL), -EINVAL);
	assert_int_equal(hmap_count(&a), 0);
	assert_int_equal(hmap_put(&a, big, UINT16_MAX, (void *)1, NULL), 0);
	assert_ptr_equal(hmap_get(&a, big, UINT16_MAX), (void *)1);

	/* the map keeps its own copy of the key: swapping maps is fine */
	assert_int_equal(hmap_put(&b, "x", 1, (void *)2, NULL), 0);
	tmp = a;
	a = b;
	b = tmp;
	assert_ptr_equal(hmap_get(&a, "x", 1), (void *)2);
	assert_ptr_equal(hmap_get(&b, big, UINT16_MAX), (void *)1);
	assert_true(hash_bytes(&k1, "x", 1) != hash_bytes(&k2, "x", 1));
	hmap_deinit(&a, NULL);
	hmap_deinit(&b, NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_put_get_del),
		cmocka_unit_test(test_grow_and_foreach),
		cmocka_unit_test(test_limits_and_keys),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
