"""The ``dynpose`` command line."""

from __future__ import annotations

import argparse
import json
import os
import posixpath
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_LAKE = "./lake"


def _lake_url(args) -> str:
    return args.lake or os.environ.get("DYNPOSE_LAKE") or DEFAULT_LAKE


def _print_table(rows: list[dict], columns: list[str] | None = None) -> None:
    if not rows:
        print("(no rows)")
        return
    columns = columns or list(rows[0])
    cells = [
        [("" if r.get(c) is None else f"{r[c]:.4g}" if isinstance(r.get(c), float) else str(r[c])) for c in columns]
        for r in rows
    ]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))


def _print_tables(tables: list[tuple[str, list[dict]]]) -> None:
    for title, rows in tables:
        print(f"\n{title}")
        _print_table(rows)


def _ingest_progress():
    from tqdm import tqdm

    bar = tqdm(desc="hashing", unit="file", leave=False, delay=1.0)

    def update(done, total, _uri):
        bar.total = total
        bar.n = done
        bar.refresh()
        if done == total:
            bar.close()

    return update


def cmd_ingest(args) -> int:
    from dynpose.graph.settings import load_settings
    from dynpose.storage.ingest import ingest
    from dynpose.storage.lake import Lake

    settings = load_settings(args.settings)
    if args.shard_size:
        settings.ingest.shard_size = args.shard_size
    report = ingest(args.source, Lake(_lake_url(args)), settings.ingest, progress=_ingest_progress())
    print(report.summary())
    for uri, vid in report.duplicates:
        print(f"  duplicate: {uri} is video {vid}")
    for uri, msg in report.errors:
        print(f"  could not read: {uri}: {msg}")
    return 0


def _summarize_outcomes(outcomes) -> None:
    from collections import Counter

    counts = Counter((o.product, o.action) for o in outcomes)
    products = sorted({o.product for o in outcomes})
    _print_table(
        [
            {
                "product": p,
                "computed": counts[(p, "computed")],
                "skipped (fresh)": counts[(p, "skipped")],
                "failed": counts[(p, "failed")],
            }
            for p in products
        ]
    )


def cmd_materialize(args) -> int:
    from dynpose.graph.orchestrate import materialize

    t0 = time.perf_counter()
    outcomes = materialize(
        _lake_url(args),
        args.settings,
        shards=args.shard,
        select=args.select,
        executor=args.executor,
        ray_address=args.ray_address,
        progress=not args.quiet,
        workers=args.workers,
    )
    _summarize_outcomes(outcomes)
    computed = sum(o.action == "computed" for o in outcomes)
    print(
        f"{computed} product shard(s) computed, {sum(o.action == 'skipped' for o in outcomes)} fresh and skipped "
        f"in {time.perf_counter() - t0:.1f} s"
    )
    return 1 if any(o.action == "failed" for o in outcomes) else 0


def cmd_status(args) -> int:
    from dynpose.graph.orchestrate import status
    from dynpose.graph.settings import load_settings
    from dynpose.storage.ingest import Registry
    from dynpose.storage.lake import Lake

    lake = Lake(_lake_url(args))
    registry = Registry(lake)
    shards = registry.shards()
    print(f"lake {lake.url}: {len(shards)} shard(s), {sum(len(registry.videos(s)) for s in shards)} video(s)")
    _print_table(status(_lake_url(args), args.settings))
    spend = vlm_spend(lake, load_settings(args.settings).vlm.configured)
    if spend:
        print("\nVLM spend (SQL: select * from vlm_spend):")
        _print_table(spend)
    return 0


