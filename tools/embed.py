#!/usr/bin/env python3
"""Writes a C file holding the files given, for the page the binary serves (src/admin/page.h).

Usage: embed.py OUT.c FILE...   Each file becomes an entry of page_assets[], found by the path
it is served at: index.html at "/", every file at "/assets/NAME".
"""
import os
import sys

TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}


def main():
    out, files = sys.argv[1], sys.argv[2:]
    lines = ['#include "admin/page.h"', ""]
    entries = []
    for i, path in enumerate(files):
        name = os.path.basename(path)
        ext = os.path.splitext(name)[1]
        if ext not in TYPES:
            sys.exit(f"embed.py: {path}: no content type for {ext!r} files")
        with open(path, "rb") as f:
            data = f.read()
        body = ",".join(str(b) for b in data)
        lines.append(f"static const unsigned char asset_{i}[] = {{{body},0}};")
        entries.append(f'    {{"/assets/{name}", "{TYPES[ext]}", asset_{i}, {len(data)}}},')
        if name == "index.html":
            entries.append(f'    {{"/", "{TYPES[ext]}", asset_{i}, {len(data)}}},')
    lines.append("")
    lines.append("const struct page_asset page_assets[] = {")
    lines.extend(entries)
    lines.append("    {NULL, NULL, NULL, 0},")
    lines.append("};")
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")


main()
