"""Healthy models that others wrote: Hugging Face ``transformers`` classes built from tiny configs
(random initialisation, nothing downloaded) and re-creations of ``pytorch/examples`` models.

Each is confirmed to train (``python benchmarks/zoo.py --confirm``): a checkup that flags one of
them raises a false alarm.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .cases_transformer import majority_task
from .core import Case, Setup, adam, cross_entropy, digits, markov_text, seeded, sgd

HF = "https://github.com/huggingface/transformers"
EXAMPLES = "https://github.com/pytorch/examples"


def lm_data(seed: int, vocab: int = 16, length: int = 17) -> tuple[Tensor, Tensor]:
    text = markov_text(1000, length, vocab, seed)
    return text[:, :-1], text[:, 1:]


def gpt2(seed: int) -> Setup:
    from transformers import GPT2Config, GPT2LMHeadModel

    seeded(seed)
    x, y = lm_data(seed)
    config = GPT2Config(
        vocab_size=16, n_positions=32, n_embd=32, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0
    )
    return Setup(GPT2LMHeadModel(config), {"input_ids": x}, y, cross_entropy, adam, 1e-3)


def llama(seed: int) -> Setup:
    from transformers import LlamaConfig, LlamaForCausalLM

    seeded(seed)
    x, y = lm_data(seed)
    sizes = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2}
    heads = {"num_attention_heads": 4, "num_key_value_heads": 2}
    config = LlamaConfig(vocab_size=16, max_position_embeddings=32, **sizes, **heads)
    return Setup(LlamaForCausalLM(config), {"input_ids": x}, y, cross_entropy, adam, 1e-3)


def bert(seed: int) -> Setup:
    from transformers import BertConfig, BertForSequenceClassification

    seeded(seed)
    x, y = majority_task(seed)
    config = BertConfig(vocab_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=32, num_labels=8)  # fmt: skip
    model = BertForSequenceClassification(config)
    return Setup(model, {"input_ids": x}, y, cross_entropy, adam, 1e-3, steps=600)


def t5(seed: int) -> Setup:
    from transformers import T5Config, T5ForConditionalGeneration

    seeded(seed)
    text = markov_text(1000, 12, 16, seed) + 1  # 0 is T5's pad / decoder start token
    start = torch.zeros(len(text), 1, dtype=torch.int64)
    inputs = {"input_ids": text, "decoder_input_ids": torch.cat([start, text[:, :-1]], 1)}
    config = T5Config(vocab_size=17, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                      decoder_start_token_id=0, pad_token_id=0)  # fmt: skip
    return Setup(T5ForConditionalGeneration(config), inputs, text, cross_entropy, adam, 1e-3)


def image_setup(model: nn.Module, seed: int) -> Setup:
    x, y = digits(images=True)
    return Setup(model, x, y, cross_entropy, adam, 1e-3)


def resnet(seed: int) -> Setup:
    from transformers import ResNetConfig, ResNetForImageClassification

    seeded(seed)
    config = ResNetConfig(num_channels=1, embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1],
                          layer_type="basic", num_labels=10, downsample_in_first_stage=False)  # fmt: skip
    return image_setup(ResNetForImageClassification(config), seed)


def vit(seed: int) -> Setup:
    from transformers import ViTConfig, ViTForImageClassification

    seeded(seed)
    config = ViTConfig(image_size=8, patch_size=2, num_channels=1, hidden_size=32, num_hidden_layers=2,
                       num_attention_heads=2, intermediate_size=64, num_labels=10)  # fmt: skip
    return image_setup(ViTForImageClassification(config), seed)


def convnext(seed: int) -> Setup:
    from transformers import ConvNextConfig, ConvNextForImageClassification

    seeded(seed)
    config = ConvNextConfig(num_channels=1, patch_size=1, num_stages=2, hidden_sizes=[16, 32], depths=[1, 1],
                            num_labels=10)  # fmt: skip
    return image_setup(ConvNextForImageClassification(config), seed)


# --- pytorch/examples re-creations ----------------------------------------------------------------
class MnistNet(nn.Module):
    """examples/mnist's Net (two convs, max-pool, dropouts, two linears, log-softmax) for 8x8 input."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(64 * 2 * 2, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        x = self.dropout1(nn.functional.max_pool2d(x, 2)).flatten(1)
        x = self.dropout2(torch.relu(self.fc1(x)))
        return nn.functional.log_softmax(self.fc2(x), dim=1)


