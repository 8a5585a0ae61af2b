"""Failures of fully connected networks from public threads, re-created on digits or seeded data."""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise

import torch
from torch import Tensor, nn

from .core import Case, Setup, adam, cross_entropy, digits, mse, seeded, sgd


def stack(widths: list[int], act: Callable[[], nn.Module], bias: bool = True) -> list[nn.Module]:
    """Linear layers between consecutive ``widths``, each followed by ``act()``."""
    layers: list[nn.Module] = []
    for a, b in pairwise(widths):
        layers += [nn.Linear(a, b, bias=bias), act()]
    return layers


# --- deep sigmoid stack (20 x 100) ---------------------------------------------------------------
def deep_sigmoid(seed: int, act: Callable[[], nn.Module] = nn.Sigmoid) -> Setup:
    seeded(seed)
    x, y = digits()
    model = nn.Sequential(*stack([64] + [100] * 20, act), nn.Linear(100, 10))
    if act is nn.ReLU:  # the usual remedy: ReLU with He initialisation
        for m in model[:-1]:
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
    return Setup(model, x, y, cross_entropy, adam, 1e-3)


# --- four sigmoid layers of 500 on binary vectors, unscaled real targets -------------------------
def binary_regression(seed: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed + 7)
    x = torch.randint(0, 2, (2000, 32), generator=g).float()
    w = torch.randn(32, generator=g)
    y = 50 + 20 * torch.tanh(x @ w / 3) + 5 * (x[:, :16] * x[:, 16:]).sum(1) / 4
    return x, y.unsqueeze(1)


def sigmoid_4x500(seed: int, act: Callable[[], nn.Module] = nn.Sigmoid, scale: float = 1.0) -> Setup:
    seeded(seed)
    x, y = binary_regression(seed)
    y = (y - y.mean()) / y.std() if scale != 1.0 else y
    model = nn.Sequential(*stack([32, 500, 500, 500, 500], act), nn.Linear(500, 1))
    return Setup(model, x, y, mse, adam, 1e-3)


# --- 100 linear layers without activation, weights N(0, 1) ---------------------------------------
def linear100(seed: int, std: float | None = 1.0) -> Setup:
    seeded(seed)
    x, y = digits()
    layers = [nn.Linear(64, 256, bias=False)] + [nn.Linear(256, 256, bias=False) for _ in range(100)]
    for layer in layers[1:]:
        nn.init.normal_(layer.weight, std=std if std is not None else (1 / 256) ** 0.5)
    model = nn.Sequential(*layers, nn.Linear(256, 10))
    return Setup(model, x, y, cross_entropy, adam, 1e-3, steps=60)


# --- zero initialisation of a ReLU network (course assignment) -----------------------------------
def circles(seed: int) -> tuple[Tensor, Tensor]:
    from sklearn.datasets import make_circles

    x, y = make_circles(n_samples=600, noise=0.05, random_state=seed)
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32).unsqueeze(1)


def bce(output: Tensor, targets: Tensor) -> Tensor:
    """Binary cross-entropy on probabilities, as the sources write it (a Sigmoid then BCELoss)."""
    return nn.functional.binary_cross_entropy(output.float().clamp(1e-7, 1 - 1e-7), targets.float())


def zero_init(seed: int, zeros: bool = True) -> Setup:
    seeded(seed)
    x, y = circles(seed)
    model = nn.Sequential(*stack([2, 10, 5], nn.ReLU), nn.Linear(5, 1), nn.Sigmoid())
    if zeros:
        for p in model.parameters():
            nn.init.zeros_(p)
    else:
        for m in model:
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
    setup = Setup(model, x, y, bce, sgd, 0.3, batch=600)
    setup.baseline = float(bce(torch.full_like(y, 0.5), y))
    return setup


# --- ReLU layers with constant +0.5 / -0.5 kernels -----------------------------------------------
def constant_relu(seed: int, act: Callable[[], nn.Module] = nn.ReLU) -> Setup:
    seeded(seed)
    g = torch.Generator().manual_seed(seed + 3)
    x = torch.rand(1000, 10, generator=g)
    y = (x.sum(1, keepdim=True) > 5).float()
    l1, l2, out = nn.Linear(10, 10), nn.Linear(10, 10), nn.Linear(10, 1)
    for layer, value in ((l1, 0.5), (l2, -0.5)):
        nn.init.constant_(layer.weight, value)
        nn.init.zeros_(layer.bias)  # Keras' default bias initializer
    nn.init.xavier_uniform_(out.weight)
    nn.init.zeros_(out.bias)
    model = nn.Sequential(l1, act(), l2, act(), out, nn.Sigmoid())
    setup = Setup(model, x, y, bce, adam, 1e-3, batch=32)
    p = float(y.mean())
    setup.baseline = float(bce(torch.full_like(y, p), y))
    return setup