def vlm_spend(lake, configured: bool = True) -> list[dict]:
    """Requests, tokens and cost of every use of the VLM in the lake, from the vlm_spend view."""
    from dynpose.storage.sql import VLM_SPEND_VIEW, build_catalog, query

    totals = (
        "SELECT use, sum(videos) AS videos, sum(asked) AS asked, sum(cached) AS cached, sum(vlm_error) AS vlm_error, "
        "sum(vlm_bad_answer) AS vlm_bad_answer, sum(skipped) AS skipped, sum(tokens_in) AS tokens_in, "
        f"sum(tokens_out) AS tokens_out, sum(cost_usd) AS cost_usd FROM {VLM_SPEND_VIEW} GROUP BY use ORDER BY use"
    )
    from dynpose.storage.vlm_cache import CACHE_DIR

    # Only where a VLM may have been asked (an answer cached, or an endpoint configured): this spares
    # other lakes the catalog rebuild, which reads every table's footer (minutes at 10,000 shards).
    if not (configured or lake.listdir(lake.path(CACHE_DIR))) or VLM_SPEND_VIEW not in build_catalog(lake):
        return []
    return query(lake, totals, rebuild=False).to_pylist()


def cmd_sql(args) -> int:
    import duckdb

    from dynpose.storage.lake import Lake
    from dynpose.storage.sql import query

    try:
        table = query(Lake(_lake_url(args)), args.query)
    except duckdb.Error as exc:  # a typo in a query is not a crash: say what DuckDB said
        print(f"sql error: {exc}", file=sys.stderr)
        return 2
    if args.format == "csv":
        _write_csv(table, sys.stdout)
    elif args.format == "json":
        print(json.dumps(table.to_pylist(), default=str, indent=1))
    else:
        _print_table(table.to_pylist(), table.column_names)
    return 0


