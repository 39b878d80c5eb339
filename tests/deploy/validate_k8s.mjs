// SPDX-License-Identifier: MIT
// Validates every Kubernetes object that a kustomization produces against the Kubernetes OpenAPI
// schema of its apiVersion/kind (npm kubernetes-models: the upstream schemas compiled to ajv
// validators), and rejects fields the schema does not define.
//
//   node validate_k8s.mjs --modules DIR [--hand] KUSTOMIZATION_DIR...
//   node validate_k8s.mjs --modules DIR --compare KUSTOMIZATION_DIR...
//   node validate_k8s.mjs --modules DIR --self-test K8S_DIR
//
// DIR is the node_modules directory that scripts/install-node-deps.sh filled. Rendering: `kustomize
// build` or `kubectl kustomize` (kustomize v5 or later), else, or with --hand, the hand renderer of
// k8s_render.mjs (a noted subset). One line per object, `ok: Kind/name` or `FAIL: Kind/name: why`;
// exit 1 on any FAIL, 2 on a usage or environment error. --compare: the hand render must equal
// kubectl's, object by object (generated names without their hash). --self-test: renders broken
// copies of K8S_DIR's base (a wrong type, a misspelled field, a kind with no schema) and requires
// each breakage to be refused, so that a validator that checks nothing cannot pass.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { deepDiff, generatedNames, handRender, parseDocs, setYaml } from "./k8s_render.mjs";

function usage(msg) {
  console.error(`validate_k8s: ${msg}`);
  process.exit(2);
}

const argv = process.argv.slice(2);
let modules = null;
let mode = "check";
let hand = false;
const dirs = [];
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === "--modules") modules = argv[++i];
  else if (a === "--hand") hand = true;
  else if (a === "--compare") mode = "compare";
  else if (a === "--self-test") mode = "self-test";
  else if (a.startsWith("--")) usage(`unknown option ${a}`);
  else dirs.push(a);
}
if (!modules || dirs.length === 0) usage("needs --modules DIR and at least one directory");
if (!fs.existsSync(path.join(modules, "kubernetes-models", "package.json")))
  usage(`no kubernetes-models under ${modules} (scripts/install-node-deps.sh installs it)`);
const require = createRequire(path.join(path.resolve(modules), "_.js"));
const YAML = require("yaml");
setYaml(YAML);
const MODELS_VERSION = require("kubernetes-models/package.json").version;

// ---- rendering -------------------------------------------------------------------------------

function run(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: "utf8", timeout: 30000, maxBuffer: 16 << 20 });
  return r.error ? { status: -1, stdout: "", stderr: String(r.error) } : r;
}

// kustomize's own binary first, then kubectl's embedded kustomize; v5 or later (the manifests use
// `labels:` and `patches:`, which Debian 12's kubectl 1.20 with kustomize v2.0.3 refuses).
function findRenderer() {
  const k = run("kustomize", ["version"]);
  if (k.status === 0) {
    const v = /v(\d+)\.(\d+)\.\d+/.exec(k.stdout);
    if (v && Number(v[1]) >= 5) return { cmd: "kustomize", args: ["build"], what: `kustomize ${v[0]}` };
  }
  const c = run("kubectl", ["version", "--client", "-o", "json"]);
  if (c.status === 0) {
    let kv = "";
    let cv = "";
    try {
      const j = JSON.parse(c.stdout);
      kv = j.kustomizeVersion || "";
      cv = j.clientVersion?.gitVersion || "";
    } catch {
      kv = "";
    }
    const v = /^v(\d+)\.(\d+)/.exec(kv);
    if (v && Number(v[1]) >= 5)
      return { cmd: "kubectl", args: ["kustomize"], what: `kubectl kustomize (kustomize ${kv})` };
    return { none: `kubectl ${cv} embeds kustomize ${kv || "of unknown version"}, older than v5` };
  }
  return { none: "neither kustomize nor kubectl is installed" };
}

function render(dir, renderer) {
  if (renderer.cmd) {
    const r = run(renderer.cmd, [...renderer.args, dir]);
    if (r.status !== 0) throw new Error(`${renderer.what} failed: ${r.stderr.trim()}`);
    return parseDocs(r.stdout);
  }
  return handRender(dir);
}

// ---- validation ------------------------------------------------------------------------------

