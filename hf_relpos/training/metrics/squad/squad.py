"""SQuAD v1.1 / v2.0 exact match and F1 (an `evaluate` metric module shipped with hf_relpos).

Answers are normalised as in the official SQuAD script: lower case, no punctuation, no articles
(a, an, the), single spaces. Each prediction is scored against its best gold answer. For v2, a
question without gold answers has gold "" (no answer): predicting "" scores 1, anything else 0.
"""

import collections
import re
import string

import datasets
import evaluate

_DESCRIPTION = "SQuAD exact match and token F1, in percent, with the official answer normalisation."
_KWARGS = """
Args:
    predictions: list of {"id": str, "prediction_text": str} ("" means no answer).
    references: list of {"id": str, "answers": {"text": list[str], "answer_start": list[int]}}.
Returns:
    exact_match (float), f1 (float); with unanswerable questions also HasAns_/NoAns_ exact and f1.
"""


def normalize_answer(text):
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact(prediction, gold):
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1(prediction, gold):
    pred_tokens, gold_tokens = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    common = collections.Counter(pred_tokens) & collections.Counter(gold_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class Squad(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Rajpurkar et al. 2016, 2018",
            inputs_description=_KWARGS,
            features=datasets.Features(
                {
                    "predictions": {"id": datasets.Value("string"), "prediction_text": datasets.Value("string")},
                    "references": {
                        "id": datasets.Value("string"),
                        "answers": datasets.Sequence(
                            {"text": datasets.Value("string"), "answer_start": datasets.Value("int32")}
                        ),
                    },
                }
            ),
        )

    def _compute(self, predictions, references):
        gold = {r["id"]: [t for t in r["answers"]["text"] if normalize_answer(t)] or [""] for r in references}
        scores = {"has": [], "no": []}
        for p in predictions:
            answers = gold[p["id"]]
            em = max(exact(p["prediction_text"], a) for a in answers)
            f = max(f1(p["prediction_text"], a) for a in answers)
            scores["no" if answers == [""] else "has"].append((em, f))
        every = scores["has"] + scores["no"]
        out = {
            "exact_match": 100.0 * sum(e for e, _ in every) / len(every),
            "f1": 100.0 * sum(f for _, f in every) / len(every),
        }
        if scores["no"]:
            for key, rows in (("HasAns", scores["has"]), ("NoAns", scores["no"])):
                if rows:
                    out[f"{key}_exact"] = 100.0 * sum(e for e, _ in rows) / len(rows)
                    out[f"{key}_f1"] = 100.0 * sum(f for _, f in rows) / len(rows)
        return out
