"""The stages a cell goes through, each small enough to read at a glance (called by runner.run_cell)."""

from __future__ import annotations

import dataclasses
import math
import random
import tempfile

import numpy as np

from harness import measure
from harness.config import CellConfig
from harness.finetune import cached_finetune, finetune_key, train
from harness.models import LoadedModel, describe_source, head_class, load_model
from harness.tasks.types import MODEL_INPUTS
from methods.base import MethodContext


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load(cell: CellConfig) -> LoadedModel:
    return load_model(cell.model, cell.task)


def load_data(cell: CellConfig, tokenizer, need_train: bool, fingerprints=None):
    """`fingerprints`: the plan's (harness.plan), so the files are not validated and hashed again."""
    from harness.tasks import load_task

    return load_task(cell.task, tokenizer, cell.paths.data_root, cell.seed, need_train=need_train, fingerprints=fingerprints)


def subset_flags(cell: CellConfig) -> dict:
    """The record's data.subset: which splits were cut to a subset by the config."""
    return {
        "train_subset": cell.task.finetune.max_train_samples is not None,
        "eval_subset": cell.task.max_eval_samples is not None,
    }


def finetune_baseline(cell: CellConfig, loaded: LoadedModel, task_data):
    """Fine-tune the pretrained checkpoint for the task once; every method in a sweep reuses it."""
    if not loaded.needs_finetune:
        return loaded.model.eval(), {"finetuned": False, "reason": "random init" if loaded.random_init else "checkpoint already has a task head"}
    key = finetune_key(describe_source(cell.model), cell.task, cell.task.finetune, cell.seed, task_data.fingerprints)

    def build():
        with measure.EnergyMeter(cell.hardware.device) as meter:
            model = train(loaded.model, loaded.tokenizer, task_data.train, cell.task.finetune, cell.seed, cell.hardware.device)
        # the Trainer leaves the model on the GPU; a cache hit reloads on the CPU: same device either way
        return model.cpu(), loaded.tokenizer, {"train_samples": len(task_data.train), "epochs": cell.task.finetune.epochs, "energy": meter.result}

    def reload(directory):
        return head_class(cell.task).from_pretrained(directory, trust_remote_code=False).eval()

    model, info = cached_finetune(key, cell.paths.cache_dir, build, reload)
    return model, {"finetuned": True, **info}


def method_context(cell: CellConfig, tokenizer, task_data, teacher) -> MethodContext:
    from transformers import DataCollatorWithPadding

    collate = DataCollatorWithPadding(tokenizer)

    def calibration_batches(num_samples: int, batch_size: int) -> list:
        if task_data.train is None:
            raise ValueError("this method needs training data, but the task has none loaded")
        rows = task_data.train.shuffle(seed=cell.seed).select(range(min(num_samples, len(task_data.train))))
        return [collate([rows[j] for j in range(i, min(i + batch_size, len(rows)))]) for i in range(0, len(rows), batch_size)]

    def finetune(model, epochs: float, **overrides):
        return train(model, tokenizer, task_data.train, cell.task.finetune, cell.seed, cell.hardware.device, epochs=epochs, **overrides)

    def pretrained():
        seed_everything(cell.seed)  # the fresh task head is drawn from the cell's seed
        return load(cell).model

    return MethodContext(
        tokenizer=tokenizer, task=task_data, hardware=cell.hardware, seed=cell.seed, cache_dir=cell.paths.cache_dir,
        calibration_batches=calibration_batches, finetune=finetune, teacher=teacher, pretrained=pretrained,
    )


def measure_artifact(method, model, baseline_size: dict) -> dict:
    """Save the compressed artifact and report its size the survey's way (% of the fp32 baseline)."""
    with tempfile.TemporaryDirectory(prefix="compbench-artifact-") as directory:
        method.save(model, directory)
        size = measure.measure_size(model, baseline_sizes=baseline_size, artifact_dir=directory)
    if not method.sparse:
        size["bytes_sparse"] = None  # only meaningful when the method zeroes weights
    return size


