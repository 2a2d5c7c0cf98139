#!/usr/bin/env python3
"""The release artifacts' sizes: the x86_64 `bootstrap` the benchmarks run and the arm64 one
`sam build` makes (what template.yaml deploys), each alone and zipped as `sam deploy` uploads
it (one DEFLATE entry, zlib's default level, as SAM's own packaging writes it). Prints the
section and, with `--results`, puts it in bench/RESULTS.md. Run by scripts/bench.

usage: artifacts.py X86_64_BOOTSTRAP ARM64_BOOTSTRAP [--results]"""
import datetime
import io
import pathlib
import subprocess
import sys
import zipfile

from run import ROOT, report, table

# Lambda's limits for a function's package: zipped (direct upload), and unzipped.
ZIPPED_LIMIT, UNZIPPED_LIMIT = 50 * 2**20, 250 * 2**20


def zipped(path):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.write(path, "bootstrap")
    return len(out.getvalue())


def main():
    x86, arm64 = (pathlib.Path(a) for a in sys.argv[1:3])
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    rows = []
    for name, how, path in [("x86_64", "`cargo build --release`", x86),
                            ("arm64 (deployed)", "`sam build` (`cargo lambda build --release --arm64`)", arm64)]:
        size, packed = path.stat().st_size, zipped(path)
        assert size < UNZIPPED_LIMIT and packed < ZIPPED_LIMIT, (path, size, packed)
        rows.append([name, how, f"{size:,} ({size / 2**20:.1f} MiB)", f"{packed:,} ({packed / 2**20:.1f} MiB)"])
    report(["## Release binary", "",
            f"Stripped (release profile: LTO, one codegen unit, `panic = \"abort\"`), on "
            f"{datetime.date.today()}, commit `{commit}`. Zipped as `sam deploy` uploads it; Lambda "
            f"takes up to 50 MiB zipped and 250 MiB unzipped.", ""]
           + table(["binary", "built by", "bootstrap bytes", "zip bytes"], rows) + [""])


if __name__ == "__main__":
    main()
