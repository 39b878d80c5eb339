#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Offline checks of deploy/: the seccomp profile and the Kubernetes manifests.

  check_deploy.py seccomp SRC
  check_deploy.py k8s SRC [SIPEDGE TOKEN]   (with the binaries: the ConfigMap passes --check-config)

Parses every file (json, python3-yaml) and checks the fields the edge depends on and that the
manifests agree with each other and with the edge's config (ports, paths, drain timing)."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

FAILS = []


def check(cond, what):
    print(("ok: " if cond else "FAIL: ") + what)
    if not cond:
        FAILS.append(what)


def seccomp(src):
    path = os.path.join(src, "deploy/seccomp/sipedge.json")
    with open(path) as f:
        prof = json.load(f)
    check(prof.get("defaultAction") == "SCMP_ACT_ERRNO", "default action refuses (SCMP_ACT_ERRNO)")
    arches = [a.get("architecture") for a in prof.get("archMap", [])]
    check("SCMP_ARCH_X86_64" in arches, "x86-64 in archMap")
    allowed, seen = set(), set()
    for rule in prof.get("syscalls", []):
        check(isinstance(rule.get("names"), list) and rule["names"], "rule has a names list")
        check(rule.get("action", "").startswith("SCMP_ACT_"), "rule action is SCMP_ACT_*")
        seen.update(rule["names"])
        if rule.get("action") == "SCMP_ACT_ALLOW" and not rule.get("args"):
            allowed.update(rule["names"])
    for call in ("io_uring_setup", "io_uring_enter", "io_uring_register"):
        check(call in allowed, f"{call} allowed")
    # What the edge calls at run time (threads, sockets, eventfd, signals, files, timers).
    needed = """read write openat close fstat newfstatat mmap munmap mprotect brk madvise futex
    rt_sigaction rt_sigprocmask rt_sigreturn sigaltstack eventfd2 socket bind listen accept4
    connect setsockopt getsockopt getsockname getpeername sendmsg recvmsg sendto recvfrom
    shutdown epoll_create1 epoll_ctl epoll_wait clock_gettime clock_nanosleep nanosleep getrandom
    sched_getaffinity sched_setaffinity set_robust_list rseq exit exit_group tgkill getpid gettid
    prlimit64 uname fcntl ioctl poll pipe2 dup3 lseek pread64 readlink statx""".split()
    for call in needed:
        check(call in allowed, f"{call} allowed")
    clone = [r for r in prof["syscalls"] if "clone" in r["names"]]
    check(len(clone) == 1 and clone[0].get("args"), "clone allowed only with its flags checked")
    for call in """mount umount2 ptrace bpf unshare setns kexec_load init_module finit_module
    delete_module reboot swapon pivot_root open_by_handle_at keyctl userfaultfd
    perf_event_open""".split():
        check(call not in allowed, f"{call} not allowed")
    hdr = "/usr/include/x86_64-linux-gnu/asm/unistd_64.h"
    if os.path.exists(hdr):
        known = set(re.findall(r"#define __NR_(\w+)\s+\d+", open(hdr).read()))
        unknown = sorted(seen - known)
        check(not unknown, f"every name is an x86-64 system call (unknown: {unknown})")


def load_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def walk_kustomization(src, d, docs, kust):
    k = load_docs(os.path.join(d, "kustomization.yaml"))[0]
    kust.append((d, k))
    check(k.get("kind") == "Kustomization", f"{d}: kustomization kind")
    for r in k.get("resources", []):
        p = os.path.normpath(os.path.join(d, r))
        check(os.path.exists(p), f"{d}: resource {r} exists")
        if os.path.isdir(p):
            walk_kustomization(src, p, docs, kust)
        elif os.path.exists(p):
            for doc in load_docs(p):
                docs.append((p, doc))
    for patch in k.get("patches", []):
        p = os.path.join(d, patch["path"])
        check(os.path.exists(p) and load_docs(p), f"{d}: patch {patch['path']} parses")


def by_kind(docs, kind):
    return [doc for _, doc in docs if doc.get("kind") == kind]


