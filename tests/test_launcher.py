"""`vinv` with no arguments (the menu entry) and `vinv open`: one watcher per folder, and the page in a browser.

The browser is a script named by $BROWSER (which Python's webbrowser honours) that notes the URL it
was asked to open; the watcher is the real `vinv watch`, started in the background by the launcher.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from test_watch import alive, wait_for

from converter.app.instance import WatcherLock, lock_path, running_watcher
from converter.app.report.page import PAGE_NAME

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; Linux desktops")


@pytest.fixture
def desktop(tmp_path, monkeypatch) -> dict[str, str]:
    """A home with its own XDG folders and a $BROWSER that writes each URL it opens to opened.txt."""
    home = tmp_path / "home"
    home.mkdir()
    browser = tmp_path / "browser"
    browser.write_text(f'#!/bin/sh\necho "$1" >> "{tmp_path / "opened.txt"}"\n')
    browser.chmod(0o755)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "PYTHONPATH": str(REPO),
           "XDG_CONFIG_HOME": str(home / "config"), "XDG_STATE_HOME": str(home / "state"), "BROWSER": str(browser)}
    for name in ("HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME"):
        monkeypatch.setenv(name, env[name])  # so that this process finds the same locks
    return env


def vinv(env: dict[str, str], *args: str, module: str = "converter.app.cli") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=120)


def opened(env: dict[str, str]) -> list[str]:
    urls = Path(env["HOME"]).parent / "opened.txt"
    return urls.read_text().split() if urls.is_file() else []


def test_a_lock_is_held_by_one_process_at_a_time(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    first, second = WatcherLock(tmp_path / "inbox"), WatcherLock(tmp_path / "inbox")
    assert running_watcher(tmp_path / "inbox") is None
    assert first.acquire() and not second.acquire(retry_seconds=0.2)
    assert running_watcher(tmp_path / "inbox") == os.getpid()
    assert lock_path(tmp_path / "inbox") != lock_path(tmp_path / "other")
    first.release()
    assert second.acquire()
    second.release()


@pytest.mark.slow
def test_vinv_starts_the_watcher_once_and_opens_the_inbox_page(desktop):
    inbox = Path(desktop["HOME"]) / "Music" / "vinv"
    started = vinv(desktop)
    assert started.returncode == 0, started.stderr
    assert f"started the watcher on {inbox}" in started.stdout
    pid = running_watcher(inbox)
    assert pid and alive(pid)
    try:
        again = vinv(desktop)
        assert again.returncode == 0 and f"the watcher is running on {inbox} (process {pid})" in again.stdout
        assert running_watcher(inbox) == pid
        second = vinv(desktop, str(inbox), module="converter.app.watch")  # what a second login entry would do
        assert second.returncode == 0 and "not starting a second watcher" in second.stderr
        assert opened(desktop) == [(inbox / PAGE_NAME).as_uri()] * 2
        wait_for(lambda: "watching" in (Path(desktop["XDG_STATE_HOME"]) / "vinv/log/vinv-watch.log").read_text(),
                 120, "the watcher to load the model")
        assert "Nothing converted here yet" in (inbox / PAGE_NAME).read_text(encoding="utf-8")
    finally:
        os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not alive(pid), 60, "the watcher to stop")
    assert running_watcher(inbox) is None


def test_vinv_open_opens_a_folders_page_or_says_how_to_make_one(desktop, tmp_path):
    pack = tmp_path / "pack"
    pack.mkdir()
    missing = vinv(desktop, "open", str(pack))
    assert missing.returncode == 1 and f"vinv batch {pack}" in missing.stderr and opened(desktop) == []
    (pack / PAGE_NAME).write_text("<!DOCTYPE html><title>page</title>")
    shown = vinv(desktop, "open", str(pack))
    assert shown.returncode == 0 and opened(desktop) == [(pack / PAGE_NAME).as_uri()]
