"""Shared pieces of the config schema: a strict base model and the constrained types."""

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

# Counts and sizes end up in TensorFlow's int32 tensors and shapes.
INT32_MAX = 2**31 - 1
PositiveInt = Annotated[int, Field(gt=0, le=INT32_MAX)]
NonNegativeInt = Annotated[int, Field(ge=0, le=INT32_MAX)]
Int32 = Annotated[int, Field(ge=-INT32_MAX - 1, le=INT32_MAX)]
PositiveFloat = Annotated[float, Field(gt=0.0)]
NonNegativeFloat = Annotated[float, Field(ge=0.0)]
Rate = Annotated[float, Field(ge=0.0, lt=1.0)]  # dropout rates, fractions of data
Fraction = Annotated[float, Field(gt=0.0, lt=1.0)]


def _registrable(name: str) -> str:
    # MLflow's registry refuses "/" and ":" and blank names; "@" would read as an alias
    # in NAME@ALIAS; a name that is a path step would address a folder.
    if not name.strip() or any(c in name for c in "/:@") or name.strip() in (".", ".."):
        raise ValueError(
            f"{name!r} is no registered model name; allowed: a name without '/', ':' or '@'"
        )
    return name


RegisteredName = Annotated[str, Field(max_length=250), AfterValidator(_registrable)]


class StrictModel(BaseModel):
    """Unknown keys are errors; values are validated on assignment too; inf and nan are
    no numbers a config can mean (YAML reads `.inf` and `.nan` as floats)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)
