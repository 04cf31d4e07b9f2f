"""What an epoch's checkpoint files and weight-noise draws cost, each way (issue 22).

Times, in the same run and on the disk of ``--dir``:

- ``fsync``: N files of a ``last.pt``'s size made durable one after another, against all of
  them written first and ``fsync``-ed together from a few threads
  (:func:`rnnbench.train.checkpoint.stage`);
- ``replace``: ``os.replace`` over an existing file, against a hard link to it first (what
  :func:`rnnbench.train.checkpoint.publish` does, the links removed together afterwards);
- ``torch.save``: into a file object, against into memory and one ``write``;
- the weight noise of a JSB LSTM population of 10 (36 units): one ``normal_`` per member and
  weight matrix (the trainer's draws), against one per member over a flat buffer, and whether
  the two give the same numbers.

Usage: ``python benchmarks/epoch_files.py [--dir FOLDER] [--files 20] [--repeats 20]``.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import torch


def _median(fn, repeats: int) -> tuple[float, float]:
    """Median (wall, CPU) milliseconds of ``fn()``, or of the part it times itself (when it
    returns its own ``(wall, CPU)`` seconds, leaving out its setting up)."""
    wall, cpu = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        own = fn()
        w, c = own if own is not None else (time.perf_counter() - w, time.process_time() - c)
        wall.append(w * 1e3)
        cpu.append(c * 1e3)
    return statistics.median(wall), statistics.median(cpu)


class _Part:
    """Times the block inside ``with`` (wall and CPU seconds)."""

    def __enter__(self):
        self.w, self.c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.took = (time.perf_counter() - self.w, time.process_time() - self.c)


def _last_pt() -> dict:
    """A dict shaped like one JSB LSTM member's ``last.pt`` (36 units, 88 keys)."""
    shapes = {"w_ih": (144, 88), "w_hh": (144, 36), "b": (144,), "w_out": (88, 36), "b_out": (88,)}
    model = {n: torch.randn(s) for n, s in shapes.items()}
    return {
        "epoch": 3,
        "model": model,
        "optimizer": {
            "square_avg": [t.clone() for t in model.values()],
            "momentum_buffer": [t.clone() for t in model.values()],
        },
        "best_model": {n: t.clone() for n, t in model.items()},
        "noise_rng": torch.Generator().get_state(),
        "torch_rng": torch.get_rng_state(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", default=None, help="a folder on the disk to time (default: tmp)")
    parser.add_argument("--files", type=int, default=20, help="files per epoch (default 20)")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    obj = _last_pt()
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    data = buffer.getvalue()
    pool = ThreadPoolExecutor(8)
    rows = []
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        paths = [os.path.join(folder, f"f{i}") for i in range(args.files)]

        def write_all():
            fds = [os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC) for p in paths]
            for fd in fds:
                os.write(fd, data)
            return fds

        def synced(together: bool):
            def run():
                fds = write_all()
                with _Part() as part:  # the fsync calls only
                    if together:
                        list(pool.map(os.fsync, fds))
                    else:
                        for fd in fds:
                            os.fsync(fd)
                for fd in fds:
                    os.close(fd)
                return part.took

            return run

        rows.append((f"fsync of {args.files} written files", synced(False), synced(True)))

        def replaced(linked: bool):
            def run():
                for p in paths:  # the new files, durable (as stage leaves them)
                    with open(p + ".new", "wb") as f:
                        f.write(data)
                        f.flush()
                        os.fsync(f.fileno())
                with _Part() as part:  # the moves and, linked, removing the links together
                    links = []
                    for p in paths:
                        if linked:
                            os.link(p, p + ".old")
                            links.append(p + ".old")
                        os.replace(p + ".new", p)
                    list(pool.map(os.unlink, links))
                return part.took

            return run

        for fd in write_all():
            os.fsync(fd)
            os.close(fd)
        rows.append((f"os.replace over {args.files} files", replaced(False), replaced(True)))

        def to_file():
            with open(paths[0], "wb") as f, _Part() as part:
                torch.save(obj, f)
            return part.took

        def via_memory():
            with open(paths[0], "wb") as f, _Part() as part:
                out = io.BytesIO()
                torch.save(obj, out)
                f.write(out.getbuffer())
            return part.took

        rows.append(("torch.save of one last.pt", to_file, via_memory))

        shapes = [(144, 88), (144, 36), (88, 36)]
        noise = [torch.empty(10, *s) for s in shapes]
        flat = torch.empty(10, sum(a * b for a, b in shapes))
        gens = [torch.Generator().manual_seed(k) for k in range(10)]

        def per_matrix():
            for n in noise:
                for k, g in enumerate(gens):
                    n[k].normal_(generator=g)

        def per_member():
            for k, g in enumerate(gens):
                flat[k].normal_(generator=g)

        rows.append(("weight noise, pop 10 (one update)", per_matrix, per_member))
        print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print("| what | way | wall ms | CPU ms |\n|---|---|---:|---:|")
        for name, old, new in rows:
            old_t, new_t = _median(old, args.repeats), _median(new, args.repeats)
            print(f"| {name} | as before | {old_t[0]:.2f} | {old_t[1]:.2f} |")
            print(f"| {name} | new way | {new_t[0]:.2f} | {new_t[1]:.2f} |")
    g = [torch.Generator().manual_seed(5) for _ in range(4)]
    parts = torch.cat([torch.randn(r * c, generator=g[0]) for r, c in shapes])
    same16 = torch.equal(parts, torch.randn(parts.numel(), generator=g[1]))
    odd = torch.cat([torch.randn(n, generator=g[2]) for n in (100, 37)])
    same_odd = torch.equal(odd, torch.randn(137, generator=g[3]))
    print(
        f"one draw per member equals the per-matrix draws: {same16} for sizes that are multiples "
        f"of 16 (the JSB LSTM's), {same_odd} for sizes 100 and 37"
    )
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
