"""The protocol's pieces on small hand-made stacked parameters."""

import math

import pytest
import torch

from rnnbench.errors import RnnbenchError
from rnnbench.train.config import RunConfig
from rnnbench.train.protocol import (
    EarlyStopping,
    PopulationRMSProp,
    WeightNoise,
    clip_member_grad_norms,
    finite_members,
    lr_factor,
)


def stacked_params(k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randn(k, 4, 3, generator=g).requires_grad_(),
        torch.randn(k, 4, generator=g).requires_grad_(),
    ]


# --- config ------------------------------------------------------------------------------


def test_config_keys_and_round_trip():
    a = RunConfig(dataset="jsb", unit="gru", lr=1e-3, seed=1)
    b = RunConfig(dataset="jsb", unit="gru", lr=2e-3, seed=2)
    assert a.group_key() == b.group_key() and a.key() != b.key()
    assert len(a.key()) == 16 and int(a.key(), 16) >= 0
    assert RunConfig.from_dict(a.to_dict()) == a
    assert RunConfig(dataset="jsb", unit="gru", batch_size=8).group_key() != a.group_key()


@pytest.mark.parametrize(
    ("dataset", "batch"),
    [
        ("jsb", 4),
        ("nottingham?", 4),
        ("fsdd-a", 16),
        ("fsdd-b?sr=8000", 16),
        ("wav:/tmp/takes", 16),
        ("midi:/tmp/songs?fps=8", 4),
    ],
)
def test_config_batch_size_defaults_by_task_and_is_stored_resolved(dataset, batch):
    cfg = RunConfig(dataset=dataset, unit="gru")
    assert cfg.batch_size == batch == cfg.to_dict()["batch_size"]
    assert cfg.key() == RunConfig(dataset=dataset, unit="gru", batch_size=batch).key()
    # An explicit size is kept, and an old config.json with its size loads as it was.
    assert RunConfig(dataset=dataset, unit="gru", batch_size=16).batch_size == 16
    old = {**cfg.to_dict(), "batch_size": 16}
    assert RunConfig.from_dict(old).to_dict() == old


def test_config_normalises_forms_that_do_not_apply():
    assert RunConfig(dataset="jsb", unit="tanh", peephole=True).peephole is False
    assert RunConfig(dataset="jsb", unit="lstm", reset="after").reset == "before"
    assert RunConfig(dataset="jsb", unit="lstm").peephole is True
    assert (
        RunConfig(dataset="jsb", unit="gru", peephole=True).key()
        == RunConfig(dataset="jsb", unit="gru", peephole=False).key()
    )


@pytest.mark.parametrize(
    "bad",
    [
        dict(unit="elman"),
        dict(lr=0.0),
        dict(batch_size=0),
        dict(reset="middle"),
        dict(rms_decay=1.0),
        dict(hidden=-3),
        dict(lr=float("nan")),
    ],
)
def test_config_rejects_bad_values(bad):
    with pytest.raises(RnnbenchError):
        RunConfig(**{"dataset": "jsb", "unit": "lstm", **bad})


@pytest.mark.parametrize(
    "bad",
    [
        dict(seed=-1),
        dict(data_seed=-2),
        dict(max_epochs="two"),
        dict(batch_size=2.5),
        dict(lr="abc"),
        dict(lr=-1.0),
        dict(hidden="big"),
        dict(patience=True),
    ],
)
def test_config_refuses_negative_seeds_and_non_numbers_with_one_sentence(bad):
    # A negative seed used to reach numpy's SeedSequence and end in a traceback; a string
    # from a sweep file ended in int()'s own message.
    (field,) = bad
    with pytest.raises(RnnbenchError, match=f"RunConfig {field}="):
        RunConfig(**{"dataset": "jsb", "unit": "lstm", **bad})


def test_config_lr_message_asks_for_a_positive_rate():
    with pytest.raises(RnnbenchError, match="> 0"):
        RunConfig(dataset="jsb", unit="lstm", lr=-1.0)


def test_later_fields_keep_old_keys_at_their_defaults_and_change_them_otherwise():
    # The keys of runs stored before lr_decay and noise_output existed: a grid must resume.
    stored = RunConfig(dataset="nottingham", unit="gru", lr=0.00044146676868581444, seed=1)
    assert stored.key() == "a7ec466eb347ac20"  # as the session-2 grid stored it
    old = RunConfig(dataset="jsb", unit="tanh", lr=1e-3).to_dict()
    del old["lr_decay"], old["noise_output"]
    assert RunConfig.from_dict(old).key() == RunConfig(dataset="jsb", unit="tanh").key()
    base = RunConfig(dataset="jsb", unit="tanh")
    decay = RunConfig(dataset="jsb", unit="tanh", lr_decay=0.01)
    quiet = RunConfig(dataset="jsb", unit="tanh", noise_output=False)
    assert len({base.key(), decay.key(), quiet.key()}) == 3
    assert len({base.group_key(), decay.group_key(), quiet.group_key()}) == 3
    assert RunConfig.from_dict(decay.to_dict()) == decay


