"""The `model` section: one config class per architecture, which is also the registry.

Each class names its builder (`module:function` under `tfdl.models`) so that validating a
pipeline never imports Keras; the builder's keyword defaults equal the class's defaults
(a test checks it), so a notebook call and a YAML file build the same model. The first
line of a class's docstring is what `tfdl list` shows.
"""

import math
from typing import Annotated, ClassVar, Literal, Union

from pydantic import Field, model_validator

from tfdl.schema import PositiveInt, Rate, StrictModel

Activation = Literal[
    "sigmoid", "tanh", "relu", "leaky_relu", "elu", "selu", "gelu", "swish", "softplus", "linear"
]
# zeros: the lecture's "can all weights start at zero?" (deep_mlp's output layer too).
Initializer = Literal[
    "glorot_uniform",
    "glorot_normal",
    "he_uniform",
    "he_normal",
    "lecun_normal",
    "random_normal",
    "zeros",
]
# scratch: the lecture's layer written from add_weight up (tfdl.layers); keras: the library's.
Impl = Literal["keras", "scratch"]
Widths = Annotated[list[PositiveInt], Field(min_length=1)]
OneOrMore = PositiveInt | Widths  # one value for every layer, or one per layer

CLASSIFY = ("binary", "multiclass")
SUPERVISED = ("binary", "multiclass", "regression")


class ArchConfig(StrictModel):
    """Base of every architecture's hyperparameters."""

    builder: ClassVar[str]  # "module:function" inside tfdl.models
    tasks: ClassVar[tuple[str, ...]] = SUPERVISED
    # Optional "module:function"s: text from a trained model (`tfdl generate`), and test
    # metrics beyond model.evaluate (logged as test_<name>).
    generator: ClassVar[str | None] = None
    evaluator: ClassVar[str | None] = None
    # `train.jit_compile: auto` turns XLA on for this architecture on a CPU too (Keras's own
    # auto does so only on a GPU): set where benchmarks/defaults.py measured it faster.
    xla_on_cpu: ClassVar[bool] = False

    def hparams(self) -> dict:
        """Keyword arguments for the builder."""
        return self.model_dump(exclude={"arch"})

    @property
    def output_activation(self) -> str | None:
        """The output non-linearity when it is not the task's own (sigmoid/softmax/linear)."""
        return None

    @property
    def downsampling(self) -> int:
        """By how much the net shrinks each side of an image before its head: an image
        smaller than this has nothing left for its last blocks to look at."""
        return 1


class Augmentation(StrictModel):
    """Random image transformations, active in training only (Keras preprocessing layers)."""

    flip: Literal["none", "horizontal", "vertical", "horizontal_and_vertical"] = "none"
    rotation: Annotated[float, Field(ge=0.0, le=0.5)] = 0.0  # fraction of a full turn
    zoom: Rate = 0.0  # fraction of height/width
    translation: Rate = 0.0  # fraction of height/width


# --------------------------------------------------------------------- lecture 1: perceptrons


class Perceptron(ArchConfig):
    """The perceptron: a single neuron y = g(w0 + X^T W) (binary or regression tasks)."""

    arch: Literal["perceptron"]
    builder: ClassVar[str] = "perceptron:build_perceptron"
    tasks: ClassVar[tuple[str, ...]] = ("binary", "regression")
    activation: Literal["auto", "sigmoid", "tanh", "relu", "linear"] = "auto"
    impl: Impl = "keras"

    @property
    def output_activation(self) -> str | None:
        return None if self.activation == "auto" else self.activation


class MultiOutputPerceptron(ArchConfig):
    """Multi-output perceptron: one neuron per output, z_i = w0_i + X^T W_i, then softmax."""

    arch: Literal["multi_output_perceptron"]
    builder: ClassVar[str] = "perceptron:build_multi_output_perceptron"
    impl: Impl = "keras"


