"""The `data` section: one config class per source, which is also the registry.

Each class names its loader (a function in `tfdl.data.sources`) so that validating a pipeline
never imports numpy, scikit-learn or pandas. The first line of a class's docstring is what
`tfdl list` shows for the source.
"""

from typing import Annotated, ClassVar, Literal, Union

from pydantic import Field, model_validator

from tfdl.schema import Fraction, PositiveInt, StrictModel

NonNegativeFloat = Annotated[float, Field(ge=0.0)]
# scikit-learn and numpy's legacy generators only take seeds in [0, 2**32).
Seed = Annotated[int, Field(ge=0, lt=2**32)]
Side = Annotated[int, Field(ge=1, le=4096)]  # pixels along one side of an image


class SourceConfig(StrictModel):
    """Base of every source: how much data to hold out, how to normalise, which seed."""

    # The loader: a function name in tfdl.data.sources, or "module:function" in tfdl.data.
    loader: ClassVar[str]
    # Fetched from the network once (then cached) unless `path` names a local copy.
    downloads: ClassVar[bool] = False
    # The command writing example data for this source, formatted with the `path`.
    example: ClassVar[str | None] = None

    val_fraction: Fraction = 0.15
    test_fraction: Fraction = 0.15
    normalize: Literal["standard", "minmax", "none"] = "standard"
    # Seeds generation and split; None means the training seed (the caller passes it resolved).
    seed: Seed | None = None

    @model_validator(mode="after")
    def _leave_enough_to_train(self):
        total = self.val_fraction + self.test_fraction
        if total >= 0.9:
            raise ValueError(
                f"val_fraction + test_fraction = {total:g} leaves too little to train on; "
                "their sum must be below 0.9"
            )
        return self


class Digits(SourceConfig):
    """Handwritten digits 0-9 as 8x8 grey images (scikit-learn; 1797 samples, 10 classes).

    `as_images` keeps the 8x8x1 image shape (for conv nets); otherwise the 64 pixels are
    a flat feature vector (for dense nets).
    """

    source: Literal["digits"]
    loader: ClassVar[str] = "load_digits"
    as_images: bool = False


class Iris(SourceConfig):
    """Iris flowers: 4 petal and sepal measurements, 3 species (150 samples)."""

    source: Literal["iris"]
    loader: ClassVar[str] = "load_iris"


class Wine(SourceConfig):
    """Wines from 3 cultivars told apart by 13 chemical measurements (178 samples)."""

    source: Literal["wine"]
    loader: ClassVar[str] = "load_wine"


class BreastCancer(SourceConfig):
    """Breast tumours, malignant or benign, from 30 cell-nucleus features (569 samples, binary)."""

    source: Literal["breast_cancer"]
    loader: ClassVar[str] = "load_breast_cancer"


class Diabetes(SourceConfig):
    """Diabetes progression a year on from 10 baseline measurements (442 samples, regression)."""

    source: Literal["diabetes"]
    loader: ClassVar[str] = "load_diabetes"


class Mnist1D(SourceConfig):
    """MNIST-1D: the ten digits as 40-step 1-D signals, generated locally (10 classes).

    Generated on the spot with `mnist1d.data.make_dataset` from the seed (nothing is
    downloaded or cached). The generator makes `num_samples // 10` signals per digit.
    `as_sequence` gives each sample the shape (40, 1) (40 time steps, one feature) for
    convolutional or recurrent nets; otherwise a flat vector of 40 features.
    """

    source: Literal["mnist1d"]
    loader: ClassVar[str] = "load_mnist1d"
    num_samples: PositiveInt = 5000
    as_sequence: bool = False


class PassTheClass(SourceConfig):
    """Will I pass this class? Lectures attended and hours on the project -> pass or fail.

    The lecture's perceptron example, simulated: x1 = lectures attended (an integer, uniform
    on 0..15), x2 = hours spent on the final project (uniform on 0..12). A student passes
    (label 1, else 0) with probability

        p = sigmoid(-9 + 0.6 * x1 + 0.75 * x2)

    so the true decision boundary is the line 0.6 x1 + 0.75 x2 = 9, about half the class
    passes, and the coin flips near the line cap the best possible accuracy at about 87%.
    """

    source: Literal["pass_the_class"]
    loader: ClassVar[str] = "load_pass_the_class"
    n_samples: PositiveInt = 500


