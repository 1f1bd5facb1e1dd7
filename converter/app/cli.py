"""vinv: one command with the converter's tools as subcommands, the packaged app's executable.

A packaged app has a single executable, so ``vinv batch`` and ``vinv watch`` stand for vinv-batch
and vinv-watch (same options), and ``vinv watch --install``/``--uninstall`` set up the Linux
launcher and login entry (converter.app.desktop). ``vinv`` alone, what the menu entry runs, makes sure
the watcher runs and opens the inbox's page; ``vinv open [DIR]`` opens a folder's page
(converter.app.launcher). Subcommands are imported only once chosen: the packaged app's worker
processes start through this module too.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from converter import __version__

EXIT_OK, EXIT_USAGE = 0, 2
DESKTOP_OPTIONS = frozenset({"--install", "--uninstall"})
USAGE = """\
usage: vinv                                   start the watcher unless it runs, open the inbox's page
       vinv show [DIR]                        the same for DIR
       vinv open [DIR]                        open DIR's page (default: the inbox's)
       vinv batch DIR [DIR ...] [options]    convert every sample under each DIR
       vinv watch [DIR] [options]             convert every sample dropped into DIR (default: the inbox)
       vinv watch --install [DIR]             start the watcher at every login, add it to the menu (Linux)
       vinv watch --uninstall                 undo --install
       vinv --version                         vinv's version and the model it ships with

`vinv batch --help` and `vinv watch --help` list each command's options."""


def version_text() -> str:
    """vinv's version and the shipped model's identity: what a bug report needs to name a build."""
    from converter.matching.model import DEFAULT_MODEL, ModelError, PresetModel

    if not DEFAULT_MODEL.is_file():
        return f"vinv {__version__}\nmodel: none shipped (pass --model PATH to batch and watch)"
    try:
        metadata = PresetModel.load(None, threads=1).metadata
    except ModelError as error:
        return f"vinv {__version__}\nmodel: unusable ({error})"
    labels = {"training_step": "step", "encoder": "encoder", "precision": "precision"}  # keys as export writes them
    details = ", ".join(f"{label} {metadata[key]}" for key, label in labels.items() if key in metadata)
    return f"vinv {__version__}\nmodel: {DEFAULT_MODEL.name}, recipe {metadata.get('recipe_id', 'unknown')} ({details})"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command, rest = (args[0], args[1:]) if args else ("show", [])
    if command in ("-h", "--help"):
        print(USAGE)
        return EXIT_OK
    if command == "--version":
        print(version_text())
        return EXIT_OK
    if command in ("show", "open"):
        from converter.app import launcher

        return launcher.main(command, rest)
    if command == "batch":
        from converter.app import batch

        return batch.main(rest)
    if command == "watch" and DESKTOP_OPTIONS & set(rest):
        from converter.app import desktop

        return desktop.main(rest)
    if command == "watch":
        from converter.app import watch

        return watch.main(rest)
    print(f"{USAGE}\nvinv: unknown command {command!r}", file=sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
