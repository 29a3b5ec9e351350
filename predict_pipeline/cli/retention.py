"""`predict-pipeline retention run [--dry-run]`: the retention job, from the shell."""

from __future__ import annotations

import argparse

DRY_RUN_NOTE = " (dry run: nothing changed)"


def _run(args: argparse.Namespace) -> int:
    import dagster as dg

    from predict_pipeline.db.bootstrap import bootstrap

    bootstrap()
    from predict_pipeline.definitions import defs  # after bootstrap: the env names the database
    from predict_pipeline.defs.retention import RETENTION_ASSETS, retention_run_config

    job = defs.resolve_job_def("retention_job")
    # Run config replaces the resource's config whole: keep the deployment's policy in it.
    retention = (defs.resources or {}).get("retention")
    if retention is None:
        raise RuntimeError("the definitions declare no retention resource")
    policy = {k: v for k, v in retention.model_dump().items() if k != "dry_run"}
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(
            run_config=retention_run_config(dry_run=args.dry_run, **policy),
            instance=instance,
            raise_on_error=False,
        )
    for asset in RETENTION_ASSETS:
        name = asset.key.to_user_string()
        # A dry run records what it would do as an observation, a real run as a materialisation.
        reported = result.asset_observations_for_node(
            asset.op.name
        ) or result.asset_materializations_for_node(asset.op.name)
        if not reported:
            print(f"{name}: FAILED (see the run {result.run_id} in the Dagster UI)")
            continue
        counts = {
            key: value.value
            for key, value in reported[0].metadata.items()
            if isinstance(value.value, int) and not isinstance(value.value, bool)
        }
        print(f"{name}: " + (", ".join(f"{k}={v}" for k, v in counts.items()) or "-"))
    for check in result.get_asset_check_evaluations():
        verdict = "passed" if check.passed else f"failed ({check.severity.value})"
        print(f"check {check.check_name}: {verdict}")
    status = "ok" if result.success else "FAILED"
    print(f"retention {status}{DRY_RUN_NOTE if args.dry_run else ''}, run {result.run_id}")
    return 0 if result.success else 1


def add_commands(commands: argparse._SubParsersAction) -> None:
    retention = commands.add_parser(
        "retention", help="retention policies and maintenance"
    ).add_subparsers(dest="retention_command", required=True)
    run = retention.add_parser("run", help="run the retention job now (as the schedule does)")
    run.add_argument(
        "--dry-run", action="store_true", help="report what would be removed; change nothing"
    )
    run.set_defaults(func=_run)
