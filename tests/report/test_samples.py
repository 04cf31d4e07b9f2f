"""``rnnbench sample``, :mod:`rnnbench.samples` and the report's Samples section, checked in a
real headless browser.

The study: run folders written by the test (untrained small models saved in ``best.pt``'s
format, no training) for a JSB GRU and an FSDD-A LSTM, recorded as done in a results store,
plus a diverged JSB tanh run. Real data (``RNNBENCH_DATA``) gives the framing and the real
excerpts.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnbench import cli
from rnnbench.data.registry import load_dataset
from rnnbench.models import SequenceModel
from rnnbench.report import build_report
from rnnbench.sample_files import read_midi_roll, speech_wave, write_sample
from rnnbench.samples import (
    build_population,
    draw,
    load_checkpoint,
    member_seed,
    music_framing,
)
from rnnbench.store import Store
from rnnbench.train.config import RunConfig

HIDDEN = 8


def _write_run(out: Path, store: Store, dataset, unit: str, *, status="done", seed=0) -> Path:
    """A run folder with best.pt (an untrained model of HIDDEN units), recorded in ``store``."""
    cfg = RunConfig(dataset=dataset.name, unit=unit, lr=1e-3, seed=seed, hidden=HIDDEN)
    key = cfg.key()
    run_dir = out / "runs" / key
    run_dir.mkdir(parents=True)
    model = SequenceModel(
        unit, dataset.in_dim, dataset.out_dim, HIDDEN, head=dataset.head, seeds=[seed + 7]
    )
    torch.save(
        {
            "config": cfg.to_dict(),
            "epoch": 1,
            "valid_nll": 1.0,
            "hidden": HIDDEN,
            "member_state": model.member_state(0),
        },
        run_dir / "best.pt",
    )
    if status == "diverged":
        torch.save({"status": "diverged", "finished": True}, run_dir / "last.pt")
    # Recorded relative, as a sweep run elsewhere would: found again beside the store.
    store.start_run(key, cfg.to_dict(), f"runs/{key}", labels={"sweep": "t", "stage": "lr"})
    store.log_epochs(key, [{"epoch": 1, "train_nll": 1.0, "valid_nll": 1.0, "seconds": 1.0}])
    nll = 1.0 if status == "done" else None
    result = {"train_nll": nll, "valid_nll": nll, "test_nll": nll, "epochs": 1}
    store.finish_run(key, status, result if status == "done" else None, error=None)
    return run_dir


@pytest.fixture(scope="module")
def study(tmp_path_factory, data_root):
    out = tmp_path_factory.mktemp("study")
    jsb, fsdd = load_dataset("jsb"), load_dataset("fsdd-a")
    with Store(out / "results.db") as store:
        runs = {
            "jsb": _write_run(out, store, jsb, "gru"),
            "fsdd": _write_run(out, store, fsdd, "lstm"),
            "diverged": _write_run(out, store, jsb, "tanh", status="diverged"),
        }
    return {"out": out, "store": out / "results.db", "runs": runs, "jsb": jsb, "fsdd": fsdd}


@pytest.fixture(scope="module")
def report(study, tmp_path_factory):
    return build_report(study["store"], tmp_path_factory.mktemp("report"))


def _sample(argv: list[str], capsys) -> tuple[int, str, str]:
    status = cli.main(["sample", *argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


# --------------------------------------------------------------------------- round trips


def test_midi_reads_back_to_the_same_piano_roll(study, tmp_path, capsys):
    from rnnbench.data.midi import midi_to_roll

    status, out, _ = _sample(
        [str(study["runs"]["jsb"]), "--out", str(tmp_path), "--steps", "40", "--prime", "5"],
        capsys,
    )
    assert status == 0
    entry = json.loads((tmp_path / "samples.json").read_text())[0]
    midi = tmp_path / entry["files"]["midi"]
    assert midi.is_file() and (tmp_path / entry["files"]["png"]).is_file()
    assert (tmp_path / entry["files"]["real_midi"]).is_file()
    # The same roll again, from the library: 5 primed frames then 40 drawn.
    ckpt = load_checkpoint(study["runs"]["jsb"])
    model = build_population([ckpt], study["jsb"])
    prime = np.array(study["jsb"].split("test")[0].inputs[:5])
    frames = draw(model, [member_seed(0, ckpt.key, 0)], 40, prime=prime)[0]
    roll = np.concatenate([prime, frames]) > 0.5
    assert roll[5:].any(), "an untrained model at p ~ 0.5 sounds some notes"
    framing = music_framing(study["jsb"])
    assert np.array_equal(read_midi_roll(midi, framing, 45) > 0, roll)
    # The data module's MIDI reader (what a midi: folder would be read with) agrees.
    back = midi_to_roll(midi, fpb=framing.fpb)
    padded = np.zeros((45, 88), dtype=bool)
    padded[: back.shape[0]] = back[:45] > 0
    assert np.array_equal(padded, roll)


def test_wav_reads_back_to_the_same_samples(study, tmp_path, capsys):
    import soundfile as sf

    status, _, _ = _sample(
        [str(study["runs"]["fsdd"]), "--out", str(tmp_path), "--steps", "30", "--seed", "3"],
        capsys,
    )
    assert status == 0
    entry = json.loads((tmp_path / "samples.json").read_text())[0]
    audio, rate = sf.read(tmp_path / entry["files"]["wav"], dtype="float64")
    assert rate == study["fsdd"].meta["sample_rate"] == 8000
    ckpt = load_checkpoint(study["runs"]["fsdd"])
    model = build_population([ckpt], study["fsdd"])
    frames = draw(model, [member_seed(3, ckpt.key, 0)], 30)[0]
    expected = np.clip(speech_wave(frames, study["fsdd"].meta), -1, 1 - 2**-15)
    assert audio.shape == (300,)
    assert np.abs(audio - expected).max() <= 2**-15 + 1e-9  # 16-bit rounding
    # Un-standardised: the data set's scale, not unit variance.
    std = study["fsdd"].meta["std"]
    assert np.std(audio) < 20 * std and std < 0.5


def test_a_primed_speech_sample_starts_with_the_recording(study, tmp_path, capsys):
    import soundfile as sf

    argv = [str(study["runs"]["fsdd"]), "--out", str(tmp_path), "--steps", "12", "--prime", "5"]
    assert _sample(argv, capsys)[0] == 0
    files = json.loads((tmp_path / "samples.json").read_text())[0]["files"]
    sample, _ = sf.read(tmp_path / files["wav"], dtype="float64")
    real, _ = sf.read(tmp_path / files["real_wav"], dtype="float64")
    # The test segment as recorded: its first input, then every target (20 + 10 T samples).
    seq = study["fsdd"].split("test")[0]
    segment = np.concatenate([seq.inputs[0], seq.targets.reshape(-1)])
    meta = study["fsdd"].meta
    recorded = segment * meta["std"] + meta["mean"]
    assert sample.shape == real.shape == (60 + 120,)  # the prime's 60 samples, then 12 steps
    assert np.abs(real - recorded[:180]).max() <= 2**-15 + 1e-6
    assert np.abs(sample[:60] - recorded[:60]).max() <= 2**-15 + 1e-6
    assert np.abs(sample[60:] - recorded[60:180]).max() > 1e-3  # drawn, not copied


def test_framing_follows_the_data_set():
    from types import SimpleNamespace

    jsb = SimpleNamespace(name="jsb", meta={}, kind="music")
    assert music_framing(jsb).seconds == 0.5
    assert music_framing(SimpleNamespace(name="nottingham", meta={})).seconds == 0.25
    folder = SimpleNamespace(name="midi:/x?fpb=3", meta={"fpb": 3.0, "fps": None})
    assert music_framing(folder).fpb == 3.0
    assert music_framing(folder, bpm=60).seconds == pytest.approx(1 / 3)
    real_time = SimpleNamespace(name="midi:/x?fps=10", meta={"fpb": None, "fps": 10.0})
    assert music_framing(real_time).seconds == pytest.approx(0.1)


# --------------------------------------------------------------------------- determinism


def test_a_seed_gives_the_same_samples_and_members_do_not_depend_on_each_other(study):
    jsb = study["jsb"]
    a = load_checkpoint(study["runs"]["jsb"])
    b = load_checkpoint(study["runs"]["jsb"])
    b.key = "another-run"  # a second run of the same shape
    seeds = [member_seed(5, a.key, 0), member_seed(5, b.key, 0), member_seed(5, a.key, 1)]
    together = draw(build_population([a, b], jsb, copies=1), seeds[:2], 30)
    alone = draw(build_population([a], jsb), seeds[:1], 30)
    assert np.array_equal(together[0], alone[0])  # not affected by the other member
    again = draw(build_population([a], jsb), seeds[:1], 30)
    assert np.array_equal(alone, again)
    other = draw(build_population([a], jsb), [member_seed(6, a.key, 0)], 30)
    assert not np.array_equal(alone, other)
    two = draw(build_population([a], jsb, copies=2), [seeds[0], seeds[2]], 30)
    assert np.array_equal(two[0], alone[0]) and not np.array_equal(two[0], two[1])


def test_temperature_sharpens_the_distribution(study):
    ckpt = load_checkpoint(study["runs"]["jsb"])
    model = build_population([ckpt], study["jsb"], copies=4)
    seeds = [member_seed(0, ckpt.key, j) for j in range(4)]
    hot = draw(model, seeds, 50, temperature=2.0).mean()
    cold = draw(model, seeds, 50, temperature=0.2).mean()
    # Untrained logits are below 0 for most notes: a low temperature silences them.
    assert cold < hot


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_sampling_on_cuda(study):
    ckpt = load_checkpoint(study["runs"]["fsdd"])
    model = build_population([ckpt], study["fsdd"], device="cuda")
    one = draw(model, [1], 20)
    assert one.shape == (1, 20, 10) and np.isfinite(one).all()
    assert np.array_equal(one, draw(model, [1], 20))


# --------------------------------------------------------------------------- bad input


def _error(argv, capsys) -> str:
    status, _, err = _sample(argv, capsys)
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rnnbench: error: "), err
    return lines[0]


def test_bad_input_is_one_sentence_and_exit_2(study, tmp_path, capsys):
    store = str(study["store"])
    assert "no best.pt" in _error([str(tmp_path)], capsys)
    assert "does not exist" in _error([str(tmp_path / "nope")], capsys)
    assert "diverged" in _error([str(study["runs"]["diverged"])], capsys)
    msg = _error(["--store", store, "--dataset", "jsb", "--unit", "tanh"], capsys)
    assert "no chosen run" in msg
    msg = _error([str(study["runs"]["fsdd"]), "--format", "midi", "--out", str(tmp_path)], capsys)
    assert "speech" in msg and "--format wav" in msg
    assert "no jsb/lstm runs" in _error(
        ["--store", store, "--dataset", "jsb", "--unit", "lstm"], capsys
    )
    assert "Nothing to sample" in _error([], capsys)
    assert "--temperature" in _error([str(study["runs"]["jsb"]), "--temperature", "0"], capsys)
    msg = _error([str(study["runs"]["jsb"]), "--prime", "10000", "--out", str(tmp_path)], capsys)
    assert "--prime" in msg


def test_a_cell_of_a_store_samples_its_chosen_run(study, tmp_path, capsys):
    argv = ["--store", str(study["store"]), "--dataset", "jsb", "--unit", "gru"]
    status, out, _ = _sample([*argv, "--out", str(tmp_path), "--seconds", "4"], capsys)
    assert status == 0
    entry = json.loads((tmp_path / "samples.json").read_text())[0]
    assert entry["run"] == study["runs"]["jsb"].name
    assert entry["steps"] == 8  # JSB: one frame per quarter note at 120 bpm, 0.5 s a frame


def test_music_as_audio(study, tmp_path, capsys):
    import soundfile as sf

    status, _, _ = _sample(
        [str(study["runs"]["jsb"]), "--out", str(tmp_path), "--steps", "6", "--format", "both"],
        capsys,
    )
    assert status == 0
    files = json.loads((tmp_path / "samples.json").read_text())[0]["files"]
    assert set(files) == {"midi", "wav", "png"}
    audio, rate = sf.read(tmp_path / files["wav"])
    assert rate == 16000 and audio.shape == (6 * 8000,)


def test_write_sample_refuses_midi_for_speech(study, tmp_path):
    from rnnbench.errors import RnnbenchError

    with pytest.raises(RnnbenchError, match="speech"):
        write_sample(tmp_path, "x", study["fsdd"], np.zeros((3, 10)), title="t", formats=["midi"])


# --------------------------------------------------------------------------- the report


def test_report_has_a_samples_section_with_files(report, study):
    md = (report / "report.md").read_text(encoding="utf-8")
    assert "## Samples" in md
    links = re.findall(r"\]\((samples/[^)]+)\)", md)
    kinds = {Path(link).suffix for link in links}
    assert {".ogg", ".mid", ".wav", ".png"} <= kinds
    for link in links:
        assert (report / link).is_file(), link
    html = (report / "report.html").read_text(encoding="utf-8")
    assert html.count("<audio") == 4  # two cells, a sample and a real excerpt each
    assert html.count("data:audio/ogg;base64,") == 4
    # The diverged tanh cell has no chosen run, so no sample.
    assert "JSB Chorales, tanh" not in md.split("## Samples")[1].split("## Compute")[0]


def test_a_rebuild_removes_the_samples_of_runs_no_cell_chooses(study, tmp_path):
    # A report folder from an earlier build whose JSB GRU cell chose another run.
    folder = tmp_path / "out" / "samples"
    folder.mkdir(parents=True)
    stale = "jsb-gru-reset-before-0123456789abcdef"
    names = [f"{stale}.ogg", f"{stale}-real.ogg", f"{stale}.png", f"{stale}.mid"]
    others = ["notes.txt", "jsb-gru-reset-before-not-a-key.ogg"]
    for name in names + others:
        (folder / name).write_bytes(b"x")
    out = build_report(study["store"], tmp_path / "out")
    left = {p.name for p in (out / "samples").iterdir()}
    assert not left & set(names)
    assert set(others) <= left
    md = (out / "report.md").read_text(encoding="utf-8")
    for link in re.findall(r"\]\((samples/[^)]+)\)", md):
        assert (out / link).is_file(), link
    # The rebuild into the same folder keeps what it shows.
    again = build_report(study["store"], out)
    assert {p.name for p in (again / "samples").iterdir()} == left


def test_no_samples_leaves_the_section_out(study, tmp_path, capsys):
    status = cli.main(
        ["report", "--store", str(study["store"]), "--out", str(tmp_path), "--no-samples"]
    )
    assert status == 0
    assert "## Samples" not in (tmp_path / "report.md").read_text(encoding="utf-8")
    assert not (tmp_path / "samples").exists()


def test_missing_checkpoints_are_a_sentence_not_a_failure(study, tmp_path):
    from tests.report.conftest import fill_store

    fill_store(tmp_path / "fake.db", datasets=("jsb",))
    out = build_report(tmp_path / "fake.db", tmp_path / "out")
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "No sample for 3 of 3 cells, whose checkpoints are not on this machine" in md
    assert "### JSB" not in md  # no heading without a sample under it


# --------------------------------------------------------------------------- the browser

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
# Injected into a copy of the page only: records errors from the first script on, waits for
# every <audio> to load its metadata (or fail), then writes what it found into the DOM.
PROBE = """<script>
window.__errors = [];
window.addEventListener('error', function (e) {
  var t = e.target && e.target !== window
    ? e.target.tagName + ' ' + (e.target.src || '').slice(0, 40) : '';
  window.__errors.push('error: ' + (e.message || t || 'unknown'));
}, true);
window.addEventListener('unhandledrejection', function (e) {
  window.__errors.push('rejection: ' + e.reason); });
