"""A PyTorch client that swaps ``torch.nn.LSTM``/``GRU`` for rnnbench's trains the same run.

The client is a small version of pytorch/examples' ``word_language_model``: embedding,
dropout, a 2-layer recurrent net with inter-layer dropout, dropout, a linear decoder; one
``torch.manual_seed``, then construction, random token batches, truncated backpropagation
(the state carried over, detached), gradient clipping and plain SGD. The only change between
the two runs is the recurrent class (in its cuDNN form), on either backend. Since
``init="torch"`` draws what torch draws and the dropout masks come from the same generator
calls, the two runs see the same weights, tokens and masks, and their losses and weights agree
up to float32 rounding.
"""

import io

import pytest
import torch
from torch import nn

import rnnbench.nn

V, E, H, LAYERS, BPTT, BATCH, STEPS, LR = 40, 16, 24, 2, 8, 4, 8, 5.0


class ClientModel(nn.Module):
    """word_language_model's RNNModel, with the recurrent class passed in."""

    def __init__(self, rnn_cls, **form):
        super().__init__()
        self.drop = nn.Dropout(0.2)
        self.encoder = nn.Embedding(V, E)
        self.rnn = rnn_cls(E, H, LAYERS, dropout=0.2, **form)
        self.decoder = nn.Linear(H, V)
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

    def forward(self, tokens, hidden):
        output, hidden = self.rnn(self.drop(self.encoder(tokens)), hidden)
        return self.decoder(self.drop(output)).view(-1, V), hidden


def detach(hidden):
    return tuple(h.detach() for h in hidden) if isinstance(hidden, tuple) else hidden.detach()


def train(rnn_cls, **form):
    """Losses of each batch, the final weights and the generator's next draw."""
    torch.manual_seed(0)
    model = ClientModel(rnn_cls, **form)
    # random starts, then counting: random tokens with something to learn
    data = (torch.randint(V, (1, BATCH)) + torch.arange(BPTT * STEPS + 1)[:, None]) % V
    model.train()
    hidden = None
    losses = []
    for step in range(STEPS):
        x = data[step * BPTT : (step + 1) * BPTT]
        y = data[step * BPTT + 1 : (step + 1) * BPTT + 1].reshape(-1)
        hidden = detach(hidden) if hidden is not None else None
        model.zero_grad()
        logits, hidden = model(x, hidden)
        loss = nn.functional.cross_entropy(logits, y)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(p.grad, alpha=-LR)
        losses.append(loss.item())
    return model, torch.tensor(losses), torch.rand(3)


UNITS = [
    pytest.param(nn.LSTM, rnnbench.nn.LSTM, {"peephole": False}, id="lstm"),
    pytest.param(nn.GRU, rnnbench.nn.GRU, {"reset": "after"}, id="gru"),
]


@pytest.mark.parametrize("backend", ["auto", "torch"])
@pytest.mark.parametrize(("native_cls", "ours_cls", "form"), UNITS)
def test_a_client_that_swaps_the_import_trains_the_same_run(native_cls, ours_cls, form, backend):
    native, native_losses, native_next = train(native_cls)
    ours, our_losses, our_next = train(ours_cls, **form, backend=backend)
    assert torch.equal(our_next, native_next)  # the same generator calls, in the same order
    torch.testing.assert_close(our_losses, native_losses, rtol=1e-5, atol=1e-6)
    torch.manual_seed(0)
    start = ClientModel(native_cls).rnn.weight_hh_l1
    assert (ours.rnn.weight_hh_l1 - start).abs().max() > 1e-2  # the run moved the weights
    theirs = native.state_dict()
    for name, value in ours.state_dict().items():
        torch.testing.assert_close(value, theirs[name], rtol=1e-4, atol=1e-5, msg=name)


def test_the_clients_whole_model_reloads_with_weights_only():
    """``torch.save(model)`` and ``torch.load(..., weights_only=True)``, listing only the
    client's own and torch's classes: rnnbench's classes are safe globals already."""
    model, _, _ = train(rnnbench.nn.LSTM, peephole=False)
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    allowed = [ClientModel, nn.Dropout, nn.Embedding, nn.Linear]
    with torch.serialization.safe_globals(allowed):
        loaded = torch.load(buffer, weights_only=True)
    assert type(loaded.rnn) is rnnbench.nn.LSTM
    model.eval()
    loaded.eval()
    tokens = torch.randint(V, (5, 2))
    assert torch.equal(loaded(tokens, None)[0], model(tokens, None)[0])
