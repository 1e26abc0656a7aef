/* tests/support/dnsname.h - dotted names to DNS wire form, for tests.
 *
 * Unlike dnsmsg_name_from_text() it checks nothing (tests build bad names on
 * purpose) and takes a trailing dot.
 */
#ifndef NODEDNS_TESTS_DNSNAME_H
#define NODEDNS_TESTS_DNSNAME_H

#include <stddef.h>
#include <stdint.h>

/** Dotted text (@p text, borrowed; "" or "." is the root, a trailing dot is
 * optional) to wire form in @p out (room for the result; labels are not
 * checked). @return the wire length, root label included. */
size_t dnsname_to_wire(const char *text, uint8_t *out);

#endif
