"""Holding SIGINT/SIGTERM over a few lines that must not be cut in half.

Used around a run's opening and ending, an epoch's backup and Keras Tuner's state files.
Imports nothing heavy: the tracking layer and the CLI use it before TensorFlow loads.
"""

import contextlib
import signal
import threading

DEFERRED = {signal.SIGINT, signal.SIGTERM}
_holding = False  # an outer block already holds the signals: it raises at its own end


@contextlib.contextmanager
def signals_deferred():
    """Hold SIGINT/SIGTERM until the block ends, then hand the first one to its handler
    (Python's for SIGINT raises KeyboardInterrupt; the CLI gives SIGTERM the same one).

    Python-level handlers only record the signal meanwhile; masking at the OS level
    instead would tangle with TensorFlow's threads, which inherit or bypass the mask.
    Signals without a Python handler (ignored, or left to the OS) are left alone.
    """
    global _holding
    if _holding or threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    handled = [s for s in DEFERRED if callable(signal.getsignal(s))]
    previous = {s: signal.signal(s, lambda signum, _: received.append(signum)) for s in handled}
    _holding = True
    try:
        yield
    finally:
        _holding = False
        for s, handler in previous.items():
            signal.signal(s, handler)
    if received:
        previous[received[0]](received[0], None)