def matches(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


def check_deployment(dep, cfg, secrets, base):
    spec = dep["spec"]["template"]["spec"]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    check(matches(dep["spec"]["selector"]["matchLabels"], labels), "Deployment selector matches")
    c = spec["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    check(ports.get("sip-tls") == cfg["listen"]["port"], "container port = listen.port")
    check(ports.get("admin") == cfg["admin"]["port"], "admin port = admin.port")
    check(cfg["admin"]["address"] == "0.0.0.0", "admin listens on the pod address for probes")
    live, ready = c["livenessProbe"]["httpGet"], c["readinessProbe"]["httpGet"]
    check(live["path"] == "/healthz" and live["port"] == "admin", "liveness /healthz on admin")
    check(ready["path"] == "/readyz" and ready["port"] == "admin", "readiness /readyz on admin")
    pre = c["lifecycle"]["preStop"]["sleep"]["seconds"]
    grace = spec["terminationGracePeriodSeconds"]
    drain_s = cfg["listen"]["drain_timeout_ms"] / 1000
    check(pre + drain_s + 1 + 2 <= grace,
          f"preStop {pre} s + drain {drain_s} s + flush 1 s + 2 s <= grace {grace} s")
    check(grace - (pre + drain_s + 1) <= 10, "grace period not far above the drain")
    res = c["resources"]
    check(all(k in res["requests"] for k in ("cpu", "memory")), "cpu and memory requests")
    check("memory" in res["limits"], "memory limit")
    psc, csc = spec["securityContext"], c["securityContext"]
    check(psc["runAsNonRoot"] is True and psc["runAsUser"] != 0, "pod runs as non-root")
    check(csc["readOnlyRootFilesystem"] is True, "read-only root filesystem")
    check(csc["allowPrivilegeEscalation"] is False, "no privilege escalation")
    check(csc["capabilities"]["drop"] == ["ALL"], "all capabilities dropped")
    sp = psc["seccompProfile"]
    check(sp["type"] == "Localhost" and sp["localhostProfile"] == "sipedge.json",
          "seccomp profile Localhost sipedge.json")
    check(os.path.exists(os.path.join(base, "../../seccomp", sp["localhostProfile"])),
          "the profile ships in deploy/seccomp")
    keys = [t["topologyKey"] for t in spec["topologySpreadConstraints"]]
    check("kubernetes.io/hostname" in keys, "spread over nodes")
    for t in spec["topologySpreadConstraints"]:
        check(matches(t["labelSelector"]["matchLabels"], labels), "spread selector matches")
    check(c["args"][0].startswith("/etc/sipedge/config/"), "config from the ConfigMap mount")
    vols = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: vols[m["name"]] for m in c["volumeMounts"]}
    for m in c["volumeMounts"]:
        check(m.get("readOnly") is True, f"mount {m['mountPath']} read-only")
        # a subPath mount is never updated: a rotated Secret would not reach the edge's watch
        check("subPath" not in m and "subPathExpr" not in m,
              f"mount {m['mountPath']} is a whole volume (no subPath: rotations show)")
    check(cfg.get("reload", {}).get("watch_interval_ms", 2000) > 0,
          "reload.watch_interval_ms on: rotated Secrets are reloaded without a restart")
    files = [cfg["listen"]["tls"]["cert"], cfg["listen"]["tls"]["key"],
             cfg["upstream"]["tls"]["cert"], cfg["upstream"]["tls"]["key"],
             cfg["upstream"]["tls"]["ca"], cfg["auth"]["redis"]["hmac_key"]]
    files += [k["file"] for k in cfg["auth"]["keys"]]
    for f in files:
        d, name = os.path.split(f)
        v = mounts.get(d)
        ok = v is not None and "secret" in v and name in secrets.get(v["secret"]["secretName"], {})
        check(ok, f"{f} comes from a Secret key")
    return labels, c


def k8s(src, sipedge=None, token=None):
    base = os.path.join(src, "deploy/k8s/base")
    for root, _, names in os.walk(os.path.join(src, "deploy/k8s")):
        for n in names:
            if n.endswith((".yaml", ".yml")):
                for doc in load_docs(os.path.join(root, n)):
                    check(isinstance(doc, dict), f"{n}: a mapping")
                    if "kind" in doc and doc["kind"] != "Kustomization":
                        check(doc.get("apiVersion") and doc.get("metadata", {}).get("name"),
                              f"{n}: {doc['kind']} has apiVersion and metadata.name")
    docs, kust = [], []
    walk_kustomization(src, base, docs, kust)
    k = kust[0][1]
    gen = k["configMapGenerator"][0]
    cfg = load_docs(os.path.join(base, gen["files"][0]))[0]
    secrets = {s["metadata"]["name"]: s.get("stringData", s.get("data", {}))
               for s in by_kind(docs, "Secret")}
    deps = by_kind(docs, "Deployment")
    check(len(deps) == 1, "one Deployment in the base")
    dep = deps[0]
    check(any(v.get("configMap", {}).get("name") == gen["name"]
              for v in dep["spec"]["template"]["spec"]["volumes"]), "ConfigMap volume = generator")
    labels, c = check_deployment(dep, cfg, secrets, base)
    svc = by_kind(docs, "Service")[0]
    check(svc["spec"]["externalTrafficPolicy"] == "Local", "Service externalTrafficPolicy Local")
    check(svc["spec"]["type"] in ("LoadBalancer", "NodePort"), "Service type allows Local")
    check(matches(svc["spec"]["selector"], labels), "Service selects the pods")
    check([p["port"] for p in svc["spec"]["ports"]] == [5061], "Service exposes 5061 only")
    pdb = by_kind(docs, "PodDisruptionBudget")[0]
    check(matches(pdb["spec"]["selector"]["matchLabels"], labels), "PDB selects the pods")
    hpa = by_kind(docs, "HorizontalPodAutoscaler")[0]
    ref = hpa["spec"]["scaleTargetRef"]
    check(ref["kind"] == "Deployment" and ref["name"] == dep["metadata"]["name"], "HPA target")
    check(hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu", "HPA on CPU")
    check(hpa["spec"]["minReplicas"] >= 2, "HPA keeps two pods for the PDB")

    over = os.path.join(src, "deploy/k8s/overlays/redis")
    odocs, okust = [], []
    walk_kustomization(src, over, odocs, okust)
    rsvc = [s for s in by_kind(odocs, "Service") if s["metadata"]["name"] == "sipedge-redis"]
    check(len(rsvc) == 1, "overlay has the sipedge-redis Service")
    patch = load_docs(os.path.join(over, okust[0][1]["patches"][0]["path"]))[0]
    env = {e["name"]: e["value"]
           for e in patch["spec"]["template"]["spec"]["containers"][0]["env"]}
    check(env.get("SIPEDGE_AUTH_REDIS_ENABLED") == "true", "overlay enables Redis")
    check(env.get("SIPEDGE_AUTH_REDIS_HOST") == "sipedge-redis", "overlay points at its Service")
    if sipedge:
        check_config(src, cfg, env, sipedge, token)


def check_config(src, cfg, env, sipedge, token):
    """The ConfigMap's YAML passes sipedge --check-config, with and without the overlay's env,
    once its /etc/sipedge/secrets/* files are there (a throwaway PKI stands in)."""
    tmp = tempfile.mkdtemp(prefix="deploy-check-")
    try:
        pki = os.path.join(tmp, "pki")
        subprocess.run(["bash", os.path.join(src, "scripts/make-pki.sh"), pki],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run([token, "keygen", "--type", "ec", "--out", os.path.join(tmp, "jwt")],
                       check=True, stdout=subprocess.DEVNULL)
        with open(os.path.join(tmp, "hmac"), "w") as f:
            f.write("00" * 32)
        real = {cfg["listen"]["tls"]["cert"]: f"{pki}/server.crt",
                cfg["listen"]["tls"]["key"]: f"{pki}/server.key",
                cfg["upstream"]["tls"]["cert"]: f"{pki}/client.crt",
                cfg["upstream"]["tls"]["key"]: f"{pki}/client.key",
                cfg["upstream"]["tls"]["ca"]: f"{pki}/ucm-ca.crt",
                cfg["auth"]["redis"]["hmac_key"]: f"{tmp}/hmac",
                cfg["auth"]["keys"][0]["file"]: f"{tmp}/jwt.pub.pem"}
        text = open(os.path.join(src, "deploy/k8s/base/sipedge.yaml")).read()
        for k, v in real.items():
            text = text.replace(k + "\n", v + "\n")
        conf = os.path.join(tmp, "sipedge.yaml")
        with open(conf, "w") as f:
            f.write(text)
        for label, extra in (("base", {}), ("redis overlay", env)):
            r = subprocess.run([sipedge, "--check-config", conf], capture_output=True, text=True,
                               env=dict(os.environ, **extra), timeout=30)
            check(r.returncode == 0, f"ConfigMap passes --check-config ({label}): "
                  f"{r.stdout.strip()} {r.stderr.strip()}")
    finally:
        shutil.rmtree(tmp)


def main():
    what, src = sys.argv[1], sys.argv[2]
    if what == "seccomp":
        seccomp(src)
    else:
        k8s(src, *sys.argv[3:5])
    if FAILS:
        print(f"{len(FAILS)} check(s) failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
