/* src/cluster/k8s_objects_internal.h - Kubernetes objects as compact structs (inside the layer).
 *
 * k8s_objects.c turns a Service, EndpointSlice or Namespace as the API server
 * encodes it (jansson) into the structs below; the store keeps them and the
 * snapshot records are built from them. Every field read is type-checked: a
 * malformed object is rejected whole (-EINVAL, err says why) and nothing is
 * left allocated. Only ready endpoint addresses are kept.
 *
 * Glossary:
 *  - svc key: "<ns>/<name>", lower case; '/' cannot occur in either part.
 */
#ifndef NODEDNS_CLUSTER_K8S_OBJECTS_INTERNAL_H
#define NODEDNS_CLUSTER_K8S_OBJECTS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct json_t;

/* ----------------------------------------------------------------- limits */

#define K8S_LABEL_MAX 63              /* namespace, service, hostname, port name */
#define K8S_SLICE_NAME_MAX 253        /* EndpointSlice names are DNS subdomains */
#define K8S_KEY_MAX (K8S_LABEL_MAX * 2 + 2)
#define K8S_MAX_PORTS 100             /* per Service or EndpointSlice (API limit) */
#define K8S_MAX_ENDPOINTS 1000        /* per EndpointSlice (API limit) */
#define K8S_MAX_ADDRS_PER_ENDPOINT 100 /* API limit */
#define K8S_MAX_ADDRS_PER_SLICE 10000 /* the controller writes 1 per endpoint */
#define K8S_MAX_CLUSTER_IPS 2         /* API limit: one per family */
#define K8S_MAX_OBJECTS 1000000u      /* whole store */
#define K8S_MAX_ADDRS_TOTAL 4000000u  /* ready addresses, whole store */
#define K8S_MAX_TARGET_PORTS 1000     /* union of ports under one endpoint name */

/* ---------------------------------------------------------------- structs */

enum k8s_proto { K8S_PROTO_TCP = 0, K8S_PROTO_UDP, K8S_PROTO_SCTP, K8S_PROTO_OTHER };
enum k8s_svc_kind { K8S_SVC_CLUSTERIP = 0, K8S_SVC_HEADLESS, K8S_SVC_EXTERNAL };

struct k8s_ip {
	uint8_t fam; /* 4 or 6 */
	uint8_t b[16];
};

struct k8s_port {
	uint16_t port; /* 0: none (an EndpointSlice port without a number) */
	uint8_t proto; /* enum k8s_proto */
	uint8_t name_len;
	char name[K8S_LABEL_MAX]; /* lower case, not terminated; "" = unnamed */
};

/* One ready address of an EndpointSlice. Its DNS label is the endpoint's
 * hostname, kept once per slice, or else derived from the address when
 * asked (k8s_objects_addr_label()). */
struct k8s_addr {
	struct k8s_ip ip;
	uint8_t host_len;  /* 0: no hostname, the label is the dashed IP */
	uint32_t host_off; /* into k8s_slice.hosts */
};

struct k8s_service {
	char ns[K8S_LABEL_MAX + 1], name[K8S_LABEL_MAX + 1];
	uint8_t kind; /* enum k8s_svc_kind */
	uint8_t n_ips;
	struct k8s_ip ips[K8S_MAX_CLUSTER_IPS];
	uint8_t ext_len; /* wire length of the ExternalName target; 0: none */
	uint8_t ext[255];
	uint16_t n_ports;
	struct k8s_port *ports; /* owned (malloc) */
};

struct k8s_slice {
	char ns[K8S_LABEL_MAX + 1], name[K8S_SLICE_NAME_MAX + 1];
	char svc[K8S_LABEL_MAX + 1]; /* "" when the service-name label is absent */
	uint16_t n_ports;
	struct k8s_port *ports; /* owned (malloc) */
	uint32_t n_addrs; /* ready addresses only; FQDN slices have none */
	struct k8s_addr *addrs; /* owned (malloc) */
	uint32_t hosts_len;
	char *hosts; /* owned (malloc): hostnames back to back, lower case */
};

/** The DNS label of address @p a of @p sl: its hostname, or the dashed IP
 * written into @p buf. @return the label (not terminated), *len bytes. */
