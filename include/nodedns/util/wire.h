/* include/nodedns/util/wire.h - the few byte-level helpers every layer needs.
 *
 * Big-endian loads and stores, ASCII lower-casing (DNS names compare
 * case-insensitively in ASCII only, RFC 4343) and the size of a DNS header.
 * Header-only and pure: the hot path inlines them.
 */
#ifndef NODEDNS_UTIL_WIRE_H
#define NODEDNS_UTIL_WIRE_H

#include <stddef.h>
#include <stdint.h>

/** A DNS message header: ID, flags and the four section counts (RFC 1035 4.1.1). */
#define DNS_HEADER_BYTES 12

static inline uint16_t wire_get16(const uint8_t *p)
{
	return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static inline uint32_t wire_get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline void wire_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void wire_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/** ASCII 'A'..'Z' to 'a'..'z'; every other byte as it is. */
static inline uint8_t wire_lower(uint8_t c)
{
	return (c >= 'A' && c <= 'Z') ? (uint8_t)(c + ('a' - 'A')) : c;
}

/** Lower-case @p n bytes from @p src into @p dst (they may be the same). */
static inline void wire_lower_copy(uint8_t *dst, const uint8_t *src, size_t n)
{
	for (size_t i = 0; i < n; i++)
		dst[i] = wire_lower(src[i]);
}

#endif
