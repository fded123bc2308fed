"""One torch thread for the extattn tests: their tensors are tiny, and on a busy 2-core machine
two threads contend with other work (the suite ran 3x faster single-threaded under load)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _single_torch_thread() -> Iterator[None]:
    import torch  # here, not at module level: collecting this file must not import torch early

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
