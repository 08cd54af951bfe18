"""Process-level faults: a worker killed by its job, a supervisor killed, a frozen pool, a memory limit.

The bars: a job that never started is never charged and gets no error; the
job that killed its process is told how (exit code, signal); no worker
outlives its supervisor; a frozen worker does not start jobs rescued meanwhile.
"""

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from django_bourbon_jobs.models import Job, JobStatus, Worker
from django_bourbon_jobs.worker import maintenance
from django_bourbon_jobs.worker.startlog import StartLog
from tests import tasks
from tests.conftest import child_pids, drain, subprocess_env, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

FAST = {"LEASE_SECONDS": 2, "HEARTBEAT_SECONDS": 0.2, "RESCUE_INTERVAL": 0.2, "POLL_INTERVAL": 0.05}


def settings_env(**overrides):
    return {"BOURBON_TEST_SETTINGS": json.dumps({**FAST, **overrides})}


def gone(pid: int) -> bool:
    """The process has exited (a zombie nobody reaped counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (FileNotFoundError, ProcessLookupError):
        return True


def naps(tmp_path, count, seconds=0.05, priority=0):
    runs = tmp_path / "runs"
    task = tasks.naps.using(priority=priority)
    return runs, [task.enqueue({"path": str(runs), "n": n, "seconds": seconds}).id for n in range(count)]


def runs_of(path):
    return [int(n) for n in path.read_text().split()] if path.exists() else []


@pytest.mark.parametrize(
    "poison, ending",
    [({"signal": signal.SIGKILL}, "was killed by SIGKILL (9)"), ({"code": 3}, "exited with code 3")],
    ids=["sigkill", "exit-3"],
)
def test_a_process_killed_by_its_job_charges_only_that_job_and_says_how(runworkers, tmp_path, poison, ending):
    (tmp_path / "a").mkdir()
    runs, plain = naps(tmp_path, 40, seconds=0.02)
    started = tmp_path / "poison-started"
    poisoned = tasks.kills_own_process.using(priority=-1).enqueue({"started": str(started), **poison})
    later_runs, later = naps(tmp_path / "a", 40, seconds=0.02, priority=-2)
    proc = runworkers("--processes", "1", "--threads", "1", "--batch-size", "16", **settings_env())
    wait_until(
        lambda: Job.objects.filter(pk__in=plain + later, status=JobStatus.SUCCEEDED).count() == 80,
        timeout=60,
        message="every plain job done",
    )
    pid = int(started.read_text())
    job = Job.objects.get(pk=poisoned.id)
    assert (job.status, job.attempts) == (JobStatus.FAILED, 1)
    [error] = job.errors
    assert error["exception_class_path"] == "django_bourbon_jobs.exceptions.WorkerLost"
    assert f"(pid {pid}) {ending}" in error["message"]
    charged = Job.objects.filter(pk__in=plain + later).exclude(attempts=1).count()
    assert charged == 0, "a job that never started was charged an attempt"
    for other in Job.objects.filter(pk__in=plain + later).exclude(errors=[]):
        assert [e["charged"] for e in other.errors] == [False], "only a returned job runs again, uncharged"
        assert "had returned but its outcome was not stored" in other.errors[0]["message"]
    # A job that had returned when the process died, its outcome not yet stored, runs again (uncharged).
    assert set(runs_of(runs)) == set(range(40)) and set(runs_of(later_runs)) == set(range(40))
    proc.signal(signal.SIGTERM)
    assert proc.wait(30) == 0, proc.output()


def test_a_dead_process_start_log_decides_who_is_charged(transactional_db):
    """Running: charged and told why. Returned, outcome unstored: runs again uncharged. Unstarted: as new."""
    ran, returned, unstarted = (tasks.echo.enqueue(name) for name in ("ran", "returned", "unstarted"))
    Job.objects.filter(pk__in=[ran.id, returned.id, unstarted.id]).update(
        status=JobStatus.RUNNING, attempts=1, worker_id="gone-1", lease_expires_at=timezone.now()
    )
    log = StartLog(threads=2, batch_size=4)
    log.record(0, uuid.UUID(ran.id))
    log.record(1, uuid.UUID(returned.id))
    log.mark_returned(uuid.UUID(returned.id))
    reason = "The worker process (pid 7) was killed by SIGKILL (9) during the attempt."
    assert maintenance.settle_dead_worker("gone-1", log, reason, timezone.now()) == 3
    jobs = {job.args[0]: job for job in Job.objects.all()}
    assert (jobs["ran"].status, jobs["ran"].attempts) == (JobStatus.QUEUED, 1)
    assert jobs["ran"].errors[0]["message"] == reason and jobs["ran"].errors[0].get("charged", True)
    assert (jobs["returned"].status, jobs["returned"].attempts) == (JobStatus.QUEUED, 0)
    [error] = jobs["returned"].errors
    assert error["charged"] is False and "had returned but its outcome was not stored" in error["message"]
    other = jobs["unstarted"]
    assert (other.status, other.attempts, other.errors, other.worker_id) == (JobStatus.QUEUED, 0, [], "")


def test_killing_the_supervisor_stops_its_children_gracefully(runworkers, tmp_path):
    payload = {"started": str(tmp_path / "started"), "release": str(tmp_path / "release"), "seconds": 2}
    running = tasks.wait_for_file.using(priority=10).enqueue(payload)
    _, queued = naps(tmp_path, 30, seconds=0.5)
    proc = runworkers("--processes", "2", "--threads", "1", "--grace", "10", **settings_env())
    wait_until(lambda: Path(payload["started"]).exists(), message="the long job started")
    children = child_pids(proc.process.pid)
    assert len(children) == 2
    os.kill(proc.process.pid, signal.SIGKILL)
    wait_until(
        lambda: all(gone(pid) for pid in children), timeout=10, message="children exit after their parent"
    )
    job = Job.objects.get(pk=running.id)
    assert job.status == JobStatus.SUCCEEDED, "the running job finished within the grace period"
    assert not Job.objects.filter(status=JobStatus.RUNNING).exists()
    assert not Job.objects.filter(pk__in=queued, status=JobStatus.QUEUED).exclude(attempts=0).exists()
    assert not Worker.objects.exists()


def oom_score_adj(pid: int) -> int:
    return int(Path(f"/proc/{pid}/oom_score_adj").read_text())


@pytest.mark.skipif(not Path("/proc/self/oom_score_adj").exists(), reason="Linux's")
def test_the_oom_killer_is_steered_to_a_worker_process_rather_than_its_supervisor(runworkers):
    proc = runworkers("--processes", "2", **settings_env())
    children = wait_until(lambda: len(child_pids(proc.process.pid)) == 2 and child_pids(proc.process.pid))
    supervisor = oom_score_adj(proc.process.pid)
    assert [oom_score_adj(pid) for pid in children] == [min(1000, supervisor + 500)] * 2


def test_a_frozen_pool_does_not_start_prefetched_jobs_that_were_rescued(runworkers, tmp_path):
    runs = tmp_path / "runs"
    ids = [tasks.naps_twice.enqueue({"path": str(runs), "n": n, "seconds": 0.3}).id for n in range(12)]
    frozen = runworkers("--processes", "1", "--threads", "1", "--batch-size", "8", **settings_env())
    wait_until(lambda: Job.objects.filter(status=JobStatus.RUNNING).count() >= 3, message="a prefetch")
    os.killpg(frozen.process.pid, signal.SIGSTOP)
    try:
        wait_until(
            lambda: maintenance.rescue_expired_leases(timezone.now()) > 0, timeout=10, message="leases expire"
        )
        drain()
    finally:
        os.killpg(frozen.process.pid, signal.SIGCONT)
    resumed = timezone.now()
    wait_until(lambda: Worker.objects.filter(last_heartbeat_at__gt=resumed).exists(), message="resumed")
    jobs = Job.objects.filter(pk__in=ids)
    wait_until(lambda: jobs.filter(status=JobStatus.SUCCEEDED).count() == 12, message="every job done")
    frozen.signal(signal.SIGTERM)
    assert frozen.wait(30) == 0, frozen.output()
    lost = [job for job in jobs if job.errors and job.errors[0].get("charged", True)]
    assert len(lost) <= 1, "only the job running at the freeze had started"
    refunded = [job for job in jobs if job.errors and job.errors[0].get("charged") is False]
    assert refunded, "prefetched jobs were rescued"
    assert all(job.attempts == 1 and "not counted" in job.errors[0]["message"] for job in refunded)
    counts = {n: runs_of(runs).count(n) for n in range(12)}
    duplicates = [n for n, count in counts.items() if count > 1]
    assert all(count >= 1 for count in counts.values())
    assert len(duplicates) <= 1, f"only the job running at the freeze may run twice: {counts}"


def test_max_memory_recycles_a_process_after_its_current_job(runworkers, tmp_path):
    payload = {"started": str(tmp_path / "started"), "release": str(tmp_path / "release"), "mb": 200}
    hog = tasks.hogs_memory.enqueue(payload)
    proc = runworkers("--processes", "1", "--max-memory", "150", BOURBON_TEST_LOG="1", **settings_env())
    first = int(
        wait_until(lambda: Path(payload["started"]).exists() and Path(payload["started"]).read_text())
    )
    wait_until(lambda: "passed --max-memory (150 MB)" in proc.output(), message="the limit noticed")
    after = tasks.echo.enqueue("after")
    Path(payload["release"]).touch()
    wait_until(lambda: Job.objects.get(pk=after.id).status == JobStatus.SUCCEEDED, message="a fresh process")
    assert Job.objects.get(pk=hog.id).status == JobStatus.SUCCEEDED, "the current job finished first"
    assert Job.objects.get(pk=after.id).worker_id != Job.objects.get(pk=hog.id).worker_id
    assert first not in child_pids(proc.process.pid)
    proc.signal(signal.SIGTERM)
    assert proc.wait(30) == 0, proc.output()


MEMORY_CGROUPS = Path("/sys/fs/cgroup/memory")


@pytest.fixture
def small_memory_cgroup():
    """A cgroup v1 memory group of 200 MB (swap included), where this machine lets the tests make one."""
    group = MEMORY_CGROUPS / f"bourbon-test-{os.getpid()}"
    try:
        group.mkdir()
        (group / "memory.limit_in_bytes").write_text(str(200 * 2**20))
        if (group / "memory.memsw.limit_in_bytes").exists():
            (group / "memory.memsw.limit_in_bytes").write_text(str(200 * 2**20))
    except OSError as exc:
        pytest.skip(f"no writable cgroup v1 memory controller here ({exc})")
    yield group
    for pid in (group / "cgroup.procs").read_text().split():
        os.kill(int(pid), signal.SIGKILL)
    wait_until(lambda: not (group / "cgroup.procs").read_text().strip(), message="the group empties")
    group.rmdir()


def test_a_job_killed_by_the_oom_killer_is_told_so(transactional_db, small_memory_cgroup, tmp_path):
    """The worker runs in a 200 MB memory cgroup; its supervisor, as in a container, started there too.

    The supervisor then leaves the group, so the OOM killer can only take the worker: in one shared
    group, a supervisor that allocates while the killed worker's memory is still being freed can be
    the next victim (seen on a loaded machine), and this test is about the job's report, not that race.
    """
    procs = small_memory_cgroup / "cgroup.procs"
    connection.close()
    with open(tmp_path / "log", "w") as log:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "django", "runworkers", "--processes", "1"],
            env=subprocess_env(**settings_env()),
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: procs.write_text(str(os.getpid())),
        )
    try:
        wait_until(lambda: child_pids(supervisor.pid), message="the worker process")
        (MEMORY_CGROUPS / "cgroup.procs").write_text(str(supervisor.pid))
        payload = {"started": str(tmp_path / "started"), "release": str(tmp_path / "release"), "mb": 400}
        hog = tasks.hogs_memory.enqueue(payload)
        wait_until(lambda: Job.objects.get(pk=hog.id).status == JobStatus.FAILED, timeout=60, message="OOM")
    except AssertionError:
        raise AssertionError((tmp_path / "log").read_text()) from None
    finally:
        supervisor.kill()
        supervisor.wait(10)
    [error] = Job.objects.get(pk=hog.id).errors
    assert "was killed by SIGKILL (9)" in error["message"]
    assert "The kernel's OOM killer killed it" in error["message"], error["message"]
