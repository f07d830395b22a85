"""The background job runner: threads outside a kernel, asyncio tasks inside one."""

from __future__ import annotations

import asyncio
import textwrap
import threading
import time

import pytest

from nbvis.widgets._jobs import Job, Throttle


def counting(n, delay=0.0, fail_at=None, closed=None):
    try:
        for i in range(n):
            if i == fail_at:
                raise ValueError(f"step {i} failed")
            time.sleep(delay)
            yield i
        return "finished"
    finally:
        if closed is not None:
            closed.append(True)


def test_thread_job_runs_reports_and_returns():
    seen, done = [], []
    job = Job(counting(5), on_step=seen.append, on_done=done.append).start()
    assert job.wait(timeout=10) == "finished"
    assert seen == [0, 1, 2, 3, 4] and done == ["finished"] and job.state == "done"


def test_thread_job_stop_closes_generator_and_leaves_no_thread():
    closed, seen = [], []
    job = Job(counting(10_000, delay=0.001, closed=closed), on_step=seen.append).start()
    deadline = time.monotonic() + 10
    while not seen and time.monotonic() < deadline:
        time.sleep(0.01)
    job.stop()
    assert job.state == "stopped" and closed == [True]
    assert not any(t.name == "nbvis-job" and t.is_alive() for t in threading.enumerate())


def test_errors_surface_in_callback_and_wait():
    errors = []
    job = Job(counting(5, fail_at=2), on_error=errors.append).start()
    with pytest.raises(ValueError, match="step 2 failed"):
        job.wait(timeout=10)
    assert job.state == "error" and str(errors[0]) == "step 2 failed"
    with pytest.raises(RuntimeError, match="already started"):
        job.start()


def test_asyncio_job_interleaves_with_other_work_and_wait_drives_it():
    async def main():
        seen = []
        job = Job(counting(50), on_step=seen.append).start()
        assert job._task is not None  # on the loop, not on a thread
        ticks = 0
        while job.running:
            ticks += 1
            await asyncio.sleep(0)
        # Other coroutines ran between the steps.
        assert ticks >= 40 and seen == list(range(50))

        second = Job(counting(30)).start()
        assert second.wait() == "finished"  # from the loop's own thread: drives the steps itself
        third = Job(counting(30, closed=(closed := []))).start()
        await asyncio.sleep(0)
        third.stop()
        assert third.state == "stopped" and closed == [True]

    asyncio.run(main())


def test_a_job_gives_way_while_other_work_is_busy_then_goes_on():
    # on a thread: no step while busy() is true; then every step
    busy, seen = [True], []
    job = Job(counting(5), on_step=seen.append).give_way(lambda: busy[0]).start()
    time.sleep(0.2)
    assert seen == [] and job.state == "running"
    busy[0] = False
    assert job.wait(timeout=10) == "finished" and seen == [0, 1, 2, 3, 4]
    # a stop is not held back
    held = Job(counting(5)).give_way(lambda: True).start()
    held.stop()
    assert held.state == "stopped"

    async def main():
        # on the loop: the other work's steps run, the held job's do not, until it is done
        seen, other = [], []
        first = Job(counting(5), on_step=other.append).start()
        job = Job(counting(3), on_step=seen.append).give_way(lambda: first.running).start()
        while first.running:
            assert seen == []
            await asyncio.sleep(0)
        for _ in range(200):
            if not job.running:
                break
            await asyncio.sleep(0.005)
        assert other == [0, 1, 2, 3, 4] and seen == [0, 1, 2] and job.state == "done"
        # wait() on the loop's own thread drives the steps itself, held or not
        forced = Job(counting(3)).give_way(lambda: True).start()
        assert forced.wait(timeout=10) == "finished"

    asyncio.run(main())


def test_throttle():
    throttle = Throttle(10.0)
    assert throttle.ready() and not throttle.ready()
    assert Throttle(0.0).ready() and Throttle(0.0).ready()


def test_a_real_kernel_answers_while_a_job_runs():
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3")
    try:
        setup = textwrap.dedent(
            """
            import time
            from nbvis.widgets._jobs import Job
            def slow():
                for i in range(300):
                    time.sleep(0.01)
                    yield i
            steps = []
            job = Job(slow(), on_step=steps.append).start()
            """
        )
        assert kc.execute_interactive(setup, timeout=30)["content"]["status"] == "ok"
        outputs = []
        reply = kc.execute_interactive(
            "print(job.state, 0 < len(steps) < 300)", timeout=30, output_hook=lambda m: outputs.append(m)
        )
        assert reply["content"]["status"] == "ok"
        text = "".join(m["content"].get("text", "") for m in outputs if m["msg_type"] == "stream")
        assert text.strip() == "running True"  # the kernel answered while the job was still going
        outputs.clear()
        kc.execute_interactive("job.wait(); print(job.state, len(steps))", timeout=60, output_hook=outputs.append)
        text = "".join(m["content"].get("text", "") for m in outputs if m["msg_type"] == "stream")
        assert text.strip() == "done 300"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_a_step_callback_may_stop_its_own_asyncio_job():
    async def main():
        seen = []

        def on_step(item):
            seen.append(item)
            if item == 2:
                job.stop()  # on the loop's thread, inside a step: must not deadlock

        job = Job(counting(100), on_step=on_step).start()
        for _ in range(20):
            await asyncio.sleep(0)
        return job, seen

    job, seen = asyncio.run(main())
    assert job.state == "stopped" and seen == [0, 1, 2]
