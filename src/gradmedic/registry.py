"""The one table of what gradmedic knows about activations and layer kinds.

Every module that needs to know "is this an activation, can it saturate, can its units die,
which init suits it, is this a weight layer, a normalization, a recurrent layer" reads it here,
as backpack maps module types to handlers and timm keeps one table of activation names.

For each activation: its canonical name, the module types, the names of the torch functions
that compute it (``torch.sigmoid``, ``F.relu``, ``x.tanh()``; ``func.__name__`` as a
``TorchFunctionMode`` sees it, a trailing ``_`` of the in-place form stripped), its saturation
band, whether its units can die, its ``nn.init.calculate_gain`` name and its family.

The rule for the unknown: a module whose class is neither registered nor a subclass of a
registered class is not an activation (it is observed only if it has parameters, and no
saturation or dead fraction is measured on it); a subclass of a registered class is that
activation (the nearest registered class in its MRO decides); a torch function not registered is
not an activation (the tracer passes over it). A layer type not listed below is "other": no
init rule touches it (``reinit`` reports it as skipped) and it does not count towards depth.

Example:
    >>> from torch import nn
    >>> from gradmedic.registry import activation_of, by_name
    >>> activation_of(nn.LeakyReLU()).name, by_name("tanh").gain, activation_of(nn.Linear(1, 1))
    ('leaky_relu', 'tanh', None)
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import TypeGuard

from torch import nn

#: A unit is "saturated" where its local slope is below this fraction of the activation's
#: largest slope (sigmoid: 0.25, tanh: 1). At 5 %, a signal crossing the unit keeps at most
#: 1/20 of what a unit in the linear regime passes on: two such layers already cost 400x.
SATURATION_SLOPE = 0.05


@dataclass(frozen=True)
class SaturationBand:
    """Where an activation is saturated: outputs farther than ``radius`` from ``center``.

    Each band is where the activation's local slope falls below :data:`SATURATION_SLOPE` of
    its maximum, solved for the output ``y``:

    * sigmoid, slope ``y(1-y)`` (max 1/4): ``|y - 1/2| > sqrt(1 - 0.05) / 2``;
    * tanh, slope ``1 - y^2`` (max 1): ``|y| > sqrt(1 - 0.05)``;
    * softsign, slope ``(1 - |y|)^2`` (max 1): ``|y| > 1 - sqrt(0.05)``;
    * hardtanh, ReLU6, hardsigmoid: slope 0 on the clipped values, ``|y - mid| >= half-range``.
    """

    center: float
    radius: float
    inclusive: bool = False


class ActivationFamily(str, enum.Enum):
    """How an activation treats the gradient, which decides the rules and the init that suit it.

    ``saturating``: bounded, slope near 0 in the tails (Xavier/orthogonal init);
    ``relu``: piecewise linear with slope 1 for x > 0 (He init); ``smooth_relu``: smooth
    ReLU-likes (He init); ``self_normalizing``: SELU (LeCun init); ``other``: none of those.
    """

    SATURATING = "saturating"
    RELU = "relu"
    SMOOTH_RELU = "smooth_relu"
    SELF_NORMALIZING = "self_normalizing"
    OTHER = "other"

    def __str__(self) -> str:
        return self.value


#: The families whose layers take He (Kaiming) initialisation.
HE_FAMILIES = (ActivationFamily.RELU, ActivationFamily.SMOOTH_RELU)


@dataclass(frozen=True)
class Activation:
    """One elementwise activation, as gradmedic knows it.

    Attributes:
        name: canonical name (``"leaky_relu"``), the one reports show.
        modules: the module classes that compute it (the first is the one :meth:`make` builds).
        functions: ``func.__name__`` of the torch functions that compute it.
        band: saturation band of the module with its default arguments (None: cannot saturate).
            A ``Hardtanh`` (and ``ReLU6``) module's band comes from its own ``min_val``/``max_val``.
        can_die: whether output and slope are exactly 0 on a half-line, so a unit can be dead.
        gain: the ``nn.init.calculate_gain`` name of the init that keeps the signal's scale.
        family: see :class:`ActivationFamily`.
    """

    name: str
    modules: tuple[type[nn.Module], ...]
    functions: tuple[str, ...]
    band: SaturationBand | None
    can_die: bool
    gain: str
    family: ActivationFamily

    def band_of(self, module: nn.Module | None = None) -> SaturationBand | None:
        """The saturation band of ``module`` (of this activation's default module if None).

        Example:
            >>> by_name("hardtanh").band_of(nn.Hardtanh(-2.0, 0.5))
            SaturationBand(center=-0.75, radius=1.25, inclusive=True)
        """
        if self.band is not None and isinstance(module, nn.Hardtanh):
            low, high = module.min_val, module.max_val
            return SaturationBand((low + high) / 2, (high - low) / 2, inclusive=True)
        return self.band

    def make(self) -> nn.Module:
        """A fresh module of this activation with its default arguments.

        Example:
            >>> by_name("silu").make()
            SiLU()
        """
        return self.modules[0]()


_EDGE = math.sqrt(1 - SATURATION_SLOPE)
_S, _R, _SR = ActivationFamily.SATURATING, ActivationFamily.RELU, ActivationFamily.SMOOTH_RELU

#: Every activation gradmedic knows, in the order reports list them.
ACTIVATIONS: tuple[Activation, ...] = (
    Activation("sigmoid", (nn.Sigmoid,), ("sigmoid",), SaturationBand(0.5, _EDGE / 2), False, "sigmoid", _S),
    Activation("tanh", (nn.Tanh,), ("tanh",), SaturationBand(0.0, _EDGE), False, "tanh", _S),
    Activation("hardtanh", (nn.Hardtanh,), ("hardtanh",), SaturationBand(0.0, 1.0, True), False, "linear",
               _S),
    Activation("relu6", (nn.ReLU6,), ("relu6",), SaturationBand(3.0, 3.0, True), True, "relu", _R),
    Activation("softsign", (nn.Softsign,), ("softsign",),
               SaturationBand(0.0, 1 - math.sqrt(SATURATION_SLOPE)), False, "linear", _S),
    Activation("hardsigmoid", (nn.Hardsigmoid,), ("hardsigmoid",), SaturationBand(0.5, 0.5, True), True,
               "linear", _S),
    Activation("relu", (nn.ReLU,), ("relu",), None, True, "relu", _R),
    Activation("leaky_relu", (nn.LeakyReLU,), ("leaky_relu",), None, False, "leaky_relu", _R),
    Activation("prelu", (nn.PReLU,), ("prelu",), None, False, "relu", _R),
    Activation("rrelu", (nn.RReLU,), ("rrelu",), None, False, "relu", _R),
    Activation("elu", (nn.ELU,), ("elu",), None, False, "relu", _SR),
    Activation("selu", (nn.SELU,), ("selu",), None, False, "selu", ActivationFamily.SELF_NORMALIZING),
    Activation("celu", (nn.CELU,), ("celu",), None, False, "relu", _SR),
    Activation("gelu", (nn.GELU,), ("gelu",), None, False, "relu", _SR),
    Activation("silu", (nn.SiLU,), ("silu",), None, False, "relu", _SR),
    Activation("mish", (nn.Mish,), ("mish",), None, False, "relu", _SR),
    Activation("softplus", (nn.Softplus,), ("softplus",), None, False, "relu", _SR),
    Activation("hardswish", (nn.Hardswish,), ("hardswish",), None, False, "relu", _SR),
    # F.logsigmoid's __name__ is log_sigmoid (the canonical name stays the module's)
    Activation("logsigmoid", (nn.LogSigmoid,), ("log_sigmoid",), None, False, "linear", _S),
    # no functional names: F.threshold's own arguments decide what it does, and tanhshrink is rare
    Activation("tanhshrink", (nn.Tanhshrink,), (), None, False, "linear", ActivationFamily.OTHER),
    Activation("threshold", (nn.Threshold,), (), None, True, "linear", ActivationFamily.OTHER),
)  # fmt: skip

_BY_NAME = {a.name: a for a in ACTIVATIONS}
_BY_TYPE = {cls: a for a in ACTIVATIONS for cls in a.modules}
_BY_CLASS_NAME = {cls.__name__: a for cls, a in _BY_TYPE.items()}
_BY_FUNCTION = {f: a for a in ACTIVATIONS for f in a.functions}

#: The activation module classes (a module of a subclass is an activation too).
ACTIVATION_TYPES: tuple[type[nn.Module], ...] = tuple(_BY_TYPE)


def by_name(name: str) -> Activation:
    """The activation called ``name``; KeyError naming the known ones for another name.

    Example:
        >>> by_name("relu").can_die
        True
    """
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown activation {name!r}: known are {', '.join(_BY_NAME)}") from None


def lookup(name: str | None) -> Activation | None:
    """The activation called ``name``, or None (also for None): for names read from a report.

    Example:
        >>> lookup("tanh").family, lookup("my_act")
        (<ActivationFamily.SATURATING: 'saturating'>, None)
    """
    return _BY_NAME.get(name) if name is not None else None


def activation_of_type(cls: type) -> Activation | None:
    """The activation a module class computes: the nearest registered class in its MRO, or None.

    Example:
        >>> activation_of_type(nn.ReLU6).name, activation_of_type(nn.Linear)
        ('relu6', None)
    """
    return next((_BY_TYPE[c] for c in cls.__mro__ if c in _BY_TYPE), None)


def activation_of(module: object) -> Activation | None:
    """The activation ``module`` computes (see :func:`activation_of_type`), or None."""
    return activation_of_type(type(module))


def activation_of_class_name(name: str) -> Activation | None:
    """The activation of a torch class name as a History keeps it (``"LeakyReLU"``), or None.

    Example:
        >>> activation_of_class_name("LeakyReLU").name, activation_of_class_name("MyAct")
        ('leaky_relu', None)
    """
    return _BY_CLASS_NAME.get(name)


def activation_of_function(name: str) -> Activation | None:
    """The activation a torch function computes, from its ``__name__`` (``relu_`` counts as ``relu``).

    Example:
        >>> activation_of_function("relu_").name, activation_of_function("log_sigmoid").name
        ('relu', 'logsigmoid')
    """
    return _BY_FUNCTION.get(name.rstrip("_"))


def names(*families: ActivationFamily) -> frozenset[str]:
    """Canonical names of the activations of ``families``.

    Example:
        >>> sorted(names(ActivationFamily.SELF_NORMALIZING))
        ['selu']
    """
    return frozenset(a.name for a in ACTIVATIONS if a.family in families)


# -- layer kinds ---------------------------------------------------------------------------

#: Layers whose weight is a matrix (or a convolution kernel) applied to the input: the layers a
#: stack is made of, whose init ``reinit`` chooses and whose gain the rules check.
WEIGHT_TYPES: tuple[type[nn.Linear], type[nn.modules.conv._ConvNd]] = (nn.Linear, nn.modules.conv._ConvNd)
#: Convolutions (channels first): normalization and residual remedies treat them apart.
CONV_TYPES: tuple[type[nn.modules.conv._ConvNd]] = (nn.modules.conv._ConvNd,)
#: Normalization layers (they keep their own init; a model with one is "normalized").
NORM_TYPES: tuple[type[nn.Module], ...] = tuple(
    t for t in (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, getattr(nn, "RMSNorm", None)) if t
)
#: Recurrent layers and cells.
RECURRENT_TYPES: tuple[type[nn.RNNBase], type[nn.RNNCellBase]] = (nn.RNNBase, nn.RNNCellBase)
#: Gated recurrent layers and cells (LSTM, GRU).
GATED_TYPES: tuple[type[nn.Module], ...] = (nn.LSTM, nn.GRU, nn.LSTMCell, nn.GRUCell)

_NN_CLASSES = [c for c in vars(nn).values() if isinstance(c, type) and issubclass(c, nn.Module)]


def class_names(types: tuple[type[nn.Module], ...]) -> frozenset[str]:
    """Names of the ``torch.nn`` classes of ``types`` (subclasses included), to read a History,
    which keeps class names, not classes.

    Example:
        >>> sorted(class_names(GATED_TYPES))
        ['GRU', 'GRUCell', 'LSTM', 'LSTMCell']
    """
    return frozenset(c.__name__ for c in _NN_CLASSES if issubclass(c, types))


def is_recurrent(module: nn.Module) -> TypeGuard[nn.RNNBase | nn.RNNCellBase]:
    """Whether ``module`` is a recurrent layer or cell.

    Example:
        >>> is_recurrent(nn.GRUCell(2, 2)), is_recurrent(nn.Linear(2, 2))
        (True, False)
    """
    return isinstance(module, RECURRENT_TYPES)
