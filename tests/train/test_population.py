"""train_population on a tiny slice of JSB: equivalence, resume, divergence, the protocol."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from rnnbench.data.dataset import Dataset, Sequence
from rnnbench.errors import RnnbenchError
from rnnbench.models import SequenceModel
from rnnbench.train import population as population_module
from rnnbench.train.config import RunConfig
from rnnbench.train.metrics import split_nll
from rnnbench.train.population import train_population

MEMBERS = [(1e-3, 0), (3e-3, 1), (1e-2, 2)]


def cfg(**kw) -> RunConfig:
    base = dict(dataset="jsb", unit="lstm", hidden=8, batch_size=2, max_epochs=3, patience=5)
    base.update(kw)
    return RunConfig(**base)


def run(configs, root, tiny, **kw):
    dirs = [root / c.key() for c in configs]
    return train_population(configs, out_dirs=dirs, dataset=tiny, **kw), dirs


class Interrupt(Exception):
    """A crash in the middle of training (raised from ``on_epoch``)."""


def stop_at(epoch: int):
    """An ``on_epoch`` callback that crashes once a member reports ``epoch``."""

    def on_epoch(k, record):
        if record["epoch"] == epoch:
            raise Interrupt

    return on_epoch


def load(path):
    return torch.load(path, weights_only=True)


def metric_lines(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def assert_population_equals_separate_runs(configs, tiny, tmp_path):
    together, pop_dirs = run(configs, tmp_path / "pop", tiny)
    for k, c in enumerate(configs):
        (alone,), (alone_dir,) = run([c], tmp_path / f"single{k}", tiny)
        for name in ("train_nll", "valid_nll", "test_nll"):
            assert together[k][name] == pytest.approx(alone[name], abs=1e-6, rel=1e-6)
        for name in ("status", "best_epoch", "epochs", "updates", "params"):
            assert together[k][name] == alone[name]
        # Scores, not weights: RMSProp divides a tiny gradient (of the weight of a note that
        # hardly ever sounds) by its own RMS, so float rounding can flip such a weight's step
        # without any effect on the NLL.
        pop_valid = [r["valid_nll"] for r in metric_lines(pop_dirs[k])]
        alone_valid = [r["valid_nll"] for r in metric_lines(alone_dir)]
        np.testing.assert_allclose(pop_valid, alone_valid, rtol=1e-6, atol=1e-6)
    return together


@pytest.mark.parametrize(("unit", "bptt"), [("lstm", None), ("gru", None), ("tanh", 5)])
def test_population_equals_separate_runs(unit, bptt, tiny, tmp_path):
    configs = [cfg(unit=unit, bptt=bptt, lr=lr, seed=seed) for lr, seed in MEMBERS]
    assert_population_equals_separate_runs(configs, tiny, tmp_path)


@pytest.mark.parametrize("unit", ["lstm", "gru", "tanh"])
def test_population_equals_separate_runs_when_members_leave_by_early_stopping(unit, tiny, tmp_path):
    """Members that stop early leave the population; the others go on as a smaller one (from
    the state just checkpointed). Each member's result must still be the one it gets alone."""
    members = [(1e-3, 0), (3e-3, 1), (3e-2, 2)]
    configs = [cfg(unit=unit, lr=lr, seed=seed, max_epochs=12, patience=2) for lr, seed in members]
    together = assert_population_equals_separate_runs(configs, tiny, tmp_path)
    epochs = [r["epochs"] for r in together]
    # the case this test is for: at least one member left early, while another went on
    assert min(epochs) < 12 and max(epochs) > min(epochs), epochs
    assert all(r["status"] == "done" for r in together)