const modelCache = new Map();
async function modelFor(apiVersion, kind) {
  const m = /^(?:([a-z0-9.-]+)\/)?(v[0-9a-z]+)$/.exec(String(apiVersion));
  if (!m || !/^[A-Z][A-Za-z0-9]*$/.test(String(kind))) return null;
  const file = path.join(modules, "kubernetes-models", m[1] || "", m[2], `${kind}.js`);
  if (!modelCache.has(file)) {
    let model = null;
    if (fs.existsSync(file)) model = (await import(pathToFileURL(path.resolve(file)).href))[kind];
    modelCache.set(file, model && model.apiVersion === apiVersion && model.kind === kind ? model : null);
  }
  return modelCache.get(file);
}

// The generated validators do not reject unknown properties (the upstream schemas have no
// additionalProperties: false). They read every property they know, by name, and every key of a
// map (for..in): so the validator runs on a proxy that records what it read, and any key of an
// object it entered but never read is a field the schema does not have.
function tracking(root) {
  const read = new Map();
  const proxies = new WeakMap();
  const wrap = (v) => {
    if (v === null || typeof v !== "object") return v;
    if (proxies.has(v)) return proxies.get(v);
    if (!Array.isArray(v)) read.set(v, new Set());
    const p = new Proxy(v, {
      get(t, k, r) {
        if (typeof k === "string" && !Array.isArray(t)) read.get(t).add(k);
        return wrap(Reflect.get(t, k, r));
      },
    });
    proxies.set(v, p);
    return p;
  };
  return { proxy: wrap(root), read };
}

function unknownFields(node, read, at, out) {
  if (Array.isArray(node)) {
    node.forEach((v, i) => unknownFields(v, read, `${at}/${i}`, out));
  } else if (node !== null && typeof node === "object" && read.has(node)) {
    for (const k of Object.keys(node)) {
      if (!read.get(node).has(k)) out.push(`${at}/${k}`);
      else unknownFields(node[k], read, `${at}/${k}`, out);
    }
  }
}

async function validate(obj) {
  const name = `${obj?.kind}/${obj?.metadata?.name}`;
  const model = await modelFor(obj?.apiVersion, obj?.kind);
  if (!model) return { name, why: [`no schema for apiVersion ${obj?.apiVersion} kind ${obj?.kind}`] };
  const why = [];
  const { proxy, read } = tracking(obj);
  try {
    model.prototype.validate.call(proxy);
  } catch (e) {
    if (!Array.isArray(e.errors)) throw e;
    for (const err of e.errors) why.push(`${err.instancePath || "/"}: ${err.message}`);
  }
  const unknown = [];
  unknownFields(obj, read, "", unknown);
  for (const u of unknown) why.push(`${u}: unknown field (not in the ${obj.apiVersion} ${obj.kind} schema)`);
  return { name, why };
}

async function checkObjects(objs) {
  let fails = 0;
  for (const obj of objs) {
    const { name, why } = await validate(obj);
    if (why.length === 0) console.log(`ok: ${name}`);
    for (const w of why) console.log(`FAIL: ${name}: ${w}`);
    if (why.length) fails++;
  }
  return fails;
}

// ---- modes -----------------------------------------------------------------------------------

async function check(renderer) {
  let fails = 0;
  for (const dir of dirs) {
    const how = renderer.cmd ? renderer.what : `hand-rendered (${renderer.none || "--hand"})`;
    console.log(`== ${dir}: ${how}; schemas of kubernetes-models ${MODELS_VERSION}`);
    let objs;
    try {
      objs = render(dir, renderer);
    } catch (e) {
      console.log(`FAIL: ${dir}: ${e.message}`);
      fails++;
      continue;
    }
    if (objs.length === 0) {
      console.log(`FAIL: ${dir}: renders no object`);
      fails++;
    }
    fails += await checkObjects(objs);
  }
  return fails;
}

// Strips the hash that kustomize appends to generated ConfigMap/Secret names, everywhere.
function unhash(v, names) {
  if (typeof v === "string") {
    for (const n of names) if (new RegExp(`^${n}-[a-z0-9]{10}$`).test(v)) return n;
    return v;
  }
  if (Array.isArray(v)) return v.map((x) => unhash(x, names));
  if (v !== null && typeof v === "object")
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, unhash(x, names)]));
  return v;
}

