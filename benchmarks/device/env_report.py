"""What the device machine has: Python, torch, CUDA, the GPU, TF32 settings, packages, data.

    python benchmarks/device/env_report.py

Part of benchmarks/device/run.sh; a failed import is printed, not raised.
"""

from __future__ import annotations

import importlib
import platform
import sys

import torch

PACKAGES = [
    "numpy",
    "scipy",
    "numba",
    "soundfile",
    "platformdirs",
    "matplotlib",
    "tqdm",
    "pytest",
    "hypothesis",
    "rnnbench",
]


def main() -> None:
    print("python", sys.version.split()[0], platform.platform())
    print(
        f"torch {torch.__version__}, cuda {torch.version.cuda}, available "
        f"{torch.cuda.is_available()}, cudnn {torch.backends.cudnn.version()}"
    )
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        print(
            f"gpu {p.name}, {p.total_memory / 2**30:.0f} GiB, sm_{p.major}{p.minor}, "
            f"{p.multi_processor_count} SMs, {torch.cuda.device_count()} device(s)"
        )
        x = torch.randn(4096, 4096, device="cuda")
        print("cuda matmul finite:", bool(torch.isfinite(x @ x).all()))
    print(
        f"tf32: matmul {torch.backends.cuda.matmul.allow_tf32}, cudnn "
        f"{torch.backends.cudnn.allow_tf32}; float32 matmul precision "
        f"{torch.get_float32_matmul_precision()}"
    )
    for name in PACKAGES:
        try:
            module = importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - report and go on
            print(f"{name}: NOT IMPORTABLE ({type(exc).__name__}: {exc})")
            continue
        print(f"{name} {getattr(module, '__version__', '?')} {module.__file__}")
    from rnnbench.data.locate import data_root
    from rnnbench.data.registry import load_dataset

    root = data_root()
    print("data root", root)
    wavs = sorted((root / "fsdd" / "recordings").glob("*.wav"))
    try:
        import soundfile

        samples, rate = soundfile.read(str(wavs[0]), dtype="float32")
        print(f"fsdd: {len(wavs)} wav files; {wavs[0].name}: {len(samples)} samples at {rate} Hz")
    except Exception as exc:  # noqa: BLE001
        print(f"fsdd: {len(wavs)} wav files; NOT READABLE ({type(exc).__name__}: {exc})")
    for name in ("jsb", "nottingham", "musedata", "pianomidi"):
        try:
            d = load_dataset(name)
        except Exception as exc:  # noqa: BLE001
            print(f"{name}: NOT LOADABLE ({type(exc).__name__}: {exc})")
            continue
        print(name, {s: len(d.split(s)) for s in ("train", "valid", "test")})


if __name__ == "__main__":
    main()
