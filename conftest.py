"""Test-session settings shared by the unit tests and the notebook runs.

`NLBOOK_SMOKE=1` shrinks every notebook to smoke sizes; the Jupyter kernels that nbmake starts
inherit this process's environment, so setting it here reaches them too. The kernels keep
their inline matplotlib backend so that every figure is really drawn. `NLBOOK_HEADLESS=1` makes
widget explorers also call their plot directly (exceptions then fail the run), and one OpenMP
thread keeps runs on a 2-core machine from oversubscribing. `NLBOOK_STRICT_WARNINGS=1` makes
`nlbook.setup()` turn every warning raised by a notebook's own code or by nlbook into an error,
so that a notebook which would print a warning to a learner fails its test run.
"""

import os
import time
from queue import Empty

os.environ.setdefault("NLBOOK_SMOKE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("NLBOOK_HEADLESS", "1")
os.environ.setdefault("NLBOOK_STRICT_WARNINGS", "1")


def _poll_kernel_replies_in_slices() -> None:
    """Work around kernel replies that arrive but wake nobody until the cell timeout.

    nbclient waits for a cell's reply with one ``socket.poll(timeout)`` (jupyter_client's
    ``AsyncZMQSocketChannel.get_msg``). On a loaded machine the edge-triggered zmq wake-up is
    sometimes missed, and the wait then lasts the whole cell timeout although the reply is
    already there: seen here as cells of 2 s that took 180 s or 600 s of wall time with no CPU
    used. Polling in one-second slices re-checks the socket, so a missed wake-up costs at most a
    second. The test harness only: nothing in nlbook or the notebooks depends on it.
    """
    try:
        from jupyter_client.channels import AsyncZMQSocketChannel
    except ImportError:  # plain unit-test runs without Jupyter installed
        return

    async def get_msg(self, timeout: float | None = None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining_ms = 1000 if deadline is None else int(1000 * (deadline - time.monotonic()))
            if await self.socket.poll(max(0, min(1000, remaining_ms))):
                return await self._recv()
            if deadline is not None and time.monotonic() >= deadline:
                raise Empty

    AsyncZMQSocketChannel.get_msg = get_msg


_poll_kernel_replies_in_slices()
