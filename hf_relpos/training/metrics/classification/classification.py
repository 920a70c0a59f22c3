"""Accuracy and macro-averaged F1 for single-label classification (an `evaluate` metric module
shipped with hf_relpos, since the Hub's metric scripts cannot be reached offline)."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = (
    "Accuracy and macro F1 (unweighted mean of per-class F1 over the classes seen in predictions or references)."
)
_KWARGS = """
Args:
    predictions (list of int): predicted labels.
    references (list of int): gold labels.
Returns:
    accuracy (float), macro_f1 (float)
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class Classification(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references):
        predictions, references = np.asarray(predictions), np.asarray(references)
        f1s = []
        for label in np.union1d(predictions, references):
            tp = np.sum((predictions == label) & (references == label))
            fp = np.sum((predictions == label) & (references != label))
            fn = np.sum((predictions != label) & (references == label))
            f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
        return {"accuracy": float(np.mean(predictions == references)), "macro_f1": float(np.mean(f1s))}
