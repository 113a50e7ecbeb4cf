"""The results schema (one JSON object per cell) and its atomic writer.

Readers (the aggregator) glob `<results_dir>/records/*.json` and check `schema_version`.
Optional sections are present as null when not measured; a value is never invented.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Literal, Optional, TypedDict

SCHEMA_VERSION = "2.0"
from harness.runtime_names import DEFAULT_RUNTIME  # noqa: F401 - re-exported for readers
STATUSES = ("ok", "failed", "unsupported")
# Schema history (load_record migrates older majors to the current one, in memory):
#   1.0  method section without category / provenance / sparse (the report looked them up in a
#        name table); "sparse" inside the method's free-form info; no "artifact" key on records
#        that failed or were unsupported.
#   2.0  method.category / method.provenance / method.sparse written by Method.describe();
#        every section below declared; "artifact" always present (null when not measured).
#        Added later within 2.0 (issue 27; older 2.0 records lack them, readers treat absence as
#        below): latency entries' `inputs` (absent: the first 4 fixed / 32 real-length batches of the
#        eval split were cycled), speedup.statistic and its companions (absent: "p50"),
#        latency.input_dependent_compute / speedup_statistic and method.input_dependent_compute
#        (absent: false / "p50").


class CellNames(TypedDict):
    """The cell's coordinates in the benchmark grid: short config names, used in tables and file names."""

    method: str  # the registered method's name (method.name; methods.registry)
    model: str
    task: str
    hardware: str


class LatencyStats(TypedDict, total=False):
    label: str  # e.g. "fixed bs=1 n=128"
    batch_size: int
    seq_len: Optional[int]  # None for real-length batches
    mode: str  # eager | compile | cudagraphs
    timer: str  # perf_counter | cuda_event
    count: int
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    stdev_ms: float
    throughput_per_s: float  # samples / s
    p50_ci95_ms: list  # bootstrap [low, high]
    values_ms: list  # raw per-call samples in call order: call i timed batch i mod inputs.batches
    warmup: dict  # how many calls warmed up and why they stopped
    duration_s: float  # wall time of the timed calls
    stopped_by: str  # which stop rule ended the timing loop
    inputs: "LatencyInputs"  # which eval inputs the pass timed; absent in records before issue 27
    interleaved: bool  # timed in alternating blocks with the reference (harness.measure.interleaved)
    speedup: Optional[dict]  # harness.measure.interleaved.Speedup, with the reference's raw per-call times; None without a reference
    contention: dict  # harness.measure.contention.ContentionSummary of the kept pass ("unstable": see stability)
    # harness.measure.stability.StabilityReport of the kept pass: canary and block-pair figures (a
    # pass timed alone: its canary only); CPU passes and CUDA interleaved ones; absent before issue 30
    stability: dict


class FreshProcessTry(TypedDict):
    """One fresh process's latency pass, when the cell ran again because its latency stayed unstable."""

    verdict: str  # that try's latency verdict ("unstable", "clean", ...)
    speedups: dict  # {entry label: interleaved speedup} of that try
    p50_ms: dict  # {entry label: the method's p50} of that try
    reasons: list  # the stability reasons of that try's entries (empty when it was steady)


class PooledSpeedup(TypedDict):
    """One speedup timed in several fresh processes (measure.latency_processes; issue 30)."""

    value: float  # median of the processes' speedups: the figure reports use
    ci95: Optional[list]  # [low, high]: bootstrap over processes, then block pairs inside each; None with bootstrap=0
    per_process: list  # each process's interleaved speedup, the cell's own first
    processes: int  # how many processes timed it
    cv_pct: Optional[float]  # coefficient of variation of per_process, in %
    statistic: str  # "p50" | "mean", as the processes' speedups
    design: str  # how the figure and its CI were obtained


class LatencyInputs(TypedDict):
    """The inputs of one timed pass (harness.stages.latency_sample): a seeded random sample of the eval
    split, so the latency of an input-dependent method is its cost over the split, not over its first rows."""

    split: str  # the eval split sampled (the task's first)
    split_examples: int  # rows in that split (SQuAD: tokenized windows)
    sampling: str  # how the rows were drawn
    seed: int  # the sampling seed (the cell's seed: the baseline and every method of a seed time the same rows)
    batches: int  # batches in the sample: ceil(min(256, split_examples) / batch_size), at least 8
    sampled_examples: int  # distinct rows in those batches: >= 256, or the whole split when it is smaller
    batches_timed: int  # batches timed at least once (fewer than `batches` only when max_duration_s cut the pass)
    distinct_inputs_timed: int  # distinct eval rows in the batches timed