def adadelta(params: Any, lr: float) -> torch.optim.Optimizer:
    return torch.optim.Adadelta(params, lr=lr)


def mnist(seed: int) -> Setup:
    seeded(seed)
    x, y = digits(images=True)
    return Setup(MnistNet(), x, y, cross_entropy, adadelta, 1.0)


class RNNModel(nn.Module):
    """examples/word_language_model's RNNModel: embedding, dropout, 2-layer LSTM, decoder (tied)."""

    def __init__(self, ntoken: int = 16, nhid: int = 32) -> None:
        super().__init__()
        self.drop = nn.Dropout(0.2)
        self.encoder = nn.Embedding(ntoken, nhid)
        self.rnn = nn.LSTM(nhid, nhid, 2, dropout=0.2, batch_first=True)
        self.decoder = nn.Linear(nhid, ntoken)
        self.decoder.weight = self.encoder.weight
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.rnn(self.drop(self.encoder(x)))
        return self.decoder(self.drop(out))


def word_lm(seed: int) -> Setup:
    seeded(seed)
    x, y = lm_data(seed)
    return Setup(RNNModel(), x, y, cross_entropy, sgd, 20.0, clip=0.25, batch=20)


class MnistRNN(nn.Module):
    """examples/mnist_rnn: an LSTM reads the image row by row, the last output feeds fc layers."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(8, 64, batch_first=True)
        self.batchnorm = nn.BatchNorm1d(64)
        self.dropout1 = nn.Dropout2d(0.25)
        self.dropout2 = nn.Dropout2d(0.5)
        self.fc1 = nn.Linear(64, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.rnn(x.reshape(-1, 8, 8))
        h = self.dropout1(self.batchnorm(out[:, -1]))
        h = self.dropout2(torch.relu(self.fc1(h)))
        return nn.functional.log_softmax(self.fc2(h), dim=1)


def mnist_rnn(seed: int) -> Setup:
    seeded(seed)
    x, y = digits(images=True)
    return Setup(MnistRNN(), x, y, cross_entropy, adadelta, 0.1)


def healthy(id_: str, source: str, family: str, build: Any, note: str) -> Case:
    return Case(id=id_, source=source, symptom="(healthy)", fix="(none)", kind="healthy", family=family,
                adaptation=note, build=build, healthy=True)  # fmt: skip


CASES = [
    healthy(
        "hf_gpt2_tiny",
        HF,
        "transformer",
        gpt2,
        "GPT2LMHeadModel, 2 layers of 32, next token of seeded Markov text",
    ),
    healthy(
        "hf_llama_tiny",
        HF,
        "transformer",
        llama,
        "LlamaForCausalLM, 2 layers of 32, GQA 4/2 heads, Markov text",
    ),
    healthy(
        "hf_bert_tiny",
        HF,
        "transformer",
        bert,
        "BertForSequenceClassification, 2 layers, majority-token task, 600 steps",
    ),
    healthy(
        "hf_t5_tiny",
        HF,
        "transformer",
        t5,
        "T5ForConditionalGeneration, 2+2 layers, copy task, teacher forcing",
    ),
    healthy("hf_resnet_tiny", HF, "cnn", resnet, "ResNetForImageClassification, stages [16, 32], 8x8 digits"),
    healthy(
        "hf_vit_tiny", HF, "transformer", vit, "ViTForImageClassification, patch 2, 2 layers, 8x8 digits"
    ),
    healthy(
        "hf_convnext_tiny", HF, "cnn", convnext, "ConvNextForImageClassification, stages [16, 32], 8x8 digits"
    ),
    healthy(
        "examples_mnist_cnn",
        f"{EXAMPLES}/tree/main/mnist",
        "cnn",
        mnist,
        "Net on 8x8 digits (fc1 sees 64x2x2), Adadelta 1.0 as the example",
    ),
    healthy(
        "examples_word_lm_lstm",
        f"{EXAMPLES}/tree/main/word_language_model",
        "rnn",
        word_lm,
        "RNNModel LSTM 2x32 tied, SGD 20 with clipping 0.25 as the example, Markov text",
    ),
    healthy(
        "examples_mnist_rnn",
        f"{EXAMPLES}/tree/main/mnist_rnn",
        "rnn",
        mnist_rnn,
        "LSTM(8, 64) over the 8 rows, BatchNorm1d, dropouts, Adadelta 0.1",
    ),
]
