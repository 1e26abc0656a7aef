/* src/cluster/k8s_store_internal.h - the store as the publisher sees it: read-only, and its changes.
 *
 * The publisher (cluster_publish.c) reads the store only through these
 * functions: the objects by key, and the keys that changed since it last
 * published. Once a snapshot holds every change it calls
 * k8s_store_changes_clear(), the one call here that writes. Objects and
 * arrays returned are the store's, valid until the store next changes.
 */
#ifndef NODEDNS_CLUSTER_K8S_STORE_INTERNAL_H
#define NODEDNS_CLUSTER_K8S_STORE_INTERNAL_H

#include "nodedns/cluster/k8s_store.h"

#include "k8s_objects_internal.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** The Service of svc key @p key, NULL when there is none. */
const struct k8s_service *k8s_store_service(const struct k8s_store *s, const void *key,
					    size_t klen);
/** The EndpointSlices attached to Service @p key (by their service-name
 * label), in no particular order; *n of them (0: NULL). */
struct k8s_slice *const *k8s_store_service_slices(const struct k8s_store *s, const void *key,
						  size_t klen, uint32_t *n);
/** A namespace exists when its Namespace object does, or a Service is in it. */
bool k8s_store_ns_exists(const struct k8s_store *s, const void *ns, size_t len);

/** Called with each key; a negative return stops the walk and is returned. */
typedef int (*k8s_store_key_fn)(void *arg, const uint8_t *key, size_t klen);

/** Nothing changed since the last k8s_store_changes_clear(). */
bool k8s_store_unchanged(const struct k8s_store *s);
/**
 * What changed since the last k8s_store_changes_clear(). Normally the svc
 * keys and namespaces that were touched (@p all = false). After a relist or
 * a file load the store cannot tell (@p all = true): then every svc key and
 * every existing namespace is visited, and the caller must also look at the
 * keys it published before that are not there any more.
 * @return 0 or the first negative return of a callback.
 */
int k8s_store_foreach_change(const struct k8s_store *s, k8s_store_key_fn on_svc,
			     k8s_store_key_fn on_ns, void *arg, bool *all);
/** Forget the changes: a snapshot now holds them. */
void k8s_store_changes_clear(struct k8s_store *s);
/** The bytes of the last snapshot's records and maps, for the store's stats. */
void k8s_store_set_published_bytes(struct k8s_store *s, uint64_t records, uint64_t maps);

/* ------------------------------------------- decoded objects (a file) */

/**
 * Add (or replace) an object decoded elsewhere than from JSON (the warm-start
 * file, warm_file.c), as an ADDED event would. The service and slice, which
 * the caller checked as k8s_objects.c would have, are consumed, also on
 * failure. @return 0, -ENOSPC (a store limit; err says which), -ENOMEM.
 */
int k8s_store_put_service(struct k8s_store *s, struct k8s_service *svc, char *err,
			  size_t errlen);
int k8s_store_put_slice(struct k8s_store *s, struct k8s_slice *sl, char *err, size_t errlen);
/** A Namespace object named @p name (@p len bytes, a lower-case label). */
int k8s_store_put_namespace(struct k8s_store *s, const char *name, size_t len, char *err,
			    size_t errlen);

/** Called with each object: a const struct k8s_service * or k8s_slice *
 * (@p len unused), or a namespace's name (not terminated, @p len bytes). */
typedef int (*k8s_store_obj_fn)(void *arg, const void *obj, size_t len);
/** Visit every object of @p kind, in no particular order. @return 0 or the
 * first negative return of @p fn. */
int k8s_store_foreach_object(const struct k8s_store *s, enum k8s_kind kind,
			     k8s_store_obj_fn fn, void *arg);

/** Replace the content of @p s with that of @p from, which is freed; every
 * key counts as changed for the next publish. */
void k8s_store_take(struct k8s_store *s, struct k8s_store *from);

#endif
