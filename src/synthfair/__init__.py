"""synthfair: build SynthFair, semi-synthetic chest X-rays with known, traceable confounders."""

__version__ = "0.1.0"
