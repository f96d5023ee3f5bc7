"""Classification metrics from a confusion matrix (no scikit-learn needed).

UAR is the mean per-class recall (unweighted average recall), WAR the overall accuracy (weighted
average recall): the two numbers emotion-recognition papers report.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

import numpy as np


def confusion_matrix(targets: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """counts[true, predicted]."""
    return np.bincount(targets * num_classes + predictions, minlength=num_classes**2).reshape(num_classes,
                                                                                               num_classes)


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.zeros_like(a, dtype=float), where=b > 0)


def summarise(cm: np.ndarray, classes: Sequence[str], loss: float | None = None) -> dict:
    """metrics.json content: accuracy (= WAR), UAR, macro-F1, and per-class precision/recall/F1."""
    tp = np.diag(cm).astype(float)
    support = cm.sum(axis=1).astype(float)
    predicted = cm.sum(axis=0).astype(float)
    precision = _safe_div(tp, predicted)
    recall = _safe_div(tp, support)
    f1 = _safe_div(2 * precision * recall, precision + recall)
    present = support > 0  # classes absent from this split do not count in the averages
    total = float(cm.sum())
    result = {
        "samples": int(total),
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "war": float(tp.sum() / total) if total else 0.0,
        "uar": float(recall[present].mean()) if present.any() else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "per_class": {
            c: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                "support": int(support[i])}
            for i, c in enumerate(classes)
        },
        "confusion_matrix": cm.astype(int).tolist(),
        "classes": list(classes),
    }
    if loss is not None:
        result["loss"] = float(loss)
    return result


def classification_report_csv(metrics: dict) -> str:
    """One row per class plus macro and weighted averages, like scikit-learn's report."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["class", "precision", "recall", "f1", "support"])
    rows = metrics["per_class"]
    for name, r in rows.items():
        writer.writerow([name, f"{r['precision']:.4f}", f"{r['recall']:.4f}", f"{r['f1']:.4f}", r["support"]])
    present = [r for r in rows.values() if r["support"] > 0]
    total = sum(r["support"] for r in present) or 1
    for label, weight in (("macro avg", lambda r: 1 / len(present)), ("weighted avg", lambda r: r["support"] / total)):
        if present:
            writer.writerow([label] + [f"{sum(weight(r) * r[k] for r in present):.4f}"
                                       for k in ("precision", "recall", "f1")] + [metrics["samples"]])
    writer.writerow(["accuracy", "", "", f"{metrics['accuracy']:.4f}", metrics["samples"]])
    return buf.getvalue()
