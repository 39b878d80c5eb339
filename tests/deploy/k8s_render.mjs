// SPDX-License-Identifier: MIT
// A hand renderer for the part of kustomize that deploy/k8s/ uses, for machines without kustomize
// v5 (Debian 12's kubectl 1.20 embeds kustomize v2.0.3, which refuses `labels:` and `patches:`).
// Supported: resources (files and directories), configMapGenerator and secretGenerator (files,
// literals; no name hash), labels (pairs, includeTemplates; not includeSelectors), images, patches
// (strategic merge, by target kind/name). Any other kustomization field is refused by name, so that
// a manifest change this renderer cannot follow fails loudly instead of being validated wrongly.
// validate_k8s.mjs --compare checks it against kubectl's render where kubectl is there.
import fs from "node:fs";
import path from "node:path";

let YAML = null;
export function setYaml(y) {
  YAML = y;
}

// YAML 1.1, as Kubernetes reads manifests: 0440 is octal (288), yes/no are booleans.
export function parseDocs(text) {
  const out = [];
  for (const doc of YAML.parseAllDocuments(text, { version: "1.1" })) {
    if (doc.errors.length) throw new Error(`YAML: ${doc.errors[0].message}`);
    const v = doc.toJS();
    if (v !== null && v !== undefined) out.push(v);
  }
  return out;
}

const KNOWN = new Set([
  "apiVersion",
  "kind",
  "resources",
  "configMapGenerator",
  "secretGenerator",
  "labels",
  "images",
  "patches",
]);

function kustomization(dir) {
  const file = ["kustomization.yaml", "kustomization.yml", "Kustomization"]
    .map((f) => path.join(dir, f))
    .find((f) => fs.existsSync(f));
  if (!file) throw new Error(`${dir}: no kustomization.yaml`);
  const k = parseDocs(fs.readFileSync(file, "utf8"))[0] || {};
  for (const key of Object.keys(k))
    if (!KNOWN.has(key)) throw new Error(`${file}: the hand renderer does not support '${key}'`);
  return k;
}

function splitKV(s, what) {
  const i = s.indexOf("=");
  if (i <= 0) throw new Error(`${what}: '${s}' is not key=value`);
  return [s.slice(0, i), s.slice(i + 1)];
}

function generate(dir, g, kind) {
  for (const key of Object.keys(g))
    if (!["name", "files", "literals", "type"].includes(key))
      throw new Error(`${dir}: ${kind} generator field '${key}' not supported by the hand renderer`);
  const data = {};
  for (const f of g.files || []) {
    const [key, rel] = f.includes("=") ? splitKV(f, dir) : [path.basename(f), f];
    data[key] = fs.readFileSync(path.join(dir, rel), kind === "Secret" ? null : "utf8");
  }
  for (const l of g.literals || []) {
    const [key, val] = splitKV(l, dir);
    data[key] = kind === "Secret" ? Buffer.from(val) : val;
  }
  if (kind === "ConfigMap") return { apiVersion: "v1", kind, metadata: { name: g.name }, data };
  for (const key of Object.keys(data)) data[key] = Buffer.from(data[key]).toString("base64");
  return { apiVersion: "v1", kind, metadata: { name: g.name }, type: g.type || "Opaque", data };
}

const isObj = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

// Strategic merge patch: the list merge keys of the core types, other lists replaced.
const MERGE_KEY = {
  containers: "name",
  initContainers: "name",
  ephemeralContainers: "name",
  env: "name",
  volumes: "name",
  imagePullSecrets: "name",
  volumeMounts: "mountPath",
  volumeDevices: "devicePath",
};

function mergeKeyOf(field, list) {
  if (field === "ports") return list.every((p) => isObj(p) && "containerPort" in p) ? "containerPort" : "port";
  return MERGE_KEY[field];
}

function smp(dst, patch, at) {
  for (const [k, v] of Object.entries(patch)) {
    if (k.startsWith("$")) throw new Error(`${at}: patch directive ${k} not supported by the hand renderer`);
    if (v === null) delete dst[k];
    else if (isObj(v) && isObj(dst[k])) smp(dst[k], v, `${at}/${k}`);
    else if (Array.isArray(v) && Array.isArray(dst[k]) && mergeKeyOf(k, v)) {
      // As apimachinery orders a merged list: the patch's items first, in its order, then the
      // items only the original has.
      const mk = mergeKeyOf(k, v);
      const merged = [];
      for (const item of v) {
        const hit = dst[k].find((d) => isObj(d) && isObj(item) && d[mk] === item[mk]);
        if (hit) smp(hit, item, `${at}/${k}`);
        merged.push(hit || structuredClone(item));
      }
      dst[k] = merged.concat(dst[k].filter((d) => !merged.includes(d)));
    } else dst[k] = structuredClone(v);
  }
}

