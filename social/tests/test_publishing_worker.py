"""Publishing in real worker processes: a worker killed mid-publish, then recovery by the stalled-job retry."""

from __future__ import annotations

import signal

import pytest
from procrastinate.contrib.django.models import ProcrastinateJob

from analytics.models import Event
from companyos.foundation.tests.support import manage_py
from companyos.foundation.topology import wait_for
from social.jobs import publish_post
from social.models import SocialPost
from social.tests.platform_server import platform_server
from social.tests.test_publishing import due_post

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# Every second: publish due posts, look for stalled jobs; a worker silent for 3 s is dead.
FAST = {
    "SCHEDULE_PUBLISH_DUE_POSTS": "* * * * * */1",
    "SCHEDULE_RETRY_STALLED_JOBS": "* * * * * */1",
    "JOBS_HEARTBEAT_SECONDS": "0.5",
    "JOBS_STALLED_WORKER_SECONDS": "3",
    "JOBS_POLL_SECONDS": "0.5",
}


def test_a_worker_killed_while_the_platform_answers_leaves_one_post_after_recovery():
    with platform_server() as platform:
        env = {**FAST, "SOCIAL_X_API_URL": platform.url}
        platform.post_delay = 1.5  # the POST is in flight when the worker dies; the platform then publishes
        post = due_post()
        with manage_py("run_scheduler", env=env) as scheduler, manage_py("run_worker", env=env) as doomed:
            wait_for(lambda: platform.posted(), "the worker calling the platform", timeout=60)
            doomed.send_signal(signal.SIGKILL)
            doomed.wait()
            with manage_py("run_worker", env=env) as survivor:
                wait_for(
                    lambda: SocialPost.objects.get(pk=post.pk).status == SocialPost.Status.PUBLISHED,
                    "the retried job recording the post",
                    timeout=60,
                )
            assert survivor.returncode == 0, survivor.output()
        assert scheduler.returncode == 0, scheduler.output()

    post.refresh_from_db()
    (tweet,) = platform.posts
    assert len(platform.posted()) == 1, "published exactly once"
    assert post.external_id == tweet["id"]
    assert [r.method for r in platform.requests] == ["POST", "GET"], "the retry looked the post up"
    # Procrastinate's tables are not Django's to flush between transactional tests, so jobs of earlier
    # tests' posts may still be there: this post's jobs are the ones whose arguments name it.
    (job,) = ProcrastinateJob.objects.filter(task_name=publish_post.name, args={"post_id": str(post.pk)})
    assert (job.status, job.attempts) == ("succeeded", 2), "one job, retried in place: the killed attempt, the retry"
    assert Event.objects.filter(subject_id=post.pk, event_type="social.post.published").count() == 1
