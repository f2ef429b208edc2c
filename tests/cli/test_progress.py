"""Progress without a terminal: log lines at start, while running and at the end (never silent)."""

import io

from synthfair.cli import progress


def test_without_a_terminal_a_stage_prints_lines(monkeypatch):
    monkeypatch.setattr(progress, "LOG_EVERY", 0.0)
    out = io.StringIO()
    with progress.bar(3, "render", stream=out) as tick:
        tick()
        tick(2)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("[render] started 0/3 img") and lines[-1].startswith("[render] done 3/3 img")
    assert len(lines) == 4 and "img/s" in lines[-1]


def test_on_a_terminal_a_bar_is_drawn():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    out = Terminal()
    with progress.bar(2, "render", stream=out) as tick:
        tick(2)
    assert "render" in out.getvalue() and "2/2" in out.getvalue() and "[render]" not in out.getvalue()
