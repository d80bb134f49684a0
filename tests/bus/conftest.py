import multiprocessing as mp
import shutil
import uuid

import pytest

from loopylab.bus.config import BusConfig
from loopylab.bus.directory import stop_local


@pytest.fixture
def inproc_url():
    url = f"inproc://{uuid.uuid4().hex}"
    yield url
    stop_local(url)


@pytest.fixture
def ipc_url():
    url = f"ipc://t{uuid.uuid4().hex[:12]}"
    yield url
    stop_local(url)
    shutil.rmtree(BusConfig.parse(url).run_dir(), ignore_errors=True)


@pytest.fixture
def spawn():
    """Start a function in a fresh interpreter; every child is killed at teardown."""
    ctx = mp.get_context("spawn")
    children = []

    def start(target, *args):
        p = ctx.Process(target=target, args=args, daemon=True)
        p.start()
        children.append(p)
        return p

    yield start
    for p in children:
        if p.is_alive():
            p.kill()
        p.join(5)
