/* include/nodedns/io/http_head.h - the request-head checks of admin's HTTP/1.1 responder.
 *
 * Pure (no libuv): find the end of a request head in a buffer, parse the
 * request line into the method and which admin path it names, and check the
 * header lines' syntax (RFC 9112 tokens, no control bytes in values).
 * Nothing here allocates; every pointer is borrowed for the call.
 */
#ifndef NODEDNS_IO_HTTP_HEAD_H
#define NODEDNS_IO_HTTP_HEAD_H

#include <stdbool.h>
#include <stddef.h>

enum http_method { HTTP_METHOD_GET, HTTP_METHOD_HEAD, HTTP_METHOD_OTHER };
enum http_path { HTTP_PATH_UNKNOWN, HTTP_PATH_METRICS, HTTP_PATH_HEALTH, HTTP_PATH_READY };

/**
 * Parse "METHOD SP request-target SP HTTP/1.x" (@p n bytes, without the line
 * end). The target may be origin-form ("/metrics?x"), absolute-form
 * ("http://host/metrics") or "*"; query and fragment are ignored.
 * @return 0 with *method and *path set, or -EINVAL (*method may be set).
 */
int http_head_parse_line(const char *s, size_t n, enum http_method *method,
			 enum http_path *path);

/** Whether the header lines from @p p up to @p end (which includes the blank
 * line ending the head) are well formed. */
bool http_head_headers_valid(const char *p, const char *end);

/**
 * Find the blank line ending the head ("\n\n" or "\n\r\n") in the @p len
 * bytes of @p head, resuming at *scan (start with 0; updated when not found).
 * @return true with *end the length of the head.
 */
bool http_head_find_end(const char *head, size_t len, size_t *scan, size_t *end);

#endif
