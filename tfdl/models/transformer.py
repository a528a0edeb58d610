"""Lecture 2: attention and Transformers -- an encoder classifier, a decoder-only language
model and an encoder-decoder translator, all built from the same two blocks.

Blocks are post-norm, as in "Attention Is All You Need" and the lecture's figure:
``x = LayerNorm(x + Dropout(Sublayer(x)))`` for each sub-layer (self-attention,
cross-attention, feed-forward). Pre-norm trains deep stacks without learning-rate warm-up,
but at the 2-4 blocks used here post-norm trains well with plain Adam, and it is the block
students see on the slide.

Token embeddings are multiplied by sqrt(d_model) before the positional encoding is added,
as in the paper: Keras initialises embeddings within +-0.05, so unscaled they would be
drowned by the sinusoids (values in [-1, 1]) and the model would start nearly blind to
which token sits where.

``impl="keras"`` attends with ``keras.layers.MultiHeadAttention``, ``impl="scratch"`` with
:class:`tfdl.layers.MultiHeadAttentionScratch`; both get explicit masks (no Keras implicit
masks are used), have the same weights in the same order and give the same outputs.
Attention layers are named ``encoder_{i}_self_attention``, ``decoder_{i}_self_attention``
and ``decoder_{i}_cross_attention`` so their per-head scores can be read back for plots.
"""

import math

import keras
import numpy as np
from keras import ops

from tfdl.errors import ConfigError
from tfdl.layers import MultiHeadAttentionScratch, SinusoidalPositionalEncoding
from tfdl.models.heads import dropout as dropout_layer
from tfdl.models.heads import inputs_for, output_head

PAD_ID = 0  # seq2seq sources are right-padded with token id 0
START, END = "<s>", "</s>"  # the start and end tokens of seq2seq vocabularies (tfdl.data.dates)
IMPLS = ("keras", "scratch")


# ------------------------------------------------------------------------------ small layers


@keras.saving.register_keras_serializable(package="tfdl")
class ClassToken(keras.layers.Layer):
    """Prepends a learned [CLS] vector to every sequence: (batch, T, d) -> (batch, T + 1, d).

    Through self-attention the [CLS] position gathers what the classifier needs from all
    tokens; its final vector is the sequence's summary (BERT, ViT).
    """

    def build(self, input_shape):
        self.token = self.add_weight(
            shape=(1, 1, input_shape[-1]),
            initializer=keras.initializers.RandomNormal(stddev=0.02),
            name="token",
        )

    def call(self, x):
        cls = ops.broadcast_to(ops.cast(self.token, x.dtype), (ops.shape(x)[0], 1, x.shape[-1]))
        return ops.concatenate([cls, x], axis=1)

    def compute_output_shape(self, input_shape):
        steps = None if input_shape[1] is None else input_shape[1] + 1
        return (input_shape[0], steps, input_shape[2])


@keras.saving.register_keras_serializable(package="tfdl")
class TakeFirst(keras.layers.Layer):
    """The first position of a sequence, (batch, T, d) -> (batch, d): the [CLS] summary."""

    def call(self, x):
        return x[:, 0, :]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])


@keras.saving.register_keras_serializable(package="tfdl")
class PaddingMask(keras.layers.Layer):
    """Which keys may be attended to: ids (batch, S) -> booleans (batch, 1, S), False at pad.

    The middle axis broadcasts over the query positions, so one mask serves the encoder's
    self-attention (T_q = S) and the decoder's cross-attention (T_q = T).
    """

    def __init__(self, pad_id: int = PAD_ID, **kwargs):
        super().__init__(**kwargs)
        self.pad_id = pad_id

    def call(self, ids):
        return ops.expand_dims(ops.not_equal(ids, self.pad_id), 1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1, input_shape[1])

    def get_config(self):
        return {**super().get_config(), "pad_id": self.pad_id}


# ------------------------------------------------------------------------------------ blocks


def _check(d_model: int, num_heads: int, impl: str) -> None:
    if d_model % num_heads:
        raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}")
    if impl not in IMPLS:
        raise ValueError(f"impl={impl!r}; allowed: {', '.join(IMPLS)}")