def test_result_files_and_records(tiny, tmp_path):
    records = []
    configs = [cfg(lr=lr, seed=seed) for lr, seed in MEMBERS[:2]]
    results, dirs = run(configs, tmp_path, tiny, on_epoch=lambda k, r: records.append((k, r)))
    assert len(records) == 2 * 3
    for k, (result, run_dir) in enumerate(zip(results, dirs, strict=True)):
        assert {p.name for p in run_dir.iterdir()} >= {
            "config.json",
            "metrics.jsonl",
            "best.pt",
            "last.pt",
        }
        assert RunConfig.from_dict(json.loads((run_dir / "config.json").read_text())) == configs[k]
        lines = metric_lines(run_dir)
        assert [r["epoch"] for r in lines] == [1, 2, 3]
        assert lines == [r for j, r in records if j == k]
        assert set(lines[0]) == {"epoch", "train_nll", "valid_nll", "updates", "seconds", "status"}
        assert lines[-1]["updates"] == result["updates"] == 3 * 3  # 6 sequences, batch 2
        assert result["status"] == "done" and result["epochs"] == 3
        best = load(run_dir / "best.pt")
        assert best["epoch"] == result["best_epoch"]
        assert result["valid_nll"] == pytest.approx(min(r["valid_nll"] for r in lines), abs=1e-9)
        assert all(math.isfinite(result[n]) for n in ("train_nll", "valid_nll", "test_nll"))


def test_finished_runs_return_their_stored_result(tiny, tmp_path):
    configs = [cfg(lr=lr, seed=seed) for lr, seed in MEMBERS[:2]]
    first, _ = run(configs, tmp_path, tiny)
    calls = []
    again, _ = run(configs, tmp_path, tiny, on_epoch=lambda k, r: calls.append(k))
    assert again == first and calls == []


@pytest.mark.parametrize("patience", [5, 1])
def test_resume_after_interruption_is_bitwise_identical(patience, tiny, tmp_path):
    # patience 1: members stop at epochs 3, 4 and 5 and leave the population (it shrinks).
    configs = [
        cfg(lr=lr, seed=seed, max_epochs=5, patience=patience, weight_noise=0.3)
        for lr, seed in [(1e-3, 0), (3e-2, 1), (1e-1, 2)]
    ]
    straight, straight_dirs = run(configs, tmp_path / "straight", tiny)
    if patience == 1:
        assert len({r["epochs"] for r in straight}) > 1
        for c, r in zip(configs, straight, strict=True):
            (alone,), _ = run([c], tmp_path / "alone", tiny)
            assert alone["epochs"] == r["epochs"]
            assert alone["test_nll"] == pytest.approx(r["test_nll"], rel=1e-6, abs=1e-6)

    with pytest.raises(Interrupt):
        run(configs, tmp_path / "resumed", tiny, on_epoch=stop_at(3))
    dirs = [tmp_path / "resumed" / c.key() for c in configs]
    # A crash between two members' checkpoint writes: member 1 is still at epoch 2.
    (dirs[1] / "prev.pt").replace(dirs[1] / "last.pt")
    assert load(dirs[0] / "last.pt")["epoch"] == 3 and load(dirs[1] / "last.pt")["epoch"] == 2
    resumed, _ = run(configs, tmp_path / "resumed", tiny)

    drop = ("seconds",)
    for a, b in zip(straight, resumed, strict=True):
        assert {n: v for n, v in a.items() if n not in drop + ("checkpoint",)} == {
            n: v for n, v in b.items() if n not in drop + ("checkpoint",)
        }
    for d1, d2 in zip(straight_dirs, dirs, strict=True):
        for name in ("best.pt", "last.pt"):
            x, y = load(d1 / name), load(d2 / name)
            state = "member_state" if name == "best.pt" else "model"
            for p in x[state]:
                assert torch.equal(x[state][p], y[state][p])
        strip = [{n: v for n, v in r.items() if n not in drop} for r in metric_lines(d1)]
        assert strip == [{n: v for n, v in r.items() if n not in drop} for r in metric_lines(d2)]


