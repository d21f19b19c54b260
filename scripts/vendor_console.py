"""Check or update the JavaScript libraries vendored into the web console.

The console ships built files of npm packages (Chart.js) under
``segd/console/static/vendor/NAME-VERSION/``, recorded in ``segd/console/vendor.json``
(version, which file of the package each vendored file is, its SHA-256). Nothing is built
at install time; this script is the only way those files change.

    python scripts/vendor_console.py --check            # CI: files match the record and npm
    python scripts/vendor_console.py --check --offline  # only the recorded hashes
    python scripts/vendor_console.py --update chart.js 4.6.2

``--check`` fetches the recorded version with ``npm pack`` (the npm registry, nothing
else) and compares every vendored file byte for byte with the one in the package. Exit 0
when all match, 1 otherwise, with one line per difference.

``--update NAME VERSION`` packs that version, copies the recorded files into
``vendor/NAME-VERSION/``, removes the old version's folder, rewrites the record and every
``/vendor/NAME-OLD/`` reference in ``index.html``. Review the diff and run the browser
tests after it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

CONSOLE = Path(__file__).resolve().parent.parent / "segd" / "console"
RECORD = CONSOLE / "vendor.json"
INDEX = CONSOLE / "static" / "index.html"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def npm_pack(name: str, version: str, into: Path) -> dict[str, bytes]:
    """The files of ``name@version`` as npm publishes them, by path in the tarball."""
    out = subprocess.run(
        ["npm", "pack", f"{name}@{version}", "--pack-destination", str(into), "--json", "--silent"],
        check=True,
        capture_output=True,
        text=True,
    )
    tgz = into / json.loads(out.stdout)[0]["filename"]
    files: dict[str, bytes] = {}
    with tarfile.open(tgz) as tar:
        for member in tar.getmembers():
            fh = tar.extractfile(member) if member.isfile() else None
            if fh is not None:
                files[member.name] = fh.read()
    return files


def check(record: dict[str, Any], offline: bool) -> list[str]:
    """Every difference between the vendored files, their record and (online) npm."""
    problems = []
    for name, lib in record.items():
        for rel, want in lib["sha256"].items():
            path = CONSOLE / rel
            if not path.is_file():
                problems.append(f"{name}: {rel} is missing")
            elif sha256(path.read_bytes()) != want:
                problems.append(f"{name}: {rel} does not match its recorded SHA-256")
        if offline:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            packed = npm_pack(name, lib["version"], Path(tmp))
        for src, rel in lib["files"].items():
            if src not in packed:
                problems.append(f"{name}@{lib['version']}: the package has no {src}")
            elif (CONSOLE / rel).is_file() and packed[src] != (CONSOLE / rel).read_bytes():
                problems.append(f"{name}: {rel} differs from {src} of {name}@{lib['version']} on npm")
    return problems


def update(record: dict[str, Any], name: str, version: str) -> None:
    """Vendor ``name@version`` in place of the recorded version (see the module doc)."""
    lib = record[name]
    old_dir = f"vendor/{name}-{lib['version']}/"
    new_dir = f"vendor/{name}-{version}/"
    with tempfile.TemporaryDirectory() as tmp:
        packed = npm_pack(name, version, Path(tmp))
    files, hashes = {}, {}
    for src, rel in lib["files"].items():
        new_rel = rel.replace(old_dir, new_dir)
        target = CONSOLE / new_rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(packed[src])
        files[src] = new_rel
        hashes[new_rel] = sha256(packed[src])
    if old_dir != new_dir:
        shutil.rmtree(CONSOLE / "static" / old_dir, ignore_errors=True)
        INDEX.write_text(INDEX.read_text().replace("/" + old_dir, "/" + new_dir))
    record[name] = {**lib, "version": version, "files": files, "sha256": hashes}
    RECORD.write_text(json.dumps(record, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = ap.add_mutually_exclusive_group(required=True)
    group.add_argument(
        "--check", action="store_true", help="compare the vendored files with the record and npm"
    )
    group.add_argument("--update", nargs=2, metavar=("NAME", "VERSION"), help="vendor another version")
    ap.add_argument("--offline", action="store_true", help="with --check: the recorded hashes only")
    args = ap.parse_args(argv)
    record = json.loads(RECORD.read_text())
    if args.update:
        name, version = args.update
        if name not in record:
            print(f"{name} is not vendored; known: {', '.join(record)}", file=sys.stderr)
            return 1
        update(record, name, version)
        print(f"vendored {name}@{version}")
        return 0
    problems = check(record, args.offline)
    for p in problems:
        print(p, file=sys.stderr)
    if not problems:
        print("vendored files match: " + ", ".join(f"{n}@{lib['version']}" for n, lib in record.items()))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