var __ce = console.error;
console.error = function () {
  window.__errors.push('console.error: ' + Array.from(arguments).join(' '));
  __ce.apply(console, arguments); };
function __report() {
  if (document.getElementById('rnnbench-check')) return;
  var out = {
    images: Array.from(document.images).map(function (i) {
      return i.complete ? i.naturalWidth : -1; }),
    audio: Array.from(document.querySelectorAll('audio')).map(function (a) {
      return {duration: a.duration, error: a.error ? a.error.code : null}; }),
    errors: window.__errors,
    sections: Array.from(document.querySelectorAll('h2')).map(function (h) { return h.id; })
  };
  var pre = document.createElement('pre');
  pre.id = 'rnnbench-check'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
}
window.addEventListener('load', function () {
  var pending = Array.from(document.querySelectorAll('audio')).filter(function (a) {
    return a.readyState < 1 && !a.error; });
  var left = pending.length;
  if (!left) { __report(); return; }
  pending.forEach(function (a) {
    var done = function () { left -= 1; if (left === 0) __report(); };
    a.addEventListener('loadedmetadata', done, {once: true});
    a.addEventListener('error', done, {once: true});
  });
  setTimeout(__report, 20000);
});
</script>
"""


def _browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    message = (
        "no headless Chromium found (Debian: apt-get install chromium; scripts/install.sh "
        "installs it when run as root)"
    )
    if os.environ.get("CI") or os.environ.get("RNNBENCH_REQUIRE_BROWSER"):
        pytest.fail(message + "; CI requires the browser test")
    pytest.skip(message)


def _open_in_browser(page: Path, tmp_path: Path) -> dict:
    """Load a copy of ``page`` with :data:`PROBE` in headless Chromium; the probe's findings."""
    copy = tmp_path / f"probed-{page.name}"
    text = page.read_text(encoding="utf-8")
    copy.write_text(text.replace("<head>\n", "<head>\n" + PROBE, 1), encoding="utf-8")
    profile = tmp_path / "chromium-profile"
    cmd = [
        _browser(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--mute-audio",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=30000",
        "--dump-dom",
        copy.as_uri(),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="rnnbench-check">(.*?)</pre>', done.stdout, re.S)
    assert found, f"the page did not report (exit {done.returncode}): {done.stderr[-2000:]}"
    import html as html_lib

    return json.loads(html_lib.unescape(found.group(1)))


def test_the_probe_catches_broken_pages(tmp_path):
    # The checks below can fail: a broken image, a broken audio file and a script error.
    page = tmp_path / "broken.html"
    page.write_text(
        "<!DOCTYPE html>\n<html>\n<head>\n<title>x</title></head><body>"
        '<img src="data:image/png;base64,AAAA">'
        '<audio preload="metadata" src="data:audio/ogg;base64,AAAA"></audio>'
        "<script>undefinedFunction();</script></body></html>",
        encoding="utf-8",
    )
    found = _open_in_browser(page, tmp_path)
    assert found["images"] == [0]
    assert found["audio"][0]["error"] is not None
    assert any("undefinedFunction" in e for e in found["errors"])


def test_report_in_a_headless_browser(report, tmp_path):
    found = _open_in_browser(report / "report.html", tmp_path)
    assert found["errors"] == []
    assert found["images"] and all(w > 0 for w in found["images"]), found["images"]
    assert len(found["audio"]) == 4
    for audio in found["audio"]:
        assert audio["error"] is None and audio["duration"] > 0, audio
    assert "table2" in found["sections"] and "samples" in found["sections"]


def test_a_sample_that_stops_being_finite_is_a_sentence(study, tmp_path, capsys):
    # Finite weights whose output layer overflows (a model whose fed-back samples grow
    # without bound ends the same way): the CLI says so in one sentence, and a report on its
    # store shows the sentence in place of the sample instead of failing with a traceback.
    out = tmp_path / "overflowing"
    with Store(out / "results.db") as store:
        run = _write_run(out, store, study["fsdd"], "gru")
    best = torch.load(run / "best.pt", weights_only=True)
    best["member_state"]["weight_out"].fill_(3e38)
    torch.save(best, run / "best.pt")
    assert "stopped being finite at step" in _error([str(run), "--out", str(tmp_path)], capsys)
    report = build_report(out / "results.db", tmp_path / "report")
    md = (report / "report.md").read_text(encoding="utf-8")
    assert "no sample. the sample stopped being finite at step" in md
