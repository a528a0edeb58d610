"""Importing TensorFlow without its start-up noise, once the input has been checked."""

import os
import sys


def import_tensorflow() -> None:
    """Import TensorFlow without its C++ start-up notices (no CUDA driver, CPU features).

    They are written to the stderr file descriptor before logging is set up, so no
    setting hides them; TF_CPP_MIN_LOG_LEVEL (default here 3) governs the rest.
    """
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if os.environ["TF_CPP_MIN_LOG_LEVEL"] != "3":
        import tensorflow  # noqa: F401  # the user asked to see TensorFlow's logs

        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
