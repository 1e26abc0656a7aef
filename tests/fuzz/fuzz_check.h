/* tests/fuzz/fuzz_check.h - CHECK(cond), a fuzz target's own invariant.
 *
 * When @p cond is false: one line "fuzz_check: FILE:LINE: check failed: COND"
 * on stderr (FILE names the target; tests/fuzz/run.sh shows lines starting
 * with "fuzz_"), then abort(), which libFuzzer reports as a crash and saves
 * the input of.
 */
#ifndef NODEDNS_FUZZ_CHECK_H
#define NODEDNS_FUZZ_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond)                                                                   \
	do {                                                                          \
		if (!(cond)) {                                                        \
			fprintf(stderr, "fuzz_check: %s:%d: check failed: %s\n",     \
				__FILE__, __LINE__, #cond);                            \
			abort();                                                      \
		}                                                                     \
	} while (0)

#endif
