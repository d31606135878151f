#!/usr/bin/env python3
"""The layering rule again, at link level: which file's functions each file calls.

The include check (check_includes.py) sees what a file may name; this one sees what it really
calls, from the symbols of the built layer libraries (`nm`), so a prototype written by hand or a
call through a header of the same folder cannot hide a dependency.  It fails when a file calls a
function of a layer it may not include (LAYERS in check_includes.py) or when files call each other
round a loop, inside a folder too: a lower file that must reach up does it through a callback
or an ops struct its caller fills in.

Usage: check_calls.py LIB.a...   (the vigil_<layer> static libraries)
"""

import collections
import pathlib
import subprocess
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from check_includes import LAYERS, strongly_connected  # noqa: E402  (the order is written there)


def symbols(lib):
    """{module: (defined, undefined)} for every object in the archive, module 'layer/file'."""
    layer = pathlib.Path(lib).stem.replace("libvigil_", "")
    out = subprocess.run(["nm", "-A", lib], capture_output=True, text=True, check=True).stdout
    mods = collections.defaultdict(lambda: (set(), set()))
    for line in out.splitlines():
        fields = line.split(":", 2)  # archive:member:symbol line
        if len(fields) < 3:
            continue
        member, parts = fields[1], fields[2].split()
        if not member.endswith(".c.o") or not parts:
            continue
        mod = f"{layer}/{member[:-len('.c.o')]}"
        if len(parts) == 3 and parts[1] in "TDBRCG":
            mods[mod][0].add(parts[2])
        elif len(parts) == 2 and parts[0] == "U":
            mods[mod][1].add(parts[1])
    return mods


def main():
    mods = {}
    for lib in sys.argv[1:]:
        mods.update(symbols(lib))
    owner = {s: m for m, (defined, _) in mods.items() for s in defined}
    calls, why = collections.defaultdict(set), {}
    for m, (_, used) in mods.items():
        for s in sorted(used):
            o = owner.get(s)
            if o is not None and o != m:
                calls[m].add(o)
                why.setdefault((m, o), s)
    errors = []
    for a in sorted(calls):
        for b in sorted(calls[a]):
            la, lb = a.split("/")[0], b.split("/")[0]
            if la != lb and lb not in LAYERS.get(la, ()):
                errors.append(f"{a} calls {why[(a, b)]} in {b}: {la}/ may not call into {lb}/")
    errors += [f"call cycle: {c}" for c in cycles(calls, why)]
    for e in errors:
        print(e)
    if errors:
        return 1
    n = sum(len(v) for v in calls.values())
    print(f"{len(mods)} files, {n} file-to-file call edges: all point down, no cycle")
    return 0


def cycles(graph, why):
    out = []
    for comp in strongly_connected(graph):
        members = set(comp)
        out.append("; ".join(f"{a} -> {b} ({why[(a, b)]})" for a in comp
                             for b in sorted(graph.get(a, ())) if b in members))
    return out


if __name__ == "__main__":
    sys.exit(main())