class SingleLayerNet(ArchConfig):
    """Single-layer neural network: one hidden layer z = g(w0 + X^T W1), then the output layer."""

    arch: Literal["single_layer_net"]
    builder: ClassVar[str] = "mlp:build_single_layer_net"
    units: PositiveInt = 32
    activation: Activation = "relu"
    impl: Impl = "keras"


class DeepMLP(ArchConfig):
    """Deep feed-forward net: dense layers; activation, initialiser, dropout, batch norm."""

    arch: Literal["deep_mlp"]
    builder: ClassVar[str] = "mlp:build_deep_mlp"
    units: Widths = [64, 32]
    activation: Activation = "relu"
    initializer: Initializer = "he_normal"
    dropout: Rate = 0.0
    batch_norm: bool = False
    residual: bool = False  # z_k = z_{k-1} + g(W_k z_{k-1}) where widths allow: a gradient highway
    impl: Impl = "keras"


# ---------------------------------------------------------------- lecture 3: convolutional nets


class _ConvStack(ArchConfig):
    tasks: ClassVar[tuple[str, ...]] = SUPERVISED
    filters: Widths = [32, 64]  # one conv block per entry
    kernel_size: OneOrMore = 3
    strides: OneOrMore = 1
    pool: Literal["max", "average", "none"] = "max"
    pool_size: PositiveInt = 2
    batch_norm: bool = True
    activation: Activation = "relu"
    dense_units: list[PositiveInt] = [64]  # the head's hidden layers
    dropout: Rate = 0.25

    @model_validator(mode="after")
    def _one_per_block(self):
        for name in ("kernel_size", "strides"):
            value = getattr(self, name)
            if isinstance(value, list) and len(value) != len(self.filters):
                raise ValueError(
                    f"{name} lists {len(value)} values for {len(self.filters)} conv blocks; "
                    "give one value, or one per entry of filters"
                )
        return self


class CNN2D(_ConvStack):
    """2-D CNN: [conv -> (batch norm) -> activation -> pool] blocks, dropout, dense head."""

    arch: Literal["cnn2d"]
    builder: ClassVar[str] = "cnn:build_cnn2d"
    augment: Augmentation | None = None

    @property
    def downsampling(self) -> int:
        n = len(self.filters)
        strides = self.strides if isinstance(self.strides, list) else [self.strides] * n
        pool = 1 if self.pool == "none" else self.pool_size
        return math.prod(s * pool for s in strides)


class CNN1D(_ConvStack):
    """1-D CNN for sequences (DNA, text, music, MNIST-1D): the same blocks along time."""

    arch: Literal["cnn1d"]
    builder: ClassVar[str] = "cnn:build_cnn1d"
    kernel_size: OneOrMore = 5


class ResNet(ArchConfig):
    """ResNet: residual blocks y = F(x) + x, identity or projection skips (2-D or 1-D)."""

    arch: Literal["resnet"]
    builder: ClassVar[str] = "resnet:build_resnet"
    stem_filters: PositiveInt = 16
    stages: Widths = [16, 32]  # width of each stage; stages after the first halve the length
    blocks_per_stage: PositiveInt = 2
    kernel_size: PositiveInt = 3
    residual: bool = True  # false: the same net without skips, the plain-net comparison
    dropout: Rate = 0.0
    augment: Augmentation | None = None  # 2-D inputs only

    @property
    def downsampling(self) -> int:
        return 2 ** (len(self.stages) - 1)


# -------------------------------------------------------------- lecture 2: recurrent networks


class _Recurrent(ArchConfig):
    tasks: ClassVar[tuple[str, ...]] = SUPERVISED
    units: Widths = [64]  # more than one entry stacks layers (a deep RNN)
    bidirectional: bool = False
    dropout: Rate = 0.0
    dense_units: list[PositiveInt] = []


class SimpleRNN(_Recurrent):
    """Simple RNN, many-to-one: h_t = tanh(W_hh h_{t-1} + W_xh x_t), the last h classifies."""

    arch: Literal["simple_rnn"]
    builder: ClassVar[str] = "rnn:build_simple_rnn"
    impl: Impl = "keras"


