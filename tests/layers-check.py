#!/usr/bin/env python3
"""layers-check: the layer of every #include "..." in daemon/, and the rules they keep.

Usage: layers-check.py [DAEMON_DIR]   (default: the daemon/ next to this script's tests/)

Prints the include graph by module (a.c and a.h are one module) and by layer, the include
cycles between modules, and every include that breaks a rule; exits 1 when one does.

Layers, low to high (docs/architecture.md, "Layers"):
  basic    log, util, crash-point, safe-dir
  core     core/*                    pure logic
  host     host/*                    sysfs discovery
  devices  devices/*                 the ops table and its backends (vfio-kernel reads host/)
  seq      sequencer, seq-abort, migstream
  model    registry, vm, journal, group-watch, offload, policy-files, recovery,
           daemon-hotplug, model/*
  libvirt  libvirt/*
  bus      bus/*
  top      daemon, main             the composition root

Rules:
  1. core/ includes only core/ and basic headers.
  2. devices/ and host/ include no bus/ header, no recovery.h, no daemon.h.
  3. A module outside bus/ and top includes no bus/ header.
  4. No include points to a higher layer, except those in KNOWN_DEBT below.
KNOWN_DEBT lists the upward includes that issue 16 has yet to remove; an entry that no longer
occurs is an error too, so the list only shrinks.
"""
import os
import re
import sys
from collections import defaultdict

LAYERS = ["basic", "core", "host", "devices", "seq", "model", "libvirt", "bus", "top"]
RANK = {name: i for i, name in enumerate(LAYERS)}
FLAT = {
    "log": "basic", "util": "basic", "crash-point": "basic", "safe-dir": "basic",
    "sequencer": "seq", "seq-abort": "seq", "migstream": "seq",
    "registry": "model", "vm": "model", "journal": "model", "group-watch": "model",
    "offload": "model", "policy-files": "model", "recovery": "model",
    "daemon-hotplug": "model",
    "daemon": "top", "main": "top",
}
FOLDERS = {"core": "core", "devices": "devices", "host": "host", "model": "model",
           "libvirt": "libvirt", "bus": "bus"}

# (including module, included module): upward includes still to be removed (issue 16).
KNOWN_DEBT = {
    ("daemon-hotplug", "daemon"),
    ("recovery", "bus/bus-util"),
    ("recovery", "daemon"),
    ("bus/bus-device", "daemon"),
    ("bus/bus-libvirt", "daemon"),
    ("bus/bus-manager", "daemon"),
    ("bus/bus-vm", "daemon"),
}

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def layer_of(module):
    head, _, base = module.rpartition("/")
    if head:
        return FOLDERS.get(head)
    return FLAT.get(base)


def module_of(path):
    return os.path.splitext(path)[0]


def resolve(daemon_dir, src, name):
    """Where the compiler finds "name" from src: src's folder first, then daemon/."""
    here = os.path.join(os.path.dirname(src), name)
    if os.path.exists(os.path.join(daemon_dir, here)):
        return os.path.normpath(here)
    if os.path.exists(os.path.join(daemon_dir, name)):
        return os.path.normpath(name)
    return None


def scan(daemon_dir):
    edges = set()
    for root, _, files in os.walk(daemon_dir):
        for f in sorted(files):
            if not f.endswith((".c", ".h")):
                continue
            src = os.path.relpath(os.path.join(root, f), daemon_dir)
            with open(os.path.join(daemon_dir, src), encoding="utf-8") as fh:
                for line in fh:
                    m = INCLUDE.match(line)
                    if not m:
                        continue
                    target = resolve(daemon_dir, src, m.group(1))
                    if target is None:
                        continue  # a generated or system header
                    a, b = module_of(src), module_of(target)
                    if a != b:
                        edges.add((a, b))
    return edges


def cycles(edges):
    """Strongly connected components with more than one module (Tarjan)."""
    graph = defaultdict(set)
    for a, b in edges:
        graph[a].add(b)
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
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
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(set(graph) | {b for _, b in edges}):
        if v not in index:
            visit(v)
    return out


def violations(edges):
    errors = []
    for a, b in sorted(edges):
        la, lb = layer_of(a), layer_of(b)
        if la is None or lb is None:
            errors.append(f"{a} -> {b}: {a if la is None else b} has no layer; add it to "
                          "tests/layers-check.py and docs/architecture.md")
            continue
        if la == "core" and lb not in ("core", "basic"):
            errors.append(f"{a} -> {b}: core/ includes only core/ and basic headers")
        elif la in ("devices", "host") and (lb == "bus" or b in ("recovery", "daemon")):
            errors.append(f"{a} -> {b}: devices/ and host/ include no bus/, recovery or daemon")
        elif (a, b) in KNOWN_DEBT:
            continue
        elif lb == "bus" and la not in ("bus", "top"):
            errors.append(f"{a} -> {b}: only bus/ and the composition root include bus/ headers")
        elif RANK[lb] > RANK[la]:
            errors.append(f"{a} -> {b}: {la} includes the higher layer {lb}")
    for a, b in sorted(KNOWN_DEBT - edges):
        errors.append(f"{a} -> {b} is gone: remove it from KNOWN_DEBT in tests/layers-check.py")
    return errors


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    daemon_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "daemon")
    edges = scan(daemon_dir)

    print("# modules -> layers they include")
    by_module = defaultdict(set)
    for a, b in edges:
        by_module[a].add(layer_of(b) or "?")
    for a in sorted(by_module, key=lambda m: (RANK.get(layer_of(m), 99), m)):
        print(f"{layer_of(a) or '?':8} {a:28} -> {' '.join(sorted(by_module[a], key=lambda l: RANK.get(l, 99)))}")

    print("# layers -> layers they include")
    by_layer = defaultdict(set)
    for a, b in edges:
        by_layer[layer_of(a) or "?"].add(layer_of(b) or "?")
    for la in sorted(by_layer, key=lambda l: RANK.get(l, 99)):
        print(f"{la:8} -> {' '.join(sorted(by_layer[la], key=lambda l: RANK.get(l, 99)))}")

    comps = cycles(edges)
    print(f"# include cycles between modules: {len(comps)}")
    for comp in comps:
        print("  " + " ".join(comp))
    print(f"# known upward includes (issue 16): {len(KNOWN_DEBT & edges)}")

    errors = violations(edges)
    for e in errors:
        print("error: " + e)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