def _write_csv(table, out) -> None:
    """Header row first, quotes only where CSV needs them, None as an empty field."""
    import csv

    writer = csv.writer(out, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
    writer.writerow(table.column_names)
    for row in table.to_pylist():
        writer.writerow(["" if v is None else v for v in row.values()])


def cmd_export(args) -> int:
    from tqdm import tqdm

    from dynpose.export import ExportError, Selection, export, parse_tiers
    from dynpose.graph.settings import load_settings
    from dynpose.storage.lake import Lake

    bar = tqdm(desc="exporting", unit="video", leave=False, delay=1.0)

    def progress(done, total, _what):
        bar.total = total
        bar.n = done
        bar.refresh()

    selection = Selection(args.min_filter_score, parse_tiers(args.tiers), args.min_registered, args.where)
    try:
        report = export(
            Lake(_lake_url(args)),
            args.dest,
            selection,
            fmt=args.format,
            with_frames=args.with_frames,
            frames=load_settings(args.settings).sampled_frames,
            progress=progress,
        )
    except ExportError as exc:
        bar.close()
        print(f"export: {exc}", file=sys.stderr)
        return 2
    bar.close()
    _print_table(report.rows())
    print(report.summary() + f" ({report.videos_per_s:.2f} videos/s)")
    print(f"manifest: {report.manifest}")
    return 0


def cmd_ui(args) -> int:
    from dynpose.graph.orchestrate import dagster_home
    from dynpose.storage.lake import Lake

    env = dict(os.environ, DYNPOSE_LAKE=_lake_url(args), DAGSTER_HOME=str(dagster_home(Lake(_lake_url(args)))))
    if args.settings:
        env["DYNPOSE_SETTINGS"] = str(Path(args.settings).resolve())
    # `dagster dev`: the webserver and the daemon, which starts the runs launched from the UI (Dagster
    # queues them) and runs the sensors turned on there; both stop with it.
    cmd = [
        sys.executable,
        "-m",
        "dagster",
        "dev",
        "-h",
        "127.0.0.1",
        "-p",
        str(args.port),
        "-m",
        "dynpose.graph.definitions",
    ]
    print(f"Dagster UI and daemon on http://127.0.0.1:{args.port} (lake {env['DYNPOSE_LAKE']}); Ctrl-C stops them")
    return subprocess.call(cmd, env=env)


DEMO_COLUMNS = ["video", "filters", "status", "registered frames", "tier", "ATE"]


def video_rows(
    catalog: list[dict], poses: list[dict], quality: list[dict], benchmark: list[dict], decisions: list[dict] = ()
) -> list[dict]:
    """One summary row per catalogued video, by file name: the filter cascade's decision, status (of
    our poses, or the catalog's if it failed before), registered/sampled frames, quality tier, and
    ATE for clips with ground truth."""
    decided = {r["video_id"]: "kept" if r.get("kept") else f"rejected at {r.get('stage_left')}" for r in decisions}
    pose = {r["video_id"]: r for r in poses if r.get("method", "ours") == "ours"}
    tier = {r["video_id"]: r.get("tier") for r in quality}
    ate = {r["video_id"]: r.get("ate") for r in benchmark if r.get("method", "ours") == "ours"}
    rows = []
    for c in sorted(catalog, key=lambda r: (posixpath.basename(r.get("source_uri") or ""), r["video_id"])):
        vid, p = c["video_id"], pose.get(c["video_id"])
        if c.get("status") != "ok" or p is None:
            status = c.get("status") if c.get("status") != "ok" else "no poses yet"
            frames = None
        else:
            status = p.get("status")
            frames = f"{sum(bool(x) for x in (p.get('registered') or []))}/{p.get('n_frames') or 0}"
        rows.append(
            {
                "video": posixpath.basename(c.get("source_uri") or "") or vid,
                "filters": decided.get(vid),
                "status": status,
                "registered frames": frames,
                "tier": tier.get(vid) if p is not None else None,
                "ATE": ate.get(vid) if c.get("ground_truth_uri") else None,
            }
        )
    return rows


def demo_video_rows(lake) -> list[dict]:
    """``video_rows`` from the lake's products; a product not materialized yet counts as empty."""
    import duckdb

    from dynpose.storage.sql import build_catalog, query

    build_catalog(lake)

    def rows(sql: str) -> list[dict]:
        try:
            return query(lake, sql, rebuild=False).to_pylist()
        except duckdb.Error:  # no such table (yet) or column: that part of the summary stays empty
            return []

    return video_rows(
        rows("select video_id, source_uri, status, ground_truth_uri from clip_catalog"),
        rows("select video_id, method, status, n_frames, registered from camera_poses where method = 'ours'"),
        rows("select video_id, tier from pose_quality"),
        rows("select video_id, method, ate from pose_benchmark where method = 'ours'"),
        rows("select video_id, kept, stage_left from filter_decisions"),
    )


def cmd_demo(args) -> int:
    from dynpose.graph.settings import load_settings
    from dynpose.storage.ingest import ingest
    from dynpose.storage.lake import Lake
    from dynpose.storage.sql import query

    source = Path(args.source)
    if not source.exists() or not any(source.iterdir()):
        from dynpose.domain.synth import generate_suite

        print(f"{source} is empty: rendering the synthetic 'tiny' suite there")
        generate_suite(source, "tiny", seed=args.seed)
    lake_url = _lake_url(args)
    lake = Lake(lake_url)
    report = ingest(str(source), lake, load_settings(args.settings).ingest, progress=_ingest_progress())
    print(report.summary())
    args.shard, args.select, args.quiet = None, None, False
    code = cmd_materialize(args)
    print()
    _print_table(query(lake, "select status, count(*) as videos from clip_catalog group by 1 order by 1").to_pylist())
    print()
    _print_table(demo_video_rows(lake), DEMO_COLUMNS)
    print(
        f'\nNext:\n  dynpose --lake {lake_url} sql "select * from clip_catalog"\n'
        f"  dynpose --lake {lake_url} status\n  dynpose --lake {lake_url} ui    # then open http://127.0.0.1:3000"
    )
    return code


def cmd_annotate(args) -> int:
    from dynpose.domain.annotate.pipeline import AnnotateConfig, annotate_video
    from dynpose.graph.settings import load_settings

    st = load_settings(args.settings)
    cfg = AnnotateConfig(
        fps=st.sampled_frames.fps,
        max_side=st.sampled_frames.max_side,
        masks=None if args.no_masks else st.dynamic_masks,
        tracking=st.tracklets,
        sfm=st.camera_poses,
        checks=st.annotation_checks,
        tiers=st.pose_quality,
    )
    ann = annotate_video(args.video, args.out, cfg)
    k = ann.poses.intrinsics
    print(f"{args.video}: {ann.status}" + (f" ({ann.message})" if ann.message else ""))
    if len(ann.timestamps):  # nothing decoded: no frames, poses or intrinsics to speak of
        print(
            f"  {int(ann.poses.registered.sum())}/{len(ann.timestamps)} frames registered, reprojection error "
            f"{ann.poses.reprojection_error:.3f} px, tier {ann.quality.tier}"
        )
        focal = "" if ann.quality.focal_plausible else " (implausible focal length: not tiered)"
        print(f"  intrinsics fx={k.fx:.1f} fy={k.fy:.1f} cx={k.cx:.1f} cy={k.cy:.1f} at {k.width}x{k.height}{focal}")
    print("  stage seconds: " + ", ".join(f"{name} {sec:.1f}" for name, sec in ann.timings.items()))
    print(f"  wrote {Path(args.out) / 'trajectory.tum'}, cameras.pkl, annotation.json")
    return 0 if ann.status == "ok" else 2


def cmd_filter(args) -> int:
    from dynpose.domain.filters.cascade import FILTERS
    from dynpose.domain.filters.single import filter_video
    from dynpose.graph.settings import load_settings

    st = load_settings(args.settings)
    configs = {name: st.section(f"filter_{name}") for name in FILTERS}
    out = filter_video(args.video, st.filter_frames, configs, st.filter_decisions, st.vlm)
    if args.json:
        print(json.dumps(out, indent=1, default=str))
    else:
        print(f"{args.video}: " + (out["status"] if out["status"] != "ok" else f"decoded in {out['decode_s']:.2f} s"))
        _print_table(
            [
                {
                    "filter": name,
                    "score": f["score"],
                    "status": f["status"],
                    "seconds": f["seconds"],
                    "why": f["message"] or "",
                }
                for name, f in out["filters"].items()
            ]
        )
        for name, f in out["filters"].items():
            if f["columns"]:
                print(
                    f"  {name}: "
                    + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in f["columns"].items())
                )
        d = out["decision"]
        print(("kept" if d["kept"] else f"rejected at {d['stage_left']}") + f": {d['reason']}")
    return 0 if out["decision"]["kept"] else 3