class LatencySection(TypedDict, total=False):
    fixed: list  # [LatencyStats] per batch size, padded/truncated to task.max_seq_length (the survey's setting)
    real_length: list  # [LatencyStats] per batch size, dynamic padding (empty when measure.real_length_latency is false)
    mode: str  # how the model was wrapped (hardware.compile, described)
    runtime: str  # the runtime that ran the timed artifact
    notes: list  # why a figure is missing or suspect
    contention: dict  # the worst verdict over every pass, passes, how many were re-measured
    # [FreshProcessTry], oldest first, the kept one last: present only when the cell's latency was
    # unstable and it ran again in fresh processes (measure.fresh_process_retries; issue 30)
    fresh_process_tries: list
    # [FreshProcessTry] of every process that timed the cell, its own first: present only with
    # measure.latency_processes > 1, or pooled_because (each speedup's `pooled` holds the figure)
    processes: list
    # why more processes than measure.latency_processes timed it: present only for a cell's first run on a
    # machine whose processes have disagreed before (harness.measure.speedup_history.FIRST_RUN_PROCESSES)
    pooled_because: str
    input_dependent_compute: bool  # the method declared input-dependent compute (Method.input_dependent_compute)
    speedup_statistic: str  # "mean" when it did (speedups are ratios of mean latencies), else "p50"


class SizeSection(TypedDict, total=False):
    params_total: int
    params_without_embeddings: int
    nonzero_params_total: int
    bytes_dense: int  # in-memory bytes of all tensors as stored (quantized weights count as int8)
    bytes_without_embeddings: int
    bytes_sparse: Optional[int]  # bitmask + non-zero values; None unless the method zeroes weights (method.sparse)
    # elements of weight matrices stored as 8-bit integers (schema 3.x+; absent in older records): with
    # params_total it says what the artifact should weigh, int8 elements at 1 byte and the rest as float
    int8_weight_params: int
    disk_bytes: Optional[int]  # the saved artifact on disk
    pct_of_baseline_with_emb: Optional[float]  # the survey's "w/ emb" column, by bytes
    pct_of_baseline_without_emb: Optional[float]
    baseline_bytes_dense: int
    baseline_bytes_without_embeddings: int


class MemorySection(TypedDict, total=False):
    device: str  # cpu | cuda
    repeats: int  # forward passes of the throughput batch while sampling
    duration_s: float
    baseline_rss_bytes: int  # process RSS before the passes
    peak_rss_bytes: int
    delta_rss_bytes: int  # peak - baseline: what inference added
    rss_peak_method: str  # sampled | ru_maxrss
    rss_samples: int
    sample_interval_ms: float
    cuda_max_allocated_bytes: Optional[int]  # torch allocator peak (cuda only)
    cuda_max_reserved_bytes: Optional[int]
    nvml_process_peak_bytes: Optional[int]  # driver view of this process (cuda only, when NVML allows)
    nvml_device_peak_bytes: Optional[int]
    notes: list
    batch_size: int  # the throughput batch: max(hardware.batch_sizes)
    seq_len: int


class EnergySection(TypedDict, total=False):
    joules_total: Optional[float]  # the headline source's energy over the measured calls
    joules_per_sample: Optional[float]
    samples: Optional[int]
    duration_s: float
    provenance: Optional[str]  # measured:rapl | measured:nvml | estimated:codecarbon-tdp; None: no source usable
    source: Optional[str]  # the headline source's name
    scope: Optional[str]  # what the headline source covers (cpu packages, gpu, cpu + ram (+ gpu))
    reason: Optional[str]  # why there is no headline figure
    sources: dict  # name -> that source's own entry (available, reason, joules, ...)
    co2_kg: Optional[float]  # codecarbon's estimate, whatever the headline
    calls: int  # forward calls measured
    batch_size: int
    seq_len: int


class FlopsSection(TypedDict, total=False):
    flops_per_sample: float  # 2 x MACs at batch 1, fixed length
    macs_per_sample: float
    by_module_type: dict  # module type -> flops per sample
    batch_size: int
    seq_len: int
    note: str  # what is counted and what is not
    real_length_flops_per_sample: float  # averaged over real-length eval batches


