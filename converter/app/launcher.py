"""What a person starts from the menu: ``vinv`` makes sure the watcher runs and shows the inbox's page.

``vinv`` (no arguments) or ``vinv show [DIR]``: start ``vinv watch`` in the background unless a
watcher already holds the folder's lock (converter.app.instance), then open the folder's page in the
default browser. ``vinv open [DIR]`` only opens a folder's page, e.g. after ``vinv batch DIR``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import webbrowser
from collections.abc import Sequence
from pathlib import Path

from converter.app.config import ConfigError, WatchSettings
from converter.app.desktop import LaunchCommand
from converter.app.instance import running_watcher
from converter.app.report.page import page_path, write_page

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
START_WAIT_SECONDS = 15.0  # how long to wait for a started watcher to take its lock, or to fail


def start_watcher(command: LaunchCommand, folder: Path | None) -> subprocess.Popen:
    """``vinv watch [DIR]`` in the background, detached from this process and its terminal."""
    argv = [*command.argv, "watch", *([str(folder)] if folder is not None else [])]
    detached: dict = ({"creationflags": subprocess.DETACHED_PROCESS | subprocess.CREATE_NEW_PROCESS_GROUP}
                      if os.name == "nt" else {"start_new_session": True})
    return subprocess.Popen(argv, cwd=command.working_dir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, **detached)


def wait_until_watching(folder: Path, watcher: subprocess.Popen, seconds: float = START_WAIT_SECONDS) -> bool:
    """True once a watcher holds ``folder``'s lock; False when ``watcher`` exits first or time runs out."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if running_watcher(folder) is not None:
            return True
        if watcher.poll() is not None:
            return running_watcher(folder) is not None  # it may have found another watcher just started
        time.sleep(0.1)
    return False


def open_in_browser(page: Path) -> None:
    print(f"page: {page}")
    if not webbrowser.open(page.resolve().as_uri()):
        print("vinv: no web browser found; open the page above in one", file=sys.stderr)


def show(folder: Path | None) -> int:
    """Make sure a watcher watches ``folder`` (default: the inbox from the settings) and open its page."""
    try:
        settings = WatchSettings.load()
    except ConfigError as error:
        print(f"vinv: {error}", file=sys.stderr)
        return EXIT_USAGE
    watched = folder.expanduser().resolve() if folder is not None else settings.inbox
    try:
        watched.mkdir(parents=True, exist_ok=True)
        if not page_path(watched).is_file():
            write_page(watched, live=True)  # the watcher rewrites it once started
    except OSError as error:
        print(f"vinv: {error.filename or watched}: {error.strerror or error}", file=sys.stderr)
        return EXIT_FAILED
    pid = running_watcher(watched)
    status = EXIT_OK
    if pid is None:
        watcher = start_watcher(LaunchCommand.current(), watched if folder is not None else None)
        if wait_until_watching(watched, watcher):
            print(f"started the watcher on {watched}")
        else:
            print(f"vinv: the watcher did not start; its log says why: {settings.log_file}", file=sys.stderr)
            status = EXIT_FAILED
    else:
        print(f"the watcher is running on {watched} (process {pid})")
    open_in_browser(page_path(watched))
    return status


def open_page(folder: Path | None) -> int:
    """Open the page of ``folder`` (default: the inbox); it must have one already."""
    if folder is None:
        try:
            folder = WatchSettings.load().inbox
        except ConfigError as error:
            print(f"vinv: {error}", file=sys.stderr)
            return EXIT_USAGE
    page = page_path(folder)
    if not page.is_file():
        print(f"vinv: {folder} has no page yet; `vinv batch {folder}` converts it and writes one", file=sys.stderr)
        return EXIT_FAILED
    open_in_browser(page)
    return EXIT_OK


def main(command: str, argv: Sequence[str]) -> int:
    """``vinv show [DIR]`` or ``vinv open [DIR]``."""
    parser = argparse.ArgumentParser(
        prog=f"vinv {command}",
        description=("Make sure the watcher runs on DIR and open its page." if command == "show"
                     else "Open the report page of DIR in the default browser."),
    )
    parser.add_argument("folder", nargs="?", type=Path, metavar="DIR", help="the folder (default: the inbox)")
    args = parser.parse_args(argv)
    return show(args.folder) if command == "show" else open_page(args.folder)
