"""Compare a trained run's samples with real test data, in numbers (docs/samples.md).

    python scripts/sample_stats.py RUN_DIR [--count 20] [--seconds S] [--seed 0] [--temperature 1]

Draws ``--count`` unprimed samples (:mod:`rnnbench.samples`) and measures the same things on
them and on the data set's test split, cut into pieces of the same length:

- music (per frame): notes sounding (mean), frames with exactly 4 notes, silent frames, the
  mean length of a note in frames (a run of one key), frames holding two keys a semitone
  apart, the 5th-95th percentile of pitch (MIDI);
- speech (20 ms windows of the un-standardised audio): RMS level in dB (mean, and the standard
  deviation over windows: how much the loudness moves), the spectral centroid in Hz (mean over
  windows louder than -40 dB from the piece's peak), zero crossings per second.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from rnnbench.data.registry import load_dataset
from rnnbench.sample_files import speech_wave
from rnnbench.samples import (
    build_population,
    draw,
    load_checkpoint,
    member_seed,
    real_excerpt,
    steps_for_seconds,
)


def music_stats(rolls: list[np.ndarray]) -> dict:
    on = np.concatenate([r > 0.5 for r in rolls])
    per = on.sum(1)
    lengths = []
    for r in rolls:
        pad = np.zeros((r.shape[0] + 2, r.shape[1]), dtype=np.int8)
        pad[1:-1] = r > 0.5
        d = np.diff(pad, axis=0)
        lengths += list(np.flatnonzero(d.T.ravel() == -1) - np.flatnonzero(d.T.ravel() == 1))
    pitches = np.nonzero(on)[1] + 21
    return {
        "notes_per_frame": round(float(per.mean()), 2),
        "frames_with_4_notes": round(float((per == 4).mean()), 3),
        "silent_frames": round(float((per == 0).mean()), 3),
        "mean_note_frames": round(float(np.mean(lengths)), 2) if lengths else 0.0,
        "frames_with_semitone_clash": round(float((on[:, 1:] & on[:, :-1]).any(1).mean()), 3),
        "pitch_p5_p95": [int(np.percentile(pitches, 5)), int(np.percentile(pitches, 95))]
        if pitches.size
        else None,
    }


def speech_stats(waves: list[np.ndarray], rate: int) -> dict:
    n = int(0.02 * rate)
    levels, centroids, zc = [], [], []
    for w in waves:
        frames = w[: len(w) // n * n].reshape(-1, n).astype(np.float64)
        rms = np.sqrt((frames**2).mean(1)) + 1e-9
        db = 20 * np.log10(rms)
        levels.append(db)
        spec = np.abs(np.fft.rfft(frames * np.hanning(n), axis=1))
        freqs = np.fft.rfftfreq(n, 1 / rate)
        loud = db > db.max() - 40
        cent = (spec * freqs).sum(1) / (spec.sum(1) + 1e-12)
        centroids.append(cent[loud])
        zc.append(np.abs(np.diff(np.sign(w))).sum() / 2 / (len(w) / rate))
    db = np.concatenate(levels)
    return {
        "rms_db_mean": round(float(db.mean()), 1),
        "rms_db_std": round(float(db.std()), 1),
        "centroid_hz": round(float(np.concatenate(centroids).mean())),
        "zero_crossings_per_s": round(float(np.mean(zc))),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir")
    p.add_argument("--count", type=int, default=20)
    p.add_argument("--seconds", type=float)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--temperature", type=float, default=1.0)
    args = p.parse_args()
    ckpt = load_checkpoint(args.run_dir)
    ds = load_dataset(ckpt.config["dataset"])
    music = ds.kind == "music"
    steps = steps_for_seconds(ds, args.seconds or (16.0 if music else 1.0))
    model = build_population([ckpt], ds, copies=args.count)
    seeds = [member_seed(args.seed, ckpt.key, j) for j in range(args.count)]
    frames = draw(model, seeds, steps, temperature=args.temperature)
    # Real pieces of the same length: every test sequence start that has `steps` steps after it.
    n_test = len(ds.split("test"))
    starts = np.linspace(0, n_test - 1, args.count).astype(int)
    real = [real_excerpt(ds, int(i), steps) for i in starts]
    if music:
        out = {"sample": music_stats(list(frames)), "test": music_stats(real)}
    else:
        rate = int(ds.meta["sample_rate"])
        out = {
            "sample": speech_stats([speech_wave(f, ds.meta) for f in frames], rate),
            "test": speech_stats([speech_wave(r, ds.meta) for r in real], rate),
        }
    out.update(run=ckpt.key, dataset=ds.name, steps=steps, count=args.count, seed=args.seed)
    out["temperature"] = args.temperature
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
