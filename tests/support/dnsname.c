/* tests/support/dnsname.c - dotted names to DNS wire form, for tests. */
#include "support/dnsname.h"

#include <string.h>

size_t dnsname_to_wire(const char *s, uint8_t *out)
{
	size_t n = 0;
	while (*s && !(s[0] == '.' && s[1] == '\0')) {
		const char *dot = strchr(s, '.');
		size_t l = dot ? (size_t)(dot - s) : strlen(s);
		out[n++] = (uint8_t)l;
		memcpy(out + n, s, l);
		n += l;
		s += l;
		if (*s == '.')
			s++;
	}
	out[n++] = 0;
	return n;
}
