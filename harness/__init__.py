"""compbench: a reproducible benchmark harness for compression methods of BERT-family encoders."""

import logging

__version__ = "0.1.0"

# torchao (imported by transformers on load) warns about optional CUDA kernels this build lacks,
# and torch's pytree module about enum registration: neither concerns a benchmark run.
NOISY_LOGGERS = ("torchao", "torch.utils._pytree")


# Heads a task model adds on top of a pre-trained encoder: new by design, trained by the fine-tune.
TASK_HEADS = ("classifier", "pre_classifier", "qa_outputs")


class NewTaskHeadReport(logging.Filter):
    """transformers logs a LOAD REPORT listing the task head as MISSING on every load of a pre-trained
    encoder into a task model, in every cell; it says nothing there. A report with any other key
    (or status) is kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "LOAD REPORT" not in message:
            return True
        rows = [[cell.strip() for cell in line.split("|")] for line in message.splitlines() if line.count("|") >= 2]
        entries = [(row[0], row[1]) for row in rows if row[0] not in ("", "Key") and not set(row[0]) <= set("-+")]
        expected = entries and all(status == "MISSING" and key.split(".")[0] in TASK_HEADS for key, status in entries)
        return not expected


def quiet_third_party_logs() -> None:
    """Call again after importing torch: its logging setup resets these levels."""
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    loading = logging.getLogger("transformers.modeling_utils")
    if not any(isinstance(f, NewTaskHeadReport) for f in loading.filters):
        loading.addFilter(NewTaskHeadReport())


quiet_third_party_logs()
