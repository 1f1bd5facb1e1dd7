"""Where vinv-watch looks, logs and reads its settings.

The defaults come from platformdirs, so they land where each OS expects them: the inbox in the
user's music folder, the settings file in the user config folder, the log in the user log folder.
The settings file is JSON (readable by every supported Python without extra packages); any key
may be left out, and relative paths in it are taken relative to the file's own folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from dataclasses import dataclass, fields
from pathlib import Path

import platformdirs

from converter.app.jobs import MODES

APP_NAME = "vinv"


class ConfigError(ValueError):
    """A settings file vinv cannot use; the message names the file and the problem in one line."""


def default_config_path() -> Path:
    """``config.json`` in the user config folder, e.g. ``~/.config/vinv/config.json`` on Linux."""
    return platformdirs.user_config_path(APP_NAME) / "config.json"


def default_inbox() -> Path:
    """A ``vinv`` folder in the user's music folder, e.g. ``~/Music/vinv``."""
    return platformdirs.user_music_path() / APP_NAME


def default_log_path() -> Path:
    """``vinv-watch.log`` in the user log folder, e.g. ``~/.local/state/vinv/log`` on Linux."""
    return platformdirs.user_log_path(APP_NAME) / "vinv-watch.log"


def default_workers() -> int:
    """Half the cores: the daemon runs beside a DAW and should not take the whole machine."""
    return max(1, (os.cpu_count() or 2) // 2)


@dataclass(frozen=True)
class WatchSettings:
    """Everything vinv-watch needs to know, after defaults and the settings file are combined."""

    inbox: Path
    workers: int
    threads: int
    refine_seconds: float
    mode: str
    variations: int
    model: Path | None
    log_file: Path
    worker_idle_seconds: float
    config_file: Path

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> WatchSettings:
        """Defaults overlaid with the settings file at ``path`` (default location when None; may be absent)."""
        config_file = Path(path).expanduser() if path is not None else default_config_path()
        values = _read_json(config_file) if config_file.is_file() or path is not None else {}
        base = config_file.parent

        def path_value(key: str, default: Path | None) -> Path | None:
            value = values.get(key, default)
            if value is None or isinstance(value, Path):
                return value
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{config_file}: '{key}' must be a path (a non-empty string)")
            return (base / Path(value).expanduser()).resolve()

        def number_value(key: str, default: float, minimum: float, kind: type) -> float:
            value = values.get(key, default)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
                raise ConfigError(f"{config_file}: '{key}' must be {'a whole number' if kind is int else 'a number'}")
            if not minimum <= value < float("inf"):
                raise ConfigError(f"{config_file}: '{key}' must be at least {minimum}")
            return kind(value)

        def choice_value(key: str, default: str, choices: tuple[str, ...]) -> str:
            value = values.get(key, default)
            if value not in choices:
                raise ConfigError(f"{config_file}: '{key}' must be one of {', '.join(choices)}")
            return value

        return cls(
            inbox=path_value("inbox", default_inbox()),
            workers=number_value("workers", default_workers(), 1, int),
            threads=number_value("threads", 1, 1, int),
            refine_seconds=number_value("refine_seconds", 0.0, 0.0, float),
            mode=choice_value("mode", MODES[0], MODES),
            variations=number_value("variations", 0, 0, int),
            model=path_value("model", None),
            log_file=path_value("log_file", default_log_path()),
            worker_idle_seconds=number_value("worker_idle_seconds", 60.0, 0.0, float),
            config_file=config_file,
        )

    def with_overrides(self, **values: object) -> WatchSettings:
        """These settings with some replaced (command-line options win over the settings file)."""
        return dataclasses.replace(self, **values)

    def describe(self) -> str:
        """The resolved settings, one ``key: value`` per line (what ``vinv-watch --print-config`` shows)."""
        lines = []
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name == "model" and value is None:
                value = "(the model shipped with vinv)"
            elif field.name == "config_file" and not self.config_file.is_file():
                value = f"{value} (not present: defaults in use)"
            lines.append(f"{field.name}: {value}")
        return "\n".join(lines)


SETTING_KEYS = frozenset(field.name for field in fields(WatchSettings)) - {"config_file"}


def _read_json(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read ({error.strerror or error})") from None
    try:
        values = json.loads(text)
    except ValueError as error:
        raise ConfigError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a JSON object of settings")
    unknown = sorted(set(values) - SETTING_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown setting {unknown[0]!r}; known: {', '.join(sorted(SETTING_KEYS))}")
    return values


def positive_int(text: str) -> int:
    """argparse type: a whole number, 1 or more."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def count(text: str) -> int:
    """argparse type: a whole number, 0 or more."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def seconds(text: str) -> float:
    """argparse type: a finite number of seconds, 0 or more."""
    value = float(text)
    if not 0.0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds, 0 or more, got {text}")
    return value