def test_nan_member_is_marked_diverged_while_others_finish(tiny, tmp_path):
    configs = [cfg(lr=1e-3, seed=0), cfg(lr=1e38, seed=1), cfg(lr=3e-3, seed=2)]
    events = []
    results, dirs = run(
        configs,
        tmp_path,
        tiny,
        on_epoch=lambda k, rec: events.append(("epoch", k, rec["epoch"])),
        on_result=lambda k, res: events.append(("result", k, res)),
    )
    assert [r["status"] for r in results] == ["done", "diverged", "done"]
    # The diverged member is reported as soon as it stops, before the others' last epochs.
    reported = [i for i, e in enumerate(events) if e[:2] == ("result", 1)]
    assert len(reported) == 1 and events[reported[0]][2] == results[1]
    assert ("epoch", 0, 3) in events[reported[0] :]
    assert [e[1] for e in events if e[0] == "result"] == [1, 0, 2]
    # Called again (a resumed sweep), the members found finished are reported at once.
    again = []
    run(configs, tmp_path, tiny, on_result=lambda k, res: again.append((k, res)))
    assert again == list(enumerate(results))
    assert results[1]["test_nll"] is None and results[1]["epochs"] < 3
    assert metric_lines(dirs[1])[-1]["status"] == "diverged"
    for r in (results[0], results[2]):
        assert r["epochs"] == 3 and math.isfinite(r["test_nll"])
    alone, _ = run([configs[2]], tmp_path / "alone", tiny)
    assert alone[0]["test_nll"] == pytest.approx(results[2]["test_nll"], abs=1e-6)


def test_a_diverged_member_says_why_and_a_gradient_overflow_is_named(tiny, tmp_path, monkeypatch):
    real = population_module.clip_member_grad_norms
    calls = iter(range(10**6))

    def overflow_member_1_at_the_third_batch(params, max_norm):
        norms = real(params, max_norm)
        if next(calls) == 2:
            norms[1] = math.inf
        return norms

    monkeypatch.setattr(
        population_module, "clip_member_grad_norms", overflow_member_1_at_the_third_batch
    )
    configs = [cfg(lr=1e-3, seed=0), cfg(lr=2e-3, seed=1)]
    results, dirs = run(configs, tmp_path, tiny)
    assert [r["status"] for r in results] == ["done", "diverged"]
    assert results[0]["error"] is None
    why = results[1]["error"]
    assert why.startswith("its gradient overflowed at epoch 1, batch 3 while its loss (")
    assert "--bptt" in why
    # The reason survives in last.pt: a resumed sweep reports the same sentence.
    again, _ = run(configs, tmp_path, tiny)
    assert again[1]["error"] == why


def test_a_member_that_diverges_after_its_best_epoch_is_scored_from_its_best_state(
    tiny, tmp_path, monkeypatch
):
    real = population_module.clip_member_grad_norms
    calls = iter(range(10**6))

    def overflow_member_1_in_epoch_2(params, max_norm):  # 3 batches an epoch
        norms = real(params, max_norm)
        if next(calls) == 4:
            norms[1] = math.inf
        return norms

    monkeypatch.setattr(population_module, "clip_member_grad_norms", overflow_member_1_in_epoch_2)
    configs = [cfg(lr=1e-3, seed=0), cfg(lr=2e-3, seed=1)]
    results, dirs = run(configs, tmp_path, tiny)
    late = results[1]
    # Before the fix: status "diverged" with no NLLs, dropped from selection and Table 2.
    assert late["status"] == "done" and late["best_epoch"] == 1 and late["epochs"] == 2
    assert late["error"].startswith(
        "diverged at epoch 2 after its best at 1 (scored from its best state): its gradient "
        "overflowed at epoch 2, batch 2"
    )
    best = torch.load(dirs[1] / "best.pt", weights_only=True)
    assert best["epoch"] == 1
    assert late["valid_nll"] == pytest.approx(best["valid_nll"], abs=1e-6)
    for split in ("train", "valid", "test"):
        assert math.isfinite(late[f"{split}_nll"]) and math.isfinite(late[f"{split}_nll_seq"])
    assert results[0]["error"] is None and results[0]["status"] == "done"


