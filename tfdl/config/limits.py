"""What MLflow will refuse, checked when a config is validated, before any run exists.

A run logs every config value as a parameter (`flatten`), its tags as tags and opens its
experiment by name; MLflow checks each only when it is written, after the experiment and
the run exist. The rules are MLflow's own (mlflow.utils.validation), restated here so
that checking a config never imports MLflow.
"""

import posixpath
import re

from tfdl.errors import ConfigError

MAX_KEY = 250  # a parameter's or tag's name
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
MAX_EXPERIMENT_NAME = 500
KEY = re.compile(r"^[/\w.\- :]*$")
KEY_ALLOWED = "letters, digits, _ - . / : and spaces"
RESERVED = ("mlflow.", "tfdl.")  # tags MLflow and tfdl set themselves
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def key_problem(key: str, longest: int = MAX_KEY) -> str | None:
    """Why MLflow would refuse `key` as a parameter or tag name (or one longer than
    `longest`); None if it takes it."""
    if not key:
        return "an empty name"
    if len(key) > longest:
        return f"a name of {len(key)} characters"
    if not KEY.match(key):
        bad = "".join(sorted({c for c in key if not KEY.match(c)}))
        return f"{key!r} has characters MLflow refuses in a name ({bad!r})"
    normal = posixpath.normpath(key)
    if normal != key or normal == "." or normal.startswith(("..", "/")):
        return f"{key!r} would name another path ({normal!r})"
    return None


def check_params(params: dict[str, str], allowed_key: str = KEY_ALLOWED) -> None:
    """Each flattened config value as MLflow would take it as a parameter."""
    for key, value in params.items():
        problem = key_problem(key)
        if problem:
            raise ConfigError(key, f"{problem}, which MLflow refuses as a parameter", allowed_key)
        if len(value) > MAX_PARAM_VALUE:
            raise ConfigError(
                key,
                f"a value of {len(value)} characters, too long for an MLflow parameter",
                f"at most {MAX_PARAM_VALUE} characters",
            )


def check_tracking(tracking) -> None:
    """The experiment's name and the run's tags as MLflow takes them."""
    name = tracking.experiment
    if len(name) > MAX_EXPERIMENT_NAME or CONTROL.search(name) or not name.strip():
        raise ConfigError(
            "tracking.experiment",
            f"a name of {len(name)} characters" if name.strip() else "a blank name",
            f"at most {MAX_EXPERIMENT_NAME} characters, no control characters",
        )
    if tracking.run_name is not None and CONTROL.search(tracking.run_name):
        raise ConfigError("tracking.run_name", "control characters", "a name on one line")
    # Each tag is also a parameter, tracking.tags.<key>, whose name has the same limit.
    longest = MAX_KEY - len("tracking.tags.")
    for key, value in tracking.tags.items():
        problem = key_problem(key, longest)
        if problem is None and key.startswith(RESERVED):
            problem = f"{key!r} is a tag MLflow or tfdl sets itself"
        if problem:
            allowed = f"{KEY_ALLOWED}, at most {longest} characters, not starting mlflow. or tfdl."
            raise ConfigError("tracking.tags", problem, allowed)
        if len(value) > MAX_TAG_VALUE:
            raise ConfigError(
                f"tracking.tags.{key}",
                f"a value of {len(value)} characters",
                f"at most {MAX_TAG_VALUE} characters",
            )
