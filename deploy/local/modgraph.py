#!/usr/bin/env python3
"""The module graph of src/: which module imports which (crate:: and super::
paths outside `#[cfg(test)]` modules), its largest import circle, the
biggest files and the `Result<_, String>` count. A module is a file; a
folder's mod.rs is the folder; a submodule's imports of its parent count. Prints a summary; --edges lists the edges.

Usage: deploy/local/modgraph.py [--edges] [SRC]   (SRC defaults to this repo's src/)
"""
import os
import re
import sys

SRC = next(
    (a for a in sys.argv[1:] if not a.startswith("--")),
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "src"),
)


def module_of(path):
    rel = os.path.relpath(path, SRC)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return "::".join(rel) or "crate"


def strip_tests(text):
    """Drops `#[cfg(test)] mod … { … }` blocks (brace matched)."""
    out, i = [], 0
    pattern = re.compile(r"#\[cfg\(test\)\]\s*(pub\s+)?mod\s+\w+\s*\{")
    while True:
        m = pattern.search(text, i)
        if not m:
            out.append(text[i:])
            return "".join(out)
        out.append(text[i:m.start()])
        depth, j = 1, m.end()
        while depth and j < len(text):
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j


def main():
    files = {}
    for root, _, names in os.walk(SRC):
        for n in names:
            if n.endswith(".rs"):
                p = os.path.join(root, n)
                files[module_of(p)] = p
    mods = set(files)
    edges = {m: set() for m in mods}
    lines = {}
    string_errors = 0
    for m, p in files.items():
        text = open(p, encoding="utf-8").read()
        lines[m] = text.count("\n")
        code = strip_tests(text)
        string_errors += len(re.findall(r"Result<[^<>]*(?:<[^<>]*>[^<>]*)*,\s*String>", code))
        parent = m.rsplit("::", 1)[0] if "::" in m else "crate"
        for path in re.findall(r"\b(crate|super)((?:::\w+)+)", code):
            base, rest = path
            parts = [x for x in rest.split("::") if x]
            if base == "crate":
                prefix = []
            else:
                # super:: from a file module is its parent; from a folder's mod.rs, the folder's parent.
                own = m.split("::") if not p.endswith("mod.rs") else m.split("::")
                prefix = own[:-1]
            target = None
            for k in range(len(parts), 0, -1):
                cand = "::".join(prefix + parts[:k])
                if cand in mods:
                    target = cand
                    break
            if target is None and prefix:
                cand = "::".join(prefix)
                target = cand if cand in mods else None
            if target and target != m and target != "crate":
                edges[m].add(target)
    # Tarjan's strongly connected components.
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
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
            sccs.append(comp)

    for v in sorted(mods):
        if v not in index:
            visit(v)
    biggest = max(sccs, key=len)
    print(f"modules: {len(mods)}, lines: {sum(lines.values())}, edges: {sum(len(e) for e in edges.values())}")
    if len(biggest) > 1:
        print(f"largest import circle: {len(biggest)} modules, {sum(lines[m] for m in biggest)} lines")
    else:
        print("largest import circle: none")
    if len(biggest) > 1:
        print("  " + ", ".join(sorted(biggest)))
    print("biggest files: " + ", ".join(f"{files[m][len(SRC) + 1:]} {lines[m]}" for m in sorted(lines, key=lines.get, reverse=True)[:5]))
    print(f"Result<_, String> outside tests: {string_errors}")
    if "--edges" in sys.argv:
        for m in sorted(edges):
            for t in sorted(edges[m]):
                print(f"{m} -> {t}")


if __name__ == "__main__":
    main()
