"""Watch an unmodified training script: what ``gradmedic run SCRIPT [ARGS...]`` does.

The script runs as ``python SCRIPT ARGS`` would run it (``__name__ == "__main__"``, ``sys.argv``,
its folder first on ``sys.path``). gradmedic places two process-wide optimizer hooks
(``torch.optim.optimizer.register_optimizer_step_pre_hook`` and ``..._post_hook``) and notes the
scalar each ``backward()`` starts from (the loss). When an optimizer finishes its first step,
gradmedic finds the model it trains (the smallest ``nn.Module`` that holds all of its
parameters; the outermost of equals) and watches it with :func:`gradmedic.watch` from the next
step on: plain loops, Lightning and Hugging Face Trainer scripts alike, and several models with
their own optimizers (a GAN) are each watched. A ``torch.amp.GradScaler`` (the only enabled one
in the process) is handed to the monitor, and the loss recorded is the unscaled one.

When the script ends (normally, by an exception, ``sys.exit`` or Ctrl-C) each monitor is
diagnosed and detached, and ``OUT/report.json`` (the Report), ``OUT/report.html`` and
``OUT/run.jsonl`` (the History) are written; with several models, one set per model,
``report-<n>-<Class>.json`` and so on. The exit status is the script's own.

Example:
    >>> import tempfile, textwrap
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "train.py").write_text(textwrap.dedent('''
    ...     import torch
    ...     model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    ...     opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ...     for _ in range(5):
    ...         opt.zero_grad()
    ...         model(torch.randn(16, 4)).pow(2).mean().backward()
    ...         opt.step()
    ... '''))
    >>> outcome = run_script(folder / "train.py", [], out=folder / "out", quiet=True)
    >>> outcome.status, [path.name for path in outcome.written]
    (0, ['report.json', 'report.html', 'run.jsonl'])
"""

from __future__ import annotations

import gc
import runpy
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from .errors import ConfigError
from .monitor import Monitor, watch

#: Seconds between two refreshes of the ``--live`` view.
LIVE_REFRESH_SECONDS = 1.0


@dataclass
class Watched:
    """One model found training in the script, and its monitor."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    monitor: Monitor
    label: str


@dataclass
class Outcome:
    """What :func:`run_script` returns: the script's exit status and the files written."""

    status: int
    written: list[Path] = field(default_factory=list)
    reports: list[Any] = field(default_factory=list)