class Moons(SourceConfig):
    """Two interleaving half circles, red vs green: not linearly separable (2-D, binary).

    scikit-learn's `make_moons`; `noise` is the standard deviation of the Gaussian noise
    added to each coordinate.
    """

    source: Literal["moons"]
    loader: ClassVar[str] = "load_moons"
    n_samples: PositiveInt = 500
    noise: NonNegativeFloat = 0.1


class Circles(SourceConfig):
    """A small circle inside a large one, red vs green (2-D, binary).

    scikit-learn's `make_circles`; `factor` is the inner circle's radius relative to the
    outer one, `noise` the standard deviation of the Gaussian noise on each coordinate.
    """

    source: Literal["circles"]
    loader: ClassVar[str] = "load_circles"
    n_samples: PositiveInt = 500
    noise: NonNegativeFloat = 0.05
    factor: Fraction = 0.5


class Spirals(SourceConfig):
    """Two interleaved spirals, red vs green: the hard case for a shallow net (2-D, binary).

    Each arm winds `turns` times around the origin, its radius growing by 1 per turn, the
    green arm being the red one rotated by half a turn (so the arms are 0.5 apart).
    `noise` is the standard deviation of the Gaussian noise on each coordinate.
    """

    source: Literal["spirals"]
    loader: ClassVar[str] = "load_spirals"
    n_samples: PositiveInt = 500
    noise: NonNegativeFloat = 0.1
    turns: Annotated[float, Field(gt=0.0)] = 1.5


class _TextSettings(StrictModel):
    """How text becomes the model's input: TextVectorization adapted on the training split
    (lower-cased, punctuation stripped, split on whitespace) keeps the `max_tokens` most
    frequent words and cuts or pads each text to `sequence_length` word ids, which an
    Embedding of `embedding_dim` turns into vectors; both layers sit inside the model,
    so it takes the raw strings."""

    max_tokens: Annotated[int, Field(ge=3, le=1_000_000)] = 20000
    sequence_length: Annotated[int, Field(ge=1, le=100_000)] = 200
    embedding_dim: Annotated[int, Field(ge=1, le=4096)] = 64


class Csv(SourceConfig, _TextSettings):
    """Any CSV file: one target column, every other column a numeric feature.

    With `task: auto` a target of strings or booleans, or of integers with at most 20
    distinct values, is a classification (binary for 2 classes, else multiclass); anything
    else is a regression. Class labels are numbered in sorted order; the class names are
    the original labels.
    """

    source: Literal["csv"]
    loader: ClassVar[str] = "load_csv"
    path: str
    target: str
    task: Literal["auto", "binary", "multiclass", "regression"] = "auto"
    # Empty feature cells: an error naming them ("none"), or filled inside the model with
    # the training split's column mean or zero.
    fill_missing: Literal["none", "mean", "zero"] = "none"
    # Columns of categories (strings or integers): looked up inside the model against the
    # training split's values, one-hot, an unseen value in a bucket of its own.
    categorical: list[str] = Field(default_factory=list)
    # How the model reads a category: a one-hot vector (one slot per value seen in
    # training), or a learned vector of `category_embedding_dim` values (for columns with
    # many values, where one-hot would be wide and sparse).
    category_encoding: Literal["one_hot", "embedding"] = "one_hot"
    category_embedding_dim: Annotated[int, Field(ge=1, le=1024)] = 8
    # A column of free text, vectorised inside the model (the text settings above).
    text: str | None = None
    # Files above `stream_above_mb` are read in chunks and streamed from disk by tf.data
    # rather than held as one frame; `streaming: on` always streams, `off` never does.
    streaming: Literal["auto", "on", "off"] = "auto"
    stream_above_mb: Annotated[float, Field(gt=0)] = 256.0
    # What a streamed file keeps after its first epoch: nothing (re-read each epoch), the
    # parsed rows in memory, or in a cache file on disk.
    cache: Literal["none", "memory", "disk"] = "none"

    @model_validator(mode="after")
    def _columns_once(self):
        named = [*self.categorical, *([self.text] if self.text else [])]
        twice = sorted({c for c in named if named.count(c) > 1})
        if twice:
            raise ValueError(f"columns named twice in categorical / text: {', '.join(twice)}")
        return self


