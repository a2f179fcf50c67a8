"""Test-session settings shared by the unit tests and the notebook runs.

`NLBOOK_SMOKE=1` shrinks every notebook to smoke sizes; the Jupyter kernels that nbmake starts
inherit this process's environment, so setting it here reaches them too. The kernels keep
their inline matplotlib backend so that every figure is really drawn. `NLBOOK_HEADLESS=1` makes
widget explorers also call their plot directly (exceptions then fail the run), and one OpenMP
thread keeps runs on a 2-core machine from oversubscribing.
"""

import os

os.environ.setdefault("NLBOOK_SMOKE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("NLBOOK_HEADLESS", "1")
