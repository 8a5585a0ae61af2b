"""Draw ``docs/sick_vs_treated.png``: the backprop signal of the demo's sick network and of its
treated version, layer by layer, on one axis.

Both curves come from checkups (one forward/backward pass on 128 digits): the sick network is
``gradmedic.demo.sick_example`` (20 Linear+Sigmoid blocks, PyTorch's default init); the treated
one is what ``gradmedic.treat`` returns for it. Deterministic; takes a few seconds on a CPU.

Usage:
    python scripts/readme_picture.py [OUT.png]
"""

from __future__ import annotations

import sys
from pathlib import Path

import gradmedic
from gradmedic import plots
from gradmedic.demo import sick_example
from gradmedic.diagnosis.findings import Report

OUT = Path(__file__).resolve().parent.parent / "docs" / "sick_vs_treated.png"


def first_over_last(report: Report) -> float:
    """Signal at the first layer divided by the signal at the last one."""
    return report.layers[0].signal_rms / report.layers[-1].signal_rms


def main(out: Path = OUT) -> Path:
    """Run the checkups, draw the picture, save it to ``out`` and return the path."""
    model, inputs, targets = sick_example(seed=0)
    treatment = gradmedic.treat(model, inputs, targets, suggest_lr=False)
    before, after = treatment.before, treatment.after
    changes = ", ".join(sorted({c.action.split(" (")[0] for c in treatment.applied}))
    fig = plots.flow_profiles(
        [before, after],
        ["sick: 20 x (Linear + Sigmoid), PyTorch's default init",
         f"treated by gradmedic.treat ({changes})"],
        title="Where the gradient dies: backprop signal per layer, before and after gradmedic.treat",
    )  # fmt: skip
    fig.set_size_inches(10, 5.2)
    ax = fig.axes[0]
    for patch in [p for p in ax.patches if "exploding" in str(p.get_label())]:
        patch.remove()  # nothing explodes here: the band would only need explaining
    ax.set_ylim(top=1.0)
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles, [label.split("  (first")[0] for label in labels], loc="lower right", fontsize=9,
              framealpha=0.95)  # fmt: skip
    ax.annotate(
        f"sick: the first layer gets {first_over_last(before):.0e} of the last\n"
        "layer's gradient: the layers near the input cannot learn",
        (0, before.layers[0].signal_rms), xytext=(7, 1e-16), va="center",
        fontsize=10, color="C0", fontweight="bold", arrowprops={"arrowstyle": "->", "color": "C0"},
    )  # fmt: skip
    ax.annotate(
        f"treated: the first layer gets {first_over_last(after):.0e} of it: "
        "every layer gets a usable gradient",
        (0, after.layers[0].signal_rms), xytext=(1.0, after.layers[0].signal_rms * 30), fontsize=10,
        color="C1", fontweight="bold", arrowprops={"arrowstyle": "->", "color": "C1"},
    )  # fmt: skip
    names = [tick.get_text().rsplit(" (", 1)[0] for tick in ax.get_xticklabels()]  # "0 (Linear)" -> "0"
    ax.set_xticks(ax.get_xticks(), names, rotation=0, ha="center")
    ax.set_xlabel("layer with weights (module name), input on the left, output on the right")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    return out


if __name__ == "__main__":
    path = main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
    print(f"wrote {path} ({path.stat().st_size // 1024} KB)")