# --- one ReLU unit fed only positive features, both weights negative -----------------------------
def single_unit(seed: int, act: Callable[[], nn.Module] = nn.ReLU, standardise: bool = False) -> Setup:
    seeded(seed)
    g = torch.Generator().manual_seed(seed + 5)
    x = torch.rand(500, 2, generator=g) * 3 + 0.1
    y = (x[:, 0] > x[:, 1]).float().unsqueeze(1)
    if standardise:
        x = (x - x.mean(0)) / x.std(0)
    hidden, out = nn.Linear(2, 1), nn.Linear(1, 1)
    nn.init.uniform_(hidden.weight, -0.05, 0.0)  # the question's premise: both weights negative
    nn.init.uniform_(hidden.bias, -0.05, 0.05)
    nn.init.uniform_(out.weight, 0.05, 0.05)
    nn.init.zeros_(out.bias)
    model = nn.Sequential(hidden, act(), out, nn.Sigmoid())
    setup = Setup(model, x, y, bce, adam, 1e-2, batch=32)
    setup.baseline = float(bce(torch.full_like(y, float(y.mean())), y))
    return setup


# --- ReLU MLP with Adam at a high rate: loss stuck at ln(10) -------------------------------------
def relu_mlp(seed: int, lr: float, opt: Callable = adam) -> Setup:
    seeded(seed)
    x, y = digits()
    model = nn.Sequential(*stack([64, 128, 64], nn.ReLU), nn.Linear(64, 10))
    return Setup(model, x, y, cross_entropy, opt, lr)


# --- unnormalised regression, SGD 1e-3: loss to a trillion, then NaN ------------------------------
def unscaled_regression(seed: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed + 11)
    x = torch.rand(1000, 8, generator=g) * 10
    y = x @ torch.rand(8, 1, generator=g) * 5 + torch.randn(1000, 1, generator=g) * 10
    return x, y


def unscaled_mlp(seed: int, lr: float) -> Setup:
    seeded(seed)
    x, y = unscaled_regression(seed)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))
    return Setup(model, x, y, mse, sgd, lr)


