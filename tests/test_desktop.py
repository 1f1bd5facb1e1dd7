"""`vinv watch --install/--uninstall` against a temporary home: the files, their content, and that
running either command again changes nothing and never touches a file vinv did not write."""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
from pathlib import Path

import pytest

from converter.app import desktop
from converter.app.desktop import AUTOSTART_NAME, LAUNCHER_NAME, MARKER, DesktopError, EntryPaths, LaunchCommand

REPO = Path(__file__).resolve().parents[1]
FAKE_COMMAND = LaunchCommand(("/opt/vinv/vinv",))

pytestmark = pytest.mark.skipif(sys.platform in ("darwin", "win32"), reason="desktop entries are for Linux desktops")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh home with the XDG variables unset, and this session's vinv pinned to FAKE_COMMAND."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setattr(LaunchCommand, "current", classmethod(lambda cls: FAKE_COMMAND))
    return home


def entry(path: Path) -> dict[str, str]:
    """The [Desktop Entry] group of a desktop file, keys case kept."""
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str
    parser.read_string(path.read_text(encoding="utf-8"))
    assert parser.sections() == ["Desktop Entry"]
    return dict(parser["Desktop Entry"])


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def test_install_writes_a_launcher_that_shows_the_page_and_an_autostart_entry_that_runs_the_watcher(home, capsys):
    assert desktop.main(["--install"]) == desktop.EXIT_OK
    launcher = entry(home / ".local/share/applications" / LAUNCHER_NAME)
    autostart = entry(home / ".config/autostart" / AUTOSTART_NAME)
    for values in (launcher, autostart):
        assert values["Type"] == "Application"
        assert values["TryExec"] == "/opt/vinv/vinv"
        assert values["Name"]
    assert launcher["Exec"] == "/opt/vinv/vinv" and autostart["Exec"] == "/opt/vinv/vinv watch"
    assert launcher["Terminal"] == "false" and "Audio" in launcher["Categories"].split(";")
    assert autostart["Terminal"] == "false"
    assert autostart["X-GNOME-Autostart-enabled"] == "true"
    assert sorted(snapshot(home)) == [f".config/autostart/{AUTOSTART_NAME}",
                                      f".local/share/applications/{LAUNCHER_NAME}"]
    out = capsys.readouterr().out
    assert f"watched folder: {home / 'Music' / 'vinv'}" in out and "config.json" in out


def test_installing_again_changes_nothing(home, capsys):
    assert desktop.main(["--install"]) == desktop.EXIT_OK
    first = snapshot(home)
    mtimes = {path: path.stat().st_mtime_ns for path in EntryPaths.current().all()}
    assert desktop.main(["--install"]) == desktop.EXIT_OK
    assert snapshot(home) == first
    assert {path: path.stat().st_mtime_ns for path in EntryPaths.current().all()} == mtimes
    assert capsys.readouterr().out.count(f"{desktop.UNCHANGED}: ") == 2


def test_a_moved_app_or_a_new_folder_refreshes_the_entries(home, tmp_path, monkeypatch):
    assert desktop.main(["--install"]) == desktop.EXIT_OK
    monkeypatch.setattr(LaunchCommand, "current", classmethod(lambda cls: LaunchCommand(("/new place/vinv",))))
    inbox = tmp_path / "my inbox"
    assert desktop.main(["--install", str(inbox)]) == desktop.EXIT_OK
    assert entry(EntryPaths.current().launcher)["Exec"] == f'"/new place/vinv" show "{inbox}"'
    assert entry(EntryPaths.current().autostart)["Exec"] == f'"/new place/vinv" watch "{inbox}"'
    assert len(snapshot(home)) == 2


