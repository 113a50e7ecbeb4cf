"""The runtime axis's names, in a leaf module: harness.config validates them, methods declare which
they support, and records name them, without any of those importing another."""

RUNTIMES = ("pytorch", "onnxruntime", "openvino")
DEFAULT_RUNTIME = "pytorch"  # today's behaviour; left out of config hashes so older records keep theirs
