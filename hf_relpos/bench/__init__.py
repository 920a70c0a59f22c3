"""Benchmarks behind ``hf-relpos bench``: speed and memory against HF anchors (:mod:`.speed`) and
length extrapolation (:mod:`.extrapolation`). Each module has ``main(argv)``; results are JSON + PNG."""