def cmd_synth(args) -> int:
    from tqdm import tqdm

    from dynpose.domain.synth import generate_suite

    bar = tqdm(desc=f"rendering {args.suite}", unit="clip")

    def progress(done, total, name):
        bar.total = total
        bar.n = done
        bar.set_postfix_str(name)
        bar.refresh()

    manifest = generate_suite(
        Path(args.out),
        args.suite,
        seed=args.seed,
        progress=progress,
        workers=args.workers or os.cpu_count() or 1,
        size=args.size,
    )
    bar.close()
    print(f"wrote {manifest}")
    return 0


def cmd_train(args) -> int:
    from tqdm import tqdm

    from dynpose.domain.tracksto4d.model import NetConfig
    from dynpose.evaluation.train_tracksto4d import Clip, TrainConfig, suite_clips, train

    missing = [d for d in args.suite if not (Path(d) / "manifest.json").exists()]
    if missing:
        print(f"error: not a suite folder (no manifest.json; `dynpose synth` makes one): {missing[0]}", file=sys.stderr)
        return 2
    held_out = args.eval_clips or []
    clips = [c for d in args.suite for c in suite_clips(d, args.clips, exclude=held_out)]
    clips += [Clip(Path(v).stem, v) for v in args.videos or []]
    eval_clips = [c for d in args.suite for c in suite_clips(d, held_out)] if held_out else []
    if not clips:
        print("error: no training clips (check --suite, --clips and --eval-clips)", file=sys.stderr)
        return 2
    net = NetConfig(**({"dim": args.dim} if args.dim else {}))
    cfg = TrainConfig(steps=args.steps, max_minutes=args.minutes, seed=args.seed, net=net)
    bar = tqdm(total=cfg.steps, desc="training tracksto4d", unit="step", delay=1.0)

    def progress(step, total, terms):
        bar.n = step
        if step % 20 == 0 or step == total:
            bar.set_postfix_str(f"loss {terms['total']:.3f} reproject {terms['reproject']:.4f}")
            bar.refresh()

    summary = train(clips, args.out, cfg, eval_clips, progress=progress, log=tqdm.write)
    bar.close()
    print(f"{summary['steps']} steps in {summary['train_s'] / 60:.1f} min, final loss {summary['final_loss']:.4f}")
    if summary["held_out"]:
        _print_tables([("Held-out clips", summary["held_out"])])
    print(f"checkpoint: {args.out}\nreport: {Path(args.out).with_suffix('.md')}")
    return 0


