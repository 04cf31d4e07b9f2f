"""Music benchmarks: statistics from SOURCE.md, sequence layout, .mat and pickle errors."""

from __future__ import annotations

import os
import pickle
import shutil

import numpy as np
import pytest
import scipy.io

from rnnbench.data import data_root, list_datasets, load_dataset
from rnnbench.data.music import load_mat_rolls
from rnnbench.data.pickle_format import load_pickle_rolls
from rnnbench.errors import RnnbenchError

# data/music/SOURCE.md: sequences train/valid/test, steps per split, longest, keys/step
SOURCE_STATS = {
    "jsb": ((229, 76, 77), (13807, 4602, 4725), 160, 3.90),
    "nottingham": ((694, 173, 170), (176561, 45513, 44463), 1793, 3.97),
    "musedata": ((524, 135, 124), (245202, 82755, 64339), 4273, 3.03),
    "pianomidi": ((87, 12, 25), (75911, 8540, 19036), 3857, 3.08),
}


@pytest.mark.parametrize("name", sorted(SOURCE_STATS))
def test_statistics_match_source_md(name):
    seqs, steps, longest, keys = SOURCE_STATS[name]
    info = load_dataset(name).info()
    got_seqs = tuple(info["splits"][s]["sequences"] for s in ("train", "valid", "test"))
    got_steps = tuple(info["splits"][s]["steps"] for s in ("train", "valid", "test"))
    assert got_seqs == seqs
    assert got_steps == steps
    assert info["longest"] == longest
    assert round(info["keys_per_step"], 2) == keys
    assert info["kind"] == "music" and info["dim"] == 88
    assert 0.0 <= info["padding"] < 0.3


def test_sequences_are_shifted_frames():
    ds = load_dataset("jsb")
    assert (ds.kind, ds.task, ds.head, ds.in_dim, ds.out_dim) == (
        "music",
        "music",
        "bernoulli",
        88,
        88,
    )
    rolls = load_mat_rolls(data_root() / "music" / "JSB_Chorales.mat")
    for seq, roll in zip(ds.split("train")[:5], rolls["train"][:5], strict=True):
        assert seq.inputs.dtype == np.float32 and seq.targets.dtype == np.float32
        assert len(seq) == roll.shape[0] - 1
        np.testing.assert_array_equal(seq.inputs, roll[:-1])
        np.testing.assert_array_equal(seq.targets, roll[1:])
    assert load_dataset("jsb") is ds  # cached per process


def test_unknown_name_lists_known():
    with pytest.raises(RnnbenchError) as err:
        load_dataset("jsb-chorales")
    for name in list_datasets():
        assert name in str(err.value)
    assert "midi:PATH" in str(err.value)


def test_unknown_split_and_option():
    with pytest.raises(RnnbenchError, match="Unknown split"):
        load_dataset("jsb").split("training")
    with pytest.raises(RnnbenchError, match="not understood"):
        load_dataset("jsb?fps=3")


def test_missing_data_says_where_and_how(tmp_path):
    with pytest.raises(RnnbenchError) as err:
        load_dataset("nottingham", data_dir=tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "music" / "Nottingham.mat") in msg
    assert "rnnbench data fetch nottingham" in msg and "--data-dir" in msg


def test_data_root_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNBENCH_DATA", str(tmp_path / "env"))
    assert data_root(tmp_path / "arg") == tmp_path / "arg"
    assert data_root() == tmp_path / "env"
    monkeypatch.delenv("RNNBENCH_DATA")
    assert "rnnbench" in str(data_root())


def _mat(path, train, valid=None, test=None):
    def cells(rolls):
        arr = np.empty((1, len(rolls)), dtype=object)
        for i, r in enumerate(rolls):
            arr[0, i] = r
        return arr

    valid = valid if valid is not None else train
    test = test if test is not None else train
    scipy.io.savemat(
        str(path), {"traindata": cells(train), "validdata": cells(valid), "testdata": cells(test)}
    )
    return path


def test_user_mat_file_and_non_binary(tmp_path):
    good = np.zeros((5, 88))
    good[:, 40] = 1
    ds = load_dataset(f"music:{_mat(tmp_path / 'ok.mat', [good, good])}")
    assert len(ds.split("train")) == 2 and len(ds.split("train")[0]) == 4
    bad = good.copy()
    bad[2, 3] = 0.5
    with pytest.raises(RnnbenchError, match="not a binary piano roll"):
        load_mat_rolls(_mat(tmp_path / "bad.mat", [good, bad]))
    with pytest.raises(RnnbenchError, match="shape"):
        load_mat_rolls(_mat(tmp_path / "narrow.mat", [np.zeros((5, 87))]))
    scipy.io.savemat(str(tmp_path / "novars.mat"), {"x": np.zeros(3)})
    with pytest.raises(RnnbenchError, match="traindata"):
        load_mat_rolls(tmp_path / "novars.mat")