def test_xdg_variables_choose_the_folders_and_relative_ones_are_ignored(home, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert EntryPaths.current() == EntryPaths(tmp_path / "data/applications" / LAUNCHER_NAME,
                                              tmp_path / "config/autostart" / AUTOSTART_NAME)
    assert desktop.main(["--install"]) == desktop.EXIT_OK
    assert (tmp_path / "data/applications" / LAUNCHER_NAME).is_file()
    assert (tmp_path / "config/autostart" / AUTOSTART_NAME).is_file()
    assert snapshot(home) == {}
    monkeypatch.setenv("XDG_DATA_HOME", "relative/data")
    monkeypatch.setenv("XDG_CONFIG_HOME", "")
    assert EntryPaths.current() == EntryPaths(home / ".local/share/applications" / LAUNCHER_NAME,
                                              home / ".config/autostart" / AUTOSTART_NAME)


def test_uninstall_removes_only_our_entries_and_can_run_again(home, capsys):
    applications, autostart = home / ".local/share/applications", home / ".config/autostart"
    applications.mkdir(parents=True)
    autostart.mkdir(parents=True)
    (applications / "other.desktop").write_text("[Desktop Entry]\nType=Application\nExec=other\n")
    (autostart / "other.desktop").write_text("[Desktop Entry]\nType=Application\nExec=other\n")
    others = snapshot(home)
    assert desktop.main(["--install"]) == desktop.EXIT_OK
    assert desktop.main(["--uninstall"]) == desktop.EXIT_OK
    assert snapshot(home) == others
    assert desktop.main(["--uninstall"]) == desktop.EXIT_OK
    assert snapshot(home) == others
    assert capsys.readouterr().out.count(f"{desktop.ABSENT}: ") == 2


def test_a_file_vinv_did_not_write_is_never_replaced_or_removed(home, capsys):
    paths = EntryPaths.current()
    paths.launcher.parent.mkdir(parents=True)
    paths.launcher.write_text("[Desktop Entry]\nType=Application\nName=my own vinv\nExec=/usr/local/bin/vinv\n")
    mine = paths.launcher.read_bytes()
    assert desktop.main(["--install"]) == desktop.EXIT_BLOCKED
    assert paths.launcher.read_bytes() == mine
    assert desktop.is_ours(paths.autostart)
    assert "not written by vinv" in capsys.readouterr().out
    assert desktop.main(["--uninstall"]) == desktop.EXIT_OK
    assert paths.launcher.read_bytes() == mine and not paths.autostart.exists()


def test_exec_arguments_are_quoted_and_escaped_as_the_desktop_entry_spec_says():
    assert desktop.exec_argument("/opt/vinv/vinv") == "/opt/vinv/vinv"
    assert desktop.exec_argument("/home/me/My Samples") == '"/home/me/My Samples"'
    assert desktop.exec_argument("/home/me/100%") == "/home/me/100%%"
    # $ and " are escaped inside quotes; then every backslash is escaped again as the string type requires
    assert desktop.exec_argument('/a/$x "y"') == '"/a/\\\\$x \\\\"y\\\\""'
    assert desktop.exec_argument("/a\\b") == '"/a\\\\\\\\b"'
    for bad in ("", "/a\nb"):
        with pytest.raises(DesktopError):
            desktop.exec_argument(bad)


def test_entries_run_the_frozen_executable_or_this_environments_vinv(tmp_path, monkeypatch):
    executable = tmp_path / "dist" / "vinv" / "vinv"
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", str(executable))
    assert LaunchCommand.current() == LaunchCommand((str(executable),))
    monkeypatch.delattr(sys, "frozen")
    python = tmp_path / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    monkeypatch.setattr(sys, "executable", str(python))
    assert LaunchCommand.current() == LaunchCommand((str(python), "-m", "converter.app.cli"), working_dir=REPO)
    script = python.with_name("vinv")
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    assert LaunchCommand.current() == LaunchCommand((str(script),))


def test_usage_errors(home, capsys):
    for argv in ([], ["--install", "--uninstall"], ["--uninstall", "somewhere"], ["--install", "--workers", "2"]):
        with pytest.raises(SystemExit) as stopped:
            desktop.main(argv)
        assert stopped.value.code == desktop.EXIT_USAGE
    assert snapshot(home) == {}


def test_vinv_watch_install_and_uninstall_from_the_command_line(tmp_path):
    """The whole path through `vinv`: a child process that gets its home and XDG folders from the environment."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path / "home"), "PYTHONPATH": str(REPO),
           "XDG_DATA_HOME": str(tmp_path / "data"), "XDG_CONFIG_HOME": str(tmp_path / "config")}

    def vinv(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "converter.app.cli", *args], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)

    installed = vinv("watch", "--install")
    assert installed.returncode == 0, installed.stderr
    files = snapshot(tmp_path / "data") | snapshot(tmp_path / "config")
    assert sorted(files) == [f"applications/{LAUNCHER_NAME}", f"autostart/{AUTOSTART_NAME}"]
    assert all(MARKER.encode() in text for text in files.values())
    assert vinv("watch", "--install").returncode == 0
    assert snapshot(tmp_path / "data") | snapshot(tmp_path / "config") == files
    for _ in range(2):
        assert vinv("watch", "--uninstall").returncode == 0
        assert snapshot(tmp_path / "data") == snapshot(tmp_path / "config") == {}
