"""The `vinv` command, and the packaged app built from packaging/vinv.spec.

The slow tests build the bundle with packaging/build.sh (from the current environment, so CI
installs nothing twice) and run it as a machine without Python would: an environment with only
PATH and HOME. The presets it writes are then loaded by vita in this process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from converter import __version__
from converter.app import cli as app
from converter.matching.model import DEFAULT_MODEL

REPO = Path(__file__).resolve().parents[1]
TRAINING_LIBRARIES = ("torch", "torchaudio", "transformers", "nnAudio", "scipy", "librosa", "training", "export")
# The app's target is 150 MB (soxr replaced resampy, whose numba + llvmlite were 175 MiB of it).
# This limit catches a training library or another JIT compiler slipping in.
BUNDLE_LIMIT_MIB = 150
WATCH_SECONDS = 120


def run_vinv(*args: str, home: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "converter.app.cli", *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO), "HOME": str(home)}, timeout=timeout)


def test_version_names_vinv_and_says_when_no_model_is_shipped(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("converter.matching.model.DEFAULT_MODEL", tmp_path / "none.onnx")
    assert app.main(["--version"]) == app.EXIT_OK
    assert capsys.readouterr().out.splitlines() == [f"vinv {__version__}",
                                                   "model: none shipped (pass --model PATH to batch and watch)"]


def test_subcommands_reach_their_tools_with_the_rest_of_the_line(monkeypatch):
    calls = []
    monkeypatch.setattr("converter.app.batch.main", lambda argv: calls.append(("batch", argv)) or 0)
    monkeypatch.setattr("converter.app.watch.main", lambda argv: calls.append(("watch", argv)) or 0)
    monkeypatch.setattr("converter.app.desktop.main", lambda argv: calls.append(("desktop", argv)) or 0)
    monkeypatch.setattr("converter.app.launcher.main", lambda command, argv: calls.append((command, argv)) or 0)
    assert app.main([]) == 0
    assert app.main(["open", "pack"]) == 0
    assert app.main(["batch", "pack", "--workers", "2"]) == 0
    assert app.main(["watch"]) == 0
    assert app.main(["watch", "inbox", "--refine", "1"]) == 0
    assert app.main(["watch", "--install", "inbox"]) == 0
    assert app.main(["watch", "--uninstall"]) == 0
    assert calls == [("show", []), ("open", ["pack"]),
                     ("batch", ["pack", "--workers", "2"]), ("watch", []), ("watch", ["inbox", "--refine", "1"]),
                     ("desktop", ["--install", "inbox"]), ("desktop", ["--uninstall"])]


def test_usage(capsys):
    assert app.main(["--help"]) == app.EXIT_OK
    assert "vinv watch --install" in capsys.readouterr().out
    assert app.main(["convert"]) == app.EXIT_USAGE
    assert "unknown command 'convert'" in capsys.readouterr().err


def test_batch_help_runs_through_the_command_line(tmp_path):
    done = run_vinv("batch", "--help", home=tmp_path, timeout=60)
    assert done.returncode == 0 and "--refine" in done.stdout


@pytest.fixture(scope="module")
def model_args(request) -> list[str]:
    """No arguments when a default model ships; else ``--model`` and the tiny random model."""
    if DEFAULT_MODEL.is_file():
        return []
    return ["--model", str(request.getfixturevalue("tiny_model_path"))]


@pytest.mark.slow
def test_version_names_the_shipped_models_recipe(model_args, monkeypatch, capsys):
    if model_args:
        monkeypatch.setattr("converter.matching.model.DEFAULT_MODEL", Path(model_args[1]))
    assert app.main(["--version"]) == app.EXIT_OK
    version, model = capsys.readouterr().out.splitlines()
    assert version == f"vinv {__version__}"
    assert model.startswith("model: ") and " recipe " in model and "unknown" not in model


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """dist/vinv/ built by packaging/build.sh from this environment, into a temp folder."""
    pytest.importorskip("PyInstaller", reason="the packaging tests need PyInstaller (pip install pyinstaller)")
    if not sys.platform.startswith("linux"):
        pytest.skip("the bundle is built and tested on Linux only")
    build = tmp_path_factory.mktemp("build")
    started = time.perf_counter()
    done = subprocess.run(
        ["bash", str(REPO / "packaging" / "build.sh"),
         "--distpath", str(build / "dist"), "--workpath", str(build / "work")],
        env={**os.environ, "VINV_BUILD_ENV": "current", "PYTHON": sys.executable},
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    print(f"\n{done.stdout.strip().splitlines()[-1]}; pytest waited {time.perf_counter() - started:.0f} s")
    return build / "dist" / "vinv"


def bare_env(home: Path) -> dict[str, str]:
    """What a machine without Python gives the app: no PYTHONPATH, no virtual environment, no XDG overrides."""
    return {"PATH": "/usr/bin:/bin", "HOME": str(home)}


def write_tones(folder: Path) -> list[Path]:
    """Two short plucks in different formats: mono 16-bit at 44.1 kHz and stereo 24-bit at 48 kHz."""
    folder.mkdir(parents=True)
    paths = []
    for name, rate, hz, channels, subtype in (("pluck", 44100, 220.0, 1, "PCM_16"), ("bass", 48000, 55.0, 2, "PCM_24")):
        t = np.arange(rate // 2) / rate
        tone = 0.5 * np.sin(2 * np.pi * hz * t) * np.exp(-6 * t)
        paths.append(folder / f"{name}.wav")
        soundfile.write(paths[-1], np.repeat(tone[:, None], channels, axis=1), rate, subtype=subtype)
    return paths


def assert_converted(source: Path) -> None:
    """``source``'s preset loads in vita and its preview is real audio."""
    import vita

    preset, preview = source.with_suffix(".vital"), source.with_name(f"{source.stem}.preview.wav")
    assert preset.is_file() and preview.is_file(), sorted(path.name for path in source.parent.iterdir())
    assert vita.Synth().load_json(preset.read_text(encoding="utf-8"))
    assert json.loads(preset.read_text(encoding="utf-8"))["author"] == "vinv"
    audio, rate = soundfile.read(preview)
    assert rate > 0 and len(audio) > 0 and np.isfinite(audio).all()


