"""vinv-watch with a real watchdog observer on temp folders, the real converter and a tiny random model."""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import soundfile
from test_batch import REPO, leftovers, tone, write_tone

from converter.app import watch
from converter.app.config import WatchSettings
from converter.app.jobs import ERROR_SUFFIX, Status
from converter.app.watch import WatchedFolder


def wav_bytes(seconds: float = 0.25, hz: float = 220.0) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, tone(seconds, hz), 22050, format="WAV")
    return buffer.getvalue()


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def converted(path: Path, stem: str | None = None) -> bool:
    """Preset and preview beside ``path``, named after ``stem`` (default: the file's own stem)."""
    stem = stem or path.stem
    return (path.parent / f"{stem}.vital").is_file() and (path.parent / f"{stem}.preview.wav").is_file()


def reported(path: Path) -> bool:
    return path.with_suffix(ERROR_SUFFIX).is_file()


def write_slowly(path: Path, data: bytes, chunks: int = 6, pause: float = 0.08) -> None:
    """A copy in progress: the file grows for about half a second."""
    step = -(-len(data) // chunks)
    with open(path, "wb") as handle:
        for start in range(0, len(data), step):
            handle.write(data[start : start + step])
            handle.flush()
            time.sleep(pause)


def drop_200(inbox: Path, staging: Path) -> tuple[list[Path], list[Path]]:
    """200 files at once: direct writes, slow copies, moves and a moved-in folder, and 50 bad files."""
    good, bad = [], []
    writers = []
    for k in range(150):
        data = wav_bytes(hz=110.0 * 2 ** ((k % 36) / 12))
        if k < 110:
            path = inbox / ("sub" if k % 4 == 0 else "") / f"good{k:03d}.wav"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(data)
        elif k < 125:
            path = inbox / f"slow{k:03d}.wav"
            writers.append(threading.Thread(target=write_slowly, args=(path, data)))
            writers[-1].start()
        elif k < 140:
            path = inbox / f"moved{k:03d}.wav"
            (staging / path.name).write_bytes(data)
            os.replace(staging / path.name, path)
        else:
            path = inbox / "folder" / f"in_folder{k:03d}.wav"
            (staging / "folder").mkdir(exist_ok=True)
            (staging / "folder" / path.name).write_bytes(data)
        good.append(path)
    os.replace(staging / "folder", inbox / "folder")
    whole = wav_bytes()
    for k in range(50):
        path = inbox / f"bad{k:02d}.wav"
        path.write_bytes([b"not audio at all", b"", whole[:30], whole[: len(whole) // 2], os.urandom(4000)][k % 5])
        bad.append(path)
    for writer in writers:
        writer.join()
    return good, bad


@pytest.mark.slow
def test_200_files_dropped_at_once_are_each_handled_exactly_once(tmp_path, tiny_model_path):
    inbox, staging, outside = tmp_path / "inbox", tmp_path / "staging", tmp_path / "outside"
    for folder in (inbox, staging, outside):
        folder.mkdir()
    (inbox / "already.wav").write_bytes(wav_bytes())  # arrived while the daemon was off
    write_tone(outside / "elsewhere.wav")
    outcomes, lock = [], threading.Lock()

    def record(outcome):
        with lock:
            outcomes.append(outcome)

    started = time.monotonic()
    with WatchedFolder(inbox, workers=2, model=tiny_model_path, settle_seconds=1.0, worker_idle_seconds=2.0,
                       on_outcome=record) as folder:
        good, bad = drop_200(inbox, staging)
        good.append(inbox / "already.wav")
        (inbox / ".hidden.wav").write_bytes(wav_bytes())
        (inbox / "mine.preview.wav").write_bytes(wav_bytes())
        (inbox / "notes.txt").write_text("not audio")
        (inbox / "link.wav").symlink_to(outside / "elsewhere.wav")
        wait_for(lambda: len(outcomes) >= len(good) + len(bad) and folder.is_idle(), 600, "every file")
        time.sleep(1.5)  # a second conversion of anything would show up now
        wait_for(lambda: not multiprocessing.active_children(), 30, "idle workers to be let go")
    seconds = time.monotonic() - started

    counts = Counter(outcome.source for outcome in outcomes)
    assert set(counts) == set(good) | set(bad)
    assert max(counts.values()) == 1, [path.name for path, count in counts.items() if count > 1]
    by_source = {outcome.source: outcome for outcome in outcomes}
    for path in good:
        assert by_source[path].status is Status.CONVERTED and converted(path) and not reported(path), path
    for path in bad:
        assert by_source[path].status is Status.FAILED and reported(path) and not converted(path), path
    assert "truncated" in (inbox / "bad03.vinv-error.txt").read_text()
    for ignored in (".hidden", "mine.preview", "notes", "link"):
        assert not list(inbox.glob(f"{ignored}.vital")) and not list(inbox.glob(f"{ignored}.vinv-error.txt"))
    assert not (outside / "elsewhere.vital").exists()
    assert not leftovers(tmp_path)
    print(f"{len(good)} good and {len(bad)} bad files handled in {seconds:.0f} s")


@pytest.mark.slow
def test_renamed_changed_and_fixed_files_are_converted_again(tmp_path, tiny_model_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    outcomes = []
    with WatchedFolder(inbox, workers=2, model=tiny_model_path, on_outcome=outcomes.append) as folder:
        (inbox / "download.wav.part").write_bytes(wav_bytes())
        (inbox / "download.wav.part").rename(inbox / "download.wav")  # how browsers finish a download
        (inbox / "broken.wav").write_text("oops")
        write_tone(inbox / "kick.wav")
        wait_for(lambda: len(outcomes) == 3 and folder.is_idle(), 120, "the first three files")
        assert converted(inbox / "download.wav") and converted(inbox / "kick.wav") and reported(inbox / "broken.wav")
        first_preset = (inbox / "kick.vital").read_bytes()

        write_tone(inbox / "kick.wav", hz=440.0)  # the user replaced the sample
        (inbox / "broken.wav").write_bytes(wav_bytes())  # and fixed the bad one
        wait_for(lambda: len(outcomes) == 5 and folder.is_idle(), 120, "the changed files")
        assert (inbox / "kick.vital").read_bytes() != first_preset
        assert converted(inbox / "broken.wav") and not reported(inbox / "broken.wav")

        write_tone(inbox / "kick.flac")  # same stem as kick.wav: both move to their whole names
        wait_for(lambda: len(outcomes) == 7 and folder.is_idle(), 120, "the same-stem pair")
        assert converted(inbox / "kick.wav", "kick.wav") and converted(inbox / "kick.flac", "kick.flac")
    assert [outcome.status for outcome in outcomes].count(Status.CONVERTED) == 6
    assert not leftovers(tmp_path)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify reports when a writer closes a file")
def test_a_file_its_writer_closed_or_moved_in_converts_without_the_settle_wait(tmp_path, tiny_model_path):
    inbox, staging = tmp_path / "inbox", tmp_path / "staging"
    inbox.mkdir()
    staging.mkdir()
    outcomes = []
    data = wav_bytes()
    with WatchedFolder(inbox, workers=1, model=tiny_model_path, settle_seconds=600.0, on_outcome=outcomes.append):
        with open(inbox / "copying.wav", "wb") as copying:
            copying.write(data[: len(data) // 2])
            copying.flush()
            write_tone(inbox / "kick.wav")
            write_tone(staging / "snare.wav")
            os.replace(staging / "snare.wav", inbox / "snare.wav")
            wait_for(lambda: len(outcomes) == 2, 120, "the closed and the moved-in file")
            assert converted(inbox / "kick.wav") and converted(inbox / "snare.wav")
            assert not converted(inbox / "copying.wav") and not reported(inbox / "copying.wav")
            copying.write(data[len(data) // 2 :])
        wait_for(lambda: len(outcomes) == 3, 120, "the copy, once its writer closed it")
    assert converted(inbox / "copying.wav") and not reported(inbox / "copying.wav")


def start_daemon(inbox: Path, model: Path, home: Path) -> subprocess.Popen:
    """``vinv-watch INBOX --model MODEL`` with platformdirs pointed into ``home`` (its stderr appends to a file)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HOME": str(home), "XDG_CONFIG_HOME": str(home / "config"),
           "XDG_STATE_HOME": str(home / "state")}
    home.mkdir(exist_ok=True)
    with open(home / "stderr.txt", "a") as stderr:
        return subprocess.Popen([sys.executable, "-m", "converter.app.watch", str(inbox), "--model", str(model),
                                 "--workers", "2"], cwd=REPO, env=env, stderr=stderr)


def children_of(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find the daemon's workers")
def test_kill_9_then_restart_completes_and_sigterm_stops_within_seconds(tmp_path, tiny_model_path):
    inbox, home = tmp_path / "inbox", tmp_path / "home"
    inbox.mkdir()
    log = home / "state" / "vinv" / "log" / "vinv-watch.log"
    sounds = [inbox / f"tone{k:02d}.wav" for k in range(36)]
    bad = [inbox / "bad.wav", inbox / "empty.wav"]

    daemon = start_daemon(inbox, tiny_model_path, home)
    wait_for(lambda: log.is_file() and "watching" in log.read_text(), 120, "the daemon to start")
    for k, path in enumerate(sounds):
        path.write_bytes(wav_bytes(hz=110.0 * 2 ** (k / 12)))
    bad[0].write_text("not audio")
    bad[1].write_bytes(b"")
    wait_for(lambda: sum(map(converted, sounds)) >= 4, 120, "a few presets")
    workers = children_of(daemon.pid)
    daemon.send_signal(signal.SIGKILL)
    daemon.wait(timeout=10)
    wait_for(lambda: not any(alive(pid) for pid in workers), 30, "orphaned workers to exit")

    daemon = start_daemon(inbox, tiny_model_path, home)
    wait_for(lambda: log.read_text().count("watching") == 2, 120, "the daemon to restart")
    done_before = sum(map(converted, sounds))
    wait_for(lambda: sum(map(converted, sounds)) >= done_before + 3, 120, "conversions after the restart")
    daemon.send_signal(signal.SIGTERM)  # in the middle of the work
    asked = time.monotonic()
    assert daemon.wait(timeout=30) == watch.EXIT_OK, (home / "stderr.txt").read_text()
    assert time.monotonic() - asked < 10
    assert not leftovers(inbox)
    for path in sounds:  # never a preset without its preview, or the other way round
        assert (inbox / f"{path.stem}.vital").exists() == (inbox / f"{path.stem}.preview.wav").exists(), path

    daemon = start_daemon(inbox, tiny_model_path, home)
    wait_for(lambda: all(map(converted, sounds)) and all(map(reported, bad)), 300, "every file")
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=30) == watch.EXIT_OK
    assert not leftovers(inbox)
    assert "stopped" in log.read_text()


def test_print_config_shows_where_things_are_and_the_settings_file_wins(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert watch.main(["--print-config"]) == watch.EXIT_OK
    shown = capsys.readouterr().out
    assert f"inbox: {tmp_path / 'Music' / 'vinv'}" in shown
    assert f"config_file: {tmp_path / 'config' / 'vinv' / 'config.json'} (not present" in shown
    assert f"log_file: {tmp_path / 'state' / 'vinv' / 'log' / 'vinv-watch.log'}" in shown

    settings_file = tmp_path / "config" / "vinv" / "config.json"
    settings_file.parent.mkdir(parents=True)
    settings_file.write_text(json.dumps({"inbox": "../../Samples", "workers": 3, "refine_seconds": 2.5}))
    settings = WatchSettings.load()
    assert (settings.inbox, settings.workers, settings.refine_seconds) == (tmp_path / "Samples", 3, 2.5)
    assert watch.main(["--print-config", "--workers", "1", str(tmp_path / "Drop")]) == watch.EXIT_OK
    shown = capsys.readouterr().out
    assert f"inbox: {tmp_path / 'Drop'}" in shown and "workers: 1" in shown and "refine_seconds: 2.5" in shown

    for bad_settings, reason in [('{"workers": 0}', "'workers' must be at least 1"),
                                 ('{"inbox": 5}', "'inbox' must be a path"),
                                 ('{"wokers": 2}', "unknown setting 'wokers'"),
                                 ("{not json", "not valid JSON")]:
        settings_file.write_text(bad_settings)
        with pytest.raises(SystemExit) as exit_info:
            watch.main(["--print-config"])
        assert exit_info.value.code == 2 and reason in capsys.readouterr().err, bad_settings
