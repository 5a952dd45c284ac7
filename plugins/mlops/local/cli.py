"""The `mlops` command line: demo, up, replay, airflow, check, status, rollback, history, infer-schema."""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlops", description="MLOps pipelines on Apache Airflow and MLflow.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the whole chain on the bundled flights of 2013")
    demo.add_argument("--pipeline", default="flights")
    demo.add_argument("--verbose", action="store_true", help="show Airflow's task logs")
    up = sub.add_parser("up", help="run Airflow, the MLflow UI and a mail sink locally until Ctrl-C")
    up.add_argument("--airflow-port", type=int, default=8080)
    up.add_argument("--mlflow-port", type=int, default=5000)
    up.add_argument("--smtp-port", type=int, default=8025)
    up.add_argument("--host", default="127.0.0.1", help="address to bind Airflow and MLflow (default loopback)")
    rp = sub.add_parser("replay", help="operate a pipeline over a range of days under the real scheduler")
    rp.add_argument("pipeline")
    rp.add_argument("--start", default="2013-01-01", help="first day (YYYY-MM-DD); default 2013-01-01")
    rp.add_argument("--end", default="2014-01-01", help="day after the last day (exclusive); default 2014-01-01")
    rp.add_argument("--reprocess", action="store_true", help="run the same backfills again over the kept state")
    rp.add_argument(
        "--report-only", action="store_true", help="run nothing: report the kept replay's runs in the range"
    )
    rp.add_argument("--max-active-runs", type=int, default=4, help="daily runs at once (default 4)")
    af = sub.add_parser("airflow", help="run the airflow CLI against the running local stack (mlops up)")
    af.add_argument("args", nargs=argparse.REMAINDER)
    st = sub.add_parser("status", help="champion, last intervals and open alerts per pipeline")
    st.add_argument("--json", action="store_true", help="print JSON")
    rb = sub.add_parser("rollback", help="give the champion alias back to an earlier version")
    rb.add_argument("pipeline")
    rb.add_argument("--to-version", help="version to restore (default: previous_champion)")
    rb.add_argument("--reason", default="")
    infer = sub.add_parser("infer-schema", help="profile a reference window and write the pipeline's GX suite")
    infer.add_argument("pipeline")
    infer.add_argument("--start", required=True, help="first day of the reference window (YYYY-MM-DD)")
    infer.add_argument("--end", required=True, help="day after the last day (exclusive)")
    infer.add_argument("--output", help="where to write the suite (default: include/gx/expectations/<pipeline>.json)")
    hist = sub.add_parser("history", help="the audit trail of promotions and rollbacks")
    hist.add_argument("pipeline")
    hist.add_argument("--json", action="store_true", help="print the events as JSON, one a line")
    chk = sub.add_parser("check", help="check a pipeline's config, and its column names against one day of its source")
    chk.add_argument("pipeline")
    chk.add_argument("--day", help="the day to sample (YYYY-MM-DD; default: schedules.start_date)")
    args = parser.parse_args(argv)
    from mlops.core.config import ConfigError

    try:
        return _run(args)
    except ConfigError as exc:
        print(f"mlops {args.command}: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:

    if args.command == "demo":
        from mlops.local.demo import run_demo

        return run_demo(args.pipeline, quiet=not args.verbose)
    if args.command == "up":
        from mlops.local.stack import up as stack_up

        return stack_up(
            mlflow_port=args.mlflow_port, airflow_port=args.airflow_port, smtp_port=args.smtp_port, host=args.host
        )
    if args.command == "replay":
        import datetime as dt

        from mlops.local.replay import replay
        from mlops.reporting.replay import summary_lines

        try:
            data = replay(
                args.pipeline,
                dt.date.fromisoformat(args.start),
                dt.date.fromisoformat(args.end),
                reprocess=args.reprocess,
                report_only=args.report_only,
                max_active_runs=args.max_active_runs,
            )
        except KeyboardInterrupt as stop:
            print(f"mlops replay: stopped ({stop or 'SIGINT'}); its stack has stopped", file=sys.stderr)
            return 130
        print("\n".join(summary_lines(data)))
        return 0
    if args.command == "airflow":
        from mlops.local.stack import run_airflow_cli

        return run_airflow_cli(args.args)
    if args.command == "status":
        from mlops.core.config import load_each
        from mlops.local.status import status

        configs, errors = load_each()
        for error in errors.values():  # one invalid file hides its own pipeline only
            print(f"mlops status: left out: {error}", file=sys.stderr)
        report = status(list(configs.values()))
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            for name, s in report["pipelines"].items():
                counts = s["counts"]
                print(
                    f"{name}: champion v{s['champion']['version']} threshold {s['champion']['threshold']}; "
                    f"ingested {s['last_ingested']}, validated {s['last_validated']}, scored {s['last_scored']}; "
                    f"validations {counts['validation_passed']} passed, {counts['validation_failed']} failed; "
                    f"{len(s['open_alerts'])} open alerts"
                )
        return 0
    if args.command == "rollback":
        from mlops.core.config import load_pipeline
        from mlops.stages.promote import rollback

        version = rollback(load_pipeline(args.pipeline), args.to_version, triggered_by="cli", reason=args.reason)
        print(f"{args.pipeline}: champion is now version {version}")
        return 0
    if args.command == "infer-schema":
        import datetime as dt
        from pathlib import Path

        from mlops.core.config import load_pipeline
        from mlops.core.interval import Interval
        from mlops.io.schema import infer_schema
        from mlops.stages.ingest import ingest_missing

        cfg = load_pipeline(args.pipeline)
        window = Interval(dt.date.fromisoformat(args.start), dt.date.fromisoformat(args.end))
        ingest_missing(cfg, window, url=_source_url(cfg))
        path = infer_schema(cfg, window, Path(args.output) if args.output else None)
        print(f"wrote {path}: review the diff and commit it")
        return 0
    if args.command == "history":
        from mlops.io.audit import audit_path, history
        from mlops.local.history import history_table

        events = history(args.pipeline)
        if args.json:
            for event in events:
                print(json.dumps(event))
        elif events:
            print(history_table(events))
        else:
            print(f"{args.pipeline}: no promotion or rollback recorded yet ({audit_path(args.pipeline)})")
        return 0
    if args.command == "check":
        import datetime as dt

        from mlops.core.config import find_pipeline
        from mlops.local.check import check_pipeline

        path, cfg = find_pipeline(args.pipeline)
        day = dt.date.fromisoformat(args.day) if args.day else cfg.schedules.start_date
        report = check_pipeline(cfg, day, url=_source_url(cfg), path=path)
        print(report.summary(), file=sys.stdout if report.ok else sys.stderr)
        return 0 if report.ok else 1
    return 2


def _source_url(cfg) -> str | None:
    """The source's connection (`source.conn_id`) resolved as the Airflow tasks resolve it."""
    if cfg.source.kind != "sql" or not cfg.source.conn_id:
        return None
    from mlops.airflow import environment as airflow_env

    airflow_env.configure()  # the embedded Airflow's settings (connections of `mlops up`), unless set
    from mlops.airflow.connections import source_url

    return source_url(cfg)


if __name__ == "__main__":
    sys.exit(main())