def test_noise_output_defaults_to_the_task_and_is_stored_resolved():
    # Session 4: noise on the mixture head's weights cost FSDD-A tanh ~9 nats after one epoch.
    music = RunConfig(dataset="jsb", unit="tanh")
    speech = RunConfig(dataset="fsdd-a", unit="tanh")
    assert music.noise_output is True and speech.noise_output is False
    assert speech.to_dict()["noise_output"] is False
    assert RunConfig(dataset="fsdd-b", unit="gru", noise_output=True).noise_output is True
    # Music keys are those of the first grids; a speech run with the old placement is another.
    assert music.key() == RunConfig(dataset="jsb", unit="tanh", noise_output=True).key()
    assert speech.key() != RunConfig(dataset="fsdd-a", unit="tanh", noise_output=True).key()
    assert RunConfig.from_dict(speech.to_dict()) == speech


@pytest.mark.parametrize(
    "bad", [dict(lr_decay=0.0), dict(lr_decay=1.5), dict(lr_decay="x"), dict(noise_output="no")]
)
def test_later_fields_refuse_bad_values_with_one_sentence(bad):
    (field,) = bad
    with pytest.raises(RnnbenchError, match=f"RunConfig {field}="):
        RunConfig(**{"dataset": "jsb", "unit": "lstm", **bad})


def test_lr_factor_decays_linearly_to_the_final_factor():
    assert [lr_factor(e, 5, 0.01) for e in (1, 3, 5, 9)] == pytest.approx([1, 0.505, 0.01, 0.01])
    assert lr_factor(7, 500, None) == 1.0 and lr_factor(1, 1, 0.5) == 1.0
    params = stacked_params()
    opt = PopulationRMSProp(params, [1e-3, 2e-3, 3e-3], decay=0.9, momentum=0.0, eps=1e-8)
    opt.scale_lr(0.5)
    opt.scale_lr(0.1)  # relative to the members' own rates, not compounding
    assert opt.lr.tolist() == pytest.approx([1e-4, 2e-4, 3e-4])


def test_config_rejects_unknown_fields():
    with pytest.raises(RnnbenchError, match="Unknown run config"):
        RunConfig.from_dict({"dataset": "jsb", "unit": "lstm", "colour": "red"})


# --- RMSProp -----------------------------------------------------------------------------


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_rmsprop_matches_torch_per_member(momentum):
    lrs = [1e-3, 3e-2, 1e-1]
    params = stacked_params()
    opt = PopulationRMSProp(params, lrs, decay=0.95, momentum=momentum, eps=1e-6)
    singles = [[p[k].detach().clone().requires_grad_() for p in params] for k in range(3)]
    refs = [
        torch.optim.RMSprop(s, lr=lr, alpha=0.95, eps=1e-6, momentum=momentum)
        for s, lr in zip(singles, lrs, strict=True)
    ]
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        grads = [torch.randn(p.shape, generator=g) for p in params]
        for p, gr in zip(params, grads, strict=True):
            p.grad = gr.clone()
        opt.step(torch.ones(3, dtype=torch.bool))
        for k in range(3):
            for s, gr in zip(singles[k], grads, strict=True):
                s.grad = gr[k].clone()
            refs[k].step()
    for k in range(3):
        for p, s in zip(params, singles[k], strict=True):
            torch.testing.assert_close(p[k], s, rtol=1e-6, atol=1e-7)


def test_rmsprop_frozen_member_does_not_change():
    params = stacked_params()
    opt = PopulationRMSProp(params, [1e-2] * 3, decay=0.95, momentum=0.9, eps=1e-6)
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step(torch.ones(3, dtype=torch.bool))
    before = [p.detach().clone() for p in params]
    state = opt.member_state(1)
    for p in params:
        p.grad = torch.full_like(p, float("nan"))
    opt.step(torch.tensor([True, False, True]))
    for p, b in zip(params, before, strict=True):
        assert torch.equal(p[1], b[1])
        assert torch.isnan(p[0]).all()
    after = opt.member_state(1)
    for name in state:
        for x, y in zip(state[name], after[name], strict=True):
            assert torch.equal(x, y)


# --- clipping ----------------------------------------------------------------------------


