"""vinv-batch end to end (the real converter, a tiny random model), and the job rules it shares with vinv-watch."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from converter.app import batch, jobs
from converter.app.jobs import (
    CRASH_MESSAGE,
    TEMP_SUFFIX,
    VINV_AUTHOR,
    ConversionPool,
    Status,
    WorkerSetup,
    convert_job,
    find_jobs,
    is_audio_name,
    plan_job,
    remove_abandoned_temp,
)
from converter.vital.preset import AUTHOR

REPO = Path(__file__).resolve().parents[1]
def tone(seconds: float = 0.25, hz: float = 220.0, rate: int = 22050) -> np.ndarray:
    """A plucked sine: short, so that a test converts many of them."""
    t = np.arange(round(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * hz * t) * np.exp(-8 * t)).astype(np.float32)


def write_tone(path: Path, seconds: float = 0.25, hz: float = 220.0, rate: int = 22050) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, tone(seconds, hz, rate), rate)
    return path


def leftovers(folder: Path) -> list[Path]:
    """vinv's temp entries anywhere under ``folder``."""
    return [path for path in folder.rglob(f"*{TEMP_SUFFIX}")]


def run_batch(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "converter.app.batch", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=_hear_ctrl_c)


def _hear_ctrl_c() -> None:
    """A shell running the tests in the background ignores SIGINT, and children inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_inputs_are_audio_files_that_vinv_did_not_write():
    assert VINV_AUTHOR == AUTHOR
    for name in ("kick.wav", "Kick.WAV", "pad.aiff", "pad.aif", "bass.flac", "fx.ogg", "old.wave", "kick.preview.aif"):
        assert is_audio_name(name), name
    for name in ("kick.preview.wav", "KICK.PREVIEW.WAV", ".hidden.wav", "._kick.wav", "kick.vital", "notes.txt",
                 "kick.vinv-error.txt", ".kick.wav.123.ab.vinv-tmp", "kick.mp3"):
        assert not is_audio_name(name), name


def test_same_stem_files_take_their_whole_names_and_a_users_preset_is_never_replaced(tmp_path):
    kick = plan_job(tmp_path / "kick.wav", tmp_path, ["kick.wav", "kick.FLAC", "kick.vital", "snare.wav"])
    assert (kick.preset.name, kick.preview.name, kick.error_report.name) == (
        "kick.wav.vital", "kick.wav.preview.wav", "kick.wav.vinv-error.txt")
    assert plan_job(tmp_path / "snare.wav", tmp_path, ["kick.wav", "snare.wav"]).preset.name == "snare.vital"

    (tmp_path / "lead.vital").write_text(json.dumps({"author": VINV_AUTHOR, "settings": {}}))
    assert plan_job(tmp_path / "lead.wav", tmp_path, ["lead.wav"]).preset.name == "lead.vital"
    (tmp_path / "lead.vital").write_text(json.dumps({"author": "Some Producer", "settings": {}}))
    lead = plan_job(tmp_path / "lead.wav", tmp_path, ["lead.wav"])
    assert (lead.preset.name, lead.preview.name, lead.blocked) == ("lead.vinv.vital", "lead.vinv.preview.wav", "")
    (tmp_path / "lead.vinv.vital").write_text("not even JSON")
    assert "not vinv's presets" in plan_job(tmp_path / "lead.wav", tmp_path, ["lead.wav"]).blocked


def test_done_means_preset_and_preview_at_least_as_new_as_the_input(tmp_path):
    job = plan_job(write_tone(tmp_path / "kick.wav"), tmp_path, ["kick.wav"])
    assert not job.is_done()
    job.preset.write_text("{}")
    job.preview.write_bytes(b"")
    assert job.is_done()
    later = time.time() + 10
    os.utime(job.source, (later, later))
    assert not job.is_done() and not job.has_current_error_report()
    job.error_report.write_text("failed")
    os.utime(job.error_report, (later, later))
    assert job.has_current_error_report()


def test_discovery_skips_hidden_foreign_links_and_the_output_folder(tmp_path):
    pack, outside = tmp_path / "pack", tmp_path / "outside"
    for name in ("a.wav", "sub/b.flac", ".hidden/c.wav", "out/d.wav", "sub/.e.wav"):
        write_tone(pack / name)
    write_tone(outside / "f.wav")
    (pack / "sub" / "a.preview.wav").write_bytes(b"")
    (pack / "linked.wav").symlink_to(outside / "f.wav")
    (pack / "inside-link.wav").symlink_to(pack / "a.wav")
    (pack / "linked-folder").symlink_to(outside, target_is_directory=True)

    jobs = list(find_jobs(pack, pack / "out"))
    assert [job.source.relative_to(pack).as_posix() for job in jobs] == ["a.wav", "inside-link.wav", "sub/b.flac"]
    assert jobs[2].preset == pack / "out" / "sub" / "b.vital"


def test_abandoned_staging_is_removed_only_when_its_process_is_gone(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    abandoned = tmp_path / f".kick.wav.{int(dead.stdout)}.x1y2{TEMP_SUFFIX}"
    alive = tmp_path / f".snare.wav.{os.getpid()}.a1b2{TEMP_SUFFIX}"
    stray, fresh = tmp_path / f".kick.vital.q9{TEMP_SUFFIX}", tmp_path / f".snare.vital.r8{TEMP_SUFFIX}"
    for folder in (abandoned, alive):
        folder.mkdir()
        (folder / "kick.vital").write_text("half")
    stray.write_text("old")
    fresh.write_text("being written")
    os.utime(stray, (time.time() - 7200, time.time() - 7200))

    remove_abandoned_temp(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([alive.name, fresh.name])


def fake_conversion(path, *, model, out_dir, refine_seconds, threads, mode, variations):
    """A stand-in converter that writes placeholder outputs, and kills its worker on files named crash*."""
    path, out_dir = Path(path), Path(out_dir)
    if path.name.startswith("crash"):
        os._exit(3)
    (out_dir / f"{path.stem}.vital").write_text(json.dumps({"author": VINV_AUTHOR}))
    (out_dir / f"{path.stem}.preview.wav").write_bytes(b"RIFF")

    class Result:
        preset_path, preview_path = out_dir / f"{path.stem}.vital", out_dir / f"{path.stem}.preview.wav"
        note, cents, pitched, similarity = 60, 0.0, True, 50.0
        method, summary, variations = "patch", "", ()

    return Result()


@pytest.mark.slow
def test_a_worker_that_dies_costs_only_the_file_it_died_on(tmp_path):
    names = ["a.wav", "crash.wav", "b.wav", "c.wav", "d.wav"]
    for name in names:
        write_tone(tmp_path / name)
    pool = ConversionPool(2, WorkerSetup(write_error_reports=True, conversion=fake_conversion))
    try:
        futures = {job.source.name: pool.submit(job) for job in find_jobs(tmp_path)}
        outcomes = {name: future.result(timeout=120) for name, future in futures.items()}
    finally:
        pool.close()
    assert outcomes["crash.wav"].status is Status.FAILED and outcomes["crash.wav"].error == CRASH_MESSAGE
    assert CRASH_MESSAGE in (tmp_path / "crash.vinv-error.txt").read_text()
    for name in set(names) - {"crash.wav"}:
        assert outcomes[name].status is Status.CONVERTED, outcomes[name]
    assert not leftovers(tmp_path)


@pytest.mark.slow
def test_converts_a_pack_into_a_mirror_reports_it_and_a_rerun_skips_what_is_done(tmp_path, tiny_model_path, capsys):
    pack, out = tmp_path / "Pack", tmp_path / "presets"
    goods = [write_tone(pack / name, hz=hz) for name, hz in
             [("kick.wav", 60.0), ("kick.flac", 65.0), ("leads/saw.wav", 440.0), ("leads/deep/pad.aiff", 330.0)]]
    (pack / "bad.wav").write_text("these are not samples")
    (pack / "empty.wav").write_bytes(b"")
    (pack / ".DS_Store").write_bytes(b"\0")
    write_tone(pack / "leads" / "saw.preview.wav")

    code = batch.main([str(pack), "--out", str(out), "--model", str(tiny_model_path), "--workers", "2", "--quiet"])
    printed = capsys.readouterr().out
    assert code == batch.EXIT_FAILURES
    assert "4 converted, 0 skipped (already converted), 2 failed" in printed
    assert f"failed: {pack / 'bad.wav'}: " in printed and f"failed: {pack / 'empty.wav'}: " in printed
    for stem in ("kick.wav", "kick.flac", "leads/saw", "leads/deep/pad"):
        assert (out / f"{stem}.vital").is_file() and (out / f"{stem}.preview.wav").is_file(), stem
        assert json.loads((out / f"{stem}.vital").read_text())["author"] == VINV_AUTHOR
    assert not list(pack.rglob("*.vital")) and not list(pack.rglob("*.vinv-error.txt"))
    assert not leftovers(tmp_path)

    rows = {Path(row["file"]).name: row for row in csv.DictReader((out / batch.REPORT_NAME).open())}
    assert set(rows) == {"kick.wav", "kick.flac", "saw.wav", "pad.aiff", "bad.wav", "empty.wav"}
    assert rows["saw.wav"]["status"] == "converted" and 0.0 <= float(rows["saw.wav"]["match"]) <= 100.0
    assert rows["saw.wav"]["method"] in ("resynth", "patch", "hybrid") and rows["saw.wav"]["summary"]
    page = (out / "vinv-report.html").read_text(encoding="utf-8")
    assert f"page: {out / 'vinv-report.html'}" in printed
    assert "leads/deep/pad.aiff" in page and "bad.wav" in page and not (pack / "vinv-report.html").exists()
    assert rows["saw.wav"]["note"] and float(rows["saw.wav"]["seconds"]) > 0
    assert rows["bad.wav"]["status"] == "failed" and rows["bad.wav"]["error"]
    assert not rows["bad.wav"]["error"].startswith("bad.wav")  # the row already names the file

    before = {path: path.stat().st_mtime_ns for path in out.rglob("*.vital")}
    os.utime(goods[2], (time.time() + 5, time.time() + 5))  # saw.wav changed since its preset was made
    code = batch.main([str(pack), "--out", str(out), "--model", str(tiny_model_path), "--workers", "2", "--quiet",
                       "--report", str(tmp_path / "again.csv")])
    assert code == batch.EXIT_FAILURES
    assert "1 converted, 3 skipped (already converted), 2 failed" in capsys.readouterr().out
    after = {path: path.stat().st_mtime_ns for path in out.rglob("*.vital")}
    assert [path.name for path in before if before[path] != after[path]] == ["saw.vital"]
    assert (tmp_path / "again.csv").is_file()


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT to a process group")
def test_ctrl_c_stops_cleanly_and_a_rerun_continues(tmp_path, tiny_model_path):
    pack = tmp_path / "pack"
    for k in range(24):
        write_tone(pack / f"tone{k:02d}.wav", hz=110.0 * 2 ** (k / 12))
    # a second of refinement per file keeps the run going long enough to interrupt on a fast machine
    running = run_batch(str(pack), "--model", str(tiny_model_path), "--workers", "2", "--quiet", "--refine", "1")
    deadline = time.monotonic() + 120
    while len(list(pack.glob("*.vital"))) < 3 and running.poll() is None:
        assert time.monotonic() < deadline, "no presets appeared"
        time.sleep(0.05)
    os.killpg(running.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole process group
    stopped = time.monotonic()
    out, err = running.communicate(timeout=60)
    assert running.returncode == batch.EXIT_INTERRUPTED, err
    assert time.monotonic() - stopped < 15
    assert "run the same command again to continue" in out
    assert not leftovers(pack)
    converted = {path.name.removesuffix(".vital") for path in pack.glob("*.vital")}
    assert converted == {path.name.removesuffix(".preview.wav") for path in pack.glob("*.preview.wav")}
    assert 3 <= len(converted) < 24

    assert batch.main([str(pack), "--model", str(tiny_model_path), "--workers", "2", "--quiet"]) == batch.EXIT_OK
    assert len(list(pack.glob("*.vital"))) == len(list(pack.glob("*.preview.wav"))) == 24
    rows = list(csv.DictReader((pack / batch.REPORT_NAME).open()))
    assert sum(row["status"] == "skipped" for row in rows) == len(converted)


def test_a_stop_as_the_staging_folder_is_made_leaves_nothing(tmp_path, monkeypatch):
    """A worker's SIGTERM can land the moment its staging folder exists (CI once caught one left behind
    by Ctrl-C): the folder goes all the same."""
    source = tmp_path / "kick.wav"
    write_tone(source)
    job = plan_job(source, tmp_path, [source.name])
    make_folder = tempfile.mkdtemp

    def made_then_stopped(*args, **kwargs):
        folder = make_folder(*args, **kwargs)
        jobs._on_terminate(signal.SIGTERM, None)  # what the worker's handler does when SIGTERM arrives here
        return folder

    def conversion(*args, **kwargs):
        raise AssertionError("a stopped worker started converting")

    monkeypatch.setattr(tempfile, "mkdtemp", made_then_stopped)
    monkeypatch.setattr(jobs._Worker, "stop_requested", False)
    with pytest.raises(SystemExit):
        convert_job(job, conversion, model=None, refine_seconds=0.0, threads=1, write_error_report=True)
    assert not leftovers(tmp_path)


def test_usage_errors_exit_2(tmp_path, capsys):
    write_tone(tmp_path / "kick.wav")
    for argv in ([], [str(tmp_path / "missing")], [str(tmp_path / "kick.wav")], [str(tmp_path), "--workers", "0"],
                 [str(tmp_path), "--refine", "-1"], [str(tmp_path), "--model", str(tmp_path / "none.onnx")]):
        with pytest.raises(SystemExit) as exit_info:
            batch.main(argv)
        assert exit_info.value.code == batch.EXIT_USAGE, argv
    capsys.readouterr()


@pytest.mark.slow
def test_a_model_that_cannot_load_exits_2_and_writes_nothing(tmp_path, capsys):
    write_tone(tmp_path / "kick.wav")
    (tmp_path / "broken.onnx").write_text("not a model")
    assert batch.main([str(tmp_path), "--model", str(tmp_path / "broken.onnx"), "--quiet"]) == batch.EXIT_USAGE
    assert "broken.onnx: not a readable ONNX model" in capsys.readouterr().err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["broken.onnx", "kick.wav"]
