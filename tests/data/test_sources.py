"""Builders: synthetic radar, importers of the paper's layouts, UEA readers, the registry."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from spdnas.data import DatasetValidationError, builders, make_dataset, read_dataset
from spdnas.data.sources.radar import CLASS_NAMES, radar_covariances, synthesize_signals, window_signals
from spdnas.data.sources.uea import read_ts
from tests.helpers import random_spd

HAVE_AEON = importlib.util.find_spec("aeon") is not None


def is_spd(x: torch.Tensor) -> bool:
    return torch.equal(x, x.mT) and bool((torch.linalg.cholesky_ex(x).info == 0).all())


def test_registry_lists_all_builders():
    expected = {"radar-synth", "radar-npy", "hdm05-npy", "afew", "japanese-vowels", "basic-motions",
                "matrices"}
    assert expected <= set(builders())


def test_unknown_builder_and_parameter_are_clear_errors():
    with pytest.raises(KeyError, match="radar-synth"):
        make_dataset("radar", None)
    with pytest.raises(TypeError, match=r"unknown parameter\(s\) \['snr'\]; accepted: \[.*'n_samples', "
                                        r"'raw_dir', 'scale', "):  # scale too: every builder takes it
        make_dataset("radar-synth", None, snr=3)
    needs_src = r"^dataset 'matrices' needs --param src=\.\.\. \(builder_params \['src'\]"
    with pytest.raises(TypeError, match=needs_src):  # was: import_matrices() missing 1 ... 'src'
        make_dataset("matrices", None, class_names=["a", "b"])


def test_window_signals_matches_the_paper_layout():
    signal = torch.arange(50.0)
    windows = window_signals(signal)
    assert windows.shape == (20, 4)
    assert torch.equal(windows[:, 2], torch.arange(20.0, 40.0))


def test_radar_covariance_is_real_part_of_hermitian_covariance():
    g = torch.Generator().manual_seed(0)
    signal = torch.randn(1, 230, dtype=torch.complex128, generator=g)
    windows = window_signals(signal)[0]
    centred = windows - windows.mean(-1, keepdim=True)
    hermitian = centred @ centred.conj().T / (centred.shape[-1] - 1)
    assert torch.allclose(radar_covariances(signal, shrinkage=0.0)[0], hermitian.real, atol=1e-12)


def test_radar_generator_is_seeded_and_balanced():
    signals, labels = synthesize_signals(60, seed=3, length=210)
    again, labels_again = synthesize_signals(60, seed=3, length=210)
    other, _ = synthesize_signals(60, seed=4, length=210)
    assert signals.shape == (60, 210) and np.iscomplexobj(signals)
    assert np.array_equal(signals, again) and np.array_equal(labels, labels_again)
    assert not np.allclose(signals, other)
    assert np.bincount(labels).tolist() == [20, 20, 20]
    _, skewed = synthesize_signals(60, seed=3, class_balance=[1, 1, 2])
    assert np.bincount(skewed).tolist() == [15, 15, 30]


def test_radar_snr_sets_signal_power():
    for snr in (-5.0, 10.0):
        signals, _ = synthesize_signals(300, snr_db=snr, snr_jitter_db=0.0, seed=0)
        power = np.mean(np.abs(signals) ** 2)
        assert power == pytest.approx(1 + 10 ** (snr / 10), rel=0.05)


def test_radar_synth_dataset(tmp_path):
    dataset = make_dataset("radar-synth", str(tmp_path / "ds"), n_samples=90, length=210, seed=1)
    assert dataset.matrices.shape == (90, 20, 20) and dataset.meta.class_names == CLASS_NAMES
    assert is_spd(dataset.matrices)
    counts = dataset.counts()
    assert counts["train"] == [15, 15, 15]
    assert all(v + t == 15 and abs(v - t) == 1 for v, t in zip(counts["val"], counts["test"], strict=True))
    assert dataset.meta.provenance["builder"] == "radar-synth"
    assert dataset.meta.provenance["params"]["seed"] == 1
    back = read_dataset(str(tmp_path / "ds"))
    order = np.argsort(back.sample_ids)
    assert torch.equal(back.matrices[order], dataset.matrices[np.argsort(dataset.sample_ids)])


def test_radar_raw_layout_round_trips_through_the_importer(tmp_path):
    raw = tmp_path / "raw"
    made = make_dataset("radar-synth", None, n_samples=30, length=240, seed=2, raw_dir=str(raw))
    files = sorted(raw.glob("*.npy"))
    assert len(files) == 30
    first = np.load(files[0])
    assert first.ndim == 1 and np.iscomplexobj(first) and len(first) == 240
    assert all(int(f.stem.rsplit("_", 1)[1]) == y for f, y in zip(files, made.labels.tolist(), strict=True))
    imported = make_dataset("radar-npy", None, src=str(raw))
    assert torch.equal(imported.matrices, made.matrices)
    assert (imported.sample_ids == made.sample_ids).all() and (imported.splits == made.splits).all()
    assert torch.equal(imported.labels, made.labels)
    with pytest.raises(FileExistsError):
        make_dataset("radar-synth", None, n_samples=30, raw_dir=str(raw))


def test_radar_importer_names_bad_file(tmp_path):
    np.save(tmp_path / "sample_0_1.npy", np.ones(50, dtype=complex))
    np.save(tmp_path / "sample_1_x.npy", np.ones(50, dtype=complex))
    with pytest.raises(ValueError, match=r"sample_1_x\.npy"):
        make_dataset("radar-npy", None, src=str(tmp_path))
    (tmp_path / "sample_1_x.npy").unlink()
    (tmp_path / "sample_2_².npy").write_bytes(b"")  # a digit to str.isdigit, not a label
    with pytest.raises(ValueError, match=r"sample_2_²\.npy: expected the label"):
        make_dataset("radar-npy", None, src=str(tmp_path))
    (tmp_path / "sample_2_².npy").unlink()
    (tmp_path / "sample_2_1.npy").write_bytes(b"")
    with pytest.raises(ValueError, match=r"sample_2_1\.npy: not a readable NumPy \.npy array"):
        make_dataset("radar-npy", None, src=str(tmp_path))
    np.save(tmp_path / "sample_2_1.npy", np.ones(25, dtype=complex))  # one window: no covariance
    with pytest.raises(ValueError, match=r"sample_2_1\.npy: expected a 1-D signal of length ≥ 30 \(two"):
        make_dataset("radar-npy", None, src=str(tmp_path))


def test_the_output_is_checked_before_the_build(tmp_path):
    """An existing dataset (no --overwrite) was reported after the build, its raw_dir already
    written, so that the same command with --overwrite was then refused for the raw_dir."""
    make_dataset("radar-synth", str(tmp_path / "ds"), n_samples=30, length=30)
    with pytest.raises(FileExistsError, match=r"a dataset exists at .*ds; pass overwrite=True"):
        make_dataset("radar-synth", str(tmp_path / "ds"), n_samples=30, length=30,
                     raw_dir=str(tmp_path / "raw"))
    assert not (tmp_path / "raw").exists()
    made = make_dataset("radar-synth", str(tmp_path / "ds"), overwrite=True, n_samples=30, length=30,
                        raw_dir=str(tmp_path / "raw"))
    assert len(made) == 30 and len(list((tmp_path / "raw").glob("*.npy"))) == 30
    (tmp_path / "notes.md").write_text("a file")  # a path through a file: refused before the build
    with pytest.raises(NotADirectoryError, match=r"notes\.md/sub: no folder can be made there, .*notes\.md "):
        make_dataset("radar-synth", str(tmp_path / "notes.md" / "sub"), n_samples=30, length=30,
                     raw_dir=str(tmp_path / "raw2"))
    assert not (tmp_path / "raw2").exists()


def test_radar_synth_needs_two_windows():
    """Lengths 20 to 29 give one window, and failed deep in the covariance, naming nothing."""
    with pytest.raises(ValueError, match=r"radar-synth: length must be ≥ 30 \(two windows of 20, hop 10"):
        make_dataset("radar-synth", None, n_samples=30, length=25)
    assert make_dataset("radar-synth", None, n_samples=30, length=30).matrices.shape == (30, 20, 20)


def spd_files(folder, count, n, labels, suffix="", seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    matrices = random_spd(count, n=n, generator=torch.Generator().manual_seed(seed)).numpy()
    for i, (m, y) in enumerate(zip(matrices, labels, strict=True)):
        np.save(folder / f"seq{suffix}_{i:03d}_{y}.npy", m)
    return matrices


def test_named_classes_without_samples_and_splits_without_a_class_are_warned_of(tmp_path):
    """A review's cases: class_names longer than the labels gave a network output never trained,
    and a stratified split left a class out of test, both without a word."""
    spd_files(tmp_path / "m", 13, 3, [0] * 6 + [1] * 6 + [2])
    with pytest.warns(UserWarning, match=r"no sample of class\(es\) tongue: the network would have an output "
                                         "that is never a target"):
        four = make_dataset("matrices", None, src=str(tmp_path / "m"),
                            class_names=["left", "right", "feet", "tongue"])
    assert four.num_classes == 4
    with pytest.warns(UserWarning, match=r"stratified split leaves '(val|test)' without class\(es\) class-2"):
        make_dataset("matrices", None, src=str(tmp_path / "m"))


def test_scale_auto_brings_the_typical_mean_eigenvalue_to_one_and_a_far_scale_is_warned_of(tmp_path, capsys):
    """A review's case: covariances in physical units (1e-10) left the SPDNet baseline at chance
    without a word; MDM and TS+LR did not care."""
    from spdnas.cli import main
    from spdnas.data.registry import typical_scale

    folder = tmp_path / "tiny-units"
    folder.mkdir()
    matrices = random_spd(12, n=3, generator=torch.Generator().manual_seed(0)).numpy() * 1e-10
    for i, m in enumerate(matrices):
        np.save(folder / f"x{i:02d}_{i % 2}.npy", m)
    far = r"mean eigenvalue \(median of tr\(X\)/n on train\) is \d\.?\d*e-10, outside \[0\.1, 1000\]"
    with pytest.warns(UserWarning, match=far + ".*--param scale=auto"):
        raw = make_dataset("matrices", None, src=str(folder))
    auto = make_dataset("matrices", str(tmp_path / "auto"), src=str(folder), scale="auto")
    factor = auto.meta.provenance["scale_factor"]
    assert typical_scale(auto) == pytest.approx(1.0) and factor == pytest.approx(1 / typical_scale(raw))
    torch.testing.assert_close(auto.matrices, raw.matrices * factor)
    back = read_dataset(str(tmp_path / "auto"))
    assert back.meta.provenance["params"]["scale"] == "auto" and typical_scale(back) == pytest.approx(1.0)
    assert main(["data", "info", str(tmp_path / "auto")]) == 0
    assert f"scale    every matrix multiplied by {factor:.6g} at import" in capsys.readouterr().out
    doubled = make_dataset("radar-synth", None, n_samples=30, scale=2.0)
    plain = make_dataset("radar-synth", None, n_samples=30)
    torch.testing.assert_close(doubled.matrices, 2.0 * plain.matrices)
    for bad in ("big", 0, -1.0, True):
        with pytest.raises(TypeError, match="scale must be 'auto' or a positive number"):
            make_dataset("radar-synth", str(tmp_path / "never"), n_samples=30, scale=bad)
    assert not (tmp_path / "never").exists()


def test_no_builder_declares_the_common_scale_parameter():
    import inspect

    from spdnas.data.registry import SCALE_PARAM

    assert all(SCALE_PARAM not in inspect.signature(b.build).parameters for b in builders().values())


def test_hdm05_importer(tmp_path):
    labels = [0, 116, 5, 5, 116, 0, 3, 3]
    matrices = spd_files(tmp_path / "hdm", 8, 93, labels)
    dataset = make_dataset("hdm05-npy", str(tmp_path / "out"), src=str(tmp_path / "hdm"))
    assert dataset.matrices.shape == (8, 93, 93) and dataset.num_classes == 117
    assert dataset.labels.tolist() == labels
    assert torch.equal(dataset.matrices, torch.from_numpy(matrices))
    assert list(dataset.sample_ids[:2]) == ["seq_000_0", "seq_001_116"]
    assert len(read_dataset(str(tmp_path / "out"))) == 8


def test_hdm05_importer_names_sample_files_of_other_types(tmp_path):
    """Every importer reading a flat folder refuses what it would leave out (HDM05 dropped them)."""
    spd_files(tmp_path / "hdm", 4, 93, [0, 1, 0, 1])
    np.savetxt(tmp_path / "hdm" / "seq_004_1.csv", np.eye(93))
    with pytest.raises(ValueError, match=r"1 file\(s\) named like samples \(\.\.\._<label>\) are not \.npy "
                                         r"files \(seq_004_1\.csv\), and would be left out"):
        make_dataset("hdm05-npy", None, src=str(tmp_path / "hdm"))


def test_hdm05_importer_refuses_matrices_of_another_size(tmp_path):
    spd_files(tmp_path / "small", 4, 5, [0, 1, 0, 1])  # was imported: n = 5 with 117 classes, 115 empty
    with pytest.raises(ValueError, match=r"HDM05 covariances are 93×93 .*, these are 5×5; import other "
                                         r"matrices with the `matrices` importer"):
        make_dataset("hdm05-npy", None, src=str(tmp_path / "small"))


def test_own_matrices_split_by_subject_from_the_file_names(tmp_path):
    folder = tmp_path / "eeg"
    folder.mkdir()
    matrices = random_spd(24, n=4, generator=torch.Generator().manual_seed(0)).numpy()
    for i, m in enumerate(matrices):
        np.save(folder / f"s{i % 6:02d}_trial{i:02d}_{i % 2}.npy", m)
    dataset = make_dataset("matrices", str(tmp_path / "out"), src=str(folder), group_pattern=r"^(s\d+)_")
    assert sorted(set(dataset.groups)) == [f"s{k:02d}" for k in range(6)]
    for subject in set(dataset.groups):
        assert len(set(dataset.splits[dataset.groups == subject])) == 1
    assert read_dataset(str(tmp_path / "out")).meta.provenance["params"]["group_pattern"] == r"^(s\d+)_"
    mixed = make_dataset("matrices", None, src=str(folder), group_pattern=r"s\d+", split_by_group=False)
    assert set(mixed.groups) == set(dataset.groups)
    assert any(len(set(mixed.splits[mixed.groups == s])) > 1 for s in set(mixed.groups))
    with pytest.warns(UserWarning, match=r"leaves 'test' without class\(es\) class-[01]"):  # group = label
        make_dataset("matrices", None, src=str(folder), group_pattern=r"_(\d)$", fractions=[0.5, 0.0, 0.5])
    with pytest.raises(ValueError, match=r"finds no group in 24 of 24 file names, e.g. s00_trial00_0.npy"):
        make_dataset("matrices", None, src=str(folder), group_pattern=r"^subject(\d+)")
    with pytest.raises(ValueError, match="not a regular expression"):
        make_dataset("matrices", None, src=str(folder), group_pattern="(s")


def test_own_matrices_with_own_class_names(tmp_path):
    from scipy.io import savemat

    folder = tmp_path / "own"
    matrices = spd_files(folder, 11, 5, [0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1])
    savemat(folder / "extra_2.mat", {"Y1": matrices[0]})
    dataset = make_dataset("matrices", None, src=str(folder), class_names=["walk", "run", "jump"],
                           dataset_name="gait")
    assert dataset.meta.name == "gait" and dataset.n == 5
    assert dataset.meta.class_names == ("walk", "run", "jump")
    assert len(dataset) == 12 and dataset.labels.tolist()[0] == 2  # extra_2.mat sorts first
    assert torch.equal(dataset.matrices[1], torch.from_numpy(matrices[0]))
    inferred = make_dataset("matrices", None, src=str(folder))
    assert inferred.meta.class_names == ("class-0", "class-1", "class-2")
    with pytest.raises(ValueError, match=r"extra_2\.mat: expected the label \(0–1\)"):
        make_dataset("matrices", None, src=str(folder), class_names=["walk", "run"])
    with pytest.raises(ValueError, match="class_names must be a non-empty list of distinct names"):
        make_dataset("matrices", None, src=str(folder), class_names=["a", "a", "b"])


def test_upper_case_extensions_are_read(tmp_path):
    """Files saved as ``.NPY``/``.MAT`` (common from Windows tools) were silently skipped."""
    from scipy.io import savemat

    folder = tmp_path / "upper"
    matrices = spd_files(folder, 4, 5, [0, 1, 0, 1])
    for path in sorted(folder.iterdir()):
        path.rename(path.with_suffix(".NPY"))
    savemat(folder / "extra_1.MAT", {"Y1": matrices[0]})
    dataset = make_dataset("matrices", None, src=str(folder))
    assert len(dataset) == 5 and torch.equal(dataset.matrices[0], torch.from_numpy(matrices[0]))
    hdm05 = tmp_path / "hdm05"
    spd_files(hdm05, 4, 93, [0, 1, 0, 1])
    for path in sorted(hdm05.iterdir()):
        path.rename(path.with_suffix(".NPY"))
    assert len(make_dataset("hdm05-npy", None, src=str(hdm05), fractions=[0.5, 0, 0.5])) == 4


def test_float32_files_are_checked_in_their_own_precision(tmp_path):
    """A float32 W C Wᵀ is symmetric only to float32 precision (asymmetry ~1e-7 > √eps64)."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "f32"
    folder.mkdir()
    for i in range(4):
        w = rng.standard_normal((8, 8)).astype(np.float32)
        matrix = w @ np.diag(rng.uniform(1, 2, 8).astype(np.float32)) @ w.T
        np.save(folder / f"s{i}_{i % 2}.npy", matrix)
    assert max(np.abs(m - m.T).max() / np.abs(m).max()
               for m in (np.load(p) for p in folder.iterdir())) > np.finfo(np.float64).eps ** 0.5
    dataset = make_dataset("matrices", None, src=str(folder), fractions=[0.5, 0.0, 0.5])
    assert dataset.matrices.dtype == torch.float64 and torch.equal(dataset.matrices, dataset.matrices.mT)
    np.save(folder / "s0_0.npy", np.load(folder / "s0_0.npy").astype(np.float64))  # not float32 any more
    with pytest.raises(DatasetValidationError, match=r"s0_0\.npy: failed check 'symmetric'"):  # not "(row 0)"
        make_dataset("matrices", None, src=str(folder))


