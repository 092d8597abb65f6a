"""Classical SPD classifiers (pyRiemann): MDM and tangent space + logistic regression.

Both are fitted on the ``train`` split only (the same training data every method gets; nothing
is tuned), scored on ``val`` (reported as the validation accuracy) and on ``test``. They have
no search; the training time is the fit time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from spdnas.benchmark.methods import MethodResult, register
from spdnas.config import ExperimentConfig
from spdnas.engine.batches import TensorData
from spdnas.engine.splits import ExperimentData
from spdnas.report.outputs import write_history


def _arrays(split: TensorData) -> tuple[np.ndarray, np.ndarray]:
    return split.x.double().cpu().numpy(), split.y.cpu().numpy()


def fit_classical(method: str, estimator: Any, parameters: Callable[[Any], int | None], data: ExperimentData,
                  seed: int, out: Path | None) -> MethodResult:
    """Fit a scikit-learn-style ``estimator`` on train, score val and test.

    With ``out``, writes ``out / "train"``: ``metrics.jsonl``/``metrics.csv`` (one record) and
    ``result.json``.
    """
    start = time.perf_counter()
    estimator.fit(*_arrays(data.train))
    train_seconds = time.perf_counter() - start
    val_accuracy = float(estimator.score(*_arrays(data.val)))
    test_accuracy = float(estimator.score(*_arrays(data.test)))
    result = MethodResult(method, data.dataset.meta.name, seed, test_accuracy, val_accuracy,
                          parameters(estimator), 0.0, train_seconds, {"estimator": repr(estimator)})
    if out is not None:
        directory = out / "train"
        record = {"val_accuracy": val_accuracy, "test_accuracy": test_accuracy, "seconds": train_seconds}
        write_history([record], directory)
        (directory / "result.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n",
                                               encoding="utf-8")
    return result


@register("mdm")
def mdm(config: ExperimentConfig, data: ExperimentData, seed: int, out: Path | None) -> MethodResult:
    """Minimum distance to the Riemannian (AIRM) class means; deterministic.

    Parameters: the class means' distinct entries, ``K · n(n+1)/2``.
    """
    from pyriemann.classification import MDM

    def parameters(fitted) -> int:
        classes, n, _ = fitted.covmeans_.shape
        return int(classes * n * (n + 1) // 2)

    return fit_classical("mdm", MDM(metric="riemann"), parameters, data, seed, out)


@register("ts-lr")
def tangent_space_lr(config: ExperimentConfig, data: ExperimentData, seed: int,
                     out: Path | None) -> MethodResult:
    """Tangent space at the Riemannian mean of train, then logistic regression (seeded).

    Parameters: the reference point's distinct entries, ``n(n+1)/2``, and the logistic
    regression's coefficients and intercepts.
    """
    from pyriemann.tangentspace import TangentSpace
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    regression = LogisticRegression(max_iter=config.baselines.logistic_max_iter, random_state=seed)
    pipeline = make_pipeline(TangentSpace(metric="riemann"), regression)

    def parameters(fitted) -> int:
        n = fitted[0].reference_.shape[-1]
        return int(n * (n + 1) // 2 + fitted[-1].coef_.size + fitted[-1].intercept_.size)

    return fit_classical("ts-lr", pipeline, parameters, data, seed, out)
