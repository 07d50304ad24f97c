"""Start-up noise of third-party libraries is dropped; everything else on stderr still shows."""
import importlib.util
import subprocess
import sys
import textwrap

import pytest

from course_lib import quiet

NOISE = ["WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
         "I0000 00:00:1796105906.777323    5828 port.cc:153] oneDNN custom operations are on. You may "
         "see slightly different numerical results due to floating-point round-off errors."]


def _child(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=300)


def test_patterns_match_the_notices_and_not_errors():
    assert all(quiet._NOISE.search(line) for line in NOISE)
    for line in ["E0000 00:00:17.1 5828 port.cc:153] oneDNN failed to load",
                 "Traceback (most recent call last):", "UserWarning: something real",
                 "Fatal Python error: Segmentation fault", "WARNING: All log messages were lost"]:
        assert not quiet._NOISE.search(line), line


def test_native_writes_are_filtered_line_by_line():
    noise = "\\n".join(NOISE)
    proc = _child(f"""
        import os, sys
        from course_lib.quiet import native_stderr_filtered
        with native_stderr_filtered():
            os.write(2, b"{noise}\\n")                    # native code writes to fd 2 directly
            os.write(2, b"E1201 real native error\\n")
            print("a Python warning", file=sys.stderr)
            print("stdout is untouched")
        print("after", file=sys.stderr)
        """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "stdout is untouched\n"
    assert proc.stderr.splitlines() == ["E1201 real native error", "a Python warning", "after"]


def test_output_is_restored_when_the_block_raises():
    proc = _child("""
        import os
        from course_lib.quiet import native_stderr_filtered
        try:
            with native_stderr_filtered():
                os.write(2, b"kept before the error\\n")
                raise RuntimeError("boom")
        except RuntimeError:
            pass
        os.write(2, b"fd 2 works again\\n")
        """)
    assert proc.stderr.splitlines() == ["kept before the error", "fd 2 works again"]


@pytest.mark.skipif(importlib.util.find_spec("keras") is None, reason="needs the [tf] extra (keras)")
@pytest.mark.slow
def test_import_keras_prints_nothing_on_stderr():
    proc = _child("""
        from course_lib.quiet import import_keras
        keras = import_keras()
        print(keras.backend.backend())
        """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "tensorflow"
    assert proc.stderr == ""
