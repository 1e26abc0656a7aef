/* include/nodedns/util/hash.h - keyed hashing of names a client or a peer chose.
 *
 * SipHash-1-3 with a 128-bit key from getrandom(). It is a keyed PRF, so,
 * unlike seeded multiply/xor hashes (which have seed-independent collisions),
 * nobody who does not know the key can build colliding keys; on short keys it
 * costs a few tens of nanoseconds. Every table indexed by outside input (the
 * answer cache, the in-flight questions, the cluster store) hashes with it.
 * The function is inline: it is on the path of every query.
 */
#ifndef NODEDNS_UTIL_HASH_H
#define NODEDNS_UTIL_HASH_H

#include <stddef.h>
#include <stdint.h>

/** A SipHash key; fill it with hash_key_random(). */
struct hash_key {
	uint64_t k0, k1;
};

/** A fresh random key (getrandom(); without an entropy source, one made of
 * clocks, the pid and @p k's address: weak, but different per table). */
void hash_key_random(struct hash_key *k);

static inline uint64_t hash_rotl64_(uint64_t x, unsigned b)
{
	return (x << b) | (x >> (64 - b));
}

static inline uint64_t hash_load_le64_(const uint8_t *p)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

#define HASH_SIPROUND_(v0, v1, v2, v3)                                                   \
	do {                                                                             \
		v0 += v1; v1 = hash_rotl64_(v1, 13); v1 ^= v0; v0 = hash_rotl64_(v0, 32); \
		v2 += v3; v3 = hash_rotl64_(v3, 16); v3 ^= v2;                           \
		v0 += v3; v3 = hash_rotl64_(v3, 21); v3 ^= v0;                           \
		v2 += v1; v1 = hash_rotl64_(v1, 17); v1 ^= v2; v2 = hash_rotl64_(v2, 32); \
	} while (0)

/** SipHash-1-3 of @p len bytes at @p data under @p key: one compression
 * round per word, three finalization rounds. */
static inline uint64_t hash_bytes(const struct hash_key *key, const void *data, size_t len)
{
	const uint8_t *p = data;
	uint64_t v0 = key->k0 ^ 0x736f6d6570736575ull;
	uint64_t v1 = key->k1 ^ 0x646f72616e646f6dull;
	uint64_t v2 = key->k0 ^ 0x6c7967656e657261ull;
	uint64_t v3 = key->k1 ^ 0x7465646279746573ull;
	size_t whole = len & ~(size_t)7;
	uint64_t m;

	for (size_t i = 0; i < whole; i += 8) {
		m = hash_load_le64_(p + i);
		v3 ^= m;
		HASH_SIPROUND_(v0, v1, v2, v3);
		v0 ^= m;
	}
	m = (uint64_t)(len & 0xff) << 56;
	for (size_t i = 0; i < (len & 7); i++)
		m |= (uint64_t)p[whole + i] << (8 * i);
	v3 ^= m;
	HASH_SIPROUND_(v0, v1, v2, v3);
	v0 ^= m;
	v2 ^= 0xff;
	HASH_SIPROUND_(v0, v1, v2, v3);
	HASH_SIPROUND_(v0, v1, v2, v3);
	HASH_SIPROUND_(v0, v1, v2, v3);
	return v0 ^ v1 ^ v2 ^ v3;
}

#endif
