"""The `model` section: one config class per architecture, which is also the registry.

Each class names its builder (`module:function` under `tfdl.models`) so that validating a
pipeline never imports Keras; the builder's keyword defaults equal the class's defaults
(a test checks it), so a notebook call and a YAML file build the same model.
"""

from typing import Annotated, ClassVar, Literal, Union

from pydantic import Field

from tfdl.schema import PositiveInt, Rate, StrictModel

Activation = Literal[
    "sigmoid", "tanh", "relu", "leaky_relu", "elu", "selu", "gelu", "swish", "softplus", "linear"
]
Initializer = Literal[
    "glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_normal", "random_normal"
]


class ArchConfig(StrictModel):
    """Base of every architecture's hyperparameters."""

    builder: ClassVar[str]  # "module:function" inside tfdl.models
    tasks: ClassVar[tuple[str, ...]] = ("binary", "multiclass", "regression")

    def hparams(self) -> dict:
        """Keyword arguments for the builder."""
        return self.model_dump(exclude={"arch"})

    @property
    def output_activation(self) -> str | None:
        """The output non-linearity when it is not the task's own (sigmoid/softmax/linear)."""
        return None


class Perceptron(ArchConfig):
    """The perceptron: a single neuron y = g(w0 + X^T W) (binary or regression tasks)."""

    arch: Literal["perceptron"]
    builder: ClassVar[str] = "perceptron:build_perceptron"
    tasks: ClassVar[tuple[str, ...]] = ("binary", "regression")
    activation: Literal["auto", "sigmoid", "tanh", "relu", "linear"] = "auto"

    @property
    def output_activation(self) -> str | None:
        return None if self.activation == "auto" else self.activation


class DeepMLP(ArchConfig):
    """Deep feed-forward net: dense layers; activation, initialiser, dropout, batch norm."""

    arch: Literal["deep_mlp"]
    builder: ClassVar[str] = "mlp:build_deep_mlp"
    units: list[PositiveInt] = Field(default=[64, 32], min_length=1)
    activation: Activation = "relu"
    initializer: Initializer = "he_normal"
    dropout: Rate = 0.0
    batch_norm: bool = False


_ALL = (Perceptron, DeepMLP)

ARCHITECTURES: dict[str, type[ArchConfig]] = {
    cls.model_fields["arch"].annotation.__args__[0]: cls for cls in _ALL
}

ModelConfig = Annotated[Union[_ALL], Field(discriminator="arch")]  # noqa: UP007