def test_clip_bounds_each_members_norm_over_all_parameters():
    params = stacked_params()
    scales = [0.01, 10.0, 100.0]  # member 0 small (untouched), members 1-2 clipped
    for p in params:
        p.grad = torch.ones_like(p) * torch.tensor(scales).view(-1, *[1] * (p.dim() - 1))
    expect = [s * math.sqrt(12 + 4) for s in scales]
    before0 = [p.grad[0].clone() for p in params]
    norms = clip_member_grad_norms(params, 1.0)
    torch.testing.assert_close(norms, torch.tensor(expect, dtype=torch.float64))
    after = torch.stack(
        [sum(p.grad[k].double().pow(2).sum() for p in params).sqrt() for k in range(3)]
    )
    torch.testing.assert_close(after, torch.tensor([expect[0], 1.0, 1.0], dtype=torch.float64))
    for p, b in zip(params, before0, strict=True):
        assert torch.equal(p.grad[0], b)


def test_finite_members_flags_nan_and_inf():
    loss = torch.tensor([1.0, float("nan"), 2.0, 3.0])
    norms = torch.tensor([1.0, 1.0, float("inf"), 2.0], dtype=torch.float64)
    assert finite_members(loss, norms).tolist() == [True, False, False, True]


# --- weight noise ------------------------------------------------------------------------


def test_weight_noise_is_applied_inside_and_exactly_removed_after():
    params = stacked_params(k=2)
    clean = [p.detach().clone() for p in params]
    noise = WeightNoise([3, 4], 0.075)
    with noise.applied(params[:1]):
        diff = params[0] - clean[0]
        assert diff.abs().max() > 0
        assert 0.03 < diff.std().item() < 0.15
        assert torch.equal(params[1], clean[1])  # only the weight matrices get noise
    for p, c in zip(params, clean, strict=True):
        assert torch.equal(p, c)


def test_weight_noise_of_a_member_does_not_depend_on_the_population():
    a, b = (
        stacked_params(k=2),
        [p[1:].detach().clone().requires_grad_() for p in stacked_params(k=2)],
    )
    pop, single = WeightNoise([3, 4], 0.075), WeightNoise([4], 0.075)
    for _ in range(2):
        with pop.applied(a[:1]), single.applied(b[:1]):
            assert torch.equal(a[0][1], b[0][0])


def test_weight_noise_zero_draws_nothing():
    params = stacked_params(k=2)
    noise = WeightNoise([3, 4], 0.0)
    state = noise.member_state(0).clone()
    with noise.applied(params):
        pass
    assert torch.equal(noise.member_state(0), state)


def test_weight_noise_restores_weights_even_on_error():
    params = stacked_params(k=2)
    clean = params[0].detach().clone()
    with pytest.raises(RuntimeError), WeightNoise([1, 2], 0.5).applied(params[:1]):
        raise RuntimeError("boom")
    assert torch.equal(params[0], clean)


# --- early stopping ----------------------------------------------------------------------


def test_weight_noise_state_of_another_device_kind_is_refused_in_one_sentence():
    noise = WeightNoise([0], 0.075)
    philox = torch.zeros(16, dtype=torch.uint8)  # a CUDA generator's state is 16 bytes
    with pytest.raises(RnnbenchError, match="checkpointed on another kind of device than cpu"):
        noise.load_member_state(0, philox)
    noise.load_member_state(0, WeightNoise([3], 0.075).member_state(0))  # a CPU state fits


def test_early_stopping_patience_per_member():
    es = EarlyStopping(2, patience=2)
    assert es.update(0, 1, 5.0) == (True, False)
    assert es.update(0, 2, 5.0) == (False, False)  # equal is not better
    assert es.update(0, 3, 4.0) == (True, False)
    assert es.update(0, 4, 4.5) == (False, False)
    assert es.update(0, 5, 4.1) == (False, True)
    assert es.best_epoch[0] == 3 and es.best[0] == 4.0
    assert es.update(1, 1, float("nan")) == (False, False)  # NaN never improves
    other = EarlyStopping(2, patience=2)
    other.load_member_state(0, es.member_state(0))
    assert other.member_state(0) == es.member_state(0)


def test_user_folder_names_are_absolute_so_keys_do_not_depend_on_the_working_directory(
    tmp_path, monkeypatch
):
    from rnnbench.train.config import RunConfig

    monkeypatch.chdir(tmp_path)
    here = RunConfig(dataset="midi:songs?fps=8", unit="gru")
    assert here.dataset == f"midi:{tmp_path / 'songs'}?fps=8"
    monkeypatch.chdir(tmp_path.parent)
    assert RunConfig(dataset=f"midi:{tmp_path.name}/songs?fps=8", unit="gru").key() == here.key()
    assert RunConfig(dataset="jsb", unit="gru").dataset == "jsb"
