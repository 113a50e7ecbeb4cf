"""compbench: a reproducible benchmark harness for compression methods of BERT-family encoders."""

__version__ = "0.1.0"