def attention_layer(impl: str, num_heads: int, d_model: int, name: str):
    """Multi-head attention with d_model / num_heads dimensions per head."""
    cls = keras.layers.MultiHeadAttention if impl == "keras" else MultiHeadAttentionScratch
    return cls(num_heads=num_heads, key_dim=d_model // num_heads, name=name)


def _add_norm(x, sublayer_out, dropout: float, name: str):
    """Residual connection and layer norm: LayerNorm(x + Dropout(sublayer(x)))."""
    y = dropout_layer(dropout, name=f"{name}_dropout")(sublayer_out)
    y = keras.layers.Add(name=f"{name}_residual")([x, y])
    return keras.layers.LayerNormalization(name=f"{name}_norm")(y)


def _feed_forward(x, ff_dim: int, d_model: int, dropout: float, name: str):
    """Position-wise feed-forward: FFN(x) = max(0, x W1 + b1) W2 + b2, then add & norm."""
    h = keras.layers.Dense(ff_dim, activation="relu", name=f"{name}_ffn_hidden")(x)
    h = keras.layers.Dense(d_model, name=f"{name}_ffn_output")(h)
    return _add_norm(x, h, dropout, f"{name}_ffn")


def encoder_block(x, *, name, d_model, num_heads, ff_dim, dropout, impl, mask=None):
    """Encoder block: z = LayerNorm(x + MHA(x, x, x)); out = LayerNorm(z + FFN(z)).

    `mask` (batch, 1 or T, T), True = may attend, hides padding keys.
    """
    attention = attention_layer(impl, num_heads, d_model, f"{name}_self_attention")
    x = _add_norm(x, attention(x, x, attention_mask=mask), dropout, f"{name}_self_attention")
    return _feed_forward(x, ff_dim, d_model, dropout, name)


def decoder_block(
    x, *, name, d_model, num_heads, ff_dim, dropout, impl, context=None, context_mask=None
):
    """Decoder block: masked self-attention, cross-attention (when `context`), feed-forward.

    z1 = LayerNorm(x + MHA(x, x, x, causal)) -- position t sees positions <= t only;
    z2 = LayerNorm(z1 + MHA(z1, context, context, context_mask)) -- queries from the
    decoder, keys and values from the encoder output; out = LayerNorm(z2 + FFN(z2)).
    """
    attention = attention_layer(impl, num_heads, d_model, f"{name}_self_attention")
    x = _add_norm(x, attention(x, x, use_causal_mask=True), dropout, f"{name}_self_attention")
    if context is not None:
        cross = attention_layer(impl, num_heads, d_model, f"{name}_cross_attention")
        attended = cross(x, context, attention_mask=context_mask)
        x = _add_norm(x, attended, dropout, f"{name}_cross_attention")
    return _feed_forward(x, ff_dim, d_model, dropout, name)


def _embed_tokens(ids, embedding, d_model: int, dropout: float, name: str, max_length=2048):
    """x_t = sqrt(d_model) * E[token_t] + PE(t), then dropout."""
    x = embedding(ids)
    x = keras.layers.Rescaling(math.sqrt(d_model), name=f"{name}_scale")(x)
    x = SinusoidalPositionalEncoding(max_length=max_length, name=f"{name}_positions")(x)
    return dropout_layer(dropout, name=f"{name}_dropout")(x)


def _vocabulary_size(spec) -> int:
    return len(spec.vocabulary) if spec.vocabulary else int(spec.num_classes)


# ---------------------------------------------------------------------------------- builders


def build_transformer_encoder(
    spec,
    *,
    d_model: int = 64,
    num_heads: int = 4,
    ff_dim: int = 128,
    dropout: float = 0.1,
    impl: str = "keras",
    num_layers: int = 2,
    patch_size: int = 1,
    pooling: str = "mean",
) -> keras.Model:
    """Transformer encoder classifier over a sequence of T steps of C values.

    The sequence is cut into T / patch_size patches of patch_size * C values, each
    embedded e_i = W_p patch_i + b_p, positions added (x_i = e_i + PE(i)), then
    `num_layers` encoder blocks; the summary is the mean of the token vectors
    (pooling="mean") or the final vector of a learned [CLS] token (pooling="cls"), and
    the task's output layer reads it. Input (T,) has C = 1 (a flat feature vector is a
    sequence of single values); for (T, C1, C2, ...) the first axis is time and the
    rest are flattened into C (an 8x8 image is 8 rows of 8 pixels).
    """
    _check(d_model, num_heads, impl)
    if pooling not in ("mean", "cls"):
        raise ValueError(f"pooling={pooling!r}; allowed: mean, cls")
    inputs, x = inputs_for(spec)
    steps, features = x.shape[1], math.prod(x.shape[2:])
    if steps % patch_size:
        raise ValueError(
            f"patch_size={patch_size} does not divide the input's {steps} steps; "
            f"use a divisor of {steps}"
        )
    tokens = steps // patch_size
    x = keras.layers.Reshape((tokens, patch_size * features), name="patches")(x)
    x = keras.layers.Dense(d_model, name="patch_embedding")(x)
    if pooling == "cls":
        x = ClassToken(name="cls_token")(x)
    x = SinusoidalPositionalEncoding(max_length=tokens + 1, name="positions")(x)
    x = dropout_layer(dropout, name="embedding_dropout")(x)
    for i in range(num_layers):
        x = encoder_block(
            x,
            name=f"encoder_{i}",
            d_model=d_model,
            num_heads=num_heads,
            ff_dim=ff_dim,
            dropout=dropout,
            impl=impl,
        )
    if pooling == "cls":
        x = TakeFirst(name="cls_pooling")(x)
    else:
        x = keras.layers.GlobalAveragePooling1D(name="mean_pooling")(x)
    return keras.Model(inputs, output_head(x, spec), name="transformer_encoder")


def build_transformer_decoder(
    spec,
    *,
    d_model: int = 64,
    num_heads: int = 4,
    ff_dim: int = 128,
    dropout: float = 0.1,
    impl: str = "keras",
    num_layers: int = 2,
) -> keras.Model:
    """Decoder-only (GPT-style) character language model.

    x_t = sqrt(d_model) E[c_t] + PE(t); `num_layers` blocks of causal self-attention and
    feed-forward; p(c_{t+1} | c_1..c_t) = softmax(W_o h_t + b_o) at every step t. The
    causal mask keeps position t from seeing later characters, so one pass trains all T
    next-character predictions at once. Input: int ids (batch, T) of any length T up to
    the positional table's 2048 (or the training length if longer); output (batch, T, V).
    """
    _check(d_model, num_heads, impl)
    vocab = _vocabulary_size(spec)
    inputs = keras.Input(shape=(None,), dtype="int32", name="inputs")
    embedding = keras.layers.Embedding(vocab, d_model, name="token_embedding")
    max_length = max(2048, spec.input_shape[0] or 0)
    x = _embed_tokens(inputs, embedding, d_model, dropout, "decoder", max_length)
    for i in range(num_layers):
        x = decoder_block(
            x,
            name=f"decoder_{i}",
            d_model=d_model,
            num_heads=num_heads,
            ff_dim=ff_dim,
            dropout=dropout,
            impl=impl,
        )
    outputs = keras.layers.Dense(vocab, activation="softmax", dtype="float32", name="output")(x)
    return keras.Model(inputs, outputs, name="transformer_decoder")


def build_transformer_seq2seq(
    spec,
    *,
    d_model: int = 64,
    num_heads: int = 4,
    ff_dim: int = 128,
    dropout: float = 0.1,
    impl: str = "keras",
    num_encoder_layers: int = 2,
    num_decoder_layers: int = 2,
) -> keras.Model:
    """Encoder-decoder Transformer: p(y_t | y_<t, x) = softmax(W_o Decoder(y_<t, Encoder(x))).

    Inputs `encoder_inputs` (batch, S) source ids right-padded with id 0 and
    `decoder_inputs` (batch, T) = [start] + target ids (teacher forcing); output
    (batch, T, V), the next target token's probabilities at every step. One embedding
    table serves both sides (source and target share one vocabulary). Pad keys are
    masked in the encoder's self-attention and the decoder's cross-attention, so the
    padding neither changes the encoding of real tokens nor gets attended to.
    """
    _check(d_model, num_heads, impl)
    vocab = _vocabulary_size(spec)
    blocks = dict(d_model=d_model, num_heads=num_heads, ff_dim=ff_dim, dropout=dropout, impl=impl)
    source = keras.Input(shape=(None,), dtype="int32", name="encoder_inputs")
    target = keras.Input(shape=(None,), dtype="int32", name="decoder_inputs")
    embedding = keras.layers.Embedding(vocab, d_model, name="token_embedding")
    mask = PaddingMask(name="encoder_padding_mask")(source)

    x = _embed_tokens(source, embedding, d_model, dropout, "encoder")
    for i in range(num_encoder_layers):
        x = encoder_block(x, name=f"encoder_{i}", mask=mask, **blocks)
    y = _embed_tokens(target, embedding, d_model, dropout, "decoder")
    for i in range(num_decoder_layers):
        y = decoder_block(y, name=f"decoder_{i}", context=x, context_mask=mask, **blocks)
    outputs = keras.layers.Dense(vocab, activation="softmax", dtype="float32", name="output")(y)
    return keras.Model(
        {"encoder_inputs": source, "decoder_inputs": target}, outputs, name="transformer_seq2seq"
    )


# ------------------------------------------------------------------ greedy decoding, metric


def greedy_decode(model, spec, encoder_ids, steps: int | None = None, batch_size: int = 4096):
    """Token ids a seq2seq model writes for each source row, all rows decoded together.

    y_t = argmax_v p(v | y_<t, x), fed back as the next decoder input, from [start] for at
    most `steps` (<= T) tokens; rows that have written [end] get pad afterwards. The
    decoder input keeps its full length T (unwritten positions are pad): the causal mask
    makes step t's prediction independent of them, and keeps the shapes fixed. Rows go in
    chunks of `batch_size`. Returns int32 (n, steps).
    """
    vocab = list(spec.vocabulary)
    start, end = vocab.index(START), vocab.index(END)
    length = spec.target_length
    steps = length if steps is None else max(0, min(steps, length))
    encoder_ids = np.asarray(encoder_ids, dtype=np.int32)
    out = np.full((len(encoder_ids), steps), PAD_ID, dtype=np.int32)
    for first in range(0, len(encoder_ids), batch_size):
        source = encoder_ids[first : first + batch_size]
        decoder = np.full((len(source), length), PAD_ID, dtype=np.int32)
        decoder[:, 0] = start
        done = np.zeros(len(source), dtype=bool)
        for t in range(steps):
            # predict_on_batch runs a traced graph: the same shapes at every step make it
            # one trace for the whole decode, far faster than eager calls.
            probs = model.predict_on_batch({"encoder_inputs": source, "decoder_inputs": decoder})
            token = np.argmax(np.asarray(probs)[:, t], axis=-1).astype(np.int32)
            token[done] = PAD_ID
            out[first : first + len(source), t] = token
            done |= token == end
            if t + 1 < length:
                decoder[:, t + 1] = token
            if done.all():
                break
    return out


def _text(ids, vocabulary) -> str:
    """The characters up to the first [end], special tokens left out."""
    chars = []
    for i in ids:
        token = vocabulary[int(i)]
        if token == END:
            break
        if token not in (START, vocabulary[PAD_ID]):
            chars.append(token)
    return "".join(chars)


def translate(model, spec, *, prompt: str, length: int, temperature: float, seed: int) -> str:
    """Translate `prompt` by greedy decoding (e.g. "3 march 2021" -> "2021-03-03").

    Decodes from [start] until [end] or min(length, T) tokens. Greedy decoding takes the
    most probable token at each step, so `temperature` and `seed` are ignored (they exist
    for the shared generator signature; sampling would only add errors to a translation
    with one right answer).
    """
    del temperature, seed
    vocab = list(spec.vocabulary)
    known = {token: i for i, token in enumerate(vocab) if len(token) == 1}
    allowed = "".join(sorted(known))
    unknown = sorted({c for c in prompt if c not in known})
    if unknown:
        raise ConfigError(
            "prompt", f"characters {''.join(unknown)!r} are not in the vocabulary", repr(allowed)
        )
    max_chars = spec.input_shape[0]
    if not prompt or len(prompt) > max_chars:
        raise ConfigError(
            "prompt", f"{len(prompt)} characters", f"1 to {max_chars} characters of {allowed!r}"
        )
    ids = np.full((1, max_chars), PAD_ID, dtype=np.int32)
    ids[0, : len(prompt)] = [known[c] for c in prompt]
    return _text(greedy_decode(model, spec, ids, steps=length)[0], vocab)


def exact_match(model, splits) -> dict[str, float]:
    """Fraction of test sources whose greedy translation equals the target exactly."""
    vocab = splits.spec.vocabulary
    written = greedy_decode(model, splits.spec, splits.x_test["encoder_inputs"])
    hits = [
        _text(out, vocab) == _text(target, vocab)
        for out, target in zip(written, splits.y_test, strict=True)
    ]
    return {"exact_match": float(np.mean(hits)) if hits else 0.0}
