"""Linear and one-hidden-layer probes (scikit-learn) trained on train, tuned on val, scored on test.

Protocol, for one feature matrix and one task:

1. standardise the features with the mean and standard deviation of the train split;
2. fit every probe of a tiny grid on train: logistic regression (lbfgs, multinomial) for
   C in `LINEAR_C`, or an MLP with one hidden layer of `MLP_HIDDEN` ReLU units (adam) for the L2
   penalty alpha in `MLP_ALPHA`; seeds are fixed;
3. keep the one with the best val accuracy (the first of the grid on ties) and report its test
   accuracy, with two chance levels: the frequency of the most common test label (always guessing
   it) and 1 / number of classes (labels seen in any split).

Test labels that never occur in train cannot be predicted and count as errors.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from m2l.errors import M2LError

PROBES = ("linear", "mlp")
LINEAR_C = (0.01, 0.1, 1.0, 10.0)
MLP_ALPHA = (1e-4, 1e-2, 1.0)
MLP_HIDDEN = 256
MLP_MAX_ITER = 300
SEED = 0


def require_sklearn() -> None:
    """Raise a one-line `M2LError` when scikit-learn cannot be imported."""
    try:
        import sklearn  # noqa: F401
    except ImportError as err:
        raise M2LError(
            f"m2l probe needs scikit-learn ({err}); install it with pip install 'm2l[probe]'"
        ) from None


def chance_levels(y_test: np.ndarray, n_classes: int) -> tuple[float, float]:
    """(majority, uniform): accuracy of always guessing the commonest test label, and 1 / classes."""
    _, counts = np.unique(y_test, return_counts=True)
    return float(counts.max() / len(y_test)), 1.0 / n_classes


def standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Scale every matrix with the train split's per-column mean and std (constant columns -> 0)."""
    mean = train.mean(axis=0, dtype=np.float64)
    std = train.std(axis=0, dtype=np.float64)
    std[std < 1e-12] = 1.0
    out = [((x.astype(np.float64) - mean) / std) for x in (train, *others)]
    return [np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0) for x in out]


def make_probe(probe: str, value: float, seed: int = SEED) -> Any:
    """An unfitted scikit-learn classifier: "linear" (C = value) or "mlp" (alpha = value)."""
    if probe == "linear":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=value, max_iter=1000, random_state=seed)
    if probe == "mlp":
        from sklearn.neural_network import MLPClassifier

        return MLPClassifier(
            hidden_layer_sizes=(MLP_HIDDEN,), alpha=value, max_iter=MLP_MAX_ITER, random_state=seed
        )
    raise M2LError(f"unknown probe {probe!r} (known: {', '.join(PROBES)})")


def grid(probe: str) -> tuple[str, tuple[float, ...]]:
    """(hyperparameter name, values) searched on val for `probe`."""
    return ("C", LINEAR_C) if probe == "linear" else ("alpha", MLP_ALPHA)


def _accuracy(model: Any, x: np.ndarray, y: np.ndarray) -> float:
    return float((model.predict(x) == y).mean())


def evaluate_probe(
    features: np.ndarray, labels: np.ndarray, splits: np.ndarray, probe: str, seed: int = SEED
) -> dict[str, Any]:
    """Train, select and score one probe.

    Args:
        features: [notes, dim] clip features.
        labels: [notes] integer labels.
        splits: [notes] "train" / "val" / "test".
        probe: "linear" or "mlp".
        seed: seed of the probe's own randomness.

    Returns:
        {"accuracy", "val_accuracy", "hyperparameters", "chance_majority", "chance_uniform",
        "n_classes", "n_train", "n_val", "n_test"}; "accuracy" is None (with "skipped" saying
        why) when train has fewer than two classes.
    """
    from sklearn.exceptions import ConvergenceWarning

    parts = {s: splits == s for s in ("train", "val", "test")}
    y_train, y_val, y_test = (labels[parts[s]] for s in ("train", "val", "test"))
    n_classes = len(np.unique(labels))
    majority, uniform = chance_levels(y_test, n_classes)
    result: dict[str, Any] = {
        "accuracy": None,
        "val_accuracy": None,
        "hyperparameters": {},
        "chance_majority": majority,
        "chance_uniform": uniform,
        "n_classes": n_classes,
        "n_train": len(y_train),
        "n_val": len(y_val),
        "n_test": len(y_test),
    }
    if len(np.unique(y_train)) < 2:
        result["skipped"] = "fewer than two classes in the train split"
        return result
    x_train, x_val, x_test = standardise(*(features[parts[s]] for s in ("train", "val", "test")))
    name, values = grid(probe)
    best: tuple[float, float, Any] | None = None
    for value in values:
        model = make_probe(probe, value, seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(x_train, y_train)
        score = _accuracy(model, x_val, y_val)
        if best is None or score > best[0]:
            best = (score, value, model)
    assert best is not None
    score, value, model = best
    result.update(
        accuracy=_accuracy(model, x_test, y_test), val_accuracy=score, hyperparameters={name: value}
    )
    return result
