"""Third-party start-up noise, silenced at its source without hiding real errors.

Some libraries the course uses write notices to the process's standard error from native code when
they are first imported: TensorFlow's C++ runtime prints ``All log messages before
absl::InitializeLog() is called are written to STDERR`` and the oneDNN notice, which neither
``TF_CPP_MIN_LOG_LEVEL`` nor Python's ``logging`` can silence. In a notebook those lines become a
``stderr`` output of the cell, and the book build (``--warningiserror``) rightly refuses stderr.

- :func:`native_stderr_filtered` runs a block with file descriptor 2 captured, then writes back every
  line that is *not* a known start-up notice. A real error, a Python warning or a crash message still
  reaches standard error.
- :func:`import_keras` imports Keras (TensorFlow backend) through that filter: the one way the
  course imports TensorFlow.
- :func:`quiet_defaults` sets the environment variables that silence notices at their source
  (tokenizers' fork warning), only where the user has not set them.

References
----------
- TensorFlow logging variables: https://www.tensorflow.org/api_docs/python/tf/get_logger
- huggingface/tokenizers ``TOKENIZERS_PARALLELISM``: https://github.com/huggingface/tokenizers
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile

__all__ = ["NOISE_PATTERNS", "native_stderr_filtered", "import_keras", "quiet_defaults"]

#: Lines that native libraries print on import and that carry no information for a learner. Each is
#: anchored on text specific to the notice, so that an error message is never matched.
NOISE_PATTERNS = (
    r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$",
    r"^I\d{4} [\d:. ]+\d+ port\.cc:\d+\] oneDNN custom operations are on\.",
    r"^I\d{4} [\d:. ]+\d+ cpu_feature_guard\.cc:\d+\] This TensorFlow binary is optimized",
    r"^To enable the following instructions: .* in other operations, rebuild TensorFlow",
    r"^E\d{4} [\d:. ]+\d+ cuda_(dnn|fft|blas)\.cc:\d+\] Unable to register cu(DNN|FFT|BLAS) factory",
    r"^W\d{4} [\d:. ]+\d+ computation_placer\.cc:\d+\] computation placer already registered",
    r"^I\d{4} [\d:. ]+\d+ cuda_executor\.cc:\d+\] could not find cuda drivers on your machine",
    r"^[\d-]+ [\d:.]+: I tensorflow/tsl/cuda/cudart_stub\.cc:\d+\] Could not find cuda drivers",
    r"^INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.$",
)
_NOISE = re.compile("|".join(f"(?:{p})" for p in NOISE_PATTERNS))


@contextlib.contextmanager
def native_stderr_filtered(patterns=None):
    """Run a block with standard error (file descriptor 2) filtered line by line.

    Everything written to fd 2 inside the block, by Python or by native code, is held back; when the
    block ends, each line that does not match a noise pattern is written to ``sys.stderr``. Nothing
    but the listed notices is dropped.

    Parameters
    ----------
    patterns : sequence of str, optional
        Regular expressions of lines to drop (default: :data:`NOISE_PATTERNS`).
    """
    noise = _NOISE if patterns is None else re.compile("|".join(f"(?:{p})" for p in patterns))
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real fd 2 (some embedded interpreters)
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            text = held.read().decode("utf-8", "replace")
            kept = [line for line in text.splitlines() if line.strip() and not noise.search(line)]
            if kept:
                print("\n".join(kept), file=sys.stderr, flush=True)


def import_keras():
    """Import and return ``keras`` on the TensorFlow backend, without TensorFlow's start-up notices.

    ``KERAS_BACKEND`` and ``TF_CPP_MIN_LOG_LEVEL`` are set only when unset, so a user's choice wins.

    Raises
    ------
    ImportError
        When Keras/TensorFlow is not installed, with the command that installs it.
    """
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        with native_stderr_filtered():
            import keras
    except ImportError as e:
        raise ImportError(f"Keras with TensorFlow is needed here ({e}); install it with "
                          "`pip install 'course_lib[tf]'` (tensorflow-cpu).") from None
    return keras


def quiet_defaults() -> None:
    """Silence at their source the notices that the course's libraries print by default.

    Sets, only where the user has not: ``TOKENIZERS_PARALLELISM=false`` (huggingface/tokenizers
    warns on every ``fork`` after its thread pool ran, e.g. when a DataLoader starts workers).
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
