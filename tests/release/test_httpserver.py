"""The release server serves the files under its directory, and nothing a link inside it points to."""

import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from synthfair.release import serve


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, b""


def test_the_server_refuses_symlinks_out_of_and_within_its_directory(tmp_path):
    root, outside = tmp_path / "release", tmp_path / "private"
    (root / "shards").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"secret")
    (root / "manifest.json").write_bytes(b"{}")
    os.symlink(outside / "secret.txt", root / "leak.txt")
    os.symlink(outside, root / "linked")
    os.symlink(root / "manifest.json", root / "shards" / "alias.json")
    with serve(root) as server:
        assert _get(f"{server.url}/manifest.json") == (200, b"{}")
        for path in ("leak.txt", "linked/secret.txt", "shards/alias.json", "../private/secret.txt"):
            status, body = _get(f"{server.url}/{path}")
            assert status == 404 and b"secret" not in body, path


def test_running_the_server_module_prints_no_runpy_warning(tmp_path):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-W",
            "error::RuntimeWarning",
            "-m",
            "synthfair.release.httpserver",
            str(tmp_path),
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        with pytest.raises(subprocess.TimeoutExpired):  # still serving: it started cleanly
            proc.wait(timeout=5)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert b"RuntimeWarning" not in err and b"Traceback" not in err