class LabelSection(TypedDict):
    """harness.labels.record_label: the report shows `short` and lists `changed` in its legend."""

    preset: str  # the registered name the user chose (methods.registry: a method at its defaults, or a named recipe)
    changed: dict  # parameters changed from that preset (pipeline steps as {name, params}), less the
    # training-data budget and what has no effect on the runtime used
    short: str  # Table 1's label, at most harness.labels.MAX_LENGTH characters


class MethodSection(TypedDict, total=False):
    """Method.describe(): the declared facts first, then the method's own free-form info."""

    name: str
    category: str  # the survey family (methods.base.SURVEY_CATEGORIES); the report's row group
    provenance: str  # A (task-agnostic), S (task-specific), "A,S" or "" (the baseline)
    needs: str  # nothing | calibration | training (Method.needs_for(config))
    sparse: bool  # the method zeroed weights: size.bytes_sparse is meaningful
    input_dependent_compute: bool  # a forward's work depends on the input (early exit): speedup by means
    config: dict  # the method's resolved config dataclass
    # methods.base.Reference as a dict (paper, recipe, changes, comparable_to_published): the paper the
    # method follows and how far compbench's default stands from it; None for a class without one
    reference: Optional[dict]
    reference_source: str  # "migrated": added to an older record by harness.record_migration; absent: written with it
    label: LabelSection  # what Table 1 calls this configuration, decided when the record was written
    label_source: str  # "migrated": added to an older record by harness.record_migration; absent: written with it
    training: dict  # training methods: cache key, wall time, energy, losses (methods.training.cached_training)
    # ... plus method-specific keys (backend, kept_heads, ranks, ...), documented on each method


class TrainingSection(TypedDict, total=False):
    """The baseline fine-tune (harness.stages.finetune_baseline)."""

    finetuned: bool  # False: the checkpoint already had the task head, or random init
    reason: str  # why not fine-tuned
    key: str  # the fine-tune cache key
    wall_time_s: float  # of the original training run (also on cache hits)
    # harness.chance.baseline_check: {verdict "learned" | "at chance", metric, score, chance_score (a
    # constant guess's, 0-100), most_common_prediction_share}; absent for SQuAD and unfine-tuned baselines
    baseline_check: dict
    created: str  # when the cached model was trained
    train_samples: int
    epochs: float
    energy: Optional[dict]  # an EnergySection of the training run
    cache_hit: bool
    cache_dir: str


class ArtifactSection(TypedDict, total=False):
    digest_before_accuracy: str  # sha256 prefix over the measured model's tensors, before scoring
    digest_after_measurement: str  # the same after every pass: equal digests prove one object was scored and timed


class SubsetFlags(TypedDict):
    train_subset: bool  # task.finetune.max_train_samples was set
    eval_subset: bool  # task.max_eval_samples was set: scores are not comparable with full-split ones


class DataSection(TypedDict, total=False):
    fingerprints: dict  # data file (or hub dataset@revision) -> sha256: always present
    counts: dict  # split -> examples (raw and after filtering); ok / unsupported-after-load records
    notes: list  # e.g. "train subset: 2000 of 67349 (shuffled with seed 42)"
    subset: SubsetFlags


class CpuInfo(TypedDict, total=False):
    model: str
    logical_cores: int
    physical_cores: int
    isa: dict  # flag -> present (avx2, avx512_bf16, amx_tile, ...)
    torch_cpu_capability: str


class GpuInfo(TypedDict, total=False):
    name: str
    count: int
    index: int
    memory_bytes: int
    compute_capability: str
    driver: Optional[str]
    cuda_runtime: Optional[str]
    cudnn: Optional[int]