function compare(renderer) {
  if (!renderer.cmd) {
    console.log(`note: --compare skipped: ${renderer.none}`);
    return 0;
  }
  let fails = 0;
  for (const dir of dirs) {
    const key = (o) => `${o.kind}/${o.metadata?.name}`;
    const names = generatedNames(dir);
    const real = new Map(render(dir, renderer).map((o) => unhash(o, names)).map((o) => [key(o), o]));
    const mine = new Map(handRender(dir).map((o) => [key(o), o]));
    for (const k of new Set([...real.keys(), ...mine.keys()])) {
      const d = deepDiff(real.get(k), mine.get(k), "");
      if (d) console.log(`FAIL: ${dir}: ${k}: hand render differs from ${renderer.what} at ${d}`);
      else console.log(`ok: ${dir}: ${k}: hand render equals ${renderer.what}`);
      if (d) fails++;
    }
  }
  return fails;
}

// Each breakage: what it does to a copy of the base, and the FAIL line it must produce.
const BREAKAGES = [
  {
    what: 'Deployment spec.replicas: "two"',
    file: "deployment.yaml",
    edit: (docs) => (docs.find((d) => d.kind === "Deployment").spec.replicas = "two"),
    expect: /^FAIL: Deployment\/sipedge: \/spec\/replicas: must be integer$/,
  },
  {
    what: "container readinessProbe misspelled readinesProbe",
    file: "deployment.yaml",
    edit: (docs) => {
      const c = docs.find((d) => d.kind === "Deployment").spec.template.spec.containers[0];
      c.readinesProbe = c.readinessProbe;
      delete c.readinessProbe;
    },
    expect: /^FAIL: Deployment\/sipedge: \/spec\/template\/spec\/containers\/0\/readinesProbe: unknown field/,
  },
  {
    what: "containers misspelled contianers",
    file: "deployment.yaml",
    edit: (docs) => {
      const s = docs.find((d) => d.kind === "Deployment").spec.template.spec;
      s.contianers = s.containers;
      delete s.containers;
    },
    expect: /^FAIL: Deployment\/sipedge: \/spec\/template\/spec: must have required property containers$/,
  },
  {
    what: "Service externalTrafficPolicy misspelled externalTraficPolicy",
    file: "service.yaml",
    edit: (docs) => {
      const s = docs.find((d) => d.kind === "Service").spec;
      s.externalTraficPolicy = s.externalTrafficPolicy;
      delete s.externalTrafficPolicy;
    },
    expect: /^FAIL: Service\/sipedge: \/spec\/externalTraficPolicy: unknown field/,
  },
  {
    what: "kind HorizontalPodAutoscaler misspelled HorizontalPodAutoScaler (no such kind)",
    file: "hpa.yaml",
    edit: (docs) => (docs.find((d) => d.kind === "HorizontalPodAutoscaler").kind = "HorizontalPodAutoScaler"),
    expect: /^FAIL: HorizontalPodAutoScaler\/sipedge: no schema for apiVersion autoscaling\/v2 kind HorizontalPodAutoScaler$/,
  },
];

async function selfTest(renderer) {
  const k8s = dirs[0];
  let missed = 0;
  for (const b of BREAKAGES) {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "sipedge-k8s-broken-"));
    try {
      fs.cpSync(k8s, tmp, { recursive: true });
      const file = path.join(tmp, "base", b.file);
      const docs = parseDocs(fs.readFileSync(file, "utf8"));
      b.edit(docs);
      fs.writeFileSync(file, docs.map((d) => YAML.stringify(d, { version: "1.1" })).join("---\n"));
      const lines = [];
      for (const obj of render(path.join(tmp, "base"), renderer)) {
        const { name, why } = await validate(obj);
        for (const w of why) lines.push(`FAIL: ${name}: ${w}`);
      }
      const hit = lines.find((l) => b.expect.test(l));
      if (hit) console.log(`ok: broken copy refused (${b.what}): ${hit}`);
      else console.log(`FAIL: broken copy accepted (${b.what}): got ${JSON.stringify(lines)}`);
      if (!hit) missed++;
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  }
  return missed;
}

const found = findRenderer();
const renderer = hand ? { none: "--hand" } : found;
if (!renderer.cmd && !hand) console.log(`note: ${renderer.none}: hand-rendering (k8s_render.mjs)`);
let fails;
if (mode === "compare") fails = compare(renderer);
else if (mode === "self-test") fails = await selfTest(renderer);
else fails = await check(renderer);
console.log(fails ? `validate_k8s: ${fails} failed` : "validate_k8s: all ok");
process.exit(fails ? 1 : 0);