const char *k8s_objects_addr_label(const struct k8s_slice *sl, const struct k8s_addr *a,
				   char buf[K8S_LABEL_MAX], uint8_t *len);
/** Add address @p ip labelled @p label (@p len bytes, lower case) to @p sl,
 * whose addrs array has room; a label equal to the dashed IP is not kept.
 * @p hosts_cap: the bytes sl->hosts has room for (grown as needed).
 * @return 0 or -ENOMEM. */
int k8s_objects_addr_set(struct k8s_slice *sl, uint32_t *hosts_cap, const struct k8s_ip *ip,
			 const char *label, uint8_t len);

/* --------------------------------------------------------------- decoding */

/** Copy @p len bytes of @p s as a DNS label (1..63 of [A-Za-z0-9_-]),
 * lower-cased, into @p out (not terminated); *outlen = len when not NULL.
 * @return 0 or -EINVAL (@p what names it in err). */
int k8s_objects_copy_label(const char *s, size_t len, const char *what, char *out,
			   uint8_t *outlen, char *err, size_t errlen);
/** An IP address of family @p fam (4, 6, or 0 for either). @return 0 or -EINVAL. */
int k8s_objects_parse_ip(const char *s, size_t len, int fam, struct k8s_ip *ip);
/** A port's "protocol" (NULL: absent, TCP). @return an enum k8s_proto. */
int k8s_objects_parse_proto(const char *s, size_t len);

/** What a slice's arrays have room for while it is being built. */
struct k8s_slice_caps {
	uint32_t addrs, hosts;
};
/** Append ready address @p ip labelled @p host (@p host_len bytes, 0: none)
 * to @p sl, growing its arrays. @return 0 or -ENOMEM. */
int k8s_objects_slice_add_addr(struct k8s_slice *sl, struct k8s_slice_caps *caps,
			       const struct k8s_ip *ip, const char *host, uint8_t host_len);
/** The slice is complete: give back the unused ends of its arrays. */
void k8s_objects_slice_trim(struct k8s_slice *sl, const struct k8s_slice_caps *caps);

/**
 * Decode @p obj (borrowed) into @p svc, which the caller zeroed; with
 * @p meta_only just metadata.namespace and metadata.name (a DELETED event).
 * On error svc->ports is left NULL. @return 0, -EINVAL (err says why), -ENOMEM.
 */
int k8s_objects_service(const struct json_t *obj, bool meta_only, struct k8s_service *svc,
			char *err, size_t errlen);
/** The same for an EndpointSlice into the zeroed @p sl. */
int k8s_objects_slice(const struct json_t *obj, bool meta_only, struct k8s_slice *sl, char *err,
		      size_t errlen);
/** A Namespace: its lower-cased metadata.name into @p name (terminated). */
int k8s_objects_namespace(const struct json_t *obj, char name[K8S_LABEL_MAX + 1], char *err,
			  size_t errlen);

/** Free a struct k8s_service (or k8s_slice) and what it owns; NULL is fine.
 * (void * for use as a map's free_val.) */
void k8s_objects_service_free(void *svc);
void k8s_objects_slice_free(void *sl);

/** "<ns>/<name>" into @p buf (K8S_KEY_MAX bytes; more for slice names),
 * terminated; @return its length. */
size_t k8s_objects_key(char *buf, const char *ns, size_t ns_len, const char *name,
		       size_t name_len);

/* ---------------------------------------- helpers for documents of objects */

/** Format the reason into @p err (may be NULL) and @return @p rc. */
__attribute__((format(printf, 4, 5))) int k8s_objects_fail(int rc, char *err, size_t errlen,
							    const char *fmt, ...);
/** An optional string member @p key of @p obj: absent or null gives *s = NULL;
 * a non-string or one with a NUL byte is -EINVAL (@p what names it in err). */
int k8s_objects_opt_string(const struct json_t *obj, const char *key, const char *what,
			   const char **s, size_t *len, char *err, size_t errlen);
/** An optional object (or, with @p array, array) member: absent or null gives NULL. */
int k8s_objects_opt_member(const struct json_t *obj, const char *key, bool array,
			   const char *what, const struct json_t **out, char *err, size_t errlen);

#endif