def test_the_per_sequence_average_is_the_mean_of_each_sequences_mean(tiny):
    from rnnbench.models import SequenceModel
    from rnnbench.train.metrics import split_scores

    model = SequenceModel("gru", tiny.in_dim, tiny.out_dim, 8, head="bernoulli", population=2)
    seqs = tiny.split("test")  # lengths 16, 15, 14: the two averages differ
    scores = split_scores(model, seqs)
    sums, lengths = [], []
    for s in seqs:
        x = torch.tensor(s.inputs)[:, None]
        y = torch.tensor(s.targets)[:, None]
        total, n, _ = model.nll(x, y)
        sums.append(total.double())
        lengths.append(n)
    frame = sum(sums) / sum(lengths)
    per_sequence = sum(t / n for t, n in zip(sums, lengths, strict=True)) / len(seqs)
    assert torch.allclose(scores["frame"], frame, atol=1e-6)
    assert torch.allclose(scores["sequence"], per_sequence, atol=1e-6)
    assert (scores["frame"] - scores["sequence"]).abs().min() > 1e-4


def test_a_non_finite_loss_is_named_as_such(tiny, tmp_path, monkeypatch):
    real, calls = population_module.split_nll, []
    monkeypatch.setattr(
        population_module, "split_nll", lambda *a, **kw: calls.append(1) or real(*a, **kw)
    )
    results, _ = run([cfg(lr=1e38, seed=1)], tmp_path, tiny)
    assert len(calls) == 1  # epoch 1's validation; nothing is scored for a diverged member
    assert results[0]["status"] == "diverged"
    # The first update (lr 1e38) ruins the weights, so the next batch's loss is not finite.
    assert results[0]["error"] == "its training loss was not finite at epoch 1, batch 2"


def test_divergence_reason_names_the_cause():
    assert population_module.divergence_reason(math.nan, 2, 7, 48) == (
        "its training loss was not finite at epoch 2, batch 7"
    )
    grad = population_module.divergence_reason(13.5, 1, 3, 798)
    assert "at epoch 1, batch 3 while its loss (13.500) was finite" in grad
    assert "through 798 time steps" in grad


def test_early_stopping_restores_the_best_state(tiny, tmp_path, monkeypatch):
    scripted = iter([5.0, 4.0, 4.5, 4.2])  # best at epoch 2, patience 2 stops at epoch 4
    real = population_module.split_nll

    def fake_split_nll(model, seqs, **kw):
        if seqs is tiny.split("valid"):
            value = next(scripted, None)
            if value is not None:
                return torch.tensor([value], dtype=torch.float64)
        return real(model, seqs, **kw)

    monkeypatch.setattr(population_module, "split_nll", fake_split_nll)
    c = cfg(lr=1e-2, seed=0, max_epochs=10, patience=2)
    (result,), (run_dir,) = run([c], tmp_path, tiny)
    assert result["best_epoch"] == 2 and result["epochs"] == 4
    best = load(run_dir / "best.pt")
    final_epoch = load(run_dir / "prev.pt")  # epoch 4's checkpoint, before the restore
    assert best["epoch"] == 2 and final_epoch["epoch"] == 4
    assert any(
        not torch.equal(best["member_state"][n], final_epoch["model"][n])
        for n in best["member_state"]
    )
    model = SequenceModel("lstm", tiny.in_dim, tiny.out_dim, 8, head=tiny.head)
    model.load_member_state(0, best["member_state"])
    assert result["test_nll"] == pytest.approx(float(real(model, tiny.split("test"))[0]), abs=1e-9)


