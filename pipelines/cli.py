"""The pipeline scripts' entry point: check the command line, then one of four ways to use a pipeline.

- no KFP host: run the whole pipeline here with KFP's own local runner
  (``kfp.local.SubprocessRunner(use_venv=False)``: every component runs as a subprocess of this
  Python, the same code that runs in the cluster), then print the summary;
- ``--compile FILE``: write the pipeline YAML (upload it in the KFP UI); the preset's values are
  the parameters' defaults;
- ``--host URL`` (or ``KFP_HOST``): submit a run to a KFP API server and print its URL;
- ``--host URL --schedule CRON``: create a recurring run (six-field cron, seconds first).
"""

import json
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

from dna.redact import redact
from pipelines.flags import UsageError, make_parser
from pipelines.local_run import run_local
from pipelines.plan import Extras, make_plan
from pipelines.render import format_summary
from pipelines.stop import Interrupted, interrupted_line
from pipelines.submit import compile_pipeline, make_client, schedule, submit


def main(argv: Sequence[str] | None, prog: str, description: str,
         build: Callable[[int, Any], Any], default_generations: int | None = None,
         client_factory: Callable[..., Any] = make_client, out=None, presets: dict[str, dict] | None = None,
         extras: Extras | None = None) -> int:
    """The scripts' entry point; returns the exit status (2 for bad input)."""
    from dna.errors import DnaError
    from pipelines.cron import CronError
    from pipelines.graph import BuildOptions

    out = out or sys.stdout
    parser = make_parser(prog, description, generations_flag=default_generations is not None, presets=presets)
    args = parser.parse_args(argv)
    try:
        plan = make_plan(args, default_generations, presets, extras)
        opts = BuildOptions.from_args(args)
        opts = opts.with_secret(plan.arguments["storage_secret"])
        pipeline_func = build(plan.generations, opts)
        inputs = set(pipeline_func.component_spec.inputs or {})
        plan.arguments = {k: v for k, v in plan.arguments.items() if k in inputs}
    except (UsageError, DnaError, CronError) as exc:
        print(f"error: {redact(exc)}", file=sys.stderr)
        return 2
    if args.print_config:
        print(json.dumps({"mode": plan.mode, "generations": plan.generations, "arguments":
                          {**plan.arguments, "run_config": plan.run_config}}, indent=1), file=out)
        return 0
    if plan.compile_path:
        compile_pipeline(pipeline_func, plan.compile_path, plan.arguments)
        print(f"wrote {plan.compile_path}: upload it in the KFP UI (Pipelines > Upload pipeline); the "
              f"'{args.preset}' preset is every parameter's default", file=out)
    if plan.mode == "schedule":
        client = client_factory(plan.host, args.namespace)
        url = schedule(client, pipeline_func, plan.arguments, plan.host, plan.cron, args.experiment,
                       job_name=plan.run_name, namespace=args.namespace,
                       enable_caching=False if args.no_cache else None)
        print(f"recurring run created: {plan.cron!r} runs {plan.cron_text} (scheduler time zone, usually UTC)",
              file=out)
        print(f"each run stores its artifacts under $DNA_RUN_ROOT/<run id>\n{url}", file=out)
    elif plan.mode == "submit":
        client = client_factory(plan.host, args.namespace)
        url = submit(client, pipeline_func, plan.arguments, plan.host, args.experiment, run_name=plan.run_name,
                     namespace=args.namespace, enable_caching=False if args.no_cache else None)
        root = plan.run_config["root"] or "$DNA_RUN_ROOT/<run id>"
        print(f"submitted; run root {redact(root)}\n{url}", file=out)
    elif plan.mode == "local":
        try:
            summary = run_local(pipeline_func, plan.arguments, plan.run_config["root"],
                                log=lambda m: print(m, file=out, flush=True), verbose=args.verbose)
        except Interrupted as exc:
            print(interrupted_line(exc, plan.run_config["root"]), file=sys.stderr, flush=True)
            return exc.exit_code
        except KeyboardInterrupt:                   # Ctrl-C before the task handlers were in place
            print(interrupted_line(Interrupted(signal.SIGINT), plan.run_config["root"]), file=sys.stderr)
            return 130
        except DnaError as exc:                     # e.g. the root's lease is another run's
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except RuntimeError as exc:
            print(f"error: {redact(exc)}\nthe run root {redact(plan.run_config['root'])} keeps every finished stage: run the same "
                  "command with --root to resume", file=sys.stderr)
            return 1
        print("\n" + format_summary(summary), file=out)
    return 0