def to_device(model, hardware):
    """Move to the device and cast float weights to hardware.dtype (the GPU baseline is bf16)."""
    import torch

    if hardware.device != "cpu":
        model = model.to(hardware.device)
    dtype = getattr(torch, hardware.dtype)
    float_params = [p for p in model.parameters() if p.is_floating_point()]
    if dtype != torch.float32 and float_params and all(p.dtype == torch.float32 for p in float_params):
        model = model.to(dtype)
    return model


def model_digest(model) -> str:
    """sha256 over every tensor in the state dict: proves the timed model is the scored one."""
    import hashlib

    import torch

    if hasattr(model, "artifact_digest"):  # a runtime's artifact: the digest of its files
        return model.artifact_digest()

    digest = hashlib.sha256()
    for name, value in model.state_dict().items():
        for tensor in value if isinstance(value, tuple) else (value,):  # torch.ao packs (weight, bias)
            if not isinstance(tensor, torch.Tensor):
                continue
            tensor = tensor.int_repr() if tensor.is_quantized else tensor
            digest.update(name.encode())
            if type(tensor) is torch.Tensor:
                digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
            else:  # tensor subclasses (torchao) expose no flat byte view
                digest.update(str((tuple(tensor.shape), tensor.dtype)).encode())
    return digest.hexdigest()[:16]


def accuracy(cell: CellConfig, model, loaded: LoadedModel, task_data):
    """(metrics, notes, {split: SplitResult}); the per-split results carry the per-example predictions."""
    from harness.predictions import metric_suffix, score_split
    from harness.tasks import metric_fn

    if loaded.random_init or not cell.measure.accuracy:
        return None, ["accuracy not measured: random init" if loaded.random_init else "accuracy disabled"], {}
    metrics, notes, results = {}, [], {}
    for name, split in task_data.eval.items():
        result = results[name] = score_split(model, split, loaded.tokenizer, device=cell.hardware.device)
        suffix = metric_suffix(name, len(task_data.eval))
        metrics.update({f"{k}{suffix}": v for k, v in result.metrics.items()})
        if cell.measure.bootstrap:
            ci = measure.bootstrap_metric_ci(result.scored.predictions, result.scored.references, metric_fn(cell.task), n_resamples=cell.measure.bootstrap, seed=cell.seed)
            metrics.setdefault("ci95", {}).update({f"{k}{suffix}": v for k, v in ci.items()})
        metrics.setdefault("eval_examples", {})[name] = len(split.examples)
    if cell.task.max_eval_samples is not None:
        notes.append(f"subset: evaluated on the first {cell.task.max_eval_samples} examples of each eval split")
    if cell.task.finetune.max_train_samples is not None:
        notes.append(f"subset: fine-tuned on {cell.task.finetune.max_train_samples} training examples")
    return metrics, notes, results


def _eval_split(task_data):
    return next(iter(task_data.eval.values()))


# A latency pass times a seeded random sample of the eval split this large (or all of it, when the
# split is smaller), in at least LATENCY_MIN_BATCHES batches. Fewer inputs time whichever ones
# happen to come first: early exit on SST-2 read 5.10x over the first four sentences at batch 1
# (three of them exit after layer 1) and 3.0x over the same calls' mean (issue 27).
LATENCY_SAMPLE_EXAMPLES = 256
LATENCY_MIN_BATCHES = 8


def latency_sample(split_size: int, batch_size: int, seed: int) -> list[list[int]]:
    """The eval rows of each batch a latency pass times: ceil(min(256, split) / batch_size) batches
    (at least 8) of rows drawn without replacement from a seeded permutation of the split; a
    split smaller than the batches need is drawn whole, then again in a new order."""
    if split_size < 1:
        raise ValueError("latency_sample needs a non-empty eval split")
    distinct = min(LATENCY_SAMPLE_EXAMPLES, split_size)
    count = max(LATENCY_MIN_BATCHES, math.ceil(distinct / batch_size))
    rng = np.random.default_rng(seed)
    order: list[int] = []
    while len(order) < count * batch_size:
        order.extend(int(i) for i in rng.permutation(split_size))
    return [order[b * batch_size:(b + 1) * batch_size] for b in range(count)]


def consecutive_rows(count: int, batch_size: int) -> list[list[int]]:
    """The first count x batch_size eval rows, as `count` batches (memory/energy/FLOPs passes)."""
    return [list(range(b * batch_size, (b + 1) * batch_size)) for b in range(count)]


