r"""Samples from trained models: drawing them, and writing them as MIDI, WAV and PNG.

Drawing. A run folder's ``best.pt`` (``{"config", "epoch", "valid_nll", "hidden",
"member_state"}``, read with ``weights_only=True``) becomes one member of a
:class:`rnnbench.models.SequenceModel`; several runs (a cell's seeds) and several samples per
run are members of one population, drawn together by :meth:`SequenceModel.sample`, which feeds
each drawn frame back in:

.. math::
    h_t = \mathrm{unit}(x_t, h_{t-1}), \qquad x_{t+1} \sim \mathrm{head}(W_{out} h_t + b_{out}).

Each member draws from its own generator, seeded from ``(seed, run key, sample index)``
(:func:`member_seed`), so a sample depends on the seed and its run only, never on which other
runs or how many samples were drawn with it; the same seed on the same device gives the same
sample. ``temperature`` :math:`\tau` sharpens (:math:`\tau < 1`) or flattens the head's
distribution (:class:`TemperedHead`): Bernoulli logits :math:`a / \tau`; mixture logits
:math:`\ell / \tau` and standard deviations :math:`\sigma \sqrt{\tau}`. :math:`\tau = 1` is the
model's own distribution.

Priming. ``prime`` is the first ``P`` input frames of a test sequence; the sample continues
them, and :func:`real_excerpt` gives the same sequence's true continuation for comparison.

Music. Frames are 88-key rolls (MIDI 21..108). The benchmark ``.mat`` files carry no tempo:
:data:`MUSIC_FRAMES_PER_BEAT` is our reading of their resolution (JSB: one frame per quarter
note; the others: an eighth note), rendered at :data:`DEFAULT_BPM` quarter notes per minute; a
``midi:`` folder is written back at the ``fpb`` (or ``fps``) it was read with
(:func:`music_framing`). MIDI files hold one piano track; consecutive sounding frames of a key
are one note. Writing them as files (MIDI, audio, pictures): :mod:`rnnbench.sample_files`.

Speech. A sample's frames (10 standardised samples each) are concatenated and mapped back to
the recordings' scale, :math:`x = y \sigma + \mu` with the training split's ``mean`` and
``std`` (``Dataset.meta``), and written as 16-bit PCM WAV at the data set's ``sample_rate``.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rnnbench.errors import RnnbenchError

#: Frames per quarter note of the benchmark piano rolls (their files carry no tempo).
MUSIC_FRAMES_PER_BEAT = {"jsb": 1.0, "nottingham": 2.0, "musedata": 2.0, "pianomidi": 2.0}
#: Quarter notes per minute when a data set has no tempo of its own.
DEFAULT_BPM = 120.0
#: Sample rate of the audio rendering of music.
MUSIC_AUDIO_RATE = 16_000
LOW_KEY = 21  # MIDI number of the roll's first key
PCM16 = 32768.0


# --------------------------------------------------------------------------- framing


@dataclass(frozen=True)
class Framing:
    """How long a music frame lasts: ``fpb`` frames per beat at ``bpm`` beats per minute, or
    ``fps`` frames per second (then ``fpb`` is None). ``seconds = 1 / fps`` or
    ``60 / (bpm * fpb)``."""

    bpm: float = DEFAULT_BPM
    fpb: float | None = 1.0
    fps: float | None = None

    @property
    def seconds(self) -> float:
        """Seconds per frame."""
        return 1.0 / self.fps if self.fps else 60.0 / (self.bpm * self.fpb)

    def describe(self) -> str:
        if self.fps:
            return f"{self.fps:g} frames per second"
        return f"{self.fpb:g} frame(s) per quarter note at {self.bpm:g} quarter notes per minute"


def music_framing(dataset, *, fpb: float | None = None, bpm: float | None = None) -> Framing:
    """The framing to write a music data set's samples with (``fpb``, ``bpm`` override it).

    ``midi:`` folders: the ``fpb`` or ``fps`` they were read with (``Dataset.meta``); the four
    benchmarks: :data:`MUSIC_FRAMES_PER_BEAT`; anything else (``music:FILE``): one frame per
    beat.
    """
    meta = getattr(dataset, "meta", {}) or {}
    base = str(dataset.name).partition("?")[0]
    if bpm is not None and not bpm > 0:
        raise RnnbenchError(f"--bpm must be positive, not {bpm}.")
    if fpb is not None and not fpb > 0:
        raise RnnbenchError(f"--fpb must be positive, not {fpb}.")
    if meta.get("fps") and fpb is None:
        return Framing(bpm=bpm or DEFAULT_BPM, fpb=None, fps=float(meta["fps"]))
    default = meta.get("fpb") or MUSIC_FRAMES_PER_BEAT.get(base, 1.0)
    return Framing(bpm=float(bpm or DEFAULT_BPM), fpb=float(fpb or default))


def steps_for_seconds(dataset, seconds: float, framing: Framing | None = None) -> int:
    """Model steps that last ``seconds``: music frames, or speech steps of 10 samples."""
    if not seconds > 0:
        raise RnnbenchError(f"--seconds must be positive, not {seconds}.")
    if dataset.kind == "speech":
        return max(1, math.ceil(seconds * dataset.meta["sample_rate"] / dataset.out_dim))
    framing = framing or music_framing(dataset)
    return max(1, math.ceil(seconds / framing.seconds))


# --------------------------------------------------------------------------- checkpoints


@dataclass
class Checkpoint:
    """A run's best weights: ``config`` (a ``RunConfig`` dict), ``hidden``, ``epoch``,
    ``valid_nll``, ``state`` (one member's parameters), ``key`` (the run key) and ``run_dir``."""

    run_dir: Path
    key: str
    config: dict
    hidden: int
    epoch: int | None
    valid_nll: float | None
    state: dict


def load_checkpoint(run_dir: str | os.PathLike, *, status: str | None = None) -> Checkpoint:
    """Read ``RUN_DIR/best.pt`` with ``weights_only=True``.

    Refuses a folder without ``best.pt`` and a run that diverged (``status`` as the store
    holds it, else the ``status`` its finished ``last.pt`` records).
    """
    from rnnbench.checkpoint_check import check_best, read
    from rnnbench.train import checkpoint as ckpt
    from rnnbench.train.config import RunConfig, with_defaults

    run_dir = Path(run_dir).expanduser()
    best = run_dir / ckpt.BEST
    if not run_dir.is_dir():
        raise RnnbenchError(f"Run folder {run_dir} does not exist; give a folder under OUT/runs/.")
    if status is None and (run_dir / ckpt.LAST).is_file():
        last = read(run_dir / ckpt.LAST)
        status = last.get("status") if isinstance(last, dict) else None
    if status == "diverged":
        raise RnnbenchError(
            f"The run in {run_dir} diverged, so its weights are not a trained model; sample "
            "from a run that finished (status done; see `rnnbench runs`)."
        )
    if not best.is_file():
        raise RnnbenchError(
            f"{run_dir} has no best.pt (the run has not finished an epoch, or this is not a run "
            "folder); train it first or give a folder under OUT/runs/."
        )
    data = read(best)
    config, hidden, state = check_best(data, best)
    config = with_defaults(config)
    return Checkpoint(
        run_dir=run_dir,
        key=RunConfig.from_dict(config).key(),
        config=config,
        hidden=hidden,
        epoch=data.get("epoch"),
        valid_nll=data.get("valid_nll"),
        state=dict(state),
    )


def find_run_dir(run: dict, store_paths: Sequence[str | os.PathLike] = ()) -> Path:
    """A stored run's folder holding ``best.pt``: its ``run_dir`` as recorded, else its
    ``checkpoint``'s folder, else ``STORE_FOLDER/runs/KEY`` beside each store (a sweep's
    layout, found again when the folder moved with its store).

    A run copied from exports (its ``imported`` column names the export folder) or read from
    them (``confined``, set by :func:`rnnbench.report.stores.open_stores`) is looked for only
    inside that folder: its recorded paths came from a file anyone can edit."""
    candidates = []
    if run.get("run_dir"):
        candidates.append(Path(run["run_dir"]))
    if run.get("checkpoint"):
        candidates.append(Path(run["checkpoint"]).parent)
    candidates += [Path(s).parent / "runs" / run["key"] for s in store_paths]
    if run.get("confined") or run.get("imported"):
        from rnnbench.checkpoint_check import inside

        base = Path(run.get("confined") or run["imported"])
        candidates = [c for c in [*candidates, base / "runs" / run["key"]] if inside(c, base)]
    for c in candidates:
        if (c / "best.pt").is_file():
            return c
    recorded = run.get("run_dir") or f"runs/{run['key']}"
    raise RnnbenchError(
        f"The checkpoint of run {run['key']} is not on this machine (no best.pt in {recorded} "
        "nor in runs/ beside the store); copy its run folder there."
    )


def build_population(
    checkpoints: Sequence[Checkpoint], dataset, *, copies: int = 1, device: str = "cpu"
):
    """One :class:`SequenceModel` whose members are ``copies`` copies of each checkpoint, in
    the order ``ckpt0 × copies, ckpt1 × copies, ...``; all must share unit, form and size."""
    from rnnbench.analysis.units import build_model

    if not checkpoints:
        raise RnnbenchError("No run to sample from; give a run folder or a cell with runs.")
    first = checkpoints[0]
    shape = ("unit", "peephole", "reset", "variant", "unit_source")
    for c in checkpoints[1:]:
        if c.hidden != first.hidden or any(c.config.get(k) != first.config.get(k) for k in shape):
            raise RnnbenchError(
                f"The runs {first.run_dir} and {c.run_dir} are different models (unit, form or "
                "size); sample them one at a time."
            )
    for c in checkpoints:
        if c.config["dataset"] != first.config["dataset"]:
            raise RnnbenchError(
                f"The runs {first.run_dir} and {c.run_dir} were trained on different data sets; "
                "sample them one at a time."
            )
    cfg = first.config

    def make(population: int = 1):
        # any unit, form and variant (a user unit: loaded by the command line)
        return build_model(cfg, dataset, first.hidden, population=population)

    from rnnbench.checkpoint_check import check_shapes

    check_shapes(make, checkpoints)  # on the meta device: nothing is allocated
    try:
        model = make(len(checkpoints) * copies).to(device)
    except (RuntimeError, AssertionError) as exc:
        if str(device).startswith("cpu"):
            raise RnnbenchError(f"Cannot build the model to sample from ({exc}).") from None
        raise RnnbenchError(
            f"Cannot use device {device!r} ({exc}); pass --device cpu or a CUDA device present."
        ) from None
    for i, c in enumerate(checkpoints):
        for j in range(copies):
            model.load_member_state(i * copies + j, c.state)
    model.eval()
    return model


# --------------------------------------------------------------------------- drawing


def member_seed(seed: int, key: str, index: int) -> int:
    """The generator seed of sample ``index`` of run ``key`` under ``seed``: the first 8
    bytes of SHA-256 of ``"seed:key:index"``, below 2**63."""
    digest = hashlib.sha256(f"{int(seed)}:{key}:{int(index)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


class TemperedHead:
    r"""A head whose draws use temperature :math:`\tau` and one generator per member.

    Bernoulli: :math:`p = \sigma(a / \tau)`. Gaussian mixture: weights
    :math:`\mathrm{softmax}(\ell / \tau)`, means unchanged, standard deviations
    :math:`\sigma \sqrt{\tau}` (the pre-activation is replaced so that the head's own
    :math:`\sigma_{\min} + \mathrm{softplus}(s)` gives it). :meth:`sample` ignores the
    generator it is handed and draws member ``k`` (first axis) from ``generators[k]``.
    Everything else is the wrapped head's.
    """

    def __init__(self, head, temperature: float, generators: list[torch.Generator]) -> None:
        self.head = head
        self.temperature = float(temperature)
        self.generators = generators
        self.n_outputs = head.n_outputs
        self.out_dim = head.out_dim

    def nll(self, params, target):
        return self.head.nll(params, target)

    def _tempered(self, params: torch.Tensor) -> torch.Tensor:
        tau = self.temperature
        if tau == 1.0:
            return params
        if getattr(self.head, "name", "") == "gmm":
            c, d = self.head.components, self.head.out_dim
            logits, mu, s = params.split([c, c * d, c * d], dim=-1)
            std = (torch.nn.functional.softplus(s) + self.head.min_std) * math.sqrt(tau)
            # inverse of std = min_std + softplus(s'): s' = log(expm1(std - min_std))
            inner = (std - self.head.min_std).clamp_min(1e-12)
            s2 = torch.where(inner > 20, inner, torch.log(torch.expm1(inner)))
            return torch.cat([logits / tau, mu, s2], dim=-1)
        return params / tau

    def sample(self, params: torch.Tensor, generator=None) -> torch.Tensor:
        params = self._tempered(params)
        rows = [
            self.head.sample(params[k : k + 1], self.generators[k]) for k in range(params.shape[0])
        ]
        return torch.cat(rows, dim=0)


def draw(
    model,
    seeds: Sequence[int],
    steps: int,
    *,
    temperature: float = 1.0,
    prime: np.ndarray | None = None,
) -> np.ndarray:
    """``steps`` frames from every member of ``model``, member ``k`` drawing from a generator
    seeded with ``seeds[k]`` (see :func:`member_seed`); returns ``(K, steps, D)`` float32.

    ``prime``: ``(P, I)`` input frames read first (None: one all-zero frame, silence).
    """
    if not temperature > 0:
        raise RnnbenchError(f"--temperature must be positive, not {temperature}.")
    if int(steps) < 1:
        raise RnnbenchError(f"A sample needs at least 1 step, not {steps}; raise --steps.")
    if len(seeds) != model.population:
        raise RnnbenchError(f"got {len(seeds)} seeds for {model.population} members.")
    device = model.weight_out.device
    gens = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]
    head = model.head
    model.head = TemperedHead(head, temperature, gens)
    try:
        p = None if prime is None else torch.as_tensor(np.asarray(prime, dtype=np.float32))
        out = model.sample(int(steps), prime=p)
    finally:
        model.head = head
    return out.detach().cpu().numpy().astype(np.float32)


# --------------------------------------------------------------------------- test excerpts


def test_sequence(dataset, index: int):
    """Test sequence ``index`` (speech: FSDD-A segments of one recording are consecutive)."""
    seqs = dataset.split("test")
    if not seqs:
        raise RnnbenchError(f"{dataset.name} has no test sequences to prime with or compare to.")
    if not 0 <= int(index) < len(seqs):
        raise RnnbenchError(
            f"{dataset.name} has {len(seqs)} test sequences; choose --prime-from 0 .. "
            f"{len(seqs) - 1}."
        )
    return seqs[int(index)]


def prime_frames(dataset, index: int, steps: int) -> np.ndarray | None:
    """The first ``steps`` input frames of test sequence ``index`` (None when ``steps`` is 0)."""
    if int(steps) <= 0:
        return None
    seq = test_sequence(dataset, index)
    if int(steps) > len(seq):
        raise RnnbenchError(
            f"Test sequence {index} of {dataset.name} has {len(seq)} steps, fewer than --prime "
            f"{steps}; prime with fewer steps or choose another --prime-from."
        )
    return np.array(seq.inputs[: int(steps)], dtype=np.float32)


def real_excerpt(dataset, index: int, steps: int, prime: int = 0) -> np.ndarray:
    """The true frames of test data that a sample of ``steps`` steps primed on ``prime``
    steps of sequence ``index`` stands beside: ``(steps, D)`` target frames from step
    ``prime - 1`` on (music: frames ``prime .. prime+steps-1``; speech: the next
    ``10 * steps`` samples), running on into the following test sequences when one is too
    short (so its excerpt may join two pieces or recordings)."""
    seqs = dataset.split("test")
    test_sequence(dataset, index)
    start = max(int(prime) - 1, 0) if prime else 0
    out: list[np.ndarray] = []
    have = 0
    i = int(index)
    while have < steps and i < len(seqs):
        part = np.asarray(seqs[i].targets[start:], dtype=np.float32)
        out.append(part)
        have += part.shape[0]
        i, start = i + 1, 0
    frames = np.concatenate(out)[:steps]
    if frames.shape[0] < steps:
        pad = np.zeros((steps - frames.shape[0], frames.shape[1]), dtype=np.float32)
        frames = np.concatenate([frames, pad])
    return frames


def prime_roll_or_wave(dataset, prime: np.ndarray | None) -> np.ndarray:
    """The primed frames as output frames: music rolls ``(P, 88)``; speech ``(P', 10)`` frames
    of the samples the prime covers (its first input's 20 samples, then 10 per step)."""
    if prime is None:
        return np.zeros((0, dataset.out_dim), dtype=np.float32)
    if dataset.kind == "music":
        return prime
    wave = np.concatenate([prime[0], prime[1:, -dataset.out_dim :].reshape(-1)])
    return wave.reshape(-1, dataset.out_dim)
