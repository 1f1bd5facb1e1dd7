"""Linux desktop integration: ``vinv watch --install`` and ``--uninstall``.

Installing writes two freedesktop.org desktop entries: a launcher in the applications menu
(``$XDG_DATA_HOME/applications/vinv.desktop``) that runs ``vinv`` (start the watcher unless it runs,
then open the watched folder's page in the browser; converter.app.launcher), and an autostart entry
(``$XDG_CONFIG_HOME/autostart/vinv-watch.desktop``) that starts the watcher, without a window, at
every login. Both run the vinv that installed them (the packaged executable, or this
Python environment's ``vinv``), so moving the app means installing again. Every file we write
carries a marker line: uninstalling removes only files with it, and installing never replaces a
file without it. Both commands can be run any number of times.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from converter.app.config import ConfigError, WatchSettings
from converter.files import atomic_write_bytes

LAUNCHER_NAME = "vinv.desktop"
AUTOSTART_NAME = "vinv-watch.desktop"
MARKER = "X-Vinv-Installed-By=vinv watch --install"
EXIT_OK, EXIT_BLOCKED, EXIT_USAGE = 0, 1, 2
WROTE, UNCHANGED, REMOVED, ABSENT = "wrote", "unchanged", "removed", "not installed"
FOREIGN = "left alone, not written by vinv"
# Characters that force an Exec argument into double quotes (Desktop Entry Specification, "The Exec key").
_EXEC_RESERVED = frozenset(" \t\"'\\><~|&;$*?#()`")


class DesktopError(ValueError):
    """A desktop entry that cannot be written as asked (a path that an entry cannot hold)."""


@dataclass(frozen=True)
class EntryPaths:
    """Where the launcher and the autostart entry go for the current user."""

    launcher: Path
    autostart: Path

    @classmethod
    def current(cls) -> EntryPaths:
        """Per the XDG base directory spec: unset, empty or relative variables mean ~/.local/share and ~/.config."""
        data = _xdg_dir("XDG_DATA_HOME", Path(".local", "share"))
        config = _xdg_dir("XDG_CONFIG_HOME", Path(".config"))
        return cls(launcher=data / "applications" / LAUNCHER_NAME, autostart=config / "autostart" / AUTOSTART_NAME)

    def all(self) -> tuple[Path, Path]:
        return self.launcher, self.autostart


def _xdg_dir(variable: str, under_home: Path) -> Path:
    value = os.environ.get(variable, "")
    return Path(value) if os.path.isabs(value) else Path.home() / under_home


@dataclass(frozen=True)
class LaunchCommand:
    """How a desktop entry starts this vinv: program and leading arguments, and a working folder if it needs one."""

    argv: tuple[str, ...]
    working_dir: Path | None = None

    @classmethod
    def current(cls) -> LaunchCommand:
        """The packaged executable when frozen, else the ``vinv`` script of this environment, else ``python -m``."""
        if getattr(sys, "frozen", False):
            return cls((os.path.abspath(sys.executable),))
        script = Path(os.path.abspath(sys.executable)).with_name("vinv")
        if script.is_file() and os.access(script, os.X_OK):
            return cls((str(script),))
        package_root = Path(__file__).resolve().parents[2]  # a checkout that is not installed runs from its root
        return cls((os.path.abspath(sys.executable), "-m", "converter.app.cli"), working_dir=package_root)


def exec_argument(argument: str) -> str:
    """One argument as an Exec value holds it: quoted where needed, ``%`` doubled, backslashes escaped."""
    if not argument or any(character in "\n\r" for character in argument):
        raise DesktopError(f"a desktop entry cannot run the argument {argument!r}")
    if any(character in _EXEC_RESERVED for character in argument):
        argument = '"' + re.sub(r'(["`$\\])', r"\\\1", argument) + '"'
    return _string_value(argument.replace("%", "%%"))


def _string_value(text: str) -> str:
    """A value of the desktop file's string types: backslashes escaped, control characters refused."""
    if any(ord(character) < 0x20 for character in text):
        raise DesktopError(f"a desktop entry cannot hold {text!r}")
    return text.replace("\\", "\\\\")


def launcher_entry(command: LaunchCommand, watch_args: Sequence[str]) -> str:
    """The applications-menu entry: ``vinv`` (or ``vinv show DIR``) starts the watcher if needed and shows its page."""
    return _entry(command, ["show", *watch_args] if watch_args else [], [
        "Name=vinv",
        "GenericName=Sample to Vital preset converter",
        "Comment=Turn every sample dropped into the vinv folder into a Vital preset and a preview; see them all",
        "Icon=audio-x-generic",
        "Terminal=false",
        "Categories=AudioVideo;Audio;",
        "Keywords=Vital;preset;synth;sample;convert;",
    ])


