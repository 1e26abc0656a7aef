"""tests/deploy/kustomize_lite.py - render deploy/'s kustomizations without kubectl.

`kubectl kustomize` is the reference (check_manifests.py uses it when
kubectl is installed, and then checks that this renderer agrees with it
object for object). This covers only what deploy/ uses, and refuses
anything else rather than render it wrongly:
  resources (files and directories), components (kind Component), patches
  given inline as JSON 6902 operations with a target, configMapGenerator
  (files, namespace, options.labels and disableNameSuffixHash; the name
  gets a content hash suffix
  and references from pod volumes follow it; in an overlay, behavior
  replace or merge on a ConfigMap generated below it), images (newName,
  newTag).
"""
import copy
import hashlib
import json
import os

import yaml

KNOWN_KEYS = {"apiVersion", "kind", "resources", "components", "patches",
              "configMapGenerator", "images"}


class Unsupported(Exception):
    pass


def dig(obj, *path, default=None):
    """obj[path[0]][path[1]]... or @default when a step is missing (for the
    scripts that read rendered objects)."""
    for p in path:
        if isinstance(obj, dict) and p in obj:
            obj = obj[p]
        elif isinstance(obj, list) and isinstance(p, int) and -len(obj) <= p < len(obj):
            obj = obj[p]
        else:
            return default
    return obj


def _load(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def _kustomization(d):
    for name in ("kustomization.yaml", "kustomization.yml", "Kustomization"):
        p = os.path.join(d, name)
        if os.path.isfile(p):
            k = _load(p)[0]
            extra = set(k) - KNOWN_KEYS
            if extra:
                raise Unsupported("%s: %s not supported here" % (p, sorted(extra)))
            return k
    raise Unsupported("%s: no kustomization.yaml" % d)


def config_map_hash(cm):
    """A name suffix from the ConfigMap's kind, name and data (10 characters,
    like kustomize's; not byte-for-byte its value, which check_manifests.py
    ignores when it compares the two renderings)."""
    m = {"kind": "ConfigMap", "name": cm["metadata"]["name"], "data": cm.get("data", {})}
    text = json.dumps(m, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    h = hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]
    return h.translate(str.maketrans({"0": "g", "1": "h", "3": "k", "a": "m", "e": "t"}))


def _generate(d, gen):
    extra = set(gen) - {"name", "namespace", "files", "options", "behavior"}
    if extra or set(gen.get("options") or {}) - {"labels", "disableNameSuffixHash"} \
            or gen.get("behavior", "create") not in ("create", "replace", "merge"):
        raise Unsupported("configMapGenerator %s: only name, namespace, files, behavior, options.labels"
                          " and options.disableNameSuffixHash" % gen.get("name"))
    data = {}
    for f in gen.get("files") or []:
        key, _, src = f.partition("=") if "=" in f else (os.path.basename(f), "", f)
        with open(os.path.join(d, src), encoding="utf-8") as fh:
            data[key] = fh.read()
    meta = {"name": gen["name"]}
    if gen.get("namespace"):
        meta["namespace"] = gen["namespace"]
    if (gen.get("options") or {}).get("labels"):
        meta["labels"] = dict(gen["options"]["labels"])
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}
    return cm, not (gen.get("options") or {}).get("disableNameSuffixHash")


def _pointer(path):
    if not path.startswith("/"):
        raise Unsupported("JSON pointer %r" % path)
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _apply_op(obj, op):
    parts = _pointer(op["path"])
    parent = obj
    for p in parts[:-1]:
        parent = parent[int(p)] if isinstance(parent, list) else parent[p]
    last = parts[-1]
    kind = op["op"]
    if kind == "add":
        if isinstance(parent, list):
            if last == "-":
                parent.append(copy.deepcopy(op["value"]))
            else:
                parent.insert(int(last), copy.deepcopy(op["value"]))
        else:
            parent[last] = copy.deepcopy(op["value"])
    elif kind == "replace":
        if isinstance(parent, list):
            parent[int(last)] = copy.deepcopy(op["value"])
        else:
            if last not in parent:
                raise Unsupported("replace of missing %s" % op["path"])
            parent[last] = copy.deepcopy(op["value"])
    elif kind == "remove":
        if isinstance(parent, list):
            del parent[int(last)]
        else:
            del parent[last]
    else:
        raise Unsupported("JSON patch op %r" % kind)