def test_a_matrix_that_is_not_positive_definite_is_named_by_its_file(tmp_path):
    """A review: the writer's check named `<in-memory dataset 'matrices'>: sample_id … (row 7)`,
    after the split's warnings."""
    folder = tmp_path / "m"
    spd_files(folder, 6, 3, [0, 1, 0, 1, 0, 1])
    v = np.ones((3, 1))
    np.save(folder / "seq_004_0.npy", v @ v.T)  # rank 1
    with pytest.raises(DatasetValidationError, match=r"m/seq_004_0\.npy: failed check 'positive-definite': "
                                                     r"smallest eigenvalue .*shrinkage"):
        make_dataset("matrices", None, src=str(folder))
    assert make_dataset("matrices", None, src=str(folder), shrinkage=0.1).num_classes == 2


def test_own_matrices_name_sample_files_of_other_types(tmp_path):
    folder = tmp_path / "mixed"
    spd_files(folder, 4, 3, [0, 1, 0, 1])
    np.savetxt(folder / "extra_5_1.csv", np.eye(3))
    (folder / "README.txt").write_text("not a sample")
    with pytest.raises(ValueError, match=r"1 file\(s\) named like samples \(\.\.\._<label>\) are not \.npy "
                                         r"or \.mat files \(extra_5_1\.csv\), and would be left out"):
        make_dataset("matrices", None, src=str(folder))
    (folder / "extra_5_1.csv").unlink()
    assert len(make_dataset("matrices", None, src=str(folder))) == 4  # README.txt is no sample


