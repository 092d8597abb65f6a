"""Classical SPD baselines on the default synthetic radar: learnable, but far from saturated.

MDM (minimum distance to the Riemannian class means) and tangent space + logistic regression
(pyRiemann), trained on the train split and scored on the test split.
"""

from __future__ import annotations

import pytest

from spdnas.data import SPDDataset, make_dataset

pytest.importorskip("pyriemann")


def baselines(dataset: SPDDataset) -> tuple[float, float]:
    from pyriemann.classification import MDM
    from pyriemann.tangentspace import TangentSpace
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    train, test = dataset.subset("train"), dataset.subset("test")
    x, y = train.matrices.numpy(), train.labels.numpy()
    x_test, y_test = test.matrices.numpy(), test.labels.numpy()
    mdm = MDM().fit(x, y).score(x_test, y_test)
    tangent = make_pipeline(TangentSpace(), LogisticRegression(max_iter=2000)).fit(x, y).score(x_test, y_test)
    return mdm, tangent


def test_default_radar_full_size_baselines():
    """The full default dataset (3000 samples, 750 test): measured MDM 69.9%, TS+LR 86.9%."""
    mdm, tangent = baselines(make_dataset("radar-synth", None))
    assert 0.6 < mdm < 0.8
    assert 0.8 < tangent < 0.92


def test_radar_difficulty_follows_snr():
    """Higher SNR is easier; even at 20 dB the classes do not saturate the tangent-space baseline."""
    easy = baselines(make_dataset("radar-synth", None, n_samples=1500, snr_db=20.0))[1]
    hard = baselines(make_dataset("radar-synth", None, n_samples=1500, snr_db=-5.0))[1]
    assert hard + 0.15 < easy < 0.97
