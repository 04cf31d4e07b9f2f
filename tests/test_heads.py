"""Output heads: densities against torch.distributions and hand formulas, sample moments."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import distributions as D

from rnnbench.errors import RnnbenchError
from rnnbench.heads import BernoulliHead, GaussianMixtureHead, make_head


def _reference_mixture(head: GaussianMixtureHead, params: torch.Tensor) -> D.Distribution:
    """The same mixture built from torch.distributions, from the documented layout."""
    c, d = head.components, head.out_dim
    logits, mu, s = params.split([c, c * d, c * d], dim=-1)
    lead = params.shape[:-1]
    std = torch.nn.functional.softplus(s) + head.min_std
    comp = D.Independent(D.Normal(mu.reshape(*lead, c, d), std.reshape(*lead, c, d)), 1)
    return D.MixtureSameFamily(D.Categorical(logits=logits), comp)


@settings(max_examples=25, deadline=None)
@given(
    k=st.integers(1, 3),
    t=st.integers(1, 4),
    b=st.integers(1, 3),
    d=st.integers(1, 5),
    c=st.integers(1, 6),
    seed=st.integers(0, 2**31 - 1),
)
def test_gmm_log_density_equals_mixture_same_family(k, t, b, d, c, seed):
    g = torch.Generator().manual_seed(seed)
    head = GaussianMixtureHead(out_dim=d, components=c, min_std=1e-3)
    params = torch.randn(k, t, b, head.n_outputs, generator=g, dtype=torch.float64) * 2
    target = torch.randn(t, b, d, generator=g, dtype=torch.float64) * 3
    ref = _reference_mixture(head, params).log_prob(target.expand(k, t, b, d))
    got = head.nll(params, target)
    assert got.shape == (k, t, b)
    torch.testing.assert_close(got, -ref, rtol=1e-10, atol=1e-10)
    # A per-member target gives the same numbers.
    torch.testing.assert_close(head.nll(params, target.expand(k, t, b, d)), got)


def test_gmm_paper_size_and_layout():
    head = GaussianMixtureHead()
    assert (head.out_dim, head.components) == (10, 20)
    assert head.n_outputs == 20 * (1 + 2 * 10) == 420
    params = torch.zeros(1, 1, 1, head.n_outputs, dtype=torch.float64)
    params[..., 20 + 3] = 5.0  # component 0, dim 3 mean
    log_w, mu, std = head.split(params)
    assert mu[0, 0, 0, 0, 3] == 5.0 and mu.sum() == 5.0
    torch.testing.assert_close(log_w.exp().sum(-1), torch.ones(1, 1, 1, dtype=torch.float64))
    torch.testing.assert_close(std, torch.full_like(std, math.log(2.0) + 1e-3))


def test_gmm_variance_floor_bounds_the_density():
    head = GaussianMixtureHead(out_dim=2, components=1, min_std=0.01)
    params = torch.zeros(1, 1, 1, head.n_outputs, dtype=torch.float64)
    params[..., 3:] = -1e4  # scales pre-activations far below zero
    _, _, std = head.split(params)
    torch.testing.assert_close(std, torch.full_like(std, 0.01))
    nll = head.nll(params, torch.zeros(1, 1, 2, dtype=torch.float64))
    floor = -2 * (math.log(1 / 0.01) - 0.5 * math.log(2 * math.pi))
    assert torch.isfinite(nll).all()
    assert nll.item() == pytest.approx(floor)


def test_gmm_gradient_is_finite_for_extreme_params():
    head = GaussianMixtureHead(out_dim=3, components=4)
    params = (torch.randn(2, 3, 2, head.n_outputs, dtype=torch.float64) * 50).requires_grad_()
    head.nll(params, torch.randn(3, 2, 3, dtype=torch.float64)).sum().backward()
    assert torch.isfinite(params.grad).all()


def test_bernoulli_nll_equals_hand_computed_bce():
    g = torch.Generator().manual_seed(0)
    head = BernoulliHead(88)
    params = torch.randn(3, 5, 4, 88, generator=g, dtype=torch.float64) * 3
    target = (torch.rand(5, 4, 88, generator=g, dtype=torch.float64) < 0.1).double()
    p = torch.sigmoid(params)
    hand = -(target * p.log() + (1 - target) * (1 - p).log()).sum(-1)
    got = head.nll(params, target)
    assert got.shape == (3, 5, 4)
    torch.testing.assert_close(got, hand, rtol=1e-10, atol=1e-10)


def test_bernoulli_nll_of_a_single_note_by_hand():
    head = BernoulliHead(2)
    params = torch.tensor([[[[0.0, math.log(3.0)]]]], dtype=torch.float64)  # p = 1/2, 3/4
    target = torch.tensor([[[1.0, 0.0]]], dtype=torch.float64)
    expected = math.log(2.0) + math.log(4.0)
    assert head.nll(params, target).item() == pytest.approx(expected, abs=1e-12)


def test_bernoulli_sample_frequencies():
    head = BernoulliHead(4)
    logits = torch.tensor([-2.0, 0.0, 1.0, 3.0], dtype=torch.float64)
    n = 40_000
    params = logits.expand(2, n, 4)  # (K, B, P)
    draws = head.sample(params, torch.Generator().manual_seed(1))
    assert draws.shape == (2, n, 4)
    assert set(draws.unique().tolist()) <= {0.0, 1.0}
    p = torch.sigmoid(logits)
    freq = draws.mean(1)
    se = (p * (1 - p) / n).sqrt()
    assert ((freq - p).abs() < 5 * se).all(), (freq, p)


def test_gmm_sample_moments_match_the_mixture():
    g = torch.Generator().manual_seed(3)
    head = GaussianMixtureHead(out_dim=3, components=4, min_std=1e-3)
    one = torch.randn(head.n_outputs, generator=g, dtype=torch.float64)
    n = 60_000
    draws = head.sample(one.expand(1, n, head.n_outputs), torch.Generator().manual_seed(4))
    assert draws.shape == (1, n, 3)
    log_w, mu, std = head.split(one)
    w = log_w.exp().unsqueeze(-1)
    mean = (w * mu).sum(0)
    var = (w * (std.square() + mu.square())).sum(0) - mean.square()
    torch.testing.assert_close(head.mean(one), mean)
    emp_mean, emp_var = draws[0].mean(0), draws[0].var(0)
    assert ((emp_mean - mean).abs() < 5 * (var / n).sqrt()).all(), (emp_mean, mean)
    assert ((emp_var / var - 1).abs() < 0.05).all(), (emp_var, var)


def test_sampling_is_reproducible_with_a_generator():
    head = GaussianMixtureHead(out_dim=2, components=3)
    params = torch.randn(2, 5, head.n_outputs)
    a = head.sample(params, torch.Generator().manual_seed(7))
    b = head.sample(params, torch.Generator().manual_seed(7))
    assert a.shape == (2, 5, 2)
    assert torch.equal(a, b)


def test_make_head_and_errors():
    assert isinstance(make_head("bernoulli", 88), BernoulliHead)
    gmm = make_head("gmm", 10, components=5)
    assert isinstance(gmm, GaussianMixtureHead) and gmm.n_outputs == 5 * 21
    with pytest.raises(RnnbenchError, match="unknown head"):
        make_head("poisson", 3)
    with pytest.raises(RnnbenchError, match="parameters per step"):
        BernoulliHead(4).nll(torch.zeros(1, 1, 1, 5), torch.zeros(1, 1, 4))
    with pytest.raises(RnnbenchError, match="target has"):
        gmm.nll(torch.zeros(1, 1, 1, gmm.n_outputs), torch.zeros(1, 1, 4))
    with pytest.raises(RnnbenchError, match="min_std"):
        GaussianMixtureHead(min_std=0.0)
