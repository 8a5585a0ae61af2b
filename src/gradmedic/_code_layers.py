"""The layers of gradmedic's code, bottom up, and which modules belong to each.

A module may import only from its own layer or a lower one, and no import may close a cycle;
``tests/test_layering.py`` walks every import of the package (those inside functions too, not
the ones under ``if TYPE_CHECKING:``) and fails on a breach. A lower layer that needs something
from a higher one asks :mod:`gradmedic._providers` for it, and the higher layer provides it.

A key maps the module of that name and, for a subpackage, every module under it; the longest key
wins. The key ``gradmedic`` maps only the package's own ``__init__`` (the public facade). A new
module must be added here, to the layer whose imports it needs.

Example:
    >>> layer_of("gradmedic.monitor.flush"), layer_of("gradmedic.remedies.treatment")
    ('measuring', 'remedies')
    >>> LAYERS.index("diagnosis") < LAYERS.index("presentation")
    True
"""

from __future__ import annotations

#: The layers, bottom up: each may import from itself and those before it.
LAYERS = ("foundations", "measuring", "diagnosis", "remedies", "presentation", "apps")

#: Module (or subpackage) -> layer.
CODE_LAYERS: dict[str, str] = {
    # errors, hooks, model layers and ops, schedules, pure statistics, running a model, data
    "gradmedic._code_layers": "foundations",
    "gradmedic._deprecation": "foundations",
    "gradmedic._providers": "foundations",
    "gradmedic._version": "foundations",
    "gradmedic.datasets": "foundations",
    "gradmedic.errors": "foundations",
    "gradmedic.hooks": "foundations",
    "gradmedic.layers": "foundations",
    "gradmedic.metrics": "foundations",
    "gradmedic.op_layers": "foundations",
    "gradmedic.recurrent_stats": "foundations",
    "gradmedic.registry": "foundations",
    "gradmedic.running": "foundations",
    "gradmedic.schedules": "foundations",
    "gradmedic.stats": "foundations",
    "gradmedic.tasks": "foundations",
    "gradmedic.terminal": "foundations",
    # statistics recorded while a model runs, and the run's record
    "gradmedic._activation_buffer": "measuring",
    "gradmedic._signal_buffer": "measuring",
    "gradmedic._through_time_recorder": "measuring",
    "gradmedic.history": "measuring",
    "gradmedic.monitor": "measuring",
    "gradmedic.layer_profiles": "measuring",
    "gradmedic.profile": "measuring",  # deprecated name of layer_profiles
    "gradmedic.sinks": "measuring",
    "gradmedic.tracing": "measuring",
    "gradmedic.training": "measuring",
    # evidence, rules, findings, checkup, trial
    "gradmedic.diagnosis": "diagnosis",
    # the remedies and treat
    "gradmedic.remedies": "remedies",
    # pictures and pages: they read data, they do not run the pipeline
    "gradmedic.canvas": "presentation",
    "gradmedic.html_report": "presentation",
    "gradmedic.pages": "presentation",
    "gradmedic.plots": "presentation",
    # what users run: the facade, the command line, the demo, integrations, the lab
    "gradmedic": "apps",
    "gradmedic.__main__": "apps",
    "gradmedic.cli": "apps",
    "gradmedic.demo": "apps",
    "gradmedic.integrations": "apps",
    "gradmedic.lab": "apps",
    "gradmedic.script_runner": "apps",
    "gradmedic.model_spec": "apps",
    "gradmedic.targets": "apps",  # deprecated name of model_spec
}


def layer_of(module: str, layers: dict[str, str] | None = None) -> str | None:
    """The layer of ``module`` (a dotted name), or None when no key maps it."""
    layers = CODE_LAYERS if layers is None else layers
    root = module.split(".")[0]
    keys = [k for k in layers if module == k or (k != root and module.startswith(k + "."))]
    return layers[max(keys, key=len)] if keys else None
