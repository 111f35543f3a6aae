"""The generator tests run their tiny models on one thread: they are far too small to gain from
more, a busy machine makes extra threads wait on each other, and one thread gives the same
floating-point sums everywhere (the learning test's numbers)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