CASES = [
    Case(
        id="deep_sigmoid_20x100",
        source="https://github.com/juebrauer/code_jb",
        symptom="20 Linear(100,100)+Sigmoid layers: mean |grad| of the first 10 layers prints as "
        "0.0000000000",
        fix="not given on the page; the zoo tests ReLU with He initialisation, the usual remedy",
        kind="vanishing",
        family="mlp",
        adaptation="digits (64 features -> 100) and a 10-way head with cross-entropy instead of one random "
        "regression target; Adam 1e-3, 300 steps of 64",
        build=deep_sigmoid,
        build_fix=lambda s: deep_sigmoid(s, nn.ReLU),
    ),
    Case(
        id="sigmoid_4x500_unscaled_targets",
        source="https://ai.stackexchange.com/questions/16557/what-could-be-the-problem-when-a-neural-network-with-four-hidden-layers-with-the",
        symptom="four hidden layers of 500 sigmoid units mapping binary vectors to real outputs do not "
        "learn, "
        "high loss even on training data",
        fix="answers: sigmoid derivatives shrink the error signal (vanishing gradient) and the outputs "
        "should be scaled; the zoo tests both (ReLU and standardised targets)",
        kind="vanishing",
        family="mlp",
        adaptation="seeded binary vectors of 32 bits and a seeded nonlinear real target (mean ~50); Keras' "
        "Adam 1e-3",
        build=sigmoid_4x500,
        build_fix=lambda s: sigmoid_4x500(s, nn.ReLU, scale=0.0),
    ),
    Case(
        id="linear100_normal_init",
        source="https://blog.csdn.net/qq_24739717/article/details/102896678",
        symptom="100 Linear(256,256) layers without activation, weights N(0,1): the activations' std "
        "grows to inf/NaN within a few dozen layers",
        fix="initialise with std sqrt(1/n) (Xavier/Kaiming)",
        kind="exploding",
        family="mlp",
        adaptation="digits projected to 256 features, a 10-way head; Adam 1e-3, 60 steps",
        build=linear100,
        build_fix=lambda s: linear100(s, None),
    ),
    Case(
        id="zero_init_relu",
        source="https://community.deeplearning.ai/t/week-1-programming-assignment-initialization-exercise-1-initialize-parameters-zeros/121049",
        symptom="LINEAR-RELU-LINEAR-RELU-LINEAR-SIGMOID with every weight zero predicts 0.5 for every "
        "example and no weight is adjusted",
        fix="random (He) initialisation",
        kind="other",
        family="mlp",
        adaptation="scikit-learn make_circles (600 points) as in the course; layers [2, 10, 5, 1]; "
        "full-batch "
        "gradient descent at 0.3",
        build=zero_init,
        build_fix=lambda s: zero_init(s, zeros=False),
    ),
    Case(
        id="relu_constant_kernels",
        source="https://github.com/ayush9818/MLDS-SQ",
        symptom="Dense(10, relu) with constant 0.5 kernels then Dense(10, relu) with constant -0.5 kernels: "
        "the second layer's units only output zero (dying ReLU), the network stops learning",
        fix="Swish instead of ReLU",
        kind="dying",
        family="mlp",
        adaptation="the notebook's labels are random; here y = [sum(x) > 5] so something can be learned",
        build=constant_relu,
        build_fix=lambda s: constant_relu(s, nn.SiLU),
    ),
    Case(
        id="single_relu_unit_negative_weights",
        source="https://stats.stackexchange.com/questions/450100/understanding-relu-does-this-unlucky-intialized-network-assign-all-instances",
        symptom="one hidden ReLU unit, inputs always positive, both weights drawn negative: the unit "
        "outputs 0 for every example and every instance gets the same class",
        fix="LeakyReLU (answer), or standardised inputs with both signs",
        kind="dying",
        family="mlp",
        adaptation="the question's premise made certain: weights drawn from U(-0.05, 0); seeded positive "
        "features, label x0 > x1; Adam 1e-2",
        build=single_unit,
        build_fix=lambda s: single_unit(s, lambda: nn.LeakyReLU(0.01)),
    ),
    Case(
        id="ce_stuck_at_ln10_adam",
        source="https://discuss.pytorch.org/t/cross-entropy-loss-is-not-decreasing/43814/16",
        symptom="cross-entropy stays at 2.30 (ln 10); the parameters are almost all negative and their "
        "gradients zero (ReLU units dead)",
        fix="a smaller learning rate (or SGD instead of Adam)",
        kind="dying",
        family="mlp",
        adaptation="the thread's model is not shown: a 64-128-64-10 ReLU MLP on digits with Adam at 0.1",
        build=lambda s: relu_mlp(s, 0.1),
        build_fix=lambda s: relu_mlp(s, 1e-3),
        lrs=(0.1,),
    ),
    Case(
        id="relu_high_lr_dead_units",
        source="https://github.com/keras-team/keras/issues/3425",
        symptom="accuracy suddenly drops and stays down; a comment quotes CS231n: 'as much as 40% of your "
        "network can be dead ... if the learning rate is set too high'",
        fix="a proper (lower) learning rate",
        kind="dying",
        family="mlp",
        adaptation="the quoted mechanism on a 64-128-64-10 ReLU MLP on digits, plain SGD at 3.0 against 0.1",
        build=lambda s: relu_mlp(s, 3.0, sgd),
        build_fix=lambda s: relu_mlp(s, 0.1, sgd),
        lrs=(3.0,),
    ),
    Case(
        id="unscaled_regression_sgd_nan",
        source="https://datascience.stackexchange.com/questions/15962/why-is-learning-rate-causing-my-neural-networks-weights-to-skyrocket",
        symptom="at learning rate 0.001 the loss goes from thousands to a trillion, then NaN",
        fix="learning rate 0.0001",
        kind="exploding",
        family="mlp",
        adaptation="the network and data are not shown: a 8-32-1 ReLU MLP on seeded unnormalised "
        "features (0-10) and targets around 90, so that the first loss is in the thousands as reported "
        "(with features 0-100 every rate down to 3e-5 diverges); plain gradient descent",
        build=lambda s: unscaled_mlp(s, 1e-3),
        build_fix=lambda s: unscaled_mlp(s, 1e-4),
        lrs=(1e-3,),
    ),
]


# --- a Softmax layer, then the log of its output as the loss ---------------------------------------
def softmax_then_log(seed: int, fused: bool = False) -> Setup:
    seeded(seed)
    x, y = digits()
    layers: list[nn.Module] = [*stack([64, 256, 256], nn.ReLU), nn.Linear(256, 10)]
    if not fused:
        layers.append(nn.Softmax(dim=1))

    def loss(output: Tensor, targets: Tensor) -> Tensor:
        if fused:
            return nn.functional.cross_entropy(output, targets)
        return -torch.log(
            output.gather(1, targets[:, None])
        ).mean()  # categorical cross-entropy on probabilities

    return Setup(nn.Sequential(*layers), x, y, loss, adam, 1e-2)


CASES.append(
    Case(
        id="softmax_layer_then_log_loss",
        source="https://epcsirmaz.blogspot.com/2019/",
        symptom="a Keras softmax layer followed by categorical_crossentropy: accuracy gets stuck at 1/N; "
        "the signals before the softmax were largely equal and quite large",
        fix="drop the softmax layer and use the fused softmax-cross-entropy on logits",
        kind="saturation",
        family="mlp",
        adaptation="a 64-256-256-10 ReLU MLP on digits with an nn.Softmax output and -log(p) loss; Adam 1e-2",
        build=softmax_then_log,
        build_fix=lambda s: softmax_then_log(s, fused=True),
    )
)
