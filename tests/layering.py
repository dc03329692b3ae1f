#!/usr/bin/env python3
"""The layering of docs/architecture.md, checked: every #include between the
project's folders goes in an allowed direction, and no module (foo.h +
foo*.c sharing it) includes, through any chain, one that includes it back.
Exit 0 when both hold, 1 with each violation printed."""
import glob
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.chdir(ROOT)
# folder -> folders it may include (itself always)
ALLOWED = {
    "common": set(),
    "proc": {"common"},
    "snapshot": {"common", "proc"},
    "daemon": {"common", "proc", "snapshot"},
    "host": {"common", "include"},
    "agent": {"common"},
    "builder": {"common", "proc"},
    "cli": {"common", "builder"},
    "cmd": {"common", "daemon", "builder", "cli", "proc", "snapshot"},
}
# single headers a folder may reach beyond its rule, and why
EXCEPTIONS = {
    ("host", "handlers/predict/tfrest.h"): "predict's TF Serving JSON module, built into the host too",
    ("cli", "daemon/server.h"): "the daemon's defaults (state folder, token path)",
    ("cli", "daemon/fnlog.h"): "the log API's limits",
    ("cli", "snapshot/manifest.h"): "thaw snapshot checks what came against its manifest",
}
FOLDERS = list(ALLOWED)
inc_re = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def module_of(path):
    d, b = os.path.split(path[:-2] if path.endswith((".c", ".h")) else path)
    head = b.split("_")[0]
    return os.path.join(d, head) if head != b and os.path.exists(os.path.join(d, head) + ".h") else os.path.join(d, b)


problems = []
edges = {}
files = [f for d in FOLDERS for f in glob.glob(d + "/*.[ch]")]
for f in files:
    folder = f.split("/")[0]
    src = open(f, errors="replace").read()
    m = module_of(f)
    edges.setdefault(m, set())
    for inc in inc_re.findall(src):
        if inc == "thaw/handler.h":
            target_folder, target = "include", "include/thaw/handler.h"
        elif "/" in inc and inc.split("/")[0] in FOLDERS + ["include", "handlers", "kernels"]:
            target_folder, target = inc.split("/")[0], inc
        else:
            if os.path.exists(os.path.join(os.path.dirname(f), inc)) or folder in ("cmd",):
                problems.append("%s: #include \"%s\" does not name its folder" % (f, inc))
            continue
        if target_folder != folder and target_folder not in ALLOWED[folder] and \
                (folder, target) not in EXCEPTIONS:
            problems.append("%s: includes %s: %s/ may not depend on %s/" % (f, inc, folder, target_folder))
        if os.path.exists(target) and target_folder in FOLDERS:
            t = module_of(target)
            if t != m:
                edges[m].add(t)

# cycles: strongly connected components of more than one module
index, low, stack, on, n = {}, {}, [], set(), [0]
sys.setrecursionlimit(10000)


def visit(v):
    index[v] = low[v] = n[0]
    n[0] += 1
    stack.append(v)
    on.add(v)
    for w in edges.get(v, ()):
        if w not in index:
            visit(w)
            low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop()
            on.discard(w)
            comp.append(w)
            if w == v:
                break
        if len(comp) > 1:
            problems.append("include cycle between modules: " + " ".join(sorted(comp)))


for v in list(edges):
    if v not in index:
        visit(v)
for p in problems:
    print("FAIL " + p)
print("%d modules, %d files, %d problems" % (len(edges), len(files), len(problems)))
sys.exit(1 if problems else 0)