def _matches(obj, target):
    extra = set(target) - {"group", "version", "kind", "name", "namespace"}
    if extra:
        raise Unsupported("patch target %s" % sorted(extra))
    api = obj.get("apiVersion", "")
    group, _, version = api.rpartition("/")
    return all([
        target.get("kind") in (None, obj.get("kind")),
        target.get("name") in (None, obj.get("metadata", {}).get("name")),
        target.get("namespace") in (None, obj.get("metadata", {}).get("namespace")),
        target.get("group") in (None, group),
        target.get("version") in (None, version),
    ])


def _patch(objs, patches):
    for p in patches or []:
        if set(p) - {"target", "patch"} or "patch" not in p or "target" not in p:
            raise Unsupported("patches: only inline JSON 6902 with a target")
        ops = yaml.safe_load(p["patch"])
        if not isinstance(ops, list):
            raise Unsupported("patches: only JSON 6902 operation lists")
        hit = [o for o in objs if _matches(o, p["target"])]
        if not hit:
            raise Unsupported("patch target %s matches nothing" % p["target"])
        for o in hit:
            for op in ops:
                _apply_op(o, op)


def _set_images(objs, images):
    for img in images or []:
        for o in objs:
            pod = o.get("spec", {}).get("template", {}).get("spec", {})
            for c in (pod.get("initContainers") or []) + (pod.get("containers") or []):
                name, _, tag = c.get("image", "").partition(":")
                if name != img["name"]:
                    continue
                name = img.get("newName", name)
                tag = img.get("newTag", tag)
                c["image"] = name + (":" + tag if tag else "")


def _accumulate(d, component=False):
    k = _kustomization(d)
    want = "Component" if component else "Kustomization"
    if k.get("kind", "Kustomization") != want:
        raise Unsupported("%s: kind %s, want %s" % (d, k.get("kind"), want))
    objs, cms = [], []
    for r in k.get("resources") or []:
        p = os.path.normpath(os.path.join(d, r))
        if os.path.isdir(p):
            sub_objs, sub_cms = _accumulate(p)
            objs += sub_objs
            cms += sub_cms
        else:
            objs += _load(p)
    for gen in k.get("configMapGenerator") or []:
        cm, hashed = _generate(d, gen)
        behavior = gen.get("behavior", "create")
        key = lambda m: (m["metadata"]["name"], m["metadata"].get("namespace"))  # noqa: E731
        same = [i for i, (old, _) in enumerate(cms) if key(old) == key(cm)]
        if behavior == "create":
            if same:
                raise Unsupported("configMapGenerator %s: generated twice (behavior create)" % gen["name"])
            cms.append((cm, hashed))
            continue
        if not same:
            raise Unsupported("configMapGenerator %s: behavior %s but nothing to %s" % (gen["name"], behavior, behavior))
        old, _ = cms[same[0]]
        if behavior == "merge":
            old["data"].update(cm["data"])
            if cm["metadata"].get("labels"):
                old["metadata"].setdefault("labels", {}).update(cm["metadata"]["labels"])
            cm = old
        cms[same[0]] = (cm, hashed)
    for c in k.get("components") or []:
        comp = _kustomization(os.path.normpath(os.path.join(d, c)))
        if comp.get("kind") != "Component" or set(comp) - {"apiVersion", "kind", "patches", "images"}:
            raise Unsupported("component %s" % c)
        _patch(objs, comp.get("patches"))
        _set_images(objs, comp.get("images"))
    _patch(objs, k.get("patches"))
    _set_images(objs, k.get("images"))
    return objs, cms


def render(d):
    """The objects `kubectl kustomize D` prints, as a list of dicts (order not kept)."""
    objs, cms = _accumulate(os.path.abspath(d))
    renamed = {}
    for cm, hashed in cms:
        if not hashed:
            continue
        old = cm["metadata"]["name"]
        cm["metadata"]["name"] = "%s-%s" % (old, config_map_hash(cm))
        renamed[old] = cm["metadata"]["name"]
    for o in objs:
        pod = o.get("spec", {}).get("template", {}).get("spec", {})
        for v in pod.get("volumes") or []:
            if v.get("configMap", {}).get("name") in renamed:
                v["configMap"]["name"] = renamed[v["configMap"]["name"]]
    return [cm for cm, _ in cms] + objs