def autostart_entry(command: LaunchCommand, watch_args: Sequence[str]) -> str:
    """The login entry: the watcher in the background (the desktop's startup settings list it, to turn it off)."""
    return _entry(command, ["watch", *watch_args], [
        "Name=vinv watcher",
        "Comment=Converts samples dropped into the vinv folder into Vital presets",
        "Icon=audio-x-generic",
        "Terminal=false",
        "X-GNOME-Autostart-enabled=true",
    ])


def _entry(command: LaunchCommand, arguments: Sequence[str], lines: list[str]) -> str:
    exec_line = " ".join(exec_argument(argument) for argument in (*command.argv, *arguments))
    head = ["[Desktop Entry]", "Type=Application", "Version=1.5", f"Exec={exec_line}",
            f"TryExec={_string_value(command.argv[0])}"]
    if command.working_dir is not None:
        head.append(f"Path={_string_value(str(command.working_dir))}")
    return "\n".join([*head, *lines, MARKER]) + "\n"


def is_ours(path: Path) -> bool:
    """Whether ``path`` is a desktop entry that ``vinv watch --install`` wrote."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return MARKER in text.splitlines()


def install(paths: EntryPaths, command: LaunchCommand, watch_args: Sequence[str] = ()) -> dict[Path, str]:
    """Write (or refresh) both entries; returns what happened to each: WROTE, UNCHANGED or FOREIGN.

    A file that vinv did not write (FOREIGN) is left alone; the other entry is still written.
    """
    entries = {
        paths.launcher: launcher_entry(command, watch_args),
        paths.autostart: autostart_entry(command, watch_args),
    }
    outcomes = {}
    for path, text in entries.items():
        data = text.encode("utf-8")
        if path.exists() and not is_ours(path):
            outcomes[path] = FOREIGN
        elif path.is_file() and path.read_bytes() == data:
            outcomes[path] = UNCHANGED
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, data)
            os.chmod(path, 0o644)
            outcomes[path] = WROTE
    return outcomes


def uninstall(paths: EntryPaths) -> dict[Path, str]:
    """Remove the entries vinv wrote; returns what happened to each: REMOVED, ABSENT or FOREIGN (left alone)."""
    outcomes = {}
    for path in paths.all():
        if not path.exists():
            outcomes[path] = ABSENT
        elif is_ours(path):
            path.unlink()
            outcomes[path] = REMOVED
        else:
            outcomes[path] = FOREIGN
    return outcomes


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vinv watch",
        description="Add or remove the vinv watcher's launcher and login (autostart) entry on a Linux desktop.",
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--install", action="store_true", help="add the launcher and start the watcher at login")
    action.add_argument("--uninstall", action="store_true", help="remove what --install added")
    parser.add_argument("folder", nargs="?", type=Path, metavar="DIR",
                        help="with --install: the folder to watch (default: the inbox from the settings file)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.uninstall and args.folder is not None:
        parser.error("--uninstall takes no folder")
    if sys.platform in ("darwin", "win32"):
        print("vinv watch: --install and --uninstall set up Linux desktops only; the README says how to start "
              "the watcher at login on macOS and Windows", file=sys.stderr)
        return EXIT_USAGE
    paths = EntryPaths.current()
    if args.uninstall:
        outcomes = uninstall(paths)
        _print_outcomes(outcomes)
        print("a watcher that is already running keeps running until you log out or stop it")
        return EXIT_OK
    command = LaunchCommand.current()
    watch_args = [str(args.folder.expanduser().resolve())] if args.folder is not None else []
    try:
        outcomes = install(paths, command, watch_args)
    except DesktopError as error:
        print(f"vinv watch: {error}", file=sys.stderr)
        return EXIT_USAGE
    _print_outcomes(outcomes)
    if FOREIGN in outcomes.values():
        print("vinv watch: move the files vinv did not write out of the way, then install again", file=sys.stderr)
        return EXIT_BLOCKED
    print(f"the watcher starts at your next login; to start it now, run: "
          f"{shlex.join([*command.argv, 'watch', *watch_args])}")
    _print_watched_folder(watch_args)
    return EXIT_OK


def _print_outcomes(outcomes: dict[Path, str]) -> None:
    for path, outcome in outcomes.items():
        print(f"{outcome}: {path}")


def _print_watched_folder(watch_args: Sequence[str]) -> None:
    if watch_args:
        print(f"watched folder: {watch_args[0]}")
        return
    try:
        settings = WatchSettings.load()
    except ConfigError as error:
        print(f"vinv watch: the watcher will not start until its settings file is fixed: {error}", file=sys.stderr)
        return
    print(f"watched folder: {settings.inbox} (to change it, set 'inbox' in {settings.config_file})")