function matches(obj, target) {
  for (const key of Object.keys(target))
    if (!["kind", "name"].includes(key)) throw new Error(`patch target '${key}' not supported by the hand renderer`);
  return (!target.kind || obj.kind === target.kind) && (!target.name || obj.metadata?.name === target.name);
}

function patch(dir, objs, p) {
  for (const key of Object.keys(p))
    if (!["path", "patch", "target"].includes(key))
      throw new Error(`${dir}: patch field '${key}' not supported by the hand renderer`);
  const text = p.path ? fs.readFileSync(path.join(dir, p.path), "utf8") : p.patch;
  for (const doc of parseDocs(text)) {
    if (!isObj(doc)) throw new Error(`${dir}: JSON 6902 patches not supported by the hand renderer`);
    const target = p.target || { kind: doc.kind, name: doc.metadata?.name };
    const hits = objs.filter((o) => matches(o, target));
    if (hits.length === 0) throw new Error(`${dir}: patch ${p.path || ""} matches no object`);
    const body = structuredClone(doc);
    delete body.apiVersion;
    delete body.kind;
    if (body.metadata) delete body.metadata.name;
    for (const o of hits) smp(o, body, `${o.kind}/${o.metadata?.name}`);
  }
}

function podSpecs(obj) {
  const s = obj.spec || {};
  return [s.template?.spec, s.jobTemplate?.spec?.template?.spec, obj.kind === "Pod" ? s : null].filter(Boolean);
}

function setImages(objs, images) {
  for (const img of images) {
    for (const o of objs)
      for (const ps of podSpecs(o))
        for (const c of [...(ps.containers || []), ...(ps.initContainers || [])]) {
          const m = /^([^@:]+(?::\d+)?(?:\/[^@:]+)*)(?::([^@]+))?(?:@(.+))?$/.exec(c.image || "");
          if (!m || m[1] !== img.name) continue;
          const name = img.newName || m[1];
          if (img.digest) c.image = `${name}@${img.digest}`;
          else c.image = name + (img.newTag ? `:${img.newTag}` : m[2] ? `:${m[2]}` : "");
        }
  }
}

function setLabels(objs, labels) {
  for (const l of labels) {
    if (l.includeSelectors) throw new Error("labels.includeSelectors not supported by the hand renderer");
    for (const o of objs) {
      o.metadata = o.metadata || {};
      o.metadata.labels = { ...(o.metadata.labels || {}), ...l.pairs };
      if (l.includeTemplates && o.spec?.template) {
        const t = o.spec.template;
        t.metadata = t.metadata || {};
        t.metadata.labels = { ...(t.metadata.labels || {}), ...l.pairs };
      }
    }
  }
}

export function handRender(dir) {
  const k = kustomization(dir);
  const objs = [];
  for (const r of k.resources || []) {
    const p = path.join(dir, r);
    if (fs.statSync(p).isDirectory()) objs.push(...handRender(p));
    else objs.push(...parseDocs(fs.readFileSync(p, "utf8")));
  }
  for (const g of k.configMapGenerator || []) objs.push(generate(dir, g, "ConfigMap"));
  for (const g of k.secretGenerator || []) objs.push(generate(dir, g, "Secret"));
  for (const p of k.patches || []) patch(dir, objs, p);
  setLabels(objs, k.labels || []);
  setImages(objs, k.images || []);
  return objs;
}

// The names of generated ConfigMaps/Secrets (kustomize appends a content hash to them).
export function generatedNames(dir) {
  const k = kustomization(dir);
  const names = [...(k.configMapGenerator || []), ...(k.secretGenerator || [])].map((g) => g.name);
  for (const r of k.resources || []) {
    const p = path.join(dir, r);
    if (fs.statSync(p).isDirectory()) names.push(...generatedNames(p));
  }
  return names;
}

// The first path at which a and b differ, or null.
export function deepDiff(a, b, at) {
  if (a === undefined || b === undefined) return a === b ? null : `${at || "/"} (${a === undefined ? "only hand" : "only kustomize"})`;
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return `${at} (list)`;
    for (let i = 0; i < a.length; i++) {
      const d = deepDiff(a[i], b[i], `${at}/${i}`);
      if (d) return d;
    }
    return null;
  }
  if (isObj(a) && isObj(b)) {
    for (const key of new Set([...Object.keys(a), ...Object.keys(b)])) {
      const d = deepDiff(a[key], b[key], `${at}/${key}`);
      if (d) return d;
    }
    return null;
  }
  return a === b ? null : `${at} (${JSON.stringify(a)} vs ${JSON.stringify(b)})`;
}
