"""``gateway serve --log-format json`` writes nothing but JSON lines (the banner and the
first-run notice included), and ``--log-level WARNING`` drops the per-request access
lines (INFO, logger ``gateway.http``) while the banner stays.

A real ``gateway serve`` subprocess with stdout and stderr captured apart, asked over
real sockets, then stopped with SIGTERM.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from conformance.harness import ROOT, free_port, gateway_command, run_cli


def _serve(data_dir: Path, *options: str) -> tuple[str, str]:
    """Start, ask /healthz and a missing path on the HTTP listener, stop; (stdout, stderr)."""
    http_port = free_port()
    out_path, err_path = data_dir.parent / "serve.out", data_dir.parent / "serve.err"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(
            gateway_command("serve", "--data-dir", str(data_dir), "--host", "127.0.0.1",
                            "--https-port", str(free_port()), "--http-port", str(http_port), *options),
            stdout=out, stderr=err, cwd=ROOT,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, err_path.read_text()
                assert time.monotonic() < deadline, "gateway did not become healthy"
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=2) as resp:
                        if resp.status == 200:
                            break
                except OSError:
                    time.sleep(0.2)
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{http_port}/no-such-path", timeout=5)
            except urllib.error.HTTPError as exc:
                assert exc.code == 404
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return out_path.read_text(), err_path.read_text()


def test_json_log_format_writes_only_json_lines(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"  # not initialized: the first-run notice is JSON too
    stdout, stderr = _serve(data_dir, "--log-format", "json")
    records = []
    for stream, text in (("stdout", stdout), ("stderr", stderr)):
        for line in text.splitlines():
            try:
                records.append((stream, json.loads(line)))
            except json.JSONDecodeError:
                raise AssertionError(f"not JSON on {stream}: {line!r}") from None
    banners = [r for s, r in records if s == "stdout" and "banner" in r]
    assert len(banners) == 1
    assert banners[0]["message"] == "enrollment gateway is running" and "admin API" in banners[0]["banner"]
    assert any(s == "stderr" and "(first run)" in r["message"] for s, r in records)
    access = [r for _, r in records if r.get("logger") == "gateway.http"]
    assert {(r["path"], r["status"]) for r in access} >= {("/healthz", 200), ("/no-such-path", 404)}


def test_warning_level_drops_access_lines_but_keeps_the_banner(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    run_cli("init", data_dir=data_dir)
    stdout, stderr = _serve(data_dir)
    assert " INFO gateway.http: GET /healthz 200" in stderr  # the access line, at INFO by default
    stdout, stderr = _serve(data_dir, "--log-level", "WARNING")
    assert "enrollment gateway is running" in stdout
    assert "gateway.http" not in stderr and " INFO " not in stderr, stderr
