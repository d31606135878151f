#!/usr/bin/env python3
"""The layering checks must fail on what they forbid: each is run on a small tree (or pair of
libraries) made here that breaks the rule once, and on one that keeps it."""

import pathlib
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent


def run(*args):
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True)


def tree(root, files):
    for path, text in files.items():
        p = root / path
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def check_includes():
    good = {"util/a.h": "", "util/a.c": '#include "util/a.h"\n',
            "core/b.c": '#include "util/a.h"\n', "main.c": '#include "core/b.h"\n',
            "core/b.h": '#include "util/a.h"\n'}
    with tempfile.TemporaryDirectory() as d:
        tree(pathlib.Path(d), good)
        r = run(HERE / "check_includes.py", d)
        assert r.returncode == 0, r.stdout
    up = dict(good, **{"util/a.c": '#include "core/b.h"\n'})
    with tempfile.TemporaryDirectory() as d:
        tree(pathlib.Path(d), up)
        r = run(HERE / "check_includes.py", d)
        assert r.returncode == 1 and "util/ may not include core/" in r.stdout, r.stdout
    loop = dict(good, **{"core/c.h": '#include "core/b.h"\n', "core/b.h": '#include "core/c.h"\n'})
    with tempfile.TemporaryDirectory() as d:
        tree(pathlib.Path(d), loop)
        r = run(HERE / "check_includes.py", d)
        assert r.returncode == 1 and "include cycle between core/b, core/c" in r.stdout, r.stdout


def lib(d, layer, sources):
    objs = []
    for name, text in sources.items():
        c = d / f"{name}.c"
        c.write_text(text)
        o = d / f"{name}.c.o"
        subprocess.run(["cc", "-c", str(c), "-o", str(o)], check=True)
        objs.append(str(o))
    a = d / f"libvigil_{layer}.a"
    subprocess.run(["ar", "rc", str(a), *objs], check=True)
    return a


def check_calls():
    with tempfile.TemporaryDirectory() as t:
        d = pathlib.Path(t)
        low = lib(d, "util", {"a": "void b(void); void a(void) { }\n"})
        high = lib(d, "core", {"b": "void a(void); void b(void) { a(); }\n"})
        r = run(HERE / "check_calls.py", low, high)
        assert r.returncode == 0, r.stdout
        (d / "libvigil_util.a").unlink()
        low = lib(d, "util", {"a": "void b(void); void a(void) { b(); }\n"})
        r = run(HERE / "check_calls.py", low, high)
        assert r.returncode == 1 and "util/a calls b in core/b" in r.stdout, r.stdout
        assert "call cycle" in r.stdout, r.stdout


check_includes()
check_calls()
print("the layering checks refuse an upward include, an include cycle, an upward call, a loop")
