"""Small renderers for a table of strings: Markdown, LaTeX (booktabs) and an HTML fragment.

Hand-written so the report needs neither tabulate nor jinja2, and so the output is stable
across pandas versions (the files are meant to be diffed between runs).
"""

from __future__ import annotations

import html
import re

import pandas as pd

_NUMERIC = re.compile(r"^[–+\-]?[\d.]+")
_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
_LATEX_UNICODE = {"–": "--", "−": "$-$", "±": r"$\pm$", "×": r"$\times$", "‡": r"\ddag{}", "†": r"\dag{}",
                  "ˢ": r"\textsuperscript{s}", "ʳ": r"\textsuperscript{r}", "ᵈ": r"\textsuperscript{d}",
                  "ⁿ": r"\textsuperscript{n}", "ᵗ": r"\textsuperscript{t}", "ᵐ": r"\textsuperscript{m}",
                  "ᶜ": r"\textsuperscript{c}", "ᵏ": r"\textsuperscript{k}", "ᵘ": r"\textsuperscript{u}", "Δ": r"$\Delta$", "·": r"$\cdot$",
                  "ᶻ": r"\textsuperscript{z}", "≥": r"$\geq$", "≤": r"$\leq$", "α": r"$\alpha$", "β": r"$\beta$"}


def _right_aligned(table: pd.DataFrame) -> list[bool]:
    """Right-align a column when every non-missing cell starts like a number."""
    flags = []
    for column in table.columns:
        # "–" with or without a marker is a missing number; it should not decide the alignment.
        cells = [str(v) for v in table[column] if str(v) and not (str(v).startswith("–") and len(str(v)) <= 2)]
        flags.append(bool(cells) and all(_NUMERIC.match(c) for c in cells))
    return flags


def to_markdown(table: pd.DataFrame) -> str:
    def cell(value) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(cell(c) for c in table.columns) + " |"
    rule = "|" + "|".join("---:" if right else ":---" for right in _right_aligned(table)) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def latex_escape(text) -> str:
    out = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))
    for symbol, replacement in _LATEX_UNICODE.items():
        out = out.replace(symbol, replacement)
    return out


def to_latex(table: pd.DataFrame, caption: str = "", label: str = "tab:compression") -> str:
    spec = "".join("r" if right else "l" for right in _right_aligned(table))
    lines = [r"\begin{table*}[t]", r"\centering", r"\small", rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
             " & ".join(latex_escape(c) for c in table.columns) + r" \\", r"\midrule"]
    lines += [" & ".join(latex_escape(v) for v in row) + r" \\" for row in table.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}"]
    if caption:
        lines.append(rf"\caption{{{latex_escape(caption)}}}")
    lines += [rf"\label{{{label}}}", r"\end{table*}"]
    return "\n".join(lines) + "\n"


def to_html_table(table: pd.DataFrame, css_class: str = "results") -> str:
    rights = _right_aligned(table)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    rows = []
    for row in table.itertuples(index=False):
        cells = "".join(f'<td class="{"num" if r else "txt"}">{html.escape(str(v))}</td>' for v, r in zip(row, rights))
        rows.append(f"<tr>{cells}</tr>")
    return f'<table class="{css_class}">\n<thead><tr>{head}</tr></thead>\n<tbody>\n' + "\n".join(rows) + "\n</tbody>\n</table>"
