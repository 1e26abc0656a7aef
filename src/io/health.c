/* src/io/health.c - the /health DNS probe: one id.server. CH TXT query over UDP. */
#include "nodedns/io/health.h"

#include <stddef.h>
#include <string.h>

#include "nodedns/util/netaddr.h"
#include "nodedns/util/wire.h"

/* The query: ID (filled in), flags 0 (QUERY, RD=0), QDCOUNT=1, then
 * id.server. TXT CH. All letters lower case. */
static const uint8_t health_query[HEALTH_QUERY_BYTES] = {
	0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x02, 'i',  'd',  0x06, 's',  'e',  'r',  'v',  'e',  'r',  0x00,
	0x00, 0x10, /* TXT */
	0x00, 0x03, /* CH */
};

bool health_reply_matches(const uint8_t query[HEALTH_QUERY_BYTES], const uint8_t *p, size_t n)
{
	if (n < HEALTH_QUERY_BYTES)
		return false;
	if (p[0] != query[0] || p[1] != query[1])
		return false;
	if (!(p[2] & 0x80) || ((p[2] >> 3) & 0x0f) != 0)
		return false;
	if (wire_get16(p + 4) != 1)
		return false;
	/* The name occupies the same bytes in query and reply; label lengths
	 * are below 'A', so lower-casing every byte only folds letters. */
	for (size_t i = DNS_HEADER_BYTES; i < HEALTH_QUERY_BYTES; i++)
		if (wire_lower(p[i]) != query[i])
			return false;
	return true;
}

static void finish(struct health_probe *p, const char *why, int err)
{
	if (!p->active)
		return;
	p->active = false;
	p->cb(p->arg, why, err);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct health_probe *p = h->data;

	(void)suggested;
	*buf = uv_buf_init((char *)p->reply, sizeof(p->reply));
}

static void on_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *from,
		    unsigned flags)
{
	struct health_probe *p = h->data;

	(void)flags;
	if (!p->active)
		return;
	if (nread < 0) {
		finish(p, "recv", (int)nread);
		return;
	}
	if (nread == 0 || !from || !netaddr_sa_equal(from, (const struct sockaddr *)&p->target))
		return;
	if (health_reply_matches(p->query, (const uint8_t *)buf->base, (size_t)nread))
		finish(p, NULL, 0);
}

static void on_sent(uv_udp_send_t *req, int status)
{
	struct health_probe *p = req->data;

	if (status < 0)
		finish(p, "send", status);
}

int health_probe_start(struct health_probe *p, uv_loop_t *loop, const struct sockaddr *target,
		       health_probe_cb cb, void *arg, const char **why)
{
	socklen_t len = netaddr_sa_len(target);
	uint16_t id;
	int rc;

	memset(p, 0, offsetof(struct health_probe, query));
	p->cb = cb;
	p->arg = arg;
	memcpy(&p->target, target, len);
	*why = "socket";
	rc = uv_udp_init(loop, &p->udp);
	if (rc < 0)
		return rc;
	p->udp.data = p;
	p->open = true;
	*why = "connect";
	rc = uv_udp_connect(&p->udp, (const struct sockaddr *)&p->target);
	if (rc < 0)
		return rc;
	*why = "recv";
	rc = uv_udp_recv_start(&p->udp, on_alloc, on_recv);
	if (rc < 0)
		return rc;
	if (uv_random(NULL, NULL, &id, sizeof(id), 0, NULL) != 0)
		id = (uint16_t)(uv_hrtime() ^ (uintptr_t)p);
	memcpy(p->query, health_query, sizeof(p->query));
	wire_put16(p->query, id);
	uv_buf_t buf = uv_buf_init((char *)p->query, sizeof(p->query));
	p->send.data = p;
	*why = "send";
	rc = uv_udp_send(&p->send, &p->udp, &buf, 1, NULL, on_sent);
	if (rc < 0)
		return rc;
	p->active = true;
	*why = NULL;
	return 0;
}

void health_probe_close(struct health_probe *p, uv_close_cb closed, void *data)
{
	p->active = false;
	if (!p->open)
		return;
	p->open = false;
	p->udp.data = data;
	uv_close((uv_handle_t *)&p->udp, closed);
}
