"""Fused CPU kernels, one module per unit family: the whole time loop in numba, and a
hand-written backward through time.

Each cell has a forward kernel, which runs all steps of all K members and keeps what the
backward needs (states, gate activations), and a backward kernel, which walks the steps in
reverse and returns the gradient of the gate pre-activations. The input projection is done by
torch before (so autograd differentiates it); the backward kernels compute the gradients of
the recurrent weights themselves, BLAS products per member after the walk through time:
``dW_hh = sum over t, b of d_pre[t, b]^T h_prev[t, b]``, ``db_hh = sum over t, b of
d_pre[t, b]``, the rows in chunks that OpenBLAS's small-matrix kernels take
(:data:`~rnnbench.nn.kernels.common.WEIGHT_GRAD_CHUNK`), or in one product where such chunks
would be only a few rows (the paper's speech sizes). The kernels take ``w_hh (K, G*H,
H)`` as the module stores it (each member's transpose is made once per call inside the
kernel) and return the final states, so the glue runs no torch op but the conversions.

Notation in the kernels: ``xw (K, T, B, G*H)`` the projected input ``W x + b_ih``; ``hs, cs
(K, T+1, B, H)`` the states, ``hs[:, 0] = h0``; ``m = mask[k, t, b]`` (1 real step, 0 padding;
each member its own); ``d_*`` the gradient of the loss with respect to ``*``. Per-step
products use ``np.dot`` on contiguous 2-D blocks, which numba sends to scipy's OpenBLAS, through
:func:`~rnnbench.nn.kernels.blas.step_dot`: above OpenBLAS's small-kernel limit (10^6
multiply-adds, the paper's speech sizes) a float32 product runs as one ``sgemm`` per block of
columns below it, on one thread. The kernels run ``np.dot`` on one thread for small products
and otherwise on at most ``torch.get_num_threads()`` threads and the cores the load average
leaves idle (OpenBLAS's default, one thread per core, made a step up to 10x slower on a busy
2-core machine).

The kernels compile on first use (about 15 s for the three cells in one dtype on 2 cores) and
are cached on disk (numba ``cache=True``), so later processes start in about a second.
Numba's cache checks only the source file of the function it caches, so an edit to
:mod:`~rnnbench.nn.kernels.common` alone would leave the kernels that inline it on their old
code; :mod:`~rnnbench.nn.kernels.cache` drops the package's cached functions whenever any of
its modules changes.

The variants of :mod:`rnnbench.nn.variants` that remove or change a gate run two more kernel
pairs, one for every LSTM variant and one for every GRU variant, with the variant as flags
(about 15 s more to compile per dtype, once); the full units keep their own kernels.

Modules: :mod:`~rnnbench.nn.kernels.common` (activations, masked update),
:mod:`~rnnbench.nn.kernels.blas` (the per-step product at large sizes),
:mod:`~rnnbench.nn.kernels.tanh`, :mod:`~rnnbench.nn.kernels.lstm`,
:mod:`~rnnbench.nn.kernels.gru` (each with its variants), :mod:`~rnnbench.nn.kernels.glue`
(:func:`forward` and :func:`backward` on torch tensors, used by :mod:`rnnbench.nn.ops`) and
:mod:`~rnnbench.nn.kernels.heap` (glibc's thresholds, so that every call's arrays reuse mapped
pages).
"""

from rnnbench.nn.kernels.glue import backward, forward

__all__ = ["backward", "forward"]