def test_unreadable_or_odd_files_are_named(tmp_path):
    from scipy.io import savemat

    spd_files(tmp_path / "hdm", 3, 6, [1, 2, 3])
    odd = tmp_path / "hdm" / "seq_009_1.npy"
    for content, message in ((b"", "not a readable NumPy .npy array"),
                             (b"\x00\x05\x16\x07 resource fork", "not a readable NumPy .npy array")):
        odd.write_bytes(content)
        with pytest.raises(ValueError, match=rf"seq_009_1\.npy: {message}"):
            make_dataset("hdm05-npy", None, src=str(tmp_path / "hdm"))
    np.save(odd, np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(ValueError, match=r"seq_009_1\.npy: expected a numeric matrix, got dtype <U1"):
        make_dataset("hdm05-npy", None, src=str(tmp_path / "hdm"))
    np.save(odd, np.eye(7))  # the odd size, not the first file in sort order, is named
    with pytest.raises(ValueError, match=r"1 of 4 matrices differ in size from the others \(6, 6\): "
                                         r".*seq_009_1\.npy \(7, 7\)"):
        make_dataset("hdm05-npy", None, src=str(tmp_path / "hdm"))
    odd.unlink()
    with pytest.raises(ValueError, match=r"shrinkage must be in \[0, 1\], got 2"):
        make_dataset("hdm05-npy", None, src=str(tmp_path / "hdm"), shrinkage=2)
    (tmp_path / "afew" / "train" / "1").mkdir(parents=True)
    (tmp_path / "afew" / "val" / "1").mkdir(parents=True)
    (tmp_path / "afew" / "train" / "1" / "cut.mat").write_bytes(b"MATLAB 5.0 MAT-file, truncated")
    savemat(tmp_path / "afew" / "val" / "1" / "ok.mat", {"Y1": np.eye(6)})
    with pytest.raises(ValueError, match=r"cut\.mat: cannot read \.mat file"):
        make_dataset("afew", None, src=str(tmp_path / "afew"))
    savemat(tmp_path / "afew" / "train" / "1" / "cut.mat", {"Y1": "hello"})
    with pytest.raises(ValueError, match=r"cut\.mat: expected a numeric matrix"):
        make_dataset("afew", None, src=str(tmp_path / "afew"))


def test_hdm05_importer_takes_real_part_and_names_bad_files(tmp_path):
    matrices = spd_files(tmp_path / "hdm", 3, 93, [1, 2, 3])
    np.save(tmp_path / "hdm" / "seq_000_1.npy", matrices[0].astype(np.complex128))
    dataset = make_dataset("hdm05-npy", None, src=str(tmp_path / "hdm"))
    assert dataset.matrices.dtype == torch.float64
    assert torch.equal(dataset.matrices[0], torch.from_numpy(matrices[0]))
    np.save(tmp_path / "hdm" / "seq_009_4.npy", np.eye(92))
    with pytest.raises(ValueError, match=r"seq_009_4\.npy"):
        make_dataset("hdm05-npy", None, src=str(tmp_path / "hdm"))
    (tmp_path / "hdm" / "seq_009_4.npy").unlink()
    asymmetric = matrices[1].copy()
    asymmetric[0, 5] += 1.0
    np.save(tmp_path / "hdm" / "seq_001_2.npy", asymmetric)
    with pytest.raises(DatasetValidationError, match="seq_001_2") as info:
        make_dataset("hdm05-npy", None, src=str(tmp_path / "hdm"))
    assert info.value.check == "symmetric"


def test_afew_npy_layout(tmp_path):
    spd_files(tmp_path / "afew" / "train", 4, 400, [0, 6, 2, 2])
    spd_files(tmp_path / "afew" / "val", 2, 400, [3, 6], seed=1)
    with pytest.raises(ValueError, match=r"val_fraction=0.1 moves no sample to val: .* at most 2 training "
                                         r"samples per class; give a larger val_fraction \(≥ 0.25"):
        make_dataset("afew", None, src=str(tmp_path / "afew"))  # default 0.1 of 1–2 per class: none
    dataset = make_dataset("afew", None, src=str(tmp_path / "afew"), val_fraction=0)
    assert dataset.matrices.shape == (6, 400, 400)
    assert dataset.splits.tolist() == ["train"] * 4 + ["test"] * 2
    assert dataset.labels.tolist() == [0, 6, 2, 2, 3, 6]
    assert dataset.meta.class_names[6] == "Surprise"
    kept = make_dataset("afew", None, src=str(tmp_path / "afew"), val_as="val")
    assert set(kept.splits) == {"train", "val"}
    carved = make_dataset("afew", None, src=str(tmp_path / "afew"), val_fraction=0.5)
    assert carved.splits.tolist()[4:] == ["test"] * 2  # the official val set stays the test set
    assert sorted(carved.splits.tolist()[2:4]) == ["train", "val"]  # one of the two class-2 samples
    assert carved.meta.provenance["val_fraction"] == 0.5


def test_afew_mat_layout(tmp_path):
    from scipy.io import savemat

    g = torch.Generator().manual_seed(0)
    expected = {}
    for split, folders in (("train", (1, 4, 7)), ("val", (2, 7))):
        for folder in folders:
            (tmp_path / split / str(folder)).mkdir(parents=True)
            matrix = random_spd(n=100, generator=g).numpy()
            savemat(tmp_path / split / str(folder) / "clip01.mat", {"Y1": matrix})
            expected[f"{split}/{folder}/clip01"] = (matrix, folder - 1)
    dataset = make_dataset("afew", None, src=str(tmp_path), val_fraction=0)
    assert dataset.n == 100 and len(dataset) == 5
    for i, sample_id in enumerate(dataset.sample_ids):
        matrix, label = expected[sample_id]
        assert int(dataset.labels[i]) == label
        assert torch.equal(dataset.matrices[i], torch.from_numpy(matrix))
    savemat(tmp_path / "val" / "2" / "clip02.mat", {"X": np.eye(100)})
    with pytest.raises(ValueError, match=r"clip02\.mat.*Y1"):
        make_dataset("afew", None, src=str(tmp_path), val_fraction=0)
    (tmp_path / "val" / "2" / "clip02.mat").unlink()
    for stray in (tmp_path / "train" / "8", tmp_path / "train" / "01"):  # not a class folder 1–7
        stray.mkdir()
        savemat(stray / "clip09.mat", {"Y1": np.eye(100)})
    with pytest.raises(ValueError, match=r"train: the \.mat layout keeps every matrix in a class folder 1–7; "
                                         r"found folders \['01', '8'\]"):
        make_dataset("afew", None, src=str(tmp_path), val_fraction=0)
    for stray in (tmp_path / "train" / "8", tmp_path / "train" / "01"):
        (stray / "clip09.mat").unlink()
        stray.rmdir()
    np.save(tmp_path / "val" / "loose_1.npy", np.eye(100))  # ignored silently before
    with pytest.raises(ValueError, match=r"found files \['loose_1\.npy'\]"):
        make_dataset("afew", None, src=str(tmp_path), val_fraction=0)


def test_afew_missing_folder(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(FileNotFoundError, match="val"):
        make_dataset("afew", None, src=str(tmp_path))


TS_TEXT = """# a comment
@problemName Tiny
@univariate false
@classLabel true up down
@data
1,2,3,4:2,1,2,5:0,0,1,1:up
4,3,2,1,0:5,3,2,1,1:1,0,1,0,1:down
"""


def test_read_ts_parses_variable_length_multichannel(tmp_path):
    path = tmp_path / "Tiny_TRAIN.ts"
    path.write_text(TS_TEXT)
    parsed = read_ts(path)
    assert parsed.class_names == ("up", "down") and parsed.labels == [0, 1]
    assert parsed.series[0].shape == (3, 4) and parsed.series[1].shape == (3, 5)
    assert parsed.series[1][1].tolist() == [5, 3, 2, 1, 1]


def test_read_ts_names_line_of_missing_values(tmp_path):
    path = tmp_path / "Bad_TRAIN.ts"
    path.write_text(TS_TEXT.replace("5,3,2,1,1", "5,?,2,1,1"))
    with pytest.raises(ValueError, match=r"Bad_TRAIN.ts:7"):
        read_ts(path)


def test_read_ts_names_a_header_without_its_value(tmp_path):
    path = tmp_path / "Bare_TRAIN.ts"
    path.write_text(TS_TEXT.replace("@classLabel true up down", "@classLabel"))
    with pytest.raises(ValueError, match=r"Bare_TRAIN.ts:4: @classLabel needs the value true or false"):
        read_ts(path)


def test_uea_files_of_other_channel_counts_are_named(tmp_path):
    from spdnas.data.sources.uea import build_uea

    (tmp_path / "JapaneseVowels_TRAIN.ts").write_text(TS_TEXT)
    (tmp_path / "JapaneseVowels_TEST.ts").write_text(TS_TEXT.replace(":0,0,1,1:up", ":0,0,1,1:1,1,1,1:up")
                                                     .replace(":1,0,1,0,1:down", ":1,0,1,0,1:2,2,2,2,2:down"))
    with pytest.raises(ValueError, match=r"JapaneseVowels_TRAIN.ts have 3 channels, those of "
                                         r"JapaneseVowels_TEST.ts 4"):
        build_uea("japanese-vowels", root=str(tmp_path), val_fraction=0)


@pytest.mark.skipif(not HAVE_AEON, reason="aeon (which bundles the UEA files) is not installed")
def test_japanese_vowels_from_bundled_files(tmp_path):
    dataset = make_dataset("japanese-vowels", str(tmp_path / "jv"))
    assert dataset.n == 12 and dataset.num_classes == 9
    assert {s: sum(c) for s, c in dataset.counts().items()} == {"train": 243, "val": 27, "test": 370}
    assert dataset.counts()["val"] == [3] * 9  # 10% of each speaker's 30 official training series
    official = make_dataset("japanese-vowels", None, val_fraction=0)
    assert official.counts()["train"] == [30] * 9 and "val" not in official.counts()
    assert is_spd(dataset.matrices)
    back = read_dataset(str(tmp_path / "jv"))  # stored grouped by split
    order = [int(np.flatnonzero(dataset.sample_ids == sid)[0]) for sid in back.sample_ids]
    assert torch.equal(back.matrices, dataset.matrices[order])
    assert back.splits.tolist() == dataset.splits[order].tolist()


@pytest.mark.skipif(not HAVE_AEON, reason="aeon (which bundles the UEA files) is not installed")
def test_basic_motions_with_validation_split():
    dataset = make_dataset("basic-motions", None, val_fraction=0.25, split_seed=1)
    assert dataset.n == 6 and dataset.meta.class_names == ("Standing", "Running", "Walking", "Badminton")
    assert dataset.counts() == {"train": [8] * 4, "val": [2] * 4, "test": [10] * 4}


def test_own_matrices_refuse_names_whose_last_token_is_no_label(tmp_path):
    spd_files(tmp_path / "dated", 3, 4, [20240101, 20240102, 20240103])
    with pytest.raises(ValueError, match="label 20240103 with 3 files — is the last '_' token"):
        make_dataset("matrices", None, src=str(tmp_path / "dated"))



def test_own_matrices_named_without_a_label_are_refused(tmp_path):
    """Files named by sample number (007.npy) gave labels 0–7 of 8 made-up classes."""
    folder = tmp_path / "numbered"
    folder.mkdir()
    for i, m in enumerate(random_spd(8, n=4, generator=torch.Generator().manual_seed(0)).numpy()):
        np.save(folder / f"{i:03d}.npy", m)
    with pytest.raises(ValueError, match=r"000\.npy: expected the label .* but the name has no '_'"):
        make_dataset("matrices", None, src=str(folder), class_names=[f"c{i}" for i in range(8)])


def test_read_ts_names_a_series_of_other_channels(tmp_path):
    path = tmp_path / "Odd_TRAIN.ts"
    path.write_text(TS_TEXT.replace(":1,0,1,0,1:down", ":down"))
    with pytest.raises(ValueError, match=r"Odd_TRAIN.ts:7: 2 channels, the first series has 3"):
        read_ts(path)
    path.write_text(TS_TEXT.replace(":1,0,1,0,1:down", ":1,0,1,0,1:2,2,2,2,2:down"))
    with pytest.raises(ValueError, match=r"Odd_TRAIN.ts:7: 4 channels, the first series has 3"):
        read_ts(path)


def test_own_matrices_refuse_one_class_and_label_gaps(tmp_path):
    """One class gave a dataset every network classifies at 100%; labels 0 and 2 only gave an empty
    class-1 (one more network output), both silently."""
    spd_files(tmp_path / "one", 4, 4, [0, 0, 0, 0])
    with pytest.raises(ValueError, match="matrices: a classification dataset needs samples of at least 2 "
                                         "classes, found only class 'class-0'"):
        make_dataset("matrices", None, src=str(tmp_path / "one"))
    spd_files(tmp_path / "gap", 4, 4, [0, 2, 0, 2])
    with pytest.raises(ValueError, match="no file has label 1; labels must run from 0 without gaps"):
        make_dataset("matrices", None, src=str(tmp_path / "gap"))
    named = make_dataset("matrices", None, src=str(tmp_path / "gap"), class_names=["a", "b", "c"])
    assert named.meta.class_names == ("a", "b", "c") and named.labels.tolist() == [0, 2, 0, 2]
    spd_files(tmp_path / "words", 4, 4, ["left", "right", "left", "right"])  # a review: "(0–2147483647)"
    with pytest.raises(ValueError, match=r"expected the label a class number as the last '_' token of the "
                                         r"file name, got 'left': labels are class numbers 0, 1, …, which"):
        make_dataset("matrices", None, src=str(tmp_path / "words"))


def test_own_matrices_in_subfolders_are_not_skipped_silently(tmp_path, monkeypatch):
    """A class-per-folder layout gave 'no .npy files', and loose files beside subfolders were
    imported without those in the subfolders; a folder without such files is fine, and ~ is
    the home folder."""
    spd_files(tmp_path / "own", 4, 4, [0, 1, 0, 1])
    (tmp_path / "own" / "notes").mkdir()
    spd_files(tmp_path / "own" / "__MACOSX", 2, 4, [0, 1])
    (tmp_path / "own" / "._seq_000_0.npy").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    assert len(make_dataset("matrices", None, src=str(tmp_path / "own"))) == 4
    monkeypatch.setenv("HOME", str(tmp_path))
    assert len(make_dataset("matrices", None, src="~/own")) == 4
    spd_files(tmp_path / "own" / "walk", 2, 4, [0, 1])
    with pytest.raises(ValueError, match=r"own: subfolders \(walk\) hold .npy or .mat files too"):
        make_dataset("matrices", None, src=str(tmp_path / "own"))


def test_numbers_given_to_text_parameters_become_text(tmp_path):
    spd_files(tmp_path / "own", 4, 4, [0, 1, 0, 1])
    # `--param dataset_name=2024` parses as the number 2024
    dataset = make_dataset("matrices", None, src=str(tmp_path / "own"), dataset_name=2024)
    assert dataset.meta.name == "2024" and dataset.meta.provenance["params"]["dataset_name"] == "2024"