class EnvironmentSection(TypedDict, total=False):
    cpu: CpuInfo
    ram_bytes: int
    os: str
    python: str
    packages: dict  # distribution -> version (None: not installed)
    gpu: Optional[GpuInfo]  # None: no CUDA device
    git: dict  # {"commit", "dirty"} of the project checkout
    hostname_hash: str
    threads: Any  # int at collection; the runner replaces it by configure_threads()'s {"intra_op", "inter_op", "affinity", "notes"}
    interop_threads: int
    affinity: Optional[list]
    load_avg_1m: Optional[float]  # contention hint
    fingerprint: str  # machine class (CPU model, cores, GPU, torch): speedups only compare equal fingerprints
    hardware: dict  # the hardware config's name, device, dtype, compile, thread settings
    concurrent_cells: Any  # harness.sweep: other cells sharing the machine while this one measured
    concurrency: Any  # harness.sweep's lease description
    slurm: Optional["SlurmAllocation"]  # the SLURM job that ran the cell; None outside SLURM, absent in records written before it was recorded


class SlurmAllocation(TypedDict):
    """Where a cell ran on a SLURM cluster, from the job's environment (harness.measure.environment).
    Each value is None when SLURM did not set its variable."""

    cluster: Optional[str]  # ClusterName of slurm.conf
    partition: Optional[str]  # the partition the job ran in
    job_id: Optional[str]  # this cell's own job id (for an array task, its own id, not the array's)
    array_job_id: Optional[str]  # the sweep's array job (the id `squeue` and `scancel` show before the "_"); None outside an array
    array_task_id: Optional[str]  # this cell's index in the array
    node: Optional[str]  # the node that ran (and timed) the cell
    nodelist: Optional[str]  # every node of the allocation, in SLURM's compressed form ("gpu[01-02]")
    cpus_on_node: Optional[int]  # CPUs the allocation holds on the node: all of them under --exclusive


class Record(TypedDict):
    schema_version: str  # SCHEMA_VERSION of the writer
    status: Literal["ok", "failed", "unsupported"]
    reason: Optional[str]  # why failed / unsupported
    cell: CellNames
    config: dict  # the resolved config (harness.config.CellConfig as a dict)
    config_hash: str  # what makes a measurement different (harness.runner.config_hash)
    metrics: Optional[dict]  # task metrics, flat ("accuracy"; "accuracy_matched" per extra eval split) + "ci95": {metric: [lo, hi]} + "eval_examples"; None when not measured
    metrics_notes: list  # e.g. "subset: evaluated on ...", "accuracy not measured: random init"
    size: Optional[SizeSection]
    latency: Optional[LatencySection]
    memory: Optional[MemorySection]
    energy: Optional[EnergySection]
    flops: Optional[FlopsSection]
    method: Optional[MethodSection]  # None only when the method could not be built
    training: Optional[TrainingSection]
    artifact: Optional[ArtifactSection]
    timings: dict  # stage -> seconds
    data: DataSection
    environment: EnvironmentSection
    created_at: str  # ISO 8601, UTC
    runtime: "RuntimeSection"  # absent in records made before the runtime axis (read them as pytorch)
    predictions: Optional["PredictionsLink"]  # per-example predictions file; None when accuracy was not measured
    comparison: Optional["ComparisonSection"]  # paired statistics against the baseline; None without a baseline eval


class RuntimeSection(TypedDict, total=False):
    """What ran the measured artifact (harness/runtimes/). Unsupported/failed cells carry the name only."""

    name: str  # pytorch | onnxruntime | openvino
    version: str  # the runtime package's version (torch for pytorch)
    mode: str  # pytorch only: hardware.compile (eager | compile | cudagraphs)
    exporter: str  # how the ONNX graph was made (TorchScript exporter, dynamo=False)
    torch: str  # torch version that exported
    opset: int  # ONNX opset
    inputs: list  # graph input names
    outputs: list  # graph output names
    dynamic_axes: dict  # input/output -> {axis: name}: batch and sequence stay dynamic
    graph_optimizations: dict  # fusions / converter settings applied before the session or plugin
    quantization: Optional[dict]  # the runtime quantizer's tool and settings; None for float artifacts
    session: dict  # provider / plugin properties as applied (threads, precision hint, ...)
    threads: dict  # {"intra_op", "inter_op"} as the runtime applied them
    artifact_files: list  # the files the artifact consists of (their bytes are size.disk_bytes)
    weight_bytes: int  # bytes of the artifact's weights (initializers / constants) = size.bytes_dense
    embedding_bytes: int  # the embedding tables' share of weight_bytes
    conversion_s: float  # wall time of export + optimization + quantization + session creation
    output_check: dict  # max/mean |diff| and prediction agreement vs the PyTorch model on real eval inputs


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write to a temp file in the same directory, fsync, then rename: readers never see half a file.
    The file follows the umask like any other (mkstemp alone would make it 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, umask_mode(0o666))  # a shared results dir or cache must stay readable
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)  # os.replace did not run: the temp file is still there
        raise
    return path


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    return write_bytes_atomic(path, json.dumps(obj, indent=1, sort_keys=False, default=_jsonable).encode("utf-8"))


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (os.umask is a racy swap)."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def umask_mode(mode: int) -> int:
    """`mode` as the umask would leave it for a file created the ordinary way (0o666 files, 0o777 dirs)."""
    return mode & ~current_umask()


