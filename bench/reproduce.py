"""A reproduction check per method family: one published relative result from the method's own paper,
run here in the closest setting this machine allows, shown beside it with a tolerance and a verdict.

    python bench/reproduce.py                      # run every check that fits 2 CPU cores, then write docs/reproduce.md
    python bench/reproduce.py --families low_rank  # some of them
    python bench/reproduce.py --report-only        # re-read the records, run nothing
    python bench/reproduce.py --dry-run            # the cells each check runs

Every check runs on MRPC (3.7k training pairs: a baseline fine-tune and each training method take
minutes here), MiniLM-L6-H384 instead of the papers' BERT-base: a published *relative* result
(a drop in points, a sign, a speedup) is what is compared, never an absolute score. Where the
paper's own setting is out of reach on 2 CPU cores, the check says what it would take. Cells are
ordinary compbench cells (records under results/reproduce, resumable: an ok record is reused), so
a latency figure in them obeys the usual rule: run this with nothing else on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

ROOT = Path(__file__).resolve().parents[1]
RUN = "reproduce"
TASK = "mrpc"
# MRPC's baseline fine-tune as the study searched it (bench/study.sh `finetune_of`)
COMMON = [f"run_name={RUN}", "model=minilm_l6", "hardware=cpu", "hardware.batch_sizes=[1]", f"task={TASK}",
          "task.finetune.learning_rate=1e-4", "task.finetune.epochs=3"]
ORT_INT8 = "{name:dynamic_int8,params:{backend:torch_ao,compile:false}}"


@dataclass(frozen=True)
class Cell:
    """One compbench cell: its method overrides, and how to find its record again."""

    overrides: tuple[str, ...]
    method: str  # record's cell.method
    params: dict = field(default_factory=dict)  # must equal these keys of the record's config.method
    runtime: str = "pytorch"


@dataclass(frozen=True)
class Check:
    family: str
    paper: str
    published: str  # the published relative result, in words, with its setting
    published_value: float
    setting: str  # what runs here, what is scaled and why
    cells: tuple[Cell, ...]
    measure: Callable[[dict], Optional[float]]  # {cell index: flattened record} -> the measured figure
    verdict: Callable[[float], bool]
    tolerance: str
    unit: str  # "pt" (points of the task metric), "x" (speedup)
    out_of_reach: str = ""  # what the paper's own setting would take, where it is not run here


def drop(index: int = 0):
    return lambda rows: rows[index].get("paired_drop") if index in rows else None


def difference(first: int, second: int):
    def measure(rows):
        if first in rows and second in rows and rows[first].get("score") is not None and rows[second].get("score") is not None:
            return float(rows[first]["score"]) - float(rows[second]["score"])
        return None
    return measure


def speedup(index: int = 0):
    return lambda rows: rows[index].get("speedup") if index in rows else None


CHECKS = [
    Check("quantization", "PyTorch dynamic quantization tutorial (BERT-base, MRPC), after Zafrir et al. 2019",
          "dynamic int8 of every encoder Linear keeps MRPC F1 within 0.6 % (90.19 -> ~89.6 at worst)", -0.6,
          "dynamic_int8 on torch.ao's eager kernels (the tutorial's quantize_dynamic), MiniLM-L6, MRPC dev",
          (Cell(("method=dynamic_int8", "method.backend=torch_ao", "method.compile=false"), "dynamic_int8", {"backend": "torch_ao"}),),
          drop(), lambda v: v >= -1.0, "drop >= -1.0 pt", "pt"),
    Check("unstructured pruning (magnitude)", "Chen et al. 2020, the lottery ticket hypothesis for pre-trained BERT networks",
          "MRPC keeps full accuracy at 50 % sparsity of the encoder weights after retraining (within a std of the full model)", 0.0,
          "magnitude 50 % (global L1) + the shared recovery budget (1 epoch, masks fixed); one retraining, not IMP's rounds",
          (Cell(("method=magnitude", "method.sparsity=0.5"), "magnitude", {"sparsity": 0.5}),),
          drop(), lambda v: v >= -1.0, "drop >= -1.0 pt", "pt"),
    Check("unstructured pruning (movement)", "Sanh, Wolf, Rush 2020, movement pruning",
          "at 10 % of encoder weights kept, movement pruning beats magnitude pruning under the same fine-pruning "
          "(MNLI 81.2 vs 78.3, SQuAD F1 84.9 vs 80.1)", 2.9,
          "movement_prune at its defaults (from the pre-trained model, 90 % sparse, distilled, 3 epochs) against "
          "gradual_magnitude at 90 %, distilled, 3 epochs (from the fine-tuned model); MRPC, not MNLI/SQuAD",
          (Cell(("method=movement_prune",), "movement_prune", {"sparsity": 0.9, "start": "pretrained"}),
           Cell(("method=gradual_magnitude", "method.sparsity=0.9", "method.distill=true", "method.alpha=0.9",
                 "method.train_samples=null", "method.epochs=3"), "gradual_magnitude", {"sparsity": 0.9, "distill": True})),
          difference(0, 1), lambda v: v > 0, "movement - magnitude > 0 pt", "pt",
          "Sanh et al.'s ~10 epochs on MNLI (393k pairs) is ~100 h of these 2 cores per run"),
    Check("structured pruning (heads)", "Michel, Levy, Neubig 2019, are sixteen heads really better than one?",
          "20-40 % of attention heads pruned with little loss and no retraining (BERT-base, MNLI)", 0.0,
          "head_prune 30 % of MiniLM's 72 heads, one shot, no retraining; MRPC",
          (Cell(("method=head_prune", "method.fraction=0.3"), "head_prune", {"fraction": 0.3}),),
          drop(), lambda v: v >= -1.0, "drop >= -1.0 pt", "pt"),
    Check("low-rank", "Noach & Goldberg 2020, compressing pre-trained language models by matrix decomposition",
          "SVD to ~49 % of the encoder + distillation fine-tuning: average drop -0.13 (BERT-base, GLUE)", -0.13,
          "low_rank rank 128 (~50 % of MiniLM's encoder Linear weights) + 1 recovery epoch distilling logits and every "
          "layer's hidden states from the un-factorised model; MRPC",
          (Cell(("method=low_rank", "method.rank=128"), "low_rank", {"rank": 128, "distill": True}),),
          drop(), lambda v: v >= -1.0, "drop >= -1.0 pt", "pt"),
    Check("task-only KD", "Sun et al. 2019, patient knowledge distillation (PKD)",
          "a student with half the teacher's layers, task-only PKD: SST-2 -1.5 (92.0 vs 93.5, BERT6 vs BERT12, test)", -1.5,
          "kd_hidden (PKD, beta 100) to 3 of MiniLM's 6 layers (every other), 3 epochs of MRPC from the fine-tuned teacher",
          (Cell(("method=kd_hidden", "method.train_samples=null", "method.epochs=3", "method.learning_rate=null"),
                "kd_hidden", {"student_layers": "every_other"}),),
          drop(), lambda v: v >= -1.5 - 2.0, "drop >= published - 2.0 pt", "pt",
          "SST-2 as in the paper: a 20-min baseline fine-tune plus ~1 h of distillation on 67k sentences"),
    Check("early exit", "Xin et al. 2020, DeeBERT (survey row)",
          "entropy off-ramps: 1.25-1.28x at an average drop of -0.26 (BERT-base)", 1.25,
          "early_exit entropy 0.3 (DeeBERT's two stages: ramps on the frozen backbone), speedup from the ratio of mean "
          "latencies over 256 sampled MRPC pairs, batch 1",
          (Cell(("method=early_exit", "method.train_samples=null", "method.epochs=1"), "early_exit", {"mode": "entropy"}),),
          speedup(), lambda v: v >= 1.25, "speedup >= 1.25x (drop reported beside)", "x"),
    Check("compound", "Sajjad et al. 2020 (poor man's BERT) with int8 (PyTorch tutorial)",
          "dropping the top half of the layers keeps >= 98 % of GLUE performance; int8 costs <= 0.6 % more: "
          "about -2.6 % of the score", -2.6,
          "layer_drop (top 3 of 6 layers) + 1 recovery epoch + ONNX Runtime dynamic int8; drop given in % of the baseline score",
          (Cell(("runtime=onnxruntime", "method=pipeline", f"method.steps=[layer_drop,{ORT_INT8}]", "method.recover_epochs=1"),
                "pipeline", {"recover_epochs": 1}, runtime="onnxruntime"),),
          lambda rows: (100.0 * rows[0]["paired_drop"] / rows[0]["baseline_score"]
                        if 0 in rows and rows[0].get("paired_drop") is not None and rows[0].get("baseline_score") else None),
          lambda v: v >= -2.6 - 2.0, "relative drop >= published - 2 %", "%"),
]


def compbench(overrides: list[str], dry_run: bool) -> int:
    command = [str(ROOT / ".venv" / "bin" / "compbench"), *COMMON, *overrides] + (["--dry-run"] if dry_run else [])
    print("+ " + " ".join(command), flush=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "TRANSFORMERS_VERBOSITY": "error"}
    return subprocess.call(command, cwd=ROOT, env=env)


def _matches(config: dict, params: dict) -> bool:
    return all(config.get(key) == value for key, value in params.items())


def find_rows(results: Path) -> list[tuple[dict, dict]]:
    """(raw record, flattened row with its paired drop and its baseline's score) for every ok record."""
    from harness.report import load_records
    from harness.report.paired import add_paired_columns
    from harness.report.speedup import add_speedups

    records, _ = load_records([str(results)])
    if records.empty:
        return []
    records = add_paired_columns(add_speedups(records[records["status"].eq("ok")]))
    baselines = records[records["method"].eq("baseline")].set_index("seed")["score"].to_dict()
    found = []
    for _, row in records.iterrows():
        raw = json.loads(Path(row["path"]).read_text(encoding="utf-8"))
        flat = {k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()}
        flat["baseline_score"] = baselines.get(row["seed"])
        found.append((raw, flat))
    return found


def measured_rows(check: Check, found: list[tuple[dict, dict]]) -> dict:
    rows = {}
    for index, cell in enumerate(check.cells):
        for raw, flat in sorted(found, key=lambda pair: str(pair[1].get("created_at"))):
            runtime = raw["cell"].get("runtime") or "pytorch"
            if raw["cell"]["method"] == cell.method and runtime == cell.runtime and _matches(raw["config"]["method"], cell.params):
                rows[index] = flat  # the newest record of the cell
    return rows


def results_table(found) -> list[dict]:
    table = []
    for check in CHECKS:
        rows = measured_rows(check, found)
        value = check.measure(rows) if len(rows) == len(check.cells) else None
        entry = {"family": check.family, "paper": check.paper, "setting": check.setting, "published": check.published,
                 "published_value": check.published_value, "unit": check.unit, "tolerance": check.tolerance,
                 "measured": None if value is None else round(float(value), 2), "out_of_reach": check.out_of_reach,
                 "drop_beside": rows[0].get("paired_drop") if check.unit == "x" and 0 in rows else None,
                 "records": [Path(r["path"]).name for r in rows.values()],
                 "machine": next((r.get("machine") for r in rows.values()), None)}
        entry["verdict"] = "not run" if value is None else ("reproduced" if check.verdict(float(value)) else "not reproduced")
        table.append(entry)
    return table


def to_markdown(table: list[dict], results: str = f"results/{RUN}") -> str:
    machines = sorted({e["machine"] for e in table if e["machine"]})
    lines = ["# Reproduction checks: one published result per method family", "",
             f"Generated by `python bench/reproduce.py` from the records under `{results}` "
             f"(machine: {', '.join(machines) or 'none run'}). MiniLM-L6-H384 on MRPC dev, not the papers' BERT-base: "
             "each row compares a *relative* result, in the setting described.", "",
             "| family | paper | published | setting here | measured | tolerance | verdict |",
             "|---|---|---|---|---|---|---|"]
    for e in table:
        measured = "–" if e["measured"] is None else f"{e['measured']:+.2f} {e['unit']}" if e["unit"] != "x" else f"{e['measured']:.2f}x"
        if e["drop_beside"] is not None:
            measured += f" (drop {e['drop_beside']:+.2f} pt)"
        setting = e["setting"] + (f". Paper's own setting: {e['out_of_reach']}" if e["out_of_reach"] else "")
        lines.append(f"| {e['family']} | {e['paper']} | {e['published']} | {setting} | {measured} | {e['tolerance']} | **{e['verdict']}** |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="*", help="run only checks whose family contains one of these words")
    parser.add_argument("--report-only", action="store_true", help="run nothing; re-read the records")
    parser.add_argument("--dry-run", action="store_true", help="list the cells (compbench --dry-run) and stop")
    parser.add_argument("--results", default=str(ROOT / "results" / RUN))
    parser.add_argument("--out", default=str(ROOT / "docs" / "reproduce.md"))
    args = parser.parse_args(argv)
    chosen = [c for c in CHECKS if not args.families or any(w in c.family for w in args.families)]
    if args.families and not chosen:
        print(f"--families: none of {args.families} names a family ({', '.join(c.family for c in CHECKS)})", file=sys.stderr)
        return 2
    failed = 0
    if not args.report_only:
        failed += compbench(["method=baseline"], args.dry_run) != 0
        for check in chosen:
            for cell in check.cells:
                failed += compbench(list(cell.overrides), args.dry_run) != 0
    if args.dry_run:
        return 1 if failed else 0
    sys.path.insert(0, str(ROOT))
    table = results_table(find_rows(Path(args.results)))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    shown = os.path.relpath(args.results, ROOT)
    Path(args.out).write_text(to_markdown(table, shown), encoding="utf-8")
    Path(args.out).with_suffix(".json").write_text(json.dumps(table, indent=1), encoding="utf-8")
    print(to_markdown(table, shown))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