def test_weight_noise_is_absent_at_evaluation_and_never_stored(tiny, tmp_path):
    # A learning rate so small the updates move the weights by < 1e-20 (zero-initialised biases
    # by ~1e-29, weights not at all): a larger difference could only be leaked noise.
    c = cfg(lr=1e-30, seed=3, max_epochs=2, weight_noise=0.5)
    (result,), (run_dir,) = run([c], tmp_path, tiny)
    init = SequenceModel("lstm", tiny.in_dim, tiny.out_dim, 8, head=tiny.head, seeds=[3])
    clean = init.member_state(0)
    for name in ("best.pt", "last.pt", "prev.pt"):
        state = load(run_dir / name)
        stored = state["member_state"] if name == "best.pt" else state["model"]
        for n in clean:
            assert (stored[n] - clean[n]).abs().max() < 1e-20, (name, n)
    valid = float(split_nll(init, tiny.split("valid"))[0])
    assert [r["valid_nll"] for r in metric_lines(run_dir)] == [valid, valid]
    assert result["valid_nll"] == valid


def test_lr_decay_changes_nothing_in_epoch_1_then_scales_every_members_rate(
    tiny, tmp_path, monkeypatch
):
    plain, (plain_dir,) = run([cfg(max_epochs=3)], tmp_path / "plain", tiny)
    rates = []
    real_step = population_module.PopulationRMSProp.step

    def step(self, active):
        rates.append(self.lr.tolist())
        return real_step(self, active)

    monkeypatch.setattr(population_module.PopulationRMSProp, "step", step)
    configs = [cfg(max_epochs=3, lr_decay=0.01, lr=lr, seed=s) for lr, s in MEMBERS]
    run(configs, tmp_path / "decay", tiny)
    a = metric_lines(plain_dir)
    b = metric_lines(tmp_path / "decay" / configs[0].key())
    assert a[0]["train_nll"] == b[0]["train_nll"] and a[0]["valid_nll"] == b[0]["valid_nll"]
    assert a[1]["train_nll"] != b[1]["train_nll"]
    per_epoch = len(rates) // 3  # 3 batches of 2 sequences per epoch
    lrs = [lr for lr, _ in MEMBERS]
    for epoch, factor in enumerate([1.0, 0.505, 0.01]):
        for seen in rates[epoch * per_epoch : (epoch + 1) * per_epoch]:
            assert seen == pytest.approx([lr * factor for lr in lrs])


def test_noise_output_false_leaves_the_output_layer_noise_free(tiny, tmp_path, monkeypatch):
    seen = []
    real = population_module.WeightNoise.applied

    def applied(self, weights):
        seen.append([w.shape for w in weights])
        return real(self, weights)

    monkeypatch.setattr(population_module.WeightNoise, "applied", applied)
    run([cfg(max_epochs=1, noise_output=False)], tmp_path / "off", tiny)
    off = seen[-1]
    run([cfg(max_epochs=1)], tmp_path / "on", tiny)
    on = seen[-1]
    out_shape = torch.Size([1, tiny.out_dim, 8])  # weight_out: (K, out, hidden)
    assert out_shape in on and out_shape not in off and len(on) == len(off) + 1


def test_clipping_happens_after_backward_and_bounds_each_members_norm(tiny, tmp_path, monkeypatch):
    seen = {"pre": [], "at_step": []}
    real_clip = population_module.clip_member_grad_norms
    real_step = population_module.PopulationRMSProp.step

    def clip(params, max_norm):
        assert all(p.grad is not None for p in params)  # backward has run
        norms = real_clip(params, max_norm)
        seen["pre"].append(norms)
        return norms

    def step(self, active):
        norms = sum(
            p.grad.reshape(p.shape[0], -1).double().pow(2).sum(1) for p in self.params
        ).sqrt()
        seen["at_step"].append(norms)
        return real_step(self, active)

    monkeypatch.setattr(population_module, "clip_member_grad_norms", clip)
    monkeypatch.setattr(population_module.PopulationRMSProp, "step", step)
    configs = [cfg(lr=lr, seed=seed, max_epochs=1, clip=5.0) for lr, seed in MEMBERS]
    run(configs, tmp_path, tiny)
    pre, at = torch.stack(seen["pre"]), torch.stack(seen["at_step"])
    assert (pre > 5).any() and (pre < 5).any()  # some steps clipped, some not
    assert (at <= 5 * (1 + 1e-6)).all()
    torch.testing.assert_close(at[pre <= 5], pre[pre <= 5])