def _jsonable(value: Any):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    return str(value)


def record_runtime(record: dict) -> str:
    """The runtime a record's cell ran on; records from before the runtime axis ran on PyTorch."""
    return (record.get("cell") or {}).get("runtime") or ((record.get("config") or {}).get("runtime") or {}).get("name") or DEFAULT_RUNTIME


def record_path(results_dir: str | os.PathLike, cell: dict, config_hash: str) -> Path:
    """`<task>__<model>__<method>__<hardware>[__<runtime>]__<hash12>.json`: the runtime is named only when
    it is not the default (pytorch), so records made before the runtime axis keep their names."""
    parts = [cell["task"], cell["model"], cell["method"], cell["hardware"]]
    if cell.get("runtime", DEFAULT_RUNTIME) != DEFAULT_RUNTIME:
        parts.append(cell["runtime"])
    name = "__".join(parts + [config_hash[:12]])
    return Path(results_dir) / "records" / f"{name}.json"


def load_record(path: str | os.PathLike) -> Record:
    """Read and minimally validate a record, migrating older schema versions to the current one;
    raises ValueError naming the file otherwise."""
    try:
        with open(path) as handle:
            obj = json.load(handle)
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a readable JSON record ({err.__class__.__name__})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: not a record (top level is not an object)")
    missing = [k for k in ("schema_version", "config", "config_hash", "metrics", "size", "latency", "environment", "status") if k not in obj]
    if missing:
        raise ValueError(f"{path}: not a record (missing {', '.join(missing)})")
    major = str(obj["schema_version"]).split(".")[0]
    if major not in MIGRATIONS and major != SCHEMA_VERSION.split(".")[0]:
        supported = ", ".join(sorted({*(f"{m}.x" for m in MIGRATIONS), SCHEMA_VERSION}))
        raise ValueError(f"{path}: schema_version {obj['schema_version']} is not supported (readable: {supported})")
    if obj["status"] not in STATUSES:
        raise ValueError(f"{path}: unknown status {obj['status']!r}")
    for section in ("metrics", "size", "latency", "environment"):
        if obj[section] is not None and not isinstance(obj[section], dict):
            raise ValueError(f"{path}: not a record ({section} is a {type(obj[section]).__name__}, not an object)")
    while major in MIGRATIONS:
        obj = MIGRATIONS[major](obj)
        major = str(obj["schema_version"]).split(".")[0]
    problem = out_of_range(obj)
    if problem:
        raise ValueError(f"{path}: {problem}")
    return obj


# The range of each metric as records store it (GLUE scores as fractions, SQuAD's as percentages).
METRIC_RANGES = {"accuracy": (0.0, 1.0), "f1": (0.0, 100.0), "exact_match": (0.0, 100.0),
                 "matthews_correlation": (-1.0, 1.0), "pearson": (-1.0, 1.0), "spearmanr": (-1.0, 1.0)}
LATENCY_FIELDS = ("p50_ms", "mean_ms", "p90_ms", "p99_ms")


