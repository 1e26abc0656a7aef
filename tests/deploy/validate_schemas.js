// tests/deploy/validate_schemas.js - check Kubernetes objects against the upstream OpenAPI schemas.
//
// Usage: node validate_schemas.js OBJECTS.json
// OBJECTS.json is a JSON array of {"where": "...", "object": {...}}, as
// check_manifests.py writes it from the rendered overlays. Each object is
// checked with the model of its apiVersion and kind from the npm package
// kubernetes-models (pinned in package-lock.json; `npm ci` installs it):
// types, required fields, formats and enums of the Kubernetes API.
// Kinds of other projects (monitoring.coreos.com) use
// @kubernetes-models/prometheus-operator when it is installed.
// Prints one line per object, "ok<TAB>WHERE" or "FAIL<TAB>WHERE<TAB>reason", and
// exits 1 when any object fails or has no model.
"use strict";

const fs = require("fs");
const path = require("path");

const PACKAGES = {
  "monitoring.coreos.com": "@kubernetes-models/prometheus-operator",
};

function modelFor(apiVersion, kind) {
  if (typeof apiVersion !== "string" || typeof kind !== "string" || !/^[A-Za-z0-9]+$/.test(kind)) {
    return null;
  }
  const group = apiVersion.includes("/") ? apiVersion.split("/")[0] : "";
  const pkg = PACKAGES[group] || "kubernetes-models";
  const mod = path.join(pkg, apiVersion, kind);
  try {
    const m = require(mod);
    return m[kind] || null;
  } catch (e) {
    return null;
  }
}

function main(argv) {
  if (argv.length !== 1) {
    console.error("usage: node validate_schemas.js OBJECTS.json");
    return 2;
  }
  const items = JSON.parse(fs.readFileSync(argv[0], "utf8"));
  let bad = 0;
  for (const { where, object } of items) {
    const Model = modelFor(object && object.apiVersion, object && object.kind);
    if (!Model) {
      console.log(`FAIL\t${where}\tno schema for ${object && object.apiVersion} ${object && object.kind}`);
      bad++;
      continue;
    }
    try {
      new Model(object).validate();
      console.log(`ok\t${where}`);
    } catch (e) {
      const msg = String(e && e.message ? e.message : e).replace(/\s+/g, " ");
      console.log(`FAIL\t${where}\t${msg}`);
      bad++;
    }
  }
  return bad ? 1 : 0;
}

process.exitCode = main(process.argv.slice(2));
