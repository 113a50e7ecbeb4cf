"""compbench: a reproducible benchmark harness for compression methods of BERT-family encoders."""

import logging

__version__ = "0.1.0"

# torchao (imported by transformers on load) warns about optional CUDA kernels this build lacks,
# and torch's pytree module about enum registration: neither concerns a benchmark run.
NOISY_LOGGERS = ("torchao", "torch.utils._pytree")


def quiet_third_party_logs() -> None:
    """Call again after importing torch: its logging setup resets these levels."""
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


quiet_third_party_logs()