@pytest.mark.parametrize("cut", [0.0, 0.001, 0.5, 0.9])
def test_truncated_mat(tmp_path, cut):
    data = (data_root() / "music" / "JSB_Chorales.mat").read_bytes()
    path = tmp_path / "JSB_Chorales.mat"
    path.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(RnnbenchError, match="truncated"):
        load_mat_rolls(path)


def test_garbage_mat_in_data_folder(tmp_path):
    (tmp_path / "music").mkdir()
    (tmp_path / "music" / "JSB_Chorales.mat").write_bytes(b"not a matlab file at all" * 20)
    with pytest.raises(RnnbenchError, match="truncated or not a MATLAB"):
        load_dataset("jsb", data_dir=tmp_path)


def _bl_pickle():
    seq = [[60, 64, 67], [60], [], [62, 65.0]]
    return {"train": [seq, seq[:2]], "valid": [seq], "test": [seq]}


def test_pickle_format_round_trip(tmp_path):
    path = tmp_path / "JSB Chorales.pickle"
    path.write_bytes(pickle.dumps(_bl_pickle(), protocol=2))
    rolls = load_pickle_rolls(path)
    assert rolls["train"][0].shape == (4, 88)
    assert rolls["train"][0][0].nonzero()[0].tolist() == [60 - 21, 64 - 21, 67 - 21]
    assert rolls["train"][0][2].sum() == 0
    # found in the data folder under the original file name when no .mat is there
    (tmp_path / "music").mkdir()
    shutil.copy(path, tmp_path / "music" / path.name)
    ds = load_dataset("jsb", data_dir=tmp_path)
    assert len(ds.split("train")) == 2


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_malicious_pickle_refused_and_creates_nothing(tmp_path):
    target = tmp_path / "pwned.txt"
    payload = {"train": [[[60]]], "valid": [], "test": [], "x": _Evil(str(target))}
    path = tmp_path / "evil.pickle"
    path.write_bytes(pickle.dumps(payload))
    before = set(os.listdir(tmp_path))
    with pytest.raises(RnnbenchError, match="not a plain piano-roll pickle"):
        load_pickle_rolls(path)
    assert not target.exists()
    assert set(os.listdir(tmp_path)) == before


def test_truncated_and_bad_pickles(tmp_path):
    data = pickle.dumps(_bl_pickle())
    (tmp_path / "cut.pickle").write_bytes(data[: len(data) // 2])
    with pytest.raises(RnnbenchError, match="truncated or corrupt"):
        load_pickle_rolls(tmp_path / "cut.pickle")
    (tmp_path / "list.pickle").write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(RnnbenchError, match="'train'"):
        load_pickle_rolls(tmp_path / "list.pickle")
    bad = _bl_pickle()
    bad["test"] = [[[12]]]
    (tmp_path / "low.pickle").write_bytes(pickle.dumps(bad))
    with pytest.raises(RnnbenchError, match="outside the piano"):
        load_pickle_rolls(tmp_path / "low.pickle")


def test_checkout_data_after_cache_folder(tmp_path, monkeypatch):
    """No --data-dir and no RNNBENCH_DATA: the user cache folder, else the checkout's data/."""
    import platformdirs

    from rnnbench.data import locate
    from rnnbench.data.registry import find_set

    cache = tmp_path / "cache"
    monkeypatch.delenv("RNNBENCH_DATA")
    monkeypatch.setattr(platformdirs, "user_cache_dir", lambda name: str(cache))
    shipped = locate.checkout_data()
    assert shipped is not None and (shipped / "music" / "JSB_Chorales.mat").is_file()
    assert find_set("jsb") == (shipped, locate.CHECKOUT)
    assert find_set("fsdd-a") == (shipped, locate.CHECKOUT)
    (cache / "music").mkdir(parents=True)
    shutil.copy(shipped / "music" / "JSB_Chorales.mat", cache / "music")
    assert find_set("jsb") == (cache, "the user cache folder")
    assert find_set("nottingham")[0] == shipped
    # A folder named explicitly is the only one looked in.
    with pytest.raises(RnnbenchError, match="rnnbench data fetch nottingham"):
        load_dataset("nottingham", data_dir=tmp_path / "empty")


def test_data_list_says_where_each_set_was_found(tmp_path, monkeypatch, capsys):
    import platformdirs

    from rnnbench.cli import main
    from rnnbench.data import locate

    cache = tmp_path / "cache"
    (cache / "music").mkdir(parents=True)
    shipped = locate.checkout_data()
    shutil.copy(shipped / "music" / "JSB_Chorales.mat", cache / "music")
    monkeypatch.delenv("RNNBENCH_DATA")
    monkeypatch.setattr(platformdirs, "user_cache_dir", lambda name: str(cache))
    assert main(["data", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    at = {line.split()[0]: i for i, line in enumerate(lines) if line.strip()}
    assert f"found in {cache} (the user cache folder)" in lines[at["jsb"] + 1]
    assert f"found in {shipped} ({locate.CHECKOUT})" in lines[at["fsdd-b"] + 1]
    assert main(["data", "list", "--data-dir", str(tmp_path / "none")]) == 0
    out = capsys.readouterr().out
    assert "present" not in out and "rnnbench data fetch NAME" in out
