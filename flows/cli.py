"""`voicecycle`: the command line of the cycle. Every subcommand has --help.

Heavy libraries are imported inside the commands, after the environment points at the
workspace, so `voicecycle --help` is instant and nothing touches a user's own servers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from data_contracts.scoping import Scope, ScopeError, load_scope


def _load(args: argparse.Namespace) -> Scope:
    scope = load_scope(Path(args.scope))
    if args.workspace:
        scope = scope.with_workspace(Path(args.workspace))
    return scope


@contextlib.contextmanager
def _stdout_to_stderr(enabled: bool) -> Iterator[None]:
    """Keep stdout clean for --json output while flows log and draw progress bars."""
    if not enabled:
        yield
        return
    with contextlib.redirect_stdout(sys.stderr):
        yield


def _prepare(scope: Scope, quiet: bool = False) -> str:
    from flows.runtime import configure_environment, start_server

    configure_environment(scope)
    ui = start_server(scope)
    if not quiet:
        print(f"Prefect UI: {ui}", file=sys.stderr)
    return ui


def cmd_server(args: argparse.Namespace) -> int:
    from flows.runtime import configure_environment, server_healthy, start_server, stop_server

    scope = _load(args)
    configure_environment(scope)
    if args.action == "start":
        print(f"Prefect UI: {start_server(scope)}")
    elif args.action == "stop":
        from flows.runtime import stop_service, stop_worker

        stopped = [
            name
            for name, stop in (
                ("service", stop_service),
                ("worker", stop_worker),
                ("prefect server", stop_server),
            )
            if stop(scope)
        ]
        print("stopped: " + ", ".join(stopped) if stopped else "nothing was running")
    else:
        up = server_healthy(scope)
        print("running" if up else "not running")
        return 0 if up else 1
    return 0


def cmd_validate_scope(args: argparse.Namespace) -> int:
    from tasks.scoping import scope_problems

    scope = _load(args)
    problems = scope_problems(scope)
    if problems:
        print("invalid scope:\n" + "\n".join(f"  - {p}" for p in problems), file=sys.stderr)
        return 2
    print(f"scope {args.scope} is valid")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    scope = _load(args)
    ui = _prepare(scope)
    from flows.full_cycle import full_cycle

    result = full_cycle(scope)
    print(json.dumps(result, indent=2, default=str))
    from flows.runtime import deploy_all, start_service, start_worker

    deploy_all(scope)
    start_worker(scope)
    url = start_service(scope, Path(args.scope))
    print(
        f"\nThe cycle finished.\n  Prefect UI (runs and artifacts): {ui}\n"
        f"  Speech endpoint: {url}/transcribe (docs: {url}/docs)\n"
        f"  MLflow UI: {sys.executable} -m mlflow ui --backend-store-uri "
        f"{scope.state.url('mlflow_tracking_uri')} --host 127.0.0.1 --port 5000"
    )
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from data_contracts.scoping import DataSource

    scope = _load(args)
    if args.manifest:
        kind = args.kind
        if kind is None:
            from tasks.manifests import detect_kind

            kind = detect_kind(Path(args.manifest))
        source = DataSource(
            kind=kind,
            name=args.source_name,
            path=Path(args.manifest),
            data_root=Path(args.data_root) if args.data_root else None,
        )
        scope = scope.model_copy(update={"sources": [source]})
    with _stdout_to_stderr(args.json):
        _prepare(scope, quiet=args.json)
        import tempfile

        from flows.ingest import ingest
        from tasks.ingestion import IngestionRejected

        with tempfile.TemporaryDirectory() as tmp:
            summary_path = Path(tmp) / "summary.json"
            state = ingest(scope, summary_path=summary_path, return_state=True)
            summary = (
                json.loads(summary_path.read_text())
                if summary_path.is_file()
                else {
                    "dataset_version": None,
                    "accepted": 0,
                    "quarantined": [],
                    "error": str(_exception_of(state)),
                }
            )
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    elif summary.get("dataset_version"):
        print(
            f"dataset version {summary['dataset_version']}: {summary['accepted']} accepted, "
            f"{len(summary['quarantined'])} quarantined"
        )
    if state.is_completed():
        return 0
    exc = _exception_of(state)
    print(f"ingestion failed: {exc}", file=sys.stderr)
    return 1 if isinstance(exc, IngestionRejected) else 2


def _exception_of(state: Any) -> BaseException:
    try:
        state.result()
    except BaseException as exc:  # the flow's own failure, re-raised by Prefect
        return exc
    return RuntimeError("unknown failure")


def cmd_augment(args: argparse.Namespace) -> int:
    scope = _load(args)
    _prepare(scope)
    from flows.augment import augment

    print(augment(scope, args.dataset_version))
    return 0


def cmd_package(args: argparse.Namespace) -> int:
    scope = _load(args)
    _prepare(scope)
    from flows.package import package

    print(json.dumps(package(scope, build=not args.no_build), indent=2))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from flows.runtime import configure_environment, start_service, stop_service

    scope = _load(args)
    if args.port:
        scope = scope.model_copy(
            update={"serving": scope.serving.model_copy(update={"port": args.port})}
        )
    configure_environment(scope)
    if args.stop:
        print("stopped" if stop_service(scope) else "no service started from this workspace")
        return 0
    if not _store_has_model(scope):
        print("the BentoML store has no model yet: packaging the champion first", file=sys.stderr)
        _prepare(scope)
        from flows.package import package

        package(scope, build=False)
    if args.foreground:
        import subprocess

        from flows.runtime import REPO_ROOT, service_env
        from tasks.packaging import serve_command

        cmd = serve_command(scope.serving.host, scope.serving.port)
        return subprocess.call(cmd, cwd=REPO_ROOT, env=service_env(scope, Path(args.scope)))
    url = start_service(scope, Path(args.scope))
    print(f"serving on {url} (POST /transcribe, GET /metadata, docs at {url}/docs)")
    return 0


def _store_has_model(scope: Scope) -> bool:
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        return bool(bentoml.models.list(scope.registry.model_name))
    except NotFound:
        return False


def cmd_deploy(args: argparse.Namespace) -> int:
    scope = _load(args)
    _prepare(scope)
    from flows.runtime import deploy_all, start_worker

    for name in deploy_all(scope):
        print(f"deployed {name}")
    start_worker(scope)
    print("process worker running for work pool 'voicecycle-local'")
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    scope = _load(args)
    ui = _prepare(scope)
    if args.local:
        from flows.retrain import retrain

        print(json.dumps(retrain(scope, args.reason), indent=2, default=str))
        return 0
    from prefect.deployments import run_deployment

    from flows.runtime import deploy_all, start_worker

    deploy_all(scope)
    start_worker(scope)
    run = run_deployment(
        "retrain/retrain", parameters={"reason": args.reason}, timeout=None if args.wait else 0
    )
    print(
        f"retrain flow run {run.id} ({run.state.name if run.state else 'scheduled'}): "
        f"{ui}/runs/flow-run/{run.id}"
    )
    return 0 if not args.wait or (run.state and run.state.is_completed()) else 1


def cmd_monitor(args: argparse.Namespace) -> int:
    scope = _load(args)
    _prepare(scope)
    from flows.monitor import monitor

    print(json.dumps(monitor(scope, trigger=not args.no_trigger), indent=2, default=str))
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    scope = _load(args)
    from flows.runtime import configure_environment, service_url

    configure_environment(scope, api=False)
    from tasks.traffic import SCENARIOS, make_clips, production_voices, send

    synthetic = next((s.synthetic for s in scope.sources if s.synthetic), None)
    voices = production_voices(
        scope.state.path("datasets_dir"), synthetic.seed if synthetic else 13
    )[: args.voices]
    clips = make_clips(SCENARIOS[args.scenario], args.count, voices, args.seed)
    url = args.url or service_url(scope) + "/transcribe"
    result = send(url, clips, args.scenario, concurrency=args.concurrency, rate_per_s=args.rate)
    print(json.dumps(result.summary(), indent=2))
    return 0 if result.ok == result.sent else 1


def cmd_story(args: argparse.Namespace) -> int:
    scope = _load(args)
    from bench.story import main as story

    result = story(
        scope,
        Path(args.scope),
        Path(args.out),
        stable_windows=args.windows,
        chunk=args.chunk,
        eval_clips=args.eval_clips,
        newsroom=not args.no_newsroom,
    )
    return 0 if result["retrain_triggered"] else 1


def cmd_train(args: argparse.Namespace) -> int:
    scope = _load(args)
    _prepare(scope)
    from flows.train import train

    result = train(
        scope, args.augmented_version, warm_start_from=args.warm_start, resume_run_id=args.resume
    )
    print(json.dumps(result, indent=2, default=str))
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    scope = _load(args)
    _prepare(scope)
    from tasks.registry import configure_mlflow, rollback

    configure_mlflow(
        scope.state.url("mlflow_tracking_uri"),
        scope.registry.experiment,
        scope.state.path("mlflow_artifacts"),
    )
    try:
        before, after = rollback(scope.registry.model_name)
    except RuntimeError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(f"champion of {scope.registry.model_name}: version {before} -> {after}")
    # the service follows the BentoML store: put the restored champion there as `latest`
    from flows.package import package

    packaged = package(scope, build=False)
    print(
        f"BentoML store: {packaged['model_tag']} (version {after}) is what serves now; a "
        f"running service switches at its next poll ({scope.serving.reload_poll_seconds:g} s)"
    )
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    scope = _load(args)
    from flows.runtime import configure_environment

    configure_environment(scope, api=False)
    import importlib

    module = importlib.import_module(f"bench.{args.suite}")
    if args.suite == "train":
        module.main(scope, Path(args.out), profile=args.profile)
    else:
        module.main(scope, Path(args.out))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `voicecycle` and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="voicecycle",
        description="The full cycle of a voice-search speech recogniser: scope, data, "
        "augmentation, training, serving, monitoring, retraining.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--scope", default="scope.yaml", help="scope file (default: scope.yaml)")
    common.add_argument("--workspace", help="override state.workspace (all local state)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, fn: Callable[[argparse.Namespace], int], help_: str) -> Any:
        p = sub.add_parser(name, parents=[common], help=help_, description=help_)
        p.set_defaults(fn=fn)
        return p

    p = add(
        "server",
        cmd_server,
        "start or check the Prefect server (UI); stop also stops the worker and service",
    )
    p.add_argument("action", choices=["start", "stop", "status"])
    add("validate-scope", cmd_validate_scope, "check the scope file and what it names")
    add("run", cmd_run, "run the full cycle against the local Prefect server")
    p = add("ingest", cmd_ingest, "ingest the scope's sources, or one manifest, into a version")
    p.add_argument("--manifest", help="a manifest to ingest instead of the scope's sources")
    p.add_argument(
        "--kind",
        choices=["nemo", "commonvoice", "csv"],
        help="manifest format (default: from the extension)",
    )
    p.add_argument("--data-root", help="folder all audio must lie under (default: manifest's)")
    p.add_argument("--source-name", default="manifest", help="name recorded as the rows' source")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    p = add("augment", cmd_augment, "augment a dataset version with car noise")
    p.add_argument("--dataset-version", required=True, help="e.g. ds-0123456789ab")
    p = add("train", cmd_train, "train, analyse, register and gate on an augmented version")
    p.add_argument("--augmented-version", required=True, help="e.g. aug-0123456789ab")
    p.add_argument("--warm-start", metavar="VERSION", help="start from a registered version")
    p.add_argument("--resume", metavar="RUN_ID", help="continue an interrupted MLflow run")
    add("rollback", cmd_rollback, "move the champion alias back to the previous champion")
    add("deploy", cmd_deploy, "register prefect.yaml's deployments and start the worker")
    p = add("retrain", cmd_retrain, "trigger the retrain deployment (or run it here)")
    p.add_argument("--reason", required=True, help="why: recorded in the run and the registry")
    p.add_argument("--wait", action="store_true", help="wait for the retrain to finish")
    p.add_argument("--local", action="store_true", help="run in this process, not the worker")
    p = add("monitor", cmd_monitor, "check the prediction log for drift now")
    p.add_argument("--no-trigger", action="store_true", help="report only; never retrain")
    p = add("simulate", cmd_simulate, "send simulated voice-search traffic to the endpoint")
    p.add_argument(
        "--scenario", choices=["stable", "new-names", "in-car", "mixed"], default="stable"
    )
    p.add_argument("--count", type=int, default=50, help="requests to send")
    p.add_argument("--rate", type=float, help="requests per second (default: as fast as allowed)")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--voices", type=int, default=24, help="held-out speakers to draw from")
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--url", help="endpoint (default: the scope's serving host and port)")
    p = add("story", cmd_story, "replay the story: stable traffic, new names, drift, retrain")
    p.add_argument("--windows", type=int, default=10, help="stable windows (false alarms)")
    p.add_argument("--chunk", type=int, default=100, help="shifted requests per drift check")
    p.add_argument("--eval-clips", type=int, default=120, help="clips per fixed WER set")
    p.add_argument(
        "--no-newsroom",
        action="store_true",
        help="retrain on production labels alone (default: the newsroom's list of the new "
        "names is the retrain's hot-word file, as training.hot_words_file)",
    )
    p.add_argument("--out", default="bench/results", help="results folder")
    p = add("package", cmd_package, "import the champion into the BentoML store, build a Bento")
    p.add_argument("--no-build", action="store_true", help="only import into the model store")
    p = add("serve", cmd_serve, "serve the champion over HTTP with BentoML (127.0.0.1)")
    p.add_argument("--port", type=int, help="override serving.port")
    p.add_argument("--foreground", action="store_true", help="run attached (Ctrl-C stops)")
    p.add_argument("--stop", action="store_true", help="stop the background service")
    p = add("bench", cmd_bench, "run a benchmark; writes JSON under bench/results/")
    p.add_argument("suite", choices=["data", "serve", "train"], help="which benchmark")
    p.add_argument(
        "--profile",
        choices=["default", "quality"],
        default="default",
        help="training profile for the train benchmark",
    )
    p.add_argument("--out", default="bench/results", help="results folder")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `voicecycle` console command."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(args))
    except ScopeError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
