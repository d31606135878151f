#!/usr/bin/env python3
"""The layering rule of src/, checked: every `#include "..."` must point down, and nothing may
include itself round a loop.

The folders under src/ are the layers.  LAYERS below is the one place the allowed order is
written: a file in a folder may include headers of its own folder and of the folders listed for
it, nothing else.  A lower layer that must reach up declares a callback or a small interface
struct instead (docs/ARCHITECTURE.md).  Cycles are checked between modules (x.c and x.h count as
one module), so two files of one folder that include each other's headers fail too.

Usage: check_includes.py [SRC_DIR]   (default: the src/ next to tests/).  Exit status 1 and one
line per offence (file:line: the include and why) when the tree breaks the rule.
"""

import pathlib
import re
import sys

# layer: the layers its files may include besides their own (main.c, at the top, may include any).
LAYERS = {
    "util": [],
    "proto": ["util"],
    "net": ["util", "proto"],
    "store": ["util", "proto"],
    "auth": ["util", "proto"],
    "core": ["util", "proto", "net", "store", "auth"],
    "broker": ["util", "proto", "net", "store", "core"],
    "transport": ["util", "proto", "net", "store", "auth", "core"],
    "profiles": ["util", "proto", "net", "store", "auth", "core", "transport"],
    "api": ["util", "proto", "net", "store", "auth", "core", "transport"],
    "cli": ["util", "proto", "net", "store", "auth", "core", "broker", "transport", "profiles",
            "api"],
}
TOP = {"main.c"}  # files directly in src/ that may include any layer

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def module(rel):
    """'core/hub.c' and 'core/hub.h' are one module, 'core/hub'."""
    return str(pathlib.PurePosixPath(rel).with_suffix(""))


def scan(src):
    """Every quoted include: (file, line number, included path), paths relative to src."""
    for path in sorted(src.rglob("*.[ch]")):
        rel = path.relative_to(src).as_posix()
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            m = INCLUDE.match(line)
            if m:
                yield rel, n, m.group(1)


def layer_errors(src, includes):
    errors = []
    for rel, n, inc in includes:
        parts = rel.split("/")
        if len(parts) == 1:
            if rel not in TOP:
                errors.append(f"{rel}:{n}: a file directly in src/ that is not main.c")
            continue
        here = parts[0]
        if here not in LAYERS:
            errors.append(f"{rel}:{n}: folder src/{here}/ is not a known layer (add it to LAYERS)")
            continue
        target = inc.split("/")[0] if "/" in inc else None
        if target is None or not (src / inc).exists():
            errors.append(f'{rel}:{n}: #include "{inc}" is not a path under src/ (write layer/file.h)')
        elif target != here and target not in LAYERS[here]:
            errors.append(f'{rel}:{n}: #include "{inc}": {here}/ may not include {target}/ '
                          f"(allowed: {', '.join(LAYERS[here]) or 'nothing'})")
    return errors


def strongly_connected(graph):
    """The strongly connected components of more than one node of {node: set(successors)}: the
    loops (Tarjan), each as a sorted list."""
    index, low, stack, on_stack, sccs, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sccs


def cycle_errors(includes):
    """Include cycles between modules."""
    graph, where = {}, {}
    for rel, n, inc in includes:
        a, b = module(rel), module(inc)
        graph.setdefault(a, set())
        graph.setdefault(b, set())
        if a != b:
            graph[a].add(b)
            where.setdefault((a, b), f"{rel}:{n}")
    errors = []
    for comp in strongly_connected(graph):
        members = set(comp)
        edges = [where[(a, b)] + f' includes "{b}"' for a in comp for b in sorted(graph[a])
                 if b in members]
        errors.append("include cycle between " + ", ".join(comp) + ":\n    " + "\n    ".join(edges))
    return errors


def main():
    src = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else \
        pathlib.Path(__file__).resolve().parents[2] / "src"
    includes = list(scan(src))
    errors = layer_errors(src, includes) + cycle_errors(includes)
    for e in errors:
        print(e)
    if errors:
        print(f"{len(errors)} layering error(s); the allowed order is LAYERS in {__file__}")
        return 1
    print(f"{len(includes)} includes under {src}: every one points down, no cycle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
