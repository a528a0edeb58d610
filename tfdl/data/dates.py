"""Human-written dates to ISO dates: a small translation task for encoder-decoder models.

Each sample is a random day between 1950-01-01 and 2049-12-31 written in one of the
`FORMATS` below, in lower, Title or UPPER case, and its target is the ISO 8601 form:

    "wednesday, 3 march 2021" -> "2021-03-03"        "03/03/21" -> "2021-03-03"

Numeric formats put the day first (DD/MM/YY, D.M.YYYY). Two-digit years are unambiguous
because the range spans one century: 50-99 mean 1950-1999 and 00-49 mean 2000-2049.

Everything is character level with one vocabulary shared by source and target; its first
three entries are the special tokens pad (id 0), start and end, written as "<pad>", "<s>"
and "</s>" (several characters each, so no character of a text can be mistaken for them).
"""

from datetime import date

import numpy as np

from tfdl.data.schema import Dates
from tfdl.data.spec import Arrays, DataSpec

PAD, START, END = "<pad>", "<s>", "</s>"
SPECIALS = (PAD, START, END)  # ids 0, 1, 2

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MONTHS = (
    "january", "february", "march", "april", "may", "june",
    "july", "august", "september", "october", "november", "december",
)  # fmt: skip
FIRST, LAST = date(1950, 1, 1), date(2049, 12, 31)


def _fields(d: date) -> dict[str, str]:
    # Names come from the tuples above, not strftime, whose %A/%B follow the locale.
    month, weekday = MONTHS[d.month - 1], WEEKDAYS[d.weekday()]
    return {
        "weekday": weekday,
        "wkd": weekday[:3],
        "month": month,
        "mon": month[:3],
        "d": str(d.day),
        "dd": f"{d.day:02d}",
        "m": str(d.month),
        "mm": f"{d.month:02d}",
        "y": str(d.year),
        "yy": f"{d.year % 100:02d}",
    }


# How people write the date; a sample picks one at random.
FORMATS = (
    "{weekday}, {d} {month} {y}",  # wednesday, 3 march 2021 (the true weekday)
    "{d} {month} {y}",  # 3 march 2021
    "{month} {d}, {y}",  # march 3, 2021
    "{d} {mon} {y}",  # 3 mar 2021
    "{dd}/{mm}/{yy}",  # 03/03/21 (DD/MM/YY)
    "{d}.{m}.{y}",  # 3.3.2021 (D.M.YYYY)
    "{y} {month} {d}",  # 2021 march 3
    "{wkd} {mon} {d} {y}",  # wed mar 3 2021
    "{dd}-{mon}-{y}",  # 03-mar-2021
)
CASES = (str.lower, str.title, str.upper)

SOURCE_LENGTH = 32  # S: the longest text, "wednesday, 30 september 2048", has 28 characters
TARGET_LENGTH = 11  # T: [start] + "YYYY-MM-DD" in, "YYYY-MM-DD" + [end] out


def _vocabulary() -> tuple[str, ...]:
    words = " ".join(WEEKDAYS + MONTHS)
    chars = {c for case in CASES for c in case(words)} | set("0123456789 ,/.-")
    return SPECIALS + tuple(sorted(chars))


VOCABULARY = _vocabulary()


def format_date(d: date, fmt: int, case: int = 0) -> str:
    """`d` written in `FORMATS[fmt]` and `CASES[case]` (0 lower, 1 Title, 2 UPPER)."""
    return CASES[case](FORMATS[fmt].format(**_fields(d)))


def encode(text: str, length: int, vocabulary=VOCABULARY) -> np.ndarray:
    """Token ids of `text`, one per character, right-padded with pad (id 0) to `length`."""
    index = {token: i for i, token in enumerate(vocabulary)}
    ids = np.zeros(length, dtype=np.int32)
    ids[: len(text)] = [index[c] for c in text]
    return ids


def decode(ids, vocabulary=VOCABULARY) -> str:
    """The text of token ids, special tokens left out."""
    return "".join(vocabulary[i] for i in ids if vocabulary[i] not in SPECIALS)


def load_dates(cfg: Dates, seed: int) -> Arrays:
    """`cfg.n_samples` random dates as (source text, ISO target) token-id pairs.

    x = {"encoder_inputs": (n, S) source ids padded with 0,
         "decoder_inputs": (n, T) [start] + ISO characters (teacher forcing)},
    y = (n, T) ISO characters + [end]: the decoder input shifted left by one.
    """
    rng = np.random.default_rng(seed)
    days = rng.integers(FIRST.toordinal(), LAST.toordinal(), size=cfg.n_samples, endpoint=True)
    formats = rng.integers(len(FORMATS), size=cfg.n_samples)
    cases = rng.integers(len(CASES), size=cfg.n_samples)
    index = {token: i for i, token in enumerate(VOCABULARY)}
    start, end = index[START], index[END]

    sources = np.zeros((cfg.n_samples, SOURCE_LENGTH), dtype=np.int32)
    targets = np.zeros((cfg.n_samples, TARGET_LENGTH - 1), dtype=np.int32)
    for i, (day, fmt, case) in enumerate(zip(days, formats, cases, strict=True)):
        d = date.fromordinal(int(day))
        sources[i] = encode(format_date(d, fmt, case), SOURCE_LENGTH)
        targets[i] = encode(d.isoformat(), TARGET_LENGTH - 1)
    column = np.ones((cfg.n_samples, 1), dtype=np.int32)
    x = {
        "encoder_inputs": sources,
        "decoder_inputs": np.concatenate([column * start, targets], axis=1),
    }
    y = np.concatenate([targets, column * end], axis=1)
    spec = DataSpec(
        input_shape=(SOURCE_LENGTH,),
        task="seq2seq",
        num_classes=len(VOCABULARY),
        vocabulary=VOCABULARY,
        input_dtype="int32",
        target_length=TARGET_LENGTH,
    )
    return Arrays(x=x, y=y, spec=spec)
