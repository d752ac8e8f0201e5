"""bench/_common.py's in_child: a call in a forked process, its result back, and every way it can end without one."""

from __future__ import annotations

import os
import resource
import signal
import time

import pytest

from sparse24.bench._common import ChildDied, in_child

LEAKED: list[bytearray] = []


def _leak_and_count(n: int) -> dict:
    LEAKED.extend(bytearray(1 << 20) for _ in range(n))
    return {"held": len(LEAKED), "limit": resource.getrlimit(resource.RLIMIT_AS)[0]}


def test_the_result_comes_back_and_nothing_the_child_did_stays() -> None:
    limit = resource.getrlimit(resource.RLIMIT_AS)
    found = in_child(_leak_and_count, 8, memory_limit=6 << 30)
    assert found == {"held": 8, "limit": 6 << 30}  # the child ran under its own limit...
    assert LEAKED == [] and resource.getrlimit(resource.RLIMIT_AS) == limit  # ...and this process is as it was
    assert in_child(_leak_and_count, 2) == {"held": 2, "limit": limit[0]}  # the next child starts from this process, not the last child


def _allocate(gib: int) -> int:
    return len(bytearray(gib << 30))


def _address_space() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))


def test_over_the_memory_limit_the_child_raises_and_this_process_does_not() -> None:
    limit = _address_space() + (1 << 30)
    assert in_child(_allocate, 0, memory_limit=limit) == 0
    with pytest.raises(ChildDied, match="raised MemoryError"):
        in_child(_allocate, 2, memory_limit=limit)


def _crash() -> None:
    os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's out-of-memory killer does


def _hang() -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})  # no Python handler can cut it short (a long C call)
    time.sleep(60)


def _raise() -> None:
    raise ValueError("a mistake in the call")


def _exit() -> None:
    os._exit(3)


def test_a_crash_a_hang_an_exception_and_an_early_exit_each_say_so() -> None:
    with pytest.raises(ChildDied, match="died of SIGKILL") as crashed:
        in_child(_crash)
    assert not crashed.value.timed_out
    start = time.monotonic()
    with pytest.raises(ChildDied, match="killed past 1 s") as hung:
        in_child(_hang, wall=1)
    assert hung.value.timed_out and time.monotonic() - start < 10
    with pytest.raises(ChildDied, match="raised ValueError: a mistake in the call"):
        in_child(_raise)
    with pytest.raises(ChildDied, match="exited with 3 and no result"):
        in_child(_exit)