def test_resume_groups():
    from rnnbench.train.run_folder import resume_groups as _resume_groups

    ck = [{"epoch": e} for e in range(6)]
    # The latest epoch all members have, from last.pt or prev.pt.
    assert _resume_groups({0: [ck[3], ck[2]], 1: [ck[2], ck[1]]}) == [(2, [0, 1])]
    assert _resume_groups({0: [], 1: []}) == [(0, [0, 1])]
    # No common epoch (folders from different populations): groups by own latest epoch.
    assert _resume_groups({0: [ck[5], ck[4]], 1: [], 2: [ck[5]]}) == [(0, [1]), (5, [0, 2])]


def test_a_folder_written_before_the_later_config_fields_resumes(tiny, tmp_path):
    # Runs started before lr_decay and noise_output existed hold configs without them (in
    # config.json and in last.pt): they are the same runs, and must resume, not be refused.
    from rnnbench.train import checkpoint as ckpt
    from rnnbench.train.config import LATER_FIELDS

    c = cfg(max_epochs=4, weight_noise=0.3)
    (straight,), _ = run([c], tmp_path / "straight", tiny)

    with pytest.raises(Interrupt):
        run([c], tmp_path / "old", tiny, on_epoch=stop_at(2))
    folder = tmp_path / "old" / c.key()
    old = {n: v for n, v in c.to_dict().items() if n not in LATER_FIELDS}
    (folder / "config.json").write_text(json.dumps(old))
    for name in ("last.pt", "prev.pt"):
        state = load(folder / name)
        state["config"] = old
        ckpt.atomic_save(state, folder / name)

    (resumed,), _ = run([c], tmp_path / "old", tiny)
    assert resumed["epochs"] == straight["epochs"] == 4
    assert resumed["test_nll"] == straight["test_nll"]
    assert json.loads((folder / "config.json").read_text()) == c.to_dict()


def test_members_must_share_the_group_key(tiny, tmp_path):
    with pytest.raises(RnnbenchError, match="differ only in lr, seed and data_seed"):
        run([cfg(), cfg(batch_size=3)], tmp_path, tiny)
    with pytest.raises(RnnbenchError, match="one folder per run"):
        train_population([cfg()], out_dirs=[], dataset=tiny)


def test_a_folder_of_another_run_is_refused(tiny, tmp_path):
    run([cfg(max_epochs=1)], tmp_path, tiny)
    other = cfg(max_epochs=1, seed=9)
    with pytest.raises(RnnbenchError, match="different run"):
        train_population([other], out_dirs=[tmp_path / cfg(max_epochs=1).key()], dataset=tiny)


def test_metric_is_frame_weighted_over_the_split():
    """Two sequences of 3 and 5 frames (2 and 4 predicted frames), two notes.

    With zero weights the logits are the output bias b = (0, ln 3): p = (1/2, 3/4).
    A frame's NLL is ln 2 (note 1) plus -ln 3/4 when note 2 sounds, -ln 1/4 when silent.
    """
    seq_a = np.array([[0, 0], [1, 1], [0, 0]], dtype=np.float32)
    seq_b = np.ones((5, 2), dtype=np.float32)
    seqs = [Sequence(s[:-1], s[1:]) for s in (seq_a, seq_b)]
    model = SequenceModel("tanh", 2, 2, 3, head="bernoulli")
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.bias_out[0, 1] = math.log(3.0)
    on, off = math.log(2) - math.log(0.75), math.log(2) - math.log(0.25)
    expect = (on + off + 4 * on) / 6  # frames, not sequences: (on+off)/2 and on differ
    assert float(split_nll(model, seqs)[0]) == pytest.approx(expect, abs=1e-6)
    assert float(split_nll(model, seqs, batch_size=1)[0]) == pytest.approx(expect, abs=1e-6)
    assert expect != pytest.approx(((on + off) / 2 + on) / 2)  # not a mean of sequence means


