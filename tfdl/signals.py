"""Holding SIGINT/SIGTERM over a few lines that must not be cut in half.

Used around a run's opening and ending, an epoch's backup and Keras Tuner's state files.
Imports nothing heavy: the tracking layer and the CLI use it before TensorFlow loads.
"""

import _thread
import contextlib
import signal
import sys
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


@contextlib.contextmanager
def lost_interrupts_raised():
    """A Ctrl-C or SIGTERM that lands in a weakref callback (importlib's module locks,
    while TensorFlow imports) cannot be raised there: Python prints it as "Exception
    ignored" and the command would run on. Within the block it is raised again in the
    main thread, as the signal the CLI turns into KeyboardInterrupt, or at the block's
    end if the block ends first."""
    previous, lock, pending = sys.unraisablehook, threading.Lock(), [False]

    def take() -> bool:
        with lock:
            due, pending[0] = pending[0], False
        return due

    def deliver():
        if take():
            _thread.interrupt_main(signal.SIGTERM)

    def hook(unraisable):
        if not issubclass(unraisable.exc_type, KeyboardInterrupt):
            previous(unraisable)
        elif threading.current_thread() is threading.main_thread():
            pending[0] = True  # raised in here it would be lost again: from a thread
            threading.Timer(0.01, deliver).start()

    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = previous
    if take():
        raise KeyboardInterrupt


def forget_caught_interrupt() -> None:
    """Under `python -m`, CPython ends the process by SIGINT instead of its exit code when
    a KeyboardInterrupt once left a string exec (dataclasses and namedtuples build their
    methods so while modules import), even one caught later. The next string exec
    resets that flag: called once the command has answered."""
    exec("pass", {})
