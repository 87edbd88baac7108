"""CI facts of a re-run job, and the job URLs of CI systems that give no variable for one.

A re-run keeps its run's ID on GitHub Actions, Azure Pipelines, Buildkite and
Bitbucket Pipelines: without the attempt, two builds of two attempts recorded the same
run and linked the same (first) attempt's page.
"""

from __future__ import annotations

from escrow.capture.source import ci_facts


def test_github_rerun_records_its_attempt_and_links_that_attempt() -> None:
    env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_REPOSITORY": "o/r",
        "GITHUB_RUN_ID": "42",
        "GITHUB_RUN_ATTEMPT": "2",
    }

    ci = ci_facts(env)

    assert ci is not None
    assert ci["runId"] == "42"
    assert ci["attempt"] == "2"
    assert ci["jobUrl"] == "https://github.com/o/r/actions/runs/42/attempts/2"


def test_github_without_an_attempt_links_the_run() -> None:
    ci = ci_facts({"GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": "o/r", "GITHUB_RUN_ID": "42"})

    assert ci is not None
    assert ci["jobUrl"] == "https://github.com/o/r/actions/runs/42"
    assert "attempt" not in ci


def test_buildkite_links_the_job_and_counts_its_retries() -> None:
    env = {
        "BUILDKITE": "true",
        "BUILDKITE_JOB_ID": "0190-job",
        "BUILDKITE_BUILD_URL": "https://buildkite.com/acme/app/builds/17",
        "BUILDKITE_RETRY_COUNT": "1",
    }

    ci = ci_facts(env)

    assert ci is not None
    assert ci["jobUrl"] == "https://buildkite.com/acme/app/builds/17#0190-job"
    assert ci["attempt"] == "2"  # retried once: its second run


def test_bitbucket_job_url_is_made_from_its_workspace_repository_and_step() -> None:
    env = {
        "BITBUCKET_BUILD_NUMBER": "31",
        "BITBUCKET_WORKSPACE": "acme",
        "BITBUCKET_REPO_SLUG": "app",
        "BITBUCKET_STEP_UUID": "{a1b2-c3}",
        "BITBUCKET_STEP_RUN_NUMBER": "3",
    }

    ci = ci_facts(env)

    assert ci is not None
    assert ci["jobUrl"] == (
        "https://bitbucket.org/acme/app/pipelines/results/31/steps/%7Ba1b2-c3%7D"
    )
    assert ci["attempt"] == "3"
    assert "runner" not in ci  # the step's run number names no runner


def test_azure_rerun_records_its_attempt() -> None:
    env = {
        "TF_BUILD": "True",
        "BUILD_BUILDID": "3",
        "SYSTEM_COLLECTIONURI": "https://dev.azure.com/org/",
        "SYSTEM_TEAMPROJECT": "p",
        "SYSTEM_JOBATTEMPT": "2",
    }

    ci = ci_facts(env)

    assert ci is not None
    assert ci["attempt"] == "2"
