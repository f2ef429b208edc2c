"""SIGKILL of ingest before each of its renames: readers see the old version, the new one, or a clear
"interrupted" error, never a mix; re-running the ingest finishes the update."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

import pytest

from source_files import phantom_row, write_phantom_source
from synthfair.errors import SynthfairError
from synthfair.index import read_index
from synthfair.index.ingest import ingest

KILL_BEFORE_RENAME = textwrap.dedent(
    """
    import os, signal, sys
    import synthfair.fileio as fileio
    calls, at = [0], int(sys.argv[1])
    real = os.replace
    def replace(src, dst):
        calls[0] += 1
        if calls[0] == at:
            os.kill(os.getpid(), signal.SIGKILL)
        real(src, dst)
    fileio.os = type("os", (), {**{k: getattr(os, k) for k in dir(os) if not k.startswith("__")},
                                "replace": staticmethod(replace)})
    from synthfair.index.ingest import ingest
    ingest("phantom", sys.argv[2], sys.argv[3])
    print("finished", calls[0])
    """
)


def test_a_killed_ingest_leaves_one_version_visible(tmp_path):
    old_rows = [phantom_row(i) for i in range(4)]
    source = write_phantom_source(tmp_path / "v1", old_rows)
    base = tmp_path / "base"
    ingest("phantom", source, base)
    old = read_index(base)
    new_source = write_phantom_source(tmp_path / "v2", [phantom_row(i) for i in range(7)])
    fresh = tmp_path / "fresh"
    ingest("phantom", new_source, fresh)
    new = read_index(fresh)
    seen = set()
    for at in range(1, 12):
        out = tmp_path / f"killed-{at}"
        shutil.copytree(base, out)
        run = subprocess.run(
            [sys.executable, "-c", KILL_BEFORE_RENAME, str(at), str(new_source), str(out)],
            capture_output=True,
            text=True,
        )
        if run.returncode == 0:
            assert "finished" in run.stdout
            break
        assert run.returncode == -9, run.stderr
        try:
            state = (
                "new" if read_index(out).equals(new) else "old" if read_index(out).equals(old) else "mixed"
            )
        except SynthfairError as err:
            assert "interrupted" in str(err) and "re-run" in err.hint
            state = "refused"
        assert state != "mixed", at
        seen.add(state)
        ingest("phantom", new_source, out)  # re-running finishes the update
        assert read_index(out).equals(new)
    else:
        pytest.fail("the ingest never finished: more renames than expected")
    assert at > 5 and seen == {"old", "refused"}, seen  # refused: killed between index.parquet and .json
