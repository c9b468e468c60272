"""Every recurring job resolves to a real function on a real queue, with a valid cron string."""

from croniter import croniter

from clearing.jobs import QUEUES
from clearing.schedule import recurring_jobs


def test_every_recurring_job_resolves():
    jobs = recurring_jobs()
    assert {j.func_path for j in jobs} >= {
        "notices.tasks.expire_notices",
        "reconciliation.tasks.reconcile_night",
    }
    for job in jobs:
        assert callable(job.resolve()), job.func_path
        assert job.queue in QUEUES
        assert croniter.is_valid(job.cron)


def test_submitted_refunds_are_swept_every_five_minutes():
    sweep = next(
        j
        for j in recurring_jobs()
        if j.func_path == "clearing.payments.tasks.process_submitted_refunds_job"
    )
    assert (sweep.queue, sweep.cron) == ("default", "*/5 * * * *")