def _long_speech(steps: int, seed: int = 0) -> Dataset:
    """A speech-shaped data set (20 samples in, a 20-component mixture over 10 out) whose one
    training sequence has ``steps`` steps, of standard normal noise: the scale of
    standardised audio, without loading FSDD."""
    rng = np.random.default_rng(seed)

    def seq(n):
        return Sequence(
            rng.standard_normal((n, 20)).astype(np.float32),
            rng.standard_normal((n, 10)).astype(np.float32),
            f"noise{n}",
        )

    splits = {"train": [seq(steps)], "valid": [seq(50)], "test": [seq(50)]}
    return Dataset(
        name="long-speech",
        kind="speech",
        in_dim=20,
        out_dim=10,
        head="gmm",
        task="speech",
        splits=splits,
    )


def test_weight_noise_explodes_the_tanh_gradient_through_fsdd_b_lengths():
    """Why every FSDD-B tanh run of the paper's protocol diverges (docs/training.md): σ = 0.075
    on the 400 x 400 orthogonal recurrent matrix lifts its spectral radius from 1 to about
    1.85, so through FSDD-B's 798 steps the gradient grows by some 27 orders of magnitude (to
    ~1e37 or beyond on real FSDD-B batches), while without noise it stays near 1."""
    from rnnbench.train.protocol import WeightNoise, clip_member_grad_norms

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as training runs; 2 threads on 2 busy cores take 20x longer
    try:
        rng = np.random.default_rng(0)
        x = torch.tensor(rng.standard_normal((798, 4, 20)), dtype=torch.float32)
        y = torch.tensor(rng.standard_normal((798, 4, 10)), dtype=torch.float32)
        norms = {}
        for sigma in (0.075, 0.0):
            model = SequenceModel("tanh", 20, 10, 400, head="gmm", init="paper", seeds=[0])
            with WeightNoise([0], sigma).applied(model.weight_matrices(output=False)):
                nll_sum, n, _ = model.nll(x, y, torch.ones(798, 4))
                (nll_sum / n).sum().backward()
            assert torch.isfinite(nll_sum).all()  # the loss itself stays finite
            norms[sigma] = clip_member_grad_norms(list(model.parameters()), 0).item()
    finally:
        torch.set_num_threads(threads)
    assert not norms[0.075] < 1e20, norms  # exploded (or overflowed)
    assert norms[0.0] < 100, norms


def test_a_gradient_overflow_through_a_long_sequence_is_diagnosed_and_bptt_avoids_it(tmp_path):
    """The diagnosis a user sees, end to end: at the paper's speech size and weight noise, one
    sequence a little longer than FSDD-B's (1,600 steps, so float32 overflows for certain)
    diverges on its first batch with a finite loss, and the reason names the gradient
    overflow, the number of steps and the remedy; with that remedy (--bptt 200), or without
    the noise, the same run trains."""
    data = _long_speech(1600)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        results = {}
        for label, kw in (("noise", {}), ("bptt", {"bptt": 200}), ("clean", {"weight_noise": 0.0})):
            c = RunConfig(
                dataset="fsdd-b", unit="tanh", lr=1e-4, seed=0, max_epochs=1, batch_size=1, **kw
            )
            assert c.weight_noise == kw.get("weight_noise", 0.075)  # the paper's σ by default
            [results[label]] = train_population([c], out_dirs=[tmp_path / label], dataset=data)
    finally:
        torch.set_num_threads(threads)
    why = results["noise"]["error"]
    assert results["noise"]["status"] == "diverged"
    assert why.startswith("its gradient overflowed at epoch 1, batch 1 while its loss (")
    assert "was finite" in why and "through 1600 time steps" in why and "--bptt" in why
    for label in ("bptt", "clean"):
        assert results[label]["status"] == "done" and results[label]["error"] is None