def cmd_bench(args) -> int:
    import tempfile

    from dynpose import benchmarks
    from dynpose.evaluation.markdown import write_table_report

    out = Path(args.out or tempfile.mkdtemp(prefix=f"dynpose-bench-{args.what}-"))
    if args.what == "poses":
        result = benchmarks.pose_benchmark(
            out,
            suite=args.suite,
            methods=args.methods,
            seed=args.seed,
            limit=args.limit,
            executor=args.executor,
            ray_address=args.ray_address,
            settings_file=args.settings,
            workers=args.workers,
            clips=args.clips,
            vlm=args.vlm,
        )
        _print_tables(result.tables)
        print(f"\nreport: {result.report} (plots beside it; also the benchmark_report asset's metadata in the UI)")
        print(f"lake: {result.lake}  (dynpose --lake {result.lake} ui)")
        return 0
    if args.what == "filters":
        result = benchmarks.filter_benchmark(
            out,
            suite=args.suite,
            seed=args.seed,
            settings_file=args.settings,
            workers=args.workers,
            tune=args.tune,
            size=args.size,
            vlm=args.vlm,
        )
        _print_tables(result.tables)
        print(f"\nreport: {result.report} (PR curves beside it; also the filter_benchmark asset in the UI)")
        print(f"lake: {result.lake}")
        return 0
    if args.what == "noop-rerun":
        rows = benchmarks.noop_rerun(out, shards=args.shards, lake_url=args.lake)
        title = f"No-op rerun over {args.shards} shards"
        notes = (
            f"Reproduce: `dynpose bench noop-rerun --shards {args.shards}`. Each shard holds one tiny video; "
            "the rerun must compute nothing."
        )
    elif args.what == "lake-scale":
        rows = benchmarks.lake_scale(out, shards=args.shards, lake_url=args.lake)
        title = f"Status and planning over {args.shards} shards"
        notes = (
            f"Reproduce: `dynpose bench lake-scale --shards {args.shards}`"
            + (f" --lake {args.lake}" if args.lake else "")
            + ". The lake is generated (scripts/make_big_lake.py: catalog, small product tables, ledger records "
            "and states, no videos) and reused. Load: "
            + " ".join(f"{x:.2f}" for x in os.getloadavg())
            + " (1, 5, 15 min) at the end. Indented rows are parts of the row above them (states and tables: "
            "seconds summed over products)."
        )
    elif args.what == "export":
        load = os.getloadavg()
        rows = benchmarks.export_throughput(out, shards=args.shards, per_shard=args.videos_per_shard, dest=args.dest)
        videos = args.shards * args.videos_per_shard
        title = f"Export throughput over {videos} videos ({args.shards} shards x {args.videos_per_shard})"
        notes = (
            f"Command: `dynpose bench export --shards {args.shards} --videos-per-shard {args.videos_per_shard}"
            + (f" --dest {args.dest}" if args.dest else "")
            + f" --out {out}`. The lake is the annotated tiny suite (built once in OUT/base, then reused) with "
            "its product rows replicated under new video ids; each export goes into an emptied destination "
            "(" + (args.dest or "a local folder under OUT") + "), then runs again with nothing new. "
            "webdataset --with-frames exports the first shard only (frames decoded from the source videos). "
            "Load: "
            + " ".join(f"{x:.2f}" for x in load)
            + " (1, 5, 15 min) at the start, "
            + " ".join(f"{x:.2f}" for x in os.getloadavg())
            + f" at the end, on {os.cpu_count()} cores."
        )
    elif args.what == "annotation":
        return _bench_annotation(args, out)
    else:
        raise SystemExit(f"unknown benchmark {args.what}")
    _print_table(rows)
    print(f"report: {write_table_report(out, title, rows, notes)}")
    return 0