class LSTM(_Recurrent):
    """LSTM sequence classifier: gated cell state against vanishing gradients (many-to-one)."""

    arch: Literal["lstm"]
    builder: ClassVar[str] = "rnn:build_lstm"


class GRU(_Recurrent):
    """GRU sequence classifier: update and reset gates, lighter than the LSTM (many-to-one)."""

    arch: Literal["gru"]
    builder: ClassVar[str] = "rnn:build_gru"
    xla_on_cpu: ClassVar[bool] = True


class CharLM(ArchConfig):
    """Character language model: embedding -> LSTM or GRU -> next-character probabilities."""

    arch: Literal["char_lm"]
    builder: ClassVar[str] = "language:build_char_lm"
    tasks: ClassVar[tuple[str, ...]] = ("language_model",)
    generator: ClassVar[str | None] = "language:generate_text"
    embedding_dim: PositiveInt = 64
    cell: Literal["lstm", "gru"] = "lstm"
    units: Widths = [256]
    dropout: Rate = 0.0


# ------------------------------------------------------------ lecture 2: attention, Transformers


class _Transformer(ArchConfig):
    d_model: PositiveInt = 64
    num_heads: PositiveInt = 4
    ff_dim: PositiveInt = 128
    dropout: Rate = 0.1
    impl: Impl = "keras"

    @model_validator(mode="after")
    def _heads_divide_width(self):
        if self.d_model % self.num_heads:
            raise ValueError(
                f"d_model={self.d_model} is not divisible by num_heads={self.num_heads}; "
                "each head gets d_model / num_heads dimensions"
            )
        return self


class TransformerEncoder(_Transformer):
    """Transformer encoder classifier: positional encoding, self-attention blocks, pooling."""

    arch: Literal["transformer_encoder"]
    builder: ClassVar[str] = "transformer:build_transformer_encoder"
    xla_on_cpu: ClassVar[bool] = True
    tasks: ClassVar[tuple[str, ...]] = SUPERVISED
    num_layers: PositiveInt = 2
    patch_size: PositiveInt = 1  # steps per token: 40 steps of MNIST-1D, patch 4 -> 10 tokens
    pooling: Literal["mean", "cls"] = "mean"


class TransformerDecoder(_Transformer):
    """Decoder-only Transformer language model: causal (masked) self-attention over characters."""

    arch: Literal["transformer_decoder"]
    builder: ClassVar[str] = "transformer:build_transformer_decoder"
    tasks: ClassVar[tuple[str, ...]] = ("language_model",)
    generator: ClassVar[str | None] = "language:generate_text"
    num_layers: PositiveInt = 2


class TransformerSeq2Seq(_Transformer):
    """Encoder-decoder Transformer: cross-attention from the decoder to the encoded input."""

    arch: Literal["transformer_seq2seq"]
    builder: ClassVar[str] = "transformer:build_transformer_seq2seq"
    tasks: ClassVar[tuple[str, ...]] = ("seq2seq",)
    generator: ClassVar[str | None] = "transformer:translate"
    evaluator: ClassVar[str | None] = "transformer:exact_match"
    num_encoder_layers: PositiveInt = 2
    num_decoder_layers: PositiveInt = 2


_ALL = (
    Perceptron,
    MultiOutputPerceptron,
    SingleLayerNet,
    DeepMLP,
    CNN2D,
    CNN1D,
    ResNet,
    SimpleRNN,
    LSTM,
    GRU,
    CharLM,
    TransformerEncoder,
    TransformerDecoder,
    TransformerSeq2Seq,
)

ARCHITECTURES: dict[str, type[ArchConfig]] = {
    cls.model_fields["arch"].annotation.__args__[0]: cls for cls in _ALL
}

ModelConfig = Annotated[Union[_ALL], Field(discriminator="arch")]  # noqa: UP007
