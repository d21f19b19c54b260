"""``segd demo`` turns HTTP on at a free loopback port and prints its URL (SPEC section 8)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]


def test_demo_prints_a_url_that_serves_the_json_api(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "segd", "demo", "--seconds", "10", "--rate", "200",
         "--config", str(ROOT / "config.toml"), "--ray-address", os.environ["SEGD_TEST_RAY_ADDRESS"]],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:  # the URL is printed before the live view starts
            lines.append(line)
            found = re.search(r"segd console: (http://127\.0\.0\.1:\d+)/", line)
            if found:
                break
        assert found, "".join(lines)[-2000:]
        resp = requests.get(f"{found.group(1)}/api/segments", timeout=30)
        page = requests.get(f"{found.group(1)}/", timeout=30)  # the console, live during the demo
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
        assert resp.status_code == 200 and resp.json()["segments"]
        assert page.status_code == 200 and '<script type="module" src="/js/app.js">' in page.text
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=60)
