"""compbench: a reproducible benchmark harness for compression methods of BERT-family encoders."""

import logging

__version__ = "0.1.0"

# torchao (imported by transformers on load) warns about optional CUDA kernels this build lacks,
# and torch's pytree module about enum registration: neither concerns a benchmark run.
for _noisy in ("torchao", "torch.utils._pytree"):
    logging.getLogger(_noisy).setLevel(logging.ERROR)