class ScriptWatcher:
    """Finds every model an optimizer trains in this process and watches it.

    Args:
        options: options of :func:`gradmedic.watch` for every monitor (e.g. ``gradients_every=10``).
        on_step: called after each watched optimizer step (the live view), or ``None``.
    """

    def __init__(self, options: dict[str, Any] | None = None, on_step: Callable[[], None] | None = None):
        self.options = dict(options or {})
        self.on_step = on_step
        self.watched: list[Watched] = []
        self.notes: list[str] = []
        self._seen: set[int] = set()
        self._by_optimizer: dict[int, Watched] = {}
        self._loss: Tensor | None = None
        self._scaled: set[int] = set()
        self._handles: list[RemovableHandle] = []
        self._restore: list[Callable[[], None]] = []

    @contextmanager
    def installed(self) -> Iterator[ScriptWatcher]:
        """Place the process-wide hooks for the ``with`` block; remove them, and every monitor's, after."""
        self._install()
        try:
            yield self
        finally:
            self._uninstall()

    def _install(self) -> None:
        from torch.optim.optimizer import register_optimizer_step_post_hook

        self._handles.append(register_optimizer_step_post_hook(self._after_step))
        self._patch(torch.autograd, "backward", self._noting_backward)
        self._patch(torch.amp.GradScaler, "scale", self._noting_scale)

    def _patch(self, owner: Any, name: str, make: Callable[[Any], Any]) -> None:
        original = getattr(owner, name)
        setattr(owner, name, make(original))
        self._restore.append(lambda: setattr(owner, name, original))

    def _uninstall(self) -> None:
        for handle in self._handles:
            handle.remove()
        for restore in reversed(self._restore):
            restore()
        self._handles, self._restore = [], []

    def _noting_backward(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def backward(tensors: Any, *args: Any, **kwargs: Any) -> Any:
            self._note_loss(tensors)
            return original(tensors, *args, **kwargs)

        return backward

    def _noting_scale(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def scale(scaler: Any, outputs: Any) -> Any:
            scaled = original(scaler, outputs)
            if isinstance(outputs, Tensor) and outputs.numel() == 1 and isinstance(scaled, Tensor):
                self._loss = outputs.detach()
                self._scaled = {id(scaled)}
            return scaled

        return scale

    def _note_loss(self, tensors: Any) -> None:
        """Keep the scalar a ``backward()`` starts from: the loss (not the scaler's scaled copy)."""
        tensor = tensors[0] if isinstance(tensors, (list, tuple)) and len(tensors) == 1 else tensors
        if isinstance(tensor, Tensor) and tensor.numel() == 1 and tensor.is_floating_point():
            if id(tensor) not in self._scaled:
                self._loss = tensor.detach()
            self._scaled = set()

    def _after_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        watched = self._by_optimizer.get(id(optimizer))
        if watched is not None:
            if watched.monitor.attached and self._loss is not None:
                watched.monitor.step(self._loss)
            self._loss = None
            if self.on_step is not None:
                self.on_step()
            return
        if id(optimizer) in self._seen:
            return
        self._seen.add(id(optimizer))
        self._loss = None
        self._watch(optimizer)

    def _watch(self, optimizer: torch.optim.Optimizer) -> None:
        model = owning_module(optimizer)
        if model is None:
            self.notes.append(
                f"{type(optimizer).__name__}: its parameters belong to no nn.Module: not watched"
            )
            return
        if any(w.model is model for w in self.watched):
            self.notes.append(f"a second optimizer ({type(optimizer).__name__}) of {type(model).__name__}: "
                              "the model is watched with its first optimizer")  # fmt: skip
            return
        options = dict(self.options)
        scaler = _only_enabled_scaler()
        if scaler is not None:
            options.setdefault("scaler", scaler)
        try:
            monitor = watch(model, optimizer, **options)
        except Exception as error:  # the user's run goes on; the reason is reported
            self.notes.append(f"{type(model).__name__} not watched: {error}")
            return
        label = f"{len(self.watched) + 1}-{type(model).__name__}"
        watched = Watched(model, optimizer, monitor, label)
        self.watched.append(watched)
        self._by_optimizer[id(optimizer)] = watched

    def finish(self, out: Path, quiet: bool = False) -> tuple[list[Path], list[Any]]:
        """Diagnose and detach every monitor; write its report and run into ``out``."""
        written: list[Path] = []
        reports: list[Any] = []
        several = len(self.watched) > 1
        for watched in self.watched:
            try:
                report = watched.monitor.diagnose()
                history = watched.monitor.history
            finally:
                watched.monitor.detach()
            suffix = f"-{watched.label}" if several else ""
            out.mkdir(parents=True, exist_ok=True)
            json_path = out / f"report{suffix}.json"
            json_path.write_text(report.to_json(), encoding="utf-8")
            written += [json_path, report.save_html(out / f"report{suffix}.html", history)]
            written.append(history.save(out / f"run{suffix}.jsonl"))
            reports.append(report)
            if not quiet:
                heading = f"gradmedic run: {type(watched.model).__name__}"
                steps = watched.monitor.step_index
                print(f"\n{heading} ({steps} step{'s' * (steps != 1)} watched)\n{report}", file=sys.stderr)
        if not quiet:
            for note in self.notes:
                print(f"gradmedic run: {note}", file=sys.stderr)
            if not self.watched:
                print("gradmedic run: no optimizer stepped, so no model was watched", file=sys.stderr)
            elif written:
                print(f"gradmedic run: wrote {', '.join(str(p) for p in written)}", file=sys.stderr)
        return written, reports


def owning_module(optimizer: torch.optim.Optimizer) -> nn.Module | None:
    """The smallest module holding every parameter of ``optimizer`` (the outermost of equals).

    Example:
        >>> inner = nn.Linear(2, 2)
        >>> outer = nn.Sequential(inner)
        >>> owning_module(torch.optim.SGD(inner.parameters(), lr=0.1)) is outer
        True
    """
    wanted = {id(p) for group in optimizer.param_groups for p in group["params"]}
    candidates: list[tuple[int, nn.Module]] = []
    for obj in gc.get_objects():
        if issubclass(type(obj), nn.Module):  # type(), not isinstance: no attribute of obj is read
            ids = {id(p) for p in obj.parameters()}
            if wanted <= ids:
                candidates.append((len(ids), obj))
    if not candidates:
        return None
    fewest = min(count for count, _ in candidates)
    smallest = [module for count, module in candidates if count == fewest]
    inside = {id(sub) for module in smallest for sub in module.modules() if sub is not module}
    outermost = [module for module in smallest if id(module) not in inside]
    return outermost[0] if outermost else smallest[0]


def _only_enabled_scaler() -> torch.amp.GradScaler | None:
    """The process's one enabled GradScaler, if there is exactly one."""
    scalers = [obj for obj in gc.get_objects() if issubclass(type(obj), torch.amp.GradScaler)]
    scalers = [scaler for scaler in scalers if scaler.is_enabled()]
    return scalers[0] if len(scalers) == 1 else None


def run_script(
    script: str | Path,
    args: Sequence[str],
    out: str | Path = "gradmedic-run",
    options: dict[str, Any] | None = None,
    live: bool = False,
    quiet: bool = False,
) -> Outcome:
    """Run ``script`` with ``args`` as ``python script args`` would, watching what it trains.

    Args:
        script: the training script.
        args: its command-line arguments.
        out: the folder for the reports and runs.
        options: options of :func:`gradmedic.watch` (e.g. ``{"gradients_every": 10}``).
        live: show a terminal view of the per-layer signal and the findings, refreshed at most
            once per :data:`LIVE_REFRESH_SECONDS`.
        quiet: print nothing (the files are still written).

    Returns:
        The script's exit status (0, its ``sys.exit`` code, 1 after an uncaught exception,
        130 after Ctrl-C) and the files written.

    Raises:
        ConfigError: when ``script`` is not a readable file.
    """
    path = Path(script)
    if not path.is_file():
        raise ConfigError(f"{script}: no such script: give the path of a Python training script")
    view = _LiveView() if live else None
    watcher = ScriptWatcher(options, on_step=view.refresh_later if view else None)
    if view is not None:
        view.watcher = watcher
    status = 0
    with _as_main(path, args), watcher.installed():
        try:
            if view is not None:
                view.start()
            runpy.run_path(str(path), run_name="__main__")
        except SystemExit as stop:
            status = _exit_status(stop.code)
        except KeyboardInterrupt:
            print("KeyboardInterrupt", file=sys.stderr)
            status = 130
        except Exception:  # the script's own error, shown as Python shows it
            traceback.print_exc()
            status = 1
        finally:
            if view is not None:
                view.stop()
    written, reports = watcher.finish(Path(out), quiet=quiet)
    return Outcome(status, written, reports)


def _exit_status(code: object) -> int:
    """The status ``sys.exit(code)`` gives the process."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


@contextmanager
def _as_main(path: Path, args: Sequence[str]) -> Iterator[None]:
    """``sys.argv`` and ``sys.path[0]`` as ``python path args`` sets them, restored after."""
    argv, syspath = sys.argv[:], sys.path[:]
    sys.argv = [str(path), *args]
    sys.path.insert(0, str(path.resolve().parent))
    try:
        yield
    finally:
        sys.argv, sys.path[:] = argv, syspath


class _LiveView:
    """A rich terminal view of each watched model's per-layer signal and findings so far."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.live import Live

        self.watcher: ScriptWatcher | None = None
        self._live = Live(console=Console(stderr=True), auto_refresh=False, transient=False)
        self._last = 0.0

    def start(self) -> None:
        self._live.start()

    def stop(self) -> None:
        self.refresh()
        self._live.stop()

    def refresh_later(self) -> None:
        """Refresh if :data:`LIVE_REFRESH_SECONDS` have passed since the last refresh."""
        if time.perf_counter() - self._last >= LIVE_REFRESH_SECONDS:
            self.refresh()

    def refresh(self) -> None:
        from rich.console import Group

        self._last = time.perf_counter()
        watched = self.watcher.watched if self.watcher else []
        self._live.update(Group(*(_live_panel(w) for w in watched)), refresh=True)


def _live_panel(watched: Watched) -> Any:
    """One model's panel: its layers' latest backprop signal, then the findings so far."""
    import math

    from rich.panel import Panel
    from rich.table import Table

    report = watched.monitor.diagnose()
    verdict = "healthy" if report.healthy else "NOT healthy: " + ", ".join(report.kinds)
    table = Table(box=None, pad_edge=False, caption=verdict, caption_justify="left")
    for column in ("layer", "type", "signal rms", ""):
        table.add_column(column)
    values = [layer.signal_rms for layer in report.layers]
    finite = [v for v in values if math.isfinite(v) and v > 0]
    low, high = (math.log10(min(finite)), math.log10(max(finite))) if finite else (0.0, 0.0)
    for layer in report.layers:
        value = layer.signal_rms
        width = 0
        if math.isfinite(value) and value > 0 and high > low:
            width = round(24 * (math.log10(value) - low) / (high - low))
        table.add_row(layer.name, layer.type, f"{value:.1e}", "█" * width)
    title = f"{type(watched.model).__name__}: step {watched.monitor.step_index}"
    return Panel(table, title=title, expand=False)