@pytest.mark.slow
def test_bundle_carries_no_training_libraries_and_stays_small(bundle):
    names = {part for path in bundle.rglob("*") for part in path.relative_to(bundle).parts}
    assert not {name for name in names if name.split(".")[0] in TRAINING_LIBRARIES or name.startswith("libtorch")}
    assert {"onnxruntime", "vita", "soxr", "_soundfile_data"} <= names
    assert not {"numba", "llvmlite"} & names
    if DEFAULT_MODEL.is_file():
        assert (bundle / "_internal" / "converter" / "models" / DEFAULT_MODEL.name).is_file()
    files = [path for path in bundle.rglob("*") if not path.is_symlink() and path.is_file()]
    mebibytes = sum(path.stat().st_size for path in files) / 2**20
    print(f"\nbundle size: {mebibytes:.0f} MiB")
    assert mebibytes <= BUNDLE_LIMIT_MIB


@pytest.mark.slow
def test_bundle_converts_a_folder_without_python(bundle, model_args, tmp_path):
    version = subprocess.run([bundle / "vinv", "--version"], env=bare_env(tmp_path), cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith(f"vinv {__version__}\nmodel: ")
    sources = write_tones(tmp_path / "pack")
    done = subprocess.run([bundle / "vinv", "batch", tmp_path / "pack", *model_args, "--workers", "2", "--quiet"],
                          env=bare_env(tmp_path), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    assert "2 converted" in done.stdout
    page = (tmp_path / "pack" / "vinv-report.html").read_text(encoding="utf-8")
    assert page.count("<img ") == 4 and "no pictures" not in done.stderr  # drawn in the frozen app's workers
    for source in sources:
        assert_converted(source)


@pytest.mark.slow
def test_bundle_watches_a_folder_and_stops_on_sigterm(bundle, model_args, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    watcher = subprocess.Popen([bundle / "vinv", "watch", inbox, *model_args, "--workers", "1"],
                               env=bare_env(tmp_path), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    try:
        (source,) = write_tones(tmp_path / "outside")[:1]
        dropped = inbox / source.name
        source.rename(dropped)
        outputs = (dropped.with_suffix(".vital"), dropped.with_name(f"{dropped.stem}.preview.wav"))
        deadline = time.monotonic() + WATCH_SECONDS
        while not all(path.exists() for path in outputs) and watcher.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        watcher.send_signal(signal.SIGTERM)
        log, _ = watcher.communicate(timeout=60)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.communicate()
    assert watcher.returncode == 0, log[-4000:]
    assert_converted(dropped)
    assert (tmp_path / ".local" / "state" / "vinv" / "log" / "vinv-watch.log").is_file()


@pytest.mark.slow
def test_bundle_installs_desktop_entries_that_run_itself(bundle, tmp_path):
    def vinv(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([bundle / "vinv", "watch", *args], env=bare_env(tmp_path), cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)

    assert vinv("--install").returncode == 0
    entries = [tmp_path / ".local/share/applications/vinv.desktop", tmp_path / ".config/autostart/vinv-watch.desktop"]
    for path, arguments in zip(entries, ("", " watch")):  # the menu runs `vinv`: the watcher and its page
        assert f"Exec={bundle / 'vinv'}{arguments}\n" in path.read_text(encoding="utf-8")
    assert vinv("--uninstall").returncode == 0
    assert not any(path.exists() for path in entries)