def sampled_inputs(batch_rows: list[list[int]], calls: int, seed: int, split: str, split_size: int) -> dict:
    """The record's latency entry `inputs` (harness.record.LatencyInputs): which eval inputs a pass
    of `calls` timed calls, cycling through the batches in order, actually timed."""
    timed = batch_rows[: min(calls, len(batch_rows))]
    return {
        "split": split,
        "split_examples": split_size,
        "sampling": "numpy default_rng(seed).permutation of the split's rows, in order (again when the split is smaller)",
        "seed": seed,
        "batches": len(batch_rows),
        "sampled_examples": len({i for rows in batch_rows for i in rows}),
        "batches_timed": len(timed),
        "distinct_inputs_timed": len({i for rows in timed for i in rows}),
    }


def _rows(features, indices, seq_len=None) -> list:
    """The eval rows at `indices` (wrapping past the end), model inputs only, optionally cut to seq_len."""
    keep = [c for c in features.column_names if c in MODEL_INPUTS]
    rows = []
    for i in indices:
        example = features[int(i) % len(features)]
        row = {k: example[k] for k in keep}
        if seq_len is not None and len(row["input_ids"]) > seq_len:
            row = {k: v[: seq_len - 1] + v[-1:] for k, v in row.items()}  # keep the final [SEP]
        rows.append(row)
    return rows


def fixed_batches(tokenizer, task_data, batch_size: int, seq_len: int, device: str, count: int = 4, batch_rows=None) -> list:
    """Real eval texts padded/truncated to exactly seq_len: the survey's fixed-length setting.
    `batch_rows`: the eval rows of each batch (latency_sample); default: the first count x batch_size."""
    features = _eval_split(task_data).features
    batches = []
    for indices in batch_rows or consecutive_rows(count, batch_size):
        batch = tokenizer.pad(_rows(features, indices, seq_len), padding="max_length", max_length=seq_len, return_tensors="pt")
        batches.append({k: v.to(device) for k, v in batch.items()})
    return batches


def real_batches(tokenizer, task_data, batch_size: int, device: str, count: int = 32, batch_rows=None) -> list:
    """Eval examples with dynamic padding: the task's real length distribution.
    `batch_rows`: the eval rows of each batch (latency_sample); default: the first count x batch_size."""
    features = _eval_split(task_data).features
    batches = []
    for indices in batch_rows or consecutive_rows(count, batch_size):
        batch = tokenizer.pad(_rows(features, indices), padding="longest", return_tensors="pt")
        batches.append({k: v.to(device) for k, v in batch.items()})
    return batches


def prepare_run(model, hardware):
    """(run(batch), mode): a runtime artifact's own call (harness/runtimes/), else harness.measure.prepare_model."""
    if hasattr(model, "latency_run"):
        return model.latency_run(), model.runtime
    return measure.prepare_model(model, hardware)


def with_inputs(run, batches: list):
    """A runtime's run converts these batches to its numpy inputs now, outside the timed region."""
    return run.bind(batches) if hasattr(run, "bind") else run


def _threads(cell: CellConfig) -> int:
    import torch

    return torch.get_num_threads()


