"""core.heap.frozen_heap: the heap alive on entry is out of the collector's walks, and only then."""

from __future__ import annotations

import gc
import threading
import weakref

from core.heap import frozen_heap


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_the_heap_is_frozen_inside_and_given_back_after() -> None:
    before = gc.get_freeze_count()
    alive = [Node() for _ in range(100)]
    with frozen_heap():
        assert gc.get_freeze_count() >= before + len(alive)
    assert gc.get_freeze_count() == before


def test_a_cycle_made_inside_is_still_collected() -> None:
    with frozen_heap():
        a, b = Node(), Node()
        a.other, b.other = b, a
        gone = weakref.ref(a)
        del a, b
        gc.collect()
        assert gone() is None


def test_nested_and_concurrent_blocks_share_one_freeze() -> None:
    before = gc.get_freeze_count()
    inside, leave = threading.Event(), threading.Event()

    def other_block() -> None:
        with frozen_heap():
            inside.set()
            leave.wait(10)

    worker = threading.Thread(target=other_block)
    with frozen_heap():
        worker.start()
        assert inside.wait(10)
        with frozen_heap():
            pass
        assert gc.get_freeze_count() > before  # the nested block left, the outer one still runs
    assert gc.get_freeze_count() > before  # the thread's block still runs
    leave.set()
    worker.join(10)
    assert gc.get_freeze_count() == before
