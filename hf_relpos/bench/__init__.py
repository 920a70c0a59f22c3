"""Benchmarks behind ``hf-relpos bench SUITE``: each suite is a module with ``main(argv)`` that prints
ratios measured side by side in one run and writes a JSON report (``--out``; a PNG beside it where the
suite plots). Inputs outside the package come from explicit options (``--data-dir``), never from paths
computed from the source tree.

- ``speed``: speed and memory of whole models against HF anchors (:mod:`.speed`);
- ``extrapolation``: length extrapolation, train short / test long (:mod:`.extrapolation`);
- ``attention``: one attention layer per scheme against plain sdpa (:mod:`.attention`);
- ``convert-finetune``: a real pretrained BERT converted, its drift, fine-tuning and long inputs
  (:mod:`.convert_finetune`);
- ``long``: does a checkpoint read long inputs: passkey / needle retrieval, masked accuracy by length,
  whole-page QA (:mod:`.long_inputs`);
- ``predict``: ``hf-relpos predict`` against transformers' text-classification pipeline (:mod:`.predict`).
"""


def _speed(argv):
    from .speed import main

    return main(argv)


def _extrapolation(argv):
    from .extrapolation import main

    return main(argv)


def _attention(argv):
    from .attention import main

    return main(argv)


def _convert_finetune(argv):
    from .convert_finetune import main

    return main(argv)


def _long(argv):
    from .long_inputs import main

    return main(argv)


def _predict(argv):
    from .predict import main

    return main(argv)


SUITES = {
    "speed": _speed,
    "extrapolation": _extrapolation,
    "attention": _attention,
    "convert-finetune": _convert_finetune,
    "predict": _predict,
    "long": _long,
}