def latency(cell: CellConfig, model, tokenizer, task_data, reference=None, input_dependent_compute: bool = False) -> dict:
    """Every batch size x length setting, each under a contention verdict; with a `reference`
    (the fine-tuned fp32 baseline in PyTorch eager) the method is timed interleaved with it and
    gets a speedup. Every pass times a seeded sample of the eval split (latency_sample), built
    before the timed region. `input_dependent_compute` (the method's declaration,
    methods.base.Method): the speedup is the ratio of mean latencies instead of p50s."""
    from harness.measure import stability
    from harness.measure.contention import until_clean, worst

    hw = cell.hardware
    run, mode = prepare_run(model, hw)
    run_reference = canary = calibration_file = None
    if reference is not None:
        run_reference, _ = measure.prepare_model(reference, dataclasses.replace(hw, compile="eager"))
    if hw.device == "cpu":  # a CUDA pass is judged by its block pairs alone (none when timed alone)
        canary = stability.Canary()
        calibration_file = stability.calibration_path(cell.paths.cache_dir, _threads(cell))
    seq_len = cell.task.max_seq_length
    statistic = "mean" if input_dependent_compute else "p50"
    split = _eval_split(task_data)
    result = {"fixed": [], "real_length": [], "mode": mode, "runtime": cell.runtime.name, "notes": [],
              "input_dependent_compute": input_dependent_compute, "speedup_statistic": statistic}
    for batch_size in hw.batch_sizes:
        batch_rows = latency_sample(len(split.features), batch_size, cell.seed)
        settings = [("fixed", fixed_batches(tokenizer, task_data, batch_size, seq_len, hw.device, batch_rows=batch_rows), seq_len, f"fixed bs={batch_size} n={seq_len}")]
        if cell.measure.real_length_latency:
            settings.append(("real_length", real_batches(tokenizer, task_data, batch_size, hw.device, batch_rows=batch_rows), None, f"real-length bs={batch_size}"))
        for setting, batches, length, label in settings:
            def once():
                if run_reference is None:
                    return measure.measure_latency(with_inputs(run, batches), batches, hw, batch_size, length, label=label,
                                                   n_bootstrap=cell.measure.bootstrap, canary=canary,
                                                   calibration=stability.read_calibration(calibration_file)), None
                return measure.measure_interleaved(with_inputs(run, batches), run_reference, batches, hw, batch_size, length, label=label,
                                                   n_bootstrap=cell.measure.bootstrap, statistic=statistic, canary=canary,
                                                   calibration=stability.read_calibration(calibration_file))

            (entry, speedup), contention = until_clean(once, _threads(cell), cell.measure, stability_of=lambda r: r[0].get("stability"))
            if contention["verdict"] == "clean" and entry.get("stability", {}).get("canary"):
                stability.remember(calibration_file, entry["stability"]["canary"])  # a steady pass calibrates the canary
            entry["speedup"] = speedup
            entry["contention"] = contention
            entry["inputs"] = sampled_inputs(batch_rows, entry["count"], cell.seed, split.name, len(split.features))
            if entry["inputs"]["batches_timed"] < entry["inputs"]["batches"]:
                result["notes"].append(f"{label}: hardware.max_duration_s ended the pass after {entry['inputs']['batches_timed']} of "
                                       f"{entry['inputs']['batches']} sampled batches ({entry['inputs']['distinct_inputs_timed']} distinct inputs timed)")
            result[setting].append(entry)
    verdicts = [e["contention"]["verdict"] for s in ("fixed", "real_length") for e in result[s]]
    result["contention"] = {"verdict": worst(verdicts), "passes": len(verdicts),
                            "remeasured": sum(e["contention"]["attempts"] > 1 for s in ("fixed", "real_length") for e in result[s])}
    if result["contention"]["verdict"] == "contended":
        result["notes"].append("contended: other processes used the CPU during at least one timed pass even after "
                               f"{cell.measure.contention_retries} re-measurements (see each entry's contention figures)")
    elif result["contention"]["verdict"] == "unstable":
        result["notes"].append("unstable: at least one timed pass was not steady (canary or block pairs) even after "
                               f"{cell.measure.contention_retries} re-measurements (see each entry's stability figures)")
    if run_reference is None:
        result["notes"].append("speedup: not timed interleaved (this cell is the reference, or measure.interleaved_speedup=false)")
    return result


def _throughput_workload(cell, model, tokenizer, task_data):
    run, _ = prepare_run(model, cell.hardware)
    batch_size = max(cell.hardware.batch_sizes)
    batch = fixed_batches(tokenizer, task_data, batch_size, cell.task.max_seq_length, cell.hardware.device, count=1)[0]
    run = with_inputs(run, [batch])
    return (lambda: run(batch)), batch_size


def memory(cell: CellConfig, model, tokenizer, task_data) -> dict:
    import torch

    work, batch_size = _throughput_workload(cell, model, tokenizer, task_data)
    with torch.inference_mode():
        result = measure.measure_memory(work, cell.hardware.device)
    return {**result, "batch_size": batch_size, "seq_len": cell.task.max_seq_length}