class _KerasImages(SourceConfig):
    # The loaders live in tfdl.data.keras_sets, one per class: "keras_sets:load_<source>".
    downloads: ClassVar[bool] = True
    path: str | None = None  # a local copy in the format Keras caches; None: Keras's cache
    split: Literal["source", "random"] = "source"
    max_samples: PositiveInt | None = None


_KERAS_SPLITS = """
    `split: source` (the default) keeps the data set's own test part as the test split
    and takes `val_fraction` of its training part as the validation split (stratified,
    from the seed); `test_fraction` is then unused. `split: random` pools both parts and
    splits them by `val_fraction` and `test_fraction` like any other source.
    `max_samples` keeps a seeded, stratified draw of that many samples for quick runs:
    of the training part under `split: source` (the test part stays whole), of the pooled
    data under `split: random`. Pixels are the raw values 0..255 (as float32); the model
    scales them itself with the normalisation fitted on the training split.
"""


class Mnist(_KerasImages):
    """MNIST handwritten digits 0-9, 28x28x1 grey images (Keras; 60000 + 10000 test).

    Read from `path` when given (a copy of Keras's `mnist.npz`, with the arrays x_train,
    y_train, x_test, y_test); otherwise loaded by `keras.datasets.mnist`, which downloads
    it once, checks its hash and caches it in ~/.keras/datasets/.
    """

    __doc__ += _KERAS_SPLITS
    source: Literal["mnist"]
    loader: ClassVar[str] = "keras_sets:load_mnist"


class FashionMnist(_KerasImages):
    """Fashion-MNIST: 10 kinds of clothing, 28x28x1 grey images (Keras; 60000 + 10000 test).

    Read from `path` when given (a folder like Keras's cache ~/.keras/datasets/fashion-mnist/
    with the four gzipped IDX files train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
    t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz); otherwise loaded by
    `keras.datasets.fashion_mnist`, which downloads it once into that cache.
    """

    __doc__ += _KERAS_SPLITS
    source: Literal["fashion_mnist"]
    loader: ClassVar[str] = "keras_sets:load_fashion_mnist"


class Cifar10(_KerasImages):
    """CIFAR-10: 10 classes of objects, 32x32x3 colour images (Keras; 50000 + 10000 test).

    Read from `path` when given (the folder cifar-10-batches-py that Keras extracts, with
    the pickled batches data_batch_1 .. data_batch_5 and test_batch); otherwise loaded by
    `keras.datasets.cifar10`, which downloads it once, checks its hash and caches it in
    ~/.keras/datasets/.
    """

    __doc__ += _KERAS_SPLITS
    source: Literal["cifar10"]
    loader: ClassVar[str] = "keras_sets:load_cifar10"


class Cifar100(_KerasImages):
    """CIFAR-100: 100 classes (or 20 superclasses), 32x32x3 colour images (Keras; 50000 + 10000).

    Read from `path` when given (the folder cifar-100-python that Keras extracts, with the
    pickled `train` and `test`); otherwise loaded by `keras.datasets.cifar100`, which
    downloads it once, checks its hash and caches it in ~/.keras/datasets/.
    `label_mode: fine` labels the 100 classes (apple, aquarium_fish, ...), `coarse` their
    20 superclasses (aquatic_mammals, fish, ...).
    """

    __doc__ += _KERAS_SPLITS
    source: Literal["cifar100"]
    loader: ClassVar[str] = "keras_sets:load_cifar100"
    label_mode: Literal["fine", "coarse"] = "fine"


class ImageFolder(SourceConfig):
    """Your own pictures: a folder with one subfolder of images per class (streamed from disk).

    The layout `keras.utils.image_dataset_from_directory` reads: `path/<class>/<image>`,
    classes named by their subfolders in sorted order, images in bmp, gif, jpeg or png.
    Each image is decoded and resized to `image_size` ([height, width]) as it is read, a
    batch at a time, so the folder never has to fit in memory; `cache` keeps the decoded
    images after the first epoch in memory or in a file on disk. Pixels stay 0..255: the
    model's first layer rescales them to 0..1 (`normalize: rescale`).
    """

    source: Literal["image_folder"]
    loader: ClassVar[str] = "folders:load_image_folder"
    example: ClassVar[str] = "tfdl make-example-data shapes {path}"
    path: str
    image_size: tuple[Side, Side] = (64, 64)
    color_mode: Literal["grayscale", "rgb", "rgba"] = "rgb"
    classes: list[str] | None = None  # the subfolders to use, in this order; None: all
    normalize: Literal["rescale", "none"] = "rescale"
    cache: Literal["none", "memory", "disk"] = "none"


