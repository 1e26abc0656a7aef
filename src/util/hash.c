/* src/util/hash.c - random keys for the keyed hash. */
#include "nodedns/util/hash.h"

#include <sys/random.h>
#include <time.h>
#include <unistd.h>

void hash_key_random(struct hash_key *k)
{
	uint64_t r[2];
	if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
		/* No entropy source (very old kernel, seccomp): weak but unique. */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		r[0] = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t)ts.tv_sec;
		r[1] = (uint64_t)(uintptr_t)k ^ ((uint64_t)getpid() << 32);
		clock_gettime(CLOCK_MONOTONIC, &ts);
		r[1] ^= (uint64_t)ts.tv_nsec * 0xc2b2ae3d27d4eb4full;
	}
	k->k0 = r[0];
	k->k1 = r[1];
}