def energy(cell: CellConfig, model, tokenizer, task_data) -> dict:
    import torch

    work, batch_size = _throughput_workload(cell, model, tokenizer, task_data)
    from harness.measure.contention import until_clean

    def once():
        with torch.inference_mode():
            return measure.measure_energy(work, batch_size, cell.hardware.device, min_duration_s=cell.hardware.min_duration_s)

    result, contention = until_clean(once, _threads(cell), cell.measure)
    return {**result, "batch_size": batch_size, "seq_len": cell.task.max_seq_length, "contention": contention}


def flops(cell: CellConfig, model, tokenizer, task_data) -> dict:
    import torch

    batch = fixed_batches(tokenizer, task_data, 1, cell.task.max_seq_length, cell.hardware.device, count=1)[0]
    counted = getattr(model, "reference", model)  # a runtime graph has no FLOP counter: its PyTorch source has the same ops
    with torch.inference_mode():
        fixed = measure.count_flops(counted, batch)
        real = measure.average_flops(counted, real_batches(tokenizer, task_data, 8, cell.hardware.device, count=8))
    result = {**fixed, "real_length_flops_per_sample": real}
    if counted is not model:
        result["counted_on"] = "the PyTorch model the runtime artifact was converted from (int8 runtime cells: its fp32 model)"
    return result


def pytorch_runtime_section(cell: CellConfig) -> dict:
    import torch

    return {"name": cell.runtime.name, "version": torch.__version__, "mode": cell.hardware.compile}


def convert_for_runtime(cell: CellConfig, threads: dict, model, quantization, tokenizer, task_data, baseline_size: dict):
    """Convert the method's model with the cell's runtime (harness/runtimes/): returns the artifact that
    every later stage measures, its size section (bytes of the artifact, parameter counts of its
    PyTorch source), and the record's runtime section with the output check on real eval inputs."""
    import tempfile
    import time

    from harness.runtimes import build_runtime
    from harness.runtimes.base import output_difference

    model = model.eval()
    check_batches = real_batches(tokenizer, task_data, 8, "cpu", count=4)
    work_dir = tempfile.TemporaryDirectory(prefix=f"compbench-{cell.runtime.name}-")
    start = time.perf_counter()
    converted, section = build_runtime(cell.runtime, threads).prepare(
        model, quantization, check_batches[0], list(_eval_split(task_data).output_names), work_dir)
    section["conversion_s"] = round(time.perf_counter() - start, 3)
    reference = "the method's PyTorch model" if quantization is None else f"the fp32 PyTorch model handed to the {cell.runtime.name} quantizer"
    section["output_check"] = output_difference(model, converted, check_batches, reference)
    worst = section["output_check"]["max_abs_diff"]
    if quantization is None and not worst <= cell.runtime.max_abs_diff:
        raise RuntimeError(f"the {cell.runtime.name} artifact's outputs differ from PyTorch's by up to {worst:.3g} "
                           f"(> runtime.max_abs_diff={cell.runtime.max_abs_diff}) on real eval inputs")
    source = measure.measure_size(model, baseline_sizes=baseline_size)
    weights, embeddings = section["weight_bytes"], section["embedding_bytes"]
    base_dense, base_noemb = baseline_size.get("bytes_dense"), baseline_size.get("bytes_without_embeddings")
    size = {
        "params_total": source["params_total"],  # parameter counts: of the PyTorch source (int8 does not change them)
        "params_without_embeddings": source["params_without_embeddings"],
        "nonzero_params_total": source["nonzero_params_total"],
        "bytes_dense": weights,  # bytes: of the artifact's weights as the runtime stores them
        "bytes_without_embeddings": weights - embeddings,
        "bytes_sparse": None,  # runtime artifacts store weights dense
        "int8_weight_params": section.pop("int8_weight_elements", 0),
        "disk_bytes": converted.artifact_bytes(),
        "pct_of_baseline_with_emb": 100.0 * weights / base_dense if base_dense else None,
        "pct_of_baseline_without_emb": 100.0 * (weights - embeddings) / base_noemb if base_noemb else None,
        "baseline_bytes_dense": base_dense,
        "baseline_bytes_without_embeddings": base_noemb,
    }
    return converted, size, section