def out_of_range(record: dict) -> Optional[str]:
    """The first value no measurement can take (a negative size, a score outside its metric's range,
    a latency that is not a positive number), named by its field; None when every value can be real."""
    for key, value in (record.get("size") or {}).items():
        if _is_number(value) and not (math.isfinite(value) and value >= 0):
            return f"size.{key} = {value} is not a size (must be >= 0)"
    for key, value in (record.get("metrics") or {}).items():
        low, high = METRIC_RANGES.get(key, (-math.inf, math.inf))
        if _is_number(value) and not (math.isfinite(value) and low <= value <= high):
            return f"metrics.{key} = {value} is outside the metric's range [{low:g}, {high:g}]"
    latency = record.get("latency") or {}
    for kind in ("fixed", "real_length"):
        for i, entry in enumerate(latency.get(kind) or []):
            for key in LATENCY_FIELDS:
                value = entry.get(key) if isinstance(entry, dict) else None
                if value is not None and not (_is_number(value) and math.isfinite(value) and value > 0):
                    return f"latency.{kind}[{i}].{key} = {value!r} is not a latency (must be a positive number)"
    return None


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def migrate_1_to_2(record: dict) -> dict:
    """1.x -> 2.0: the method describes itself; "sparse" leaves the free-form info; "artifact" always present.

    Category and provenance come from the method class the record's config names
    (config.method._target_), imported only inside the `methods` package; a class that no longer
    exists leaves the category empty (the report shows such rows under "Other"). Importing a family
    imports torch, so a report over 1.x records pays that once per process; 2.x records need nothing.
    """
    record = dict(record)
    method = dict(record.get("method") or {})
    if record.get("method") is not None or method:
        info_sparse = bool(method.pop("sparse", False))
        target = ((record.get("config") or {}).get("method") or {}).get("_target_", "")
        category, provenance = _declared_category(target)
        method = {"category": category, "provenance": provenance, "sparse": info_sparse, **method}
        record["method"] = method
    record.setdefault("artifact", None)
    # 1.x hooks counted nothing inside compiled or exported models (every int8 method) and wrote 0:
    # a known-wrong count becomes "not counted", never a free point on the FLOPs frontier (#17).
    flops = record.get("flops")
    if isinstance(flops, dict) and not flops.get("flops_per_sample"):
        record["flops"] = {**flops, "flops_per_sample": None, "real_length_flops_per_sample": None,
                           "reason": "schema 1.x counted 0 FLOPs for compiled/exported models; not counted"}
    record["schema_version"] = "2.0"
    return record


def _declared_category(target: str) -> tuple[str, str]:
    import importlib

    module_name, _, class_name = str(target).rpartition(".")
    if not module_name.startswith("methods.") and module_name != "methods":
        return "", ""
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError):
        return "", ""
    return getattr(cls, "category", ""), getattr(cls, "provenance", "")


MIGRATIONS = {"1": migrate_1_to_2}  # major version -> function producing the next version


# ---- per-example predictions and the paired comparison with the baseline (harness/predictions.py,
# harness/comparison.py). Older records lack both keys; readers treat absence as None.


class PredictionsLink(TypedDict):
    path: str  # the gzip JSON-lines file, relative to the record's directory
    sha256: str  # of the file's bytes; the report refuses a file that no longer matches
    format: str  # "compbench-predictions/1 (gzip JSON lines)"
    examples: dict  # eval split -> number of examples in the file


class PairedMetric(TypedDict):
    baseline: float  # the baseline's metric on the same examples, on the record's scale
    method: float  # this cell's metric (equals metrics[<key>])
    difference: float  # method - baseline
    ci95: Optional[list]  # paired-bootstrap 95 % CI [low, high] of the difference; None when bootstrap=0
    ci_method: Optional[str]  # "BCa", or "percentile" (large eval sets, or BCa undefined)
    p_value: Optional[float]  # two-sided: McNemar exact for accuracy, paired bootstrap otherwise
    test: Optional[str]  # "mcnemar_exact" | "paired_bootstrap"
    discordant: list  # accuracy only: [baseline right & method wrong, baseline wrong & method right]


class Agreement(TypedDict):
    examples: int  # eval examples compared
    same_prediction: Optional[float]  # share with the baseline's label / normalised answer; None for regression
    mean_kl_baseline_to_method: Optional[float]  # classification: mean KL(p_baseline || p_method), nats
    mean_max_probability_shift: Optional[float]  # classification: mean |max p_method - max p_baseline|
    mean_abs_score_change: Optional[float]  # regression (STS-B): mean |score_method - score_baseline|


class ComparisonSection(TypedDict):
    baseline_key: str  # cache key of the baseline's predictions (weights, task, eval data, device, dtype)
    baseline_cache_hit: bool  # the baseline's predictions came from an earlier cell of the sweep
    resamples: int  # paired bootstrap resamples (measure.bootstrap)
    confidence: float  # 0.95
    metrics: dict  # metric key as in `metrics` (e.g. "accuracy_matched") -> PairedMetric
    agreement: dict  # eval split -> Agreement
