// Validates Kubernetes manifests (YAML, several documents) offline against
// the schemas of kubernetes-models, @kubernetes-models/knative and
// @kubernetes-models/keda; used by tests/e2e/test_k8s.py.
//
//   node tests/k8s/validate.mjs FILE...     (- reads standard input)
//
// Prints "ok KIND NAME" per document, or "FAIL FILE#N KIND: why"; exits 0
// when every document of every file is valid, 1 otherwise, 2 on usage.
//
// The schemas check types, required fields, enums and formats; like
// kubectl's client side they let unknown fields through. The KEDA HTTP
// add-on's HTTPScaledObject (http.keda.sh) has no model in
// @kubernetes-models/keda (2.0.0 holds keda.sh and eventing.keda.sh only),
// so it is checked here against its v1alpha1 fields as written out below
// from the add-on's documentation (http-add-on >= 0.8: scaleTargetRef
// name/kind/apiVersion/service/port, replicas, scalingMetric), unknown
// fields refused. This list is not generated from the add-on's CRD (no
// copy of it is reachable offline here): keep it in step by hand.
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";
import { Service as KnativeService } from "@kubernetes-models/knative/serving.knative.dev/v1/Service";
import { Deployment } from "kubernetes-models/apps/v1/Deployment";
import { Service } from "kubernetes-models/v1/Service";
import { ScaledObject } from "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject";

const models = {
  "serving.knative.dev/v1 Service": KnativeService,
  "apps/v1 Deployment": Deployment,
  "v1 Service": Service,
  "keda.sh/v1alpha1 ScaledObject": ScaledObject,
};

const isInt = (v) => Number.isInteger(v);
const isObj = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

// The HTTPScaledObject CRD's spec, field by field: unknown fields refused.
function httpScaledObject(doc) {
  const errs = [];
  const only = (obj, path, allowed) => {
    for (const k of Object.keys(obj)) if (!allowed.includes(k)) errs.push(`${path}/${k} is not a field`);
  };
  only(doc, "", ["apiVersion", "kind", "metadata", "spec"]);
  if (!isObj(doc.metadata) || typeof doc.metadata.name !== "string") errs.push("metadata/name is required");
  const s = doc.spec;
  if (!isObj(s)) return ["spec is required"];
  only(s, "spec", ["hosts", "pathPrefixes", "scaleTargetRef", "replicas", "targetPendingRequests",
                   "scaledownPeriod", "scalingMetric", "initialCooldownPeriod", "coldStartTimeoutFailoverRef",
                   "timeouts"]);
  for (const f of ["hosts", "pathPrefixes"])
    if (f in s && !(Array.isArray(s[f]) && s[f].every((h) => typeof h === "string" && h.length)))
      errs.push(`spec/${f} must be a list of non-empty strings`);
  const r = s.scaleTargetRef;
  if (!isObj(r)) errs.push("spec/scaleTargetRef is required");
  else {
    only(r, "spec/scaleTargetRef", ["name", "kind", "apiVersion", "service", "port", "portName"]);
    for (const f of ["name", "service"]) if (typeof r[f] !== "string" || !r[f]) errs.push(`spec/scaleTargetRef/${f} is required`);
    for (const f of ["kind", "apiVersion"]) if (f in r && typeof r[f] !== "string") errs.push(`spec/scaleTargetRef/${f} must be a string`);
    if (!("port" in r) && !("portName" in r)) errs.push("spec/scaleTargetRef needs port or portName");
    if ("port" in r && !(isInt(r.port) && r.port >= 1 && r.port <= 65535)) errs.push("spec/scaleTargetRef/port must be 1..65535");
  }
  if ("replicas" in s) {
    if (!isObj(s.replicas)) errs.push("spec/replicas must be an object");
    else {
      only(s.replicas, "spec/replicas", ["min", "max"]);
      for (const f of ["min", "max"])
        if (f in s.replicas && !(isInt(s.replicas[f]) && s.replicas[f] >= 0)) errs.push(`spec/replicas/${f} must be an integer >= 0`);
      if (s.replicas.max < s.replicas.min) errs.push("spec/replicas/max is below min");
    }
  }
  if ("scaledownPeriod" in s && !(isInt(s.scaledownPeriod) && s.scaledownPeriod >= 0))
    errs.push("spec/scaledownPeriod must be an integer >= 0");
  if ("scalingMetric" in s) {
    const m = s.scalingMetric;
    if (!isObj(m)) errs.push("spec/scalingMetric must be an object");
    else {
      only(m, "spec/scalingMetric", ["concurrency", "requestRate"]);
      if (m.concurrency !== undefined) {
        only(m.concurrency, "spec/scalingMetric/concurrency", ["targetValue"]);
        if (!(isInt(m.concurrency.targetValue) && m.concurrency.targetValue >= 1))
          errs.push("spec/scalingMetric/concurrency/targetValue must be an integer >= 1");
      }
    }
  }
  return errs;
}

function check(name, text) {
  let bad = 0, n = 0;
  for (const d of parseAllDocuments(text)) {
    n++;
    if (d.errors.length) {
      console.log(`FAIL ${name}#${n}: YAML: ${d.errors[0].message}`);
      bad++;
      continue;
    }
    const doc = d.toJS();
    if (doc === null) { n--; continue; }
    const key = `${doc.apiVersion} ${doc.kind}`;
    const what = `${key} ${doc.metadata?.name ?? "?"}`;
    let errs = [];
    if (key === "http.keda.sh/v1alpha1 HTTPScaledObject") errs = httpScaledObject(doc);
    else if (models[key]) {
      try { new models[key](doc).validate(); } catch (e) { errs = [e.message]; }
    } else errs = [`no schema for ${key}`];
    if (errs.length) { console.log(`FAIL ${name}#${n} ${what}: ${errs.join("; ")}`); bad++; }
    else console.log(`ok ${what}`);
  }
  if (!n) { console.log(`FAIL ${name}: no documents`); bad++; }
  return bad;
}

const files = process.argv.slice(2);
if (!files.length) { console.error("usage: node validate.mjs FILE... (- for stdin)"); process.exit(2); }
let bad = 0;
for (const f of files) bad += check(f, readFileSync(f === "-" ? 0 : f, "utf8"));
process.exit(bad ? 1 : 0);
