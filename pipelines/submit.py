"""Compile a pipeline to YAML, submit a run to a KFP API server, or create a recurring run."""

import datetime
import os
import tempfile
from typing import Any

from components.settings import SERVICE_ACCOUNT


def compile_pipeline(pipeline_func, path: str, arguments: dict[str, Any]) -> str:
    """Write the pipeline YAML with ``arguments`` as the parameters' defaults."""
    from kfp import compiler

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    compiler.Compiler().compile(pipeline_func, package_path=path, pipeline_parameters=dict(arguments))
    return path


def make_client(host: str, namespace: str | None = None):
    import kfp

    return kfp.Client(host=host, namespace=namespace)


def run_url(host: str, run_id: str) -> str:
    from dna.redact import redact  # a host URL may carry user:password@ (printed, logged)

    return redact(f"{host.rstrip('/')}/#/runs/details/{run_id}")


def recurring_run_url(host: str, recurring_run_id: str) -> str:
    from dna.redact import redact

    return redact(f"{host.rstrip('/')}/#/recurringrun/details/{recurring_run_id}")


def submit(client, pipeline_func, arguments: dict[str, Any], host: str, experiment: str,
           run_name: str | None = None, namespace: str | None = None, enable_caching: bool | None = None,
           service_account: str | None = SERVICE_ACCOUNT) -> str:
    """One run on the KFP server, as the project's ServiceAccount (``DNA_SERVICE_ACCOUNT``; empty:
    KFP's default); returns its URL."""
    name = run_name or f"{pipeline_func.name} {datetime.datetime.now():%Y-%m-%d %H-%M-%S}"
    result = client.create_run_from_pipeline_func(
        pipeline_func, arguments=dict(arguments), run_name=name, experiment_name=experiment,
        namespace=namespace, enable_caching=enable_caching, service_account=service_account)
    return run_url(host, result.run_id)


def schedule(client, pipeline_func, arguments: dict[str, Any], host: str, cron: str, experiment: str,
             job_name: str | None = None, namespace: str | None = None, enable_caching: bool | None = None,
             description: str | None = None, service_account: str | None = SERVICE_ACCOUNT) -> str:
    """A recurring run (KFP six-field cron) as the project's ServiceAccount; returns its URL."""
    from pipelines.cron import explain_cron, validate_cron

    cron = validate_cron(cron)
    job_name = job_name or f"{pipeline_func.name} ({cron})"
    with tempfile.TemporaryDirectory() as tmp:
        path = compile_pipeline(pipeline_func, os.path.join(tmp, "pipeline.yaml"), arguments)
        exp = client.create_experiment(name=experiment, namespace=namespace)
        rr = client.create_recurring_run(
            experiment_id=exp.experiment_id, job_name=job_name,
            description=description or f"{pipeline_func.name}: {explain_cron(cron)}",
            cron_expression=cron, max_concurrency=1, no_catchup=True, params=dict(arguments),
            pipeline_package_path=path, enable_caching=enable_caching, service_account=service_account)
    return recurring_run_url(host, rr.recurring_run_id)
