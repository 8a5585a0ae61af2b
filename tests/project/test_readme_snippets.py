"""Every snippet of the README's integration sections runs as written (tiny models, a few steps)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## Where you train: Lightning, Hugging Face, dashboards, several processes"

#: Each subsection with a snippet, and the libraries its snippet needs.
SNIPPETS = {
    "PyTorch Lightning": ["lightning"],
    "Hugging Face transformers": ["transformers", "accelerate"],
    "TensorBoard": ["tensorboard", "matplotlib"],
    "Weights & Biases": ["wandb", "matplotlib"],
    "Files: CSV and JSON Lines": [],
    "Several processes (DDP)": [],
    "Mixed precision": [],
}


def python_blocks() -> dict[str, list[str]]:
    """The fenced python blocks of each ``###`` subsection of the integration section."""
    text = README.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    section = text[start : end if end >= 0 else len(text)]
    blocks: dict[str, list[str]] = {}
    for part in re.split(r"\n### ", section)[1:]:
        title, _, body = part.partition("\n")
        blocks[title.strip()] = re.findall(r"```python\n(.*?)```", body, flags=re.DOTALL)
    return blocks


#: The snippets' sizes, made tiny for the test: (pattern, replacement).
TINY = [(r"range\(\d+\)", "range(3)"), (r"max_epochs=1", "max_steps=3"), (r"max_steps=\d+", "max_steps=3")]


def tiny(code: str) -> str:
    """The snippet with a few steps only."""
    for pattern, replacement in TINY:
        code = re.sub(pattern, replacement, code)
    return code


def test_every_subsection_with_a_snippet_is_run_here():
    with_code = {title for title, codes in python_blocks().items() if codes}
    assert with_code == set(SNIPPETS)


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for key, value in {
        "HF_HUB_OFFLINE": "1",
        "WANDB_MODE": "offline",
        "WANDB_DIR": str(tmp_path),
        "WANDB_SILENT": "true",
        "WANDB_INIT_TIMEOUT": "300",  # the wandb service starts slowly on a loaded machine
        "MPLBACKEND": "Agg",
    }.items():
        monkeypatch.setenv(key, value)
    return tmp_path


@pytest.mark.parametrize("title", [t for t in SNIPPETS if t != "Several processes (DDP)"])
def test_snippet_runs(title, sandbox, capsys):
    for module in SNIPPETS[title]:
        pytest.importorskip(module)
    for code in python_blocks()[title]:
        exec(compile(tiny(code), f"README.md: {title}", "exec"), {"__name__": "readme_snippet"})
    printed = capsys.readouterr().out
    if title == "PyTorch Lightning":
        assert "gradmedic_report.json" in printed
    if title == "Hugging Face transformers":
        assert (
            "gradmedic/signal_ratio_min" in printed and (sandbox / "out" / "gradmedic_report.json").exists()
        )
    if title == "TensorBoard":
        assert list((sandbox / "runs" / "gradmedic").glob("events.out.tfevents.*"))
    if title == "Files: CSV and JSON Lines":
        assert (sandbox / "series.csv").exists() and "History(" in printed


def test_ddp_snippet_runs_as_a_script(sandbox):
    (code,) = python_blocks()["Several processes (DDP)"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = sandbox / "ddp_snippet.py"
    script.write_text(tiny(code).replace('MASTER_PORT="29512"', f'MASTER_PORT="{port}"'), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(script)], cwd=sandbox, env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "score" in done.stdout or "healthy" in done.stdout.lower() or done.stdout.strip()
    assert (sandbox / "ddp_run.jsonl").exists()