def _bench_annotation(args, out: Path) -> int:
    """``bench annotation``: the variants of a study (or ``--variant NAME=JSON``) on a synthetic suite."""
    import json

    from dynpose.evaluation.ablation import STUDIES, ablate

    if not args.suite:
        raise SystemExit("bench annotation needs --suite (a synthetic suite folder, e.g. from `dynpose synth`)")
    if args.variant and args.study:
        raise SystemExit("give --study or --variant, not both")
    if args.variant:
        variants = {}
        for spec in args.variant:
            name, sep, text = spec.partition("=")
            try:
                variants[name] = json.loads(text or "{}") if sep and name else None
            except json.JSONDecodeError as exc:
                raise SystemExit(f"--variant {spec!r}: bad JSON ({exc})") from exc
            if not isinstance(variants[name], dict):
                raise SystemExit(f"--variant {spec!r}: expected NAME={{...}} (overrides of AnnotateConfig sections)")
    else:
        study = args.study or "baseline"
        if study not in STUDIES:
            raise SystemExit(f"unknown study {study!r}: one of {', '.join(STUDIES)}")
        variants = STUDIES[study]
    try:
        result = ablate(
            args.suite,
            variants,
            out,
            clips=args.clips,
            limit=args.limit,
            workers=args.workers or 1,
            study=None if args.variant else study,
        )
    except ValueError as exc:  # an unknown override, no matching clip
        raise SystemExit(str(exc)) from exc
    _print_tables(result.tables)
    print(f"\nreport: {result.report} (records: {out / 'results.json'})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dynpose", description="Dynamic camera pose dataset curation on a shard-partitioned lake."
    )
    parser.add_argument(
        "--lake", help=f"lake root: a path or s3://bucket/prefix (env DYNPOSE_LAKE, default {DEFAULT_LAKE})"
    )
    parser.add_argument(
        "--settings", default=os.environ.get("DYNPOSE_SETTINGS"), help="YAML settings file (env DYNPOSE_SETTINGS)"
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        default=None,
        help="native library logs (MediaPipe, COLMAP, Ray) on the terminal instead of <lake>/_logs (env "
        "DYNPOSE_VERBOSE=1)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def executor_args(p):
        p.add_argument(
            "--executor", choices=["in_process", "ray"], default=os.environ.get("DYNPOSE_EXECUTOR", "in_process")
        )
        p.add_argument(
            "--ray-address",
            default=os.environ.get("DYNPOSE_RAY_ADDRESS"),
            help="Ray cluster address (default: start a local Ray on 127.0.0.1)",
        )
        p.add_argument(
            "--workers",
            type=int,
            default=None,
            help="in_process: videos processed at a time (env DYNPOSE_WORKERS; default 1, bench: all cores)",
        )

    p = sub.add_parser(
        "demo", help="render sample videos if SOURCE is empty, ingest, materialize everything, summarize"
    )
    p.add_argument("--source", default="./demo_videos")
    p.add_argument("--seed", type=int, default=0)
    executor_args(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("ingest", help="add new videos from a directory or s3:// prefix as new shards")
    p.add_argument("source")
    p.add_argument("--shard-size", type=int, help="videos per new shard (default from settings: 64)")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("materialize", help="bring products up to date (only stale shards compute)")
    p.add_argument("--shard", action="append", help="only this shard (repeatable)")
    p.add_argument("--select", action="append", help="only this product (repeatable; its inputs must exist)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    executor_args(p)
    p.set_defaults(func=cmd_materialize)

    p = sub.add_parser("status", help="shards, products and stale counts")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("sql", help="read-only SQL over every product (DuckDB)")
    p.add_argument("query")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.set_defaults(func=cmd_sql)

    p = sub.add_parser(
        "annotate", help="annotate one video without Dagster: trajectory.tum, cameras.pkl, annotation.json"
    )
    p.add_argument("video")
    p.add_argument("--out", required=True)
    p.add_argument("--no-masks", action="store_true", help="skip dynamic masking (all tracks count as static)")
    p.set_defaults(func=cmd_annotate)

    p = sub.add_parser("filter", help="every filter's score and the cascade's decision for one video, without Dagster")
    p.add_argument("video")
    p.add_argument("--json", action="store_true", help="everything as JSON (sub-scores and measurements included)")
    p.set_defaults(func=cmd_filter)

    p = sub.add_parser(
        "synth", help="render a synthetic suite with exact ground truth (videos, poses, depth, masks, correspondences)"
    )
    p.add_argument("out")
    p.add_argument("--suite", choices=["tiny", "bench", "framedrop", "filters"], default="tiny")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, help="clips rendered at a time (default: one per core)")
    p.add_argument("--size", type=int, help="filters suite: number of clips (default 204)")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("bench", help="benchmarks: print a table and write a markdown report")
    p.add_argument(
        "what",
        nargs="?",
        default="poses",
        choices=["poses", "filters", "noop-rerun", "lake-scale", "export", "annotation"],
    )
    p.add_argument(
        "--study",
        help="annotation: a named set of variants (dynpose.evaluation.ablation.STUDIES: baseline, selection, "
        "motion, refinement, bridging; default baseline)",
    )
    p.add_argument(
        "--variant",
        action="append",
        metavar="NAME=JSON",
        help='annotation: an ad-hoc variant instead of a study, e.g. fast=\'{"tracking": {"stride": 10}}\' '
        "(repeatable; overrides of AnnotateConfig sections)",
    )
    p.add_argument("--size", type=int, help="filters: clips of the rendered filters suite (default 204)")
    p.add_argument(
        "--tune",
        action="store_true",
        help="filters: also fit the cascade thresholds on this suite (a tuning split only)",
    )
    p.add_argument(
        "--vlm",
        choices=["oracle", "garbage"],
        help="filters: run the VLM stage against a local server: oracle (answers from the labels: an upper "
        "bound) or garbage (malformed answers); poses: oracle only (DynaPo masks from ground-truth boxes, ours "
        "also run without them)",
    )
    p.add_argument(
        "--suite",
        help="poses: a synthetic suite folder (default: render the 'bench' suite into OUT/suite); annotation: "
        "the suite folder (required)",
    )
    p.add_argument(
        "--methods", nargs="+", help="poses: methods to compare (default: ours and every configured baseline)"
    )
    p.add_argument("--limit", type=int, help="poses, annotation: only the first N clips of the suite")
    p.add_argument(
        "--clips", nargs="+", help="poses, annotation: only the clips whose names start with these prefixes (e.g. 018)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--shards",
        type=int,
        default=100,
        help="noop-rerun, lake-scale: number of single-video shards; export: number of shards",
    )
    p.add_argument("--videos-per-shard", type=int, default=64, help="export: videos in each of the --shards shards")
    p.add_argument(
        "--dest", help="export: export into this folder or s3://bucket/prefix (default: OUT/exports; S3 from env)"
    )
    p.add_argument("--out", help="output folder: lake, suite, report (default: a new temporary folder)")
    executor_args(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("train", help="train a learned method on a suite's tracks (no 3-D supervision)")
    p.add_argument("method", choices=["tracksto4d"])
    p.add_argument("--suite", action="append", required=True, help="a synthetic suite folder (repeatable)")
    p.add_argument("--clips", nargs="+", help="train on the clips whose names start with these prefixes (default all)")
    p.add_argument(
        "--eval-clips", nargs="+", help="held out: clips (name prefixes) never trained on, scored at the end"
    )
    p.add_argument("--videos", nargs="+", help="unlabelled videos whose tracks also train (e.g. real clips)")
    p.add_argument("--out", required=True, help="the checkpoint to write (report, history and loss plot beside it)")
    p.add_argument("--steps", type=int, default=14000)
    p.add_argument("--minutes", type=float, default=60.0, help="stop after this many minutes of training")
    p.add_argument("--dim", type=int, help="network width (default 64)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("export", help="export a quality-filtered subset (dynpose, parquet or webdataset) + manifest")
    p.add_argument("--dest", required=True, help="a folder or s3://bucket/prefix")
    p.add_argument("--min-filter-score", type=float, help="filter_decisions score at least this (default: any)")
    p.add_argument("--tiers", help="comma-separated tiers, or 'any' (default: tier1,tier2,tier3)")
    p.add_argument("--min-registered", type=float, default=0.8, help="registered share at least this (default 0.8)")
    p.add_argument("--where", help="extra SQL boolean expression over the columns in docs/export.md")
    p.add_argument("--format", choices=["dynpose", "parquet", "webdataset"], default="dynpose")
    p.add_argument("--with-frames", action="store_true", help="webdataset: the 12 fps frames as JPEGs")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("ui", help="Dagster webserver (and daemon) on 127.0.0.1")
    p.add_argument("--port", type=int, default=3000)
    p.set_defaults(func=cmd_ui)
    return parser


# Commands that run native code (and child processes) whose log lines go to a file, not the terminal.
LOGGED_COMMANDS = ("demo", "materialize", "bench", "annotate", "filter", "ingest", "synth", "train")


def _log_dir(args) -> Path:
    """``<lake>/_logs`` for a local lake the command works on; a local cache folder otherwise."""
    from dynpose.logs import cache_log_dir

    url = _lake_url(args)
    if args.command in ("demo", "materialize", "ingest") and not url.startswith("s3://"):
        return Path(url).resolve() / "_logs"
    return cache_log_dir()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command in LOGGED_COMMANDS:
            from dynpose.logs import native_logs_to_file

            with native_logs_to_file(_log_dir(args), args.command, verbose=args.verbose):
                return args.func(args) or 0
        return args.func(args) or 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        from dynpose.storage.lake import storage_unavailable

        down = storage_unavailable(exc, _lake_url(args) if hasattr(args, "lake") else "")
        if down is None:
            raise
        print(f"error: {down}", file=sys.stderr)  # one line naming the endpoint, not a traceback
        return 2


def run() -> None:
    """The ``dynpose`` command: ``main``, then exit without native libraries' static destructors.

    Once seen in the test suite: a materialize that had finished and printed its summary was
    aborted at interpreter exit by a native library ("terminate called without an active
    exception", status -6). Everything the command writes is closed and renamed into place before
    ``main`` returns, so the exit skips them after flushing Python's own streams and logs.
    """
    import logging

    code = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)


if __name__ == "__main__":
    run()