class TextFolder(SourceConfig, _TextSettings):
    """Your own texts: a folder with one subfolder of .txt files per class (e.g. reviews).

    The layout `keras.utils.text_dataset_from_directory` reads (IMDB's aclImdb/train has
    `neg/` and `pos/`): `path/<class>/<file>.txt`, classes named by their subfolders in
    sorted order, each file one sample, read as UTF-8.
    """

    source: Literal["text_folder"]
    loader: ClassVar[str] = "folders:load_text_folder"
    path: str
    classes: list[str] | None = None  # the subfolders to use (aclImdb: [neg, pos]); None: all
    normalize: Literal["none"] = "none"


class _KerasTexts(SourceConfig, _TextSettings):
    # Loaded like the Keras image sets, the word ids turned back into words so that the
    # model takes raw text; "keras_sets:load_<source>".
    downloads: ClassVar[bool] = True
    path: str | None = None
    split: Literal["source", "random"] = "source"
    max_samples: PositiveInt | None = None
    normalize: Literal["none"] = "none"


class Imdb(_KerasTexts):
    """IMDB movie reviews, positive or negative, as raw text (Keras; 25000 + 25000 test).

    Read from `path` when given (a copy of Keras's `imdb.npz`, with `imdb_word_index.json`
    beside it); otherwise loaded by `keras.datasets.imdb`, which downloads both once into
    ~/.keras/datasets/. Each review's word ids are turned back into its words.
    """

    __doc__ += _KERAS_SPLITS.split("Pixels")[0]
    source: Literal["imdb"]
    loader: ClassVar[str] = "keras_sets:load_imdb"


class Reuters(_KerasTexts):
    """Reuters newswires in 46 topics, as raw text (Keras; 11228 wires, 20% held out for test).

    Read from `path` when given (a copy of Keras's `reuters.npz`, with
    `reuters_word_index.json` beside it); otherwise loaded by `keras.datasets.reuters`,
    which downloads both once into ~/.keras/datasets/.
    """

    __doc__ += _KERAS_SPLITS.split("Pixels")[0]
    source: Literal["reuters"]
    loader: ClassVar[str] = "keras_sets:load_reuters"


class _TokenSource(SourceConfig):
    # Token ids name characters; scaling them would mean nothing.
    normalize: Literal["none"] = "none"


class AbcTunes(_TokenSource):
    """Irish folk tunes in ABC notation, a character corpus for language models (MIT 6.S191).

    Read from `path` when given; otherwise the course's corpus (817 tunes) is downloaded
    once with its sha256 checked and cached by Keras. The corpus is split by tune, so no
    training window overlaps a validation or test one; each sample is `sequence_length`
    characters and its target the same window shifted by one character.
    """

    source: Literal["abc_tunes"]
    loader: ClassVar[str] = "text:load_abc_tunes"
    downloads: ClassVar[bool] = True
    path: str | None = None
    sequence_length: Annotated[int, Field(ge=2)] = 100
    stride: PositiveInt | None = None  # characters between window starts; None: half a window


class Dates(_TokenSource):
    """Human-written dates to ISO dates ("wednesday, 3 march 2021" -> "2021-03-03"), generated.

    A translation task for encoder-decoder models, generated from the seed: each sample
    is a random date between 1950 and 2049 written in one of several human formats; the
    target is its ISO 8601 form.
    """

    source: Literal["dates"]
    loader: ClassVar[str] = "dates:load_dates"
    n_samples: PositiveInt = 10000


_CLASSES = (
    Digits,
    Iris,
    Wine,
    BreastCancer,
    Diabetes,
    Mnist1D,
    PassTheClass,
    Moons,
    Circles,
    Spirals,
    Csv,
    Mnist,
    FashionMnist,
    Cifar10,
    Cifar100,
    ImageFolder,
    TextFolder,
    Imdb,
    Reuters,
    AbcTunes,
    Dates,
)
SOURCES: dict[str, type[SourceConfig]] = {
    cls.model_fields["source"].annotation.__args__[0]: cls for cls in _CLASSES
}

# The discriminated union the pipeline schema uses as the type of its `data` section.
DataConfig = Annotated[Union[_CLASSES], Field(discriminator="source")]  # noqa: UP007
