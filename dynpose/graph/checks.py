"""Data checks on a stored shard of a product: pure functions over its table, run after every
materialization (and on a skip, over what is stored), shown as Dagster asset checks.

A check returns a :class:`CheckOutcome`; ``warn`` checks flag something to look at (many failed
videos in a shard is normal for raw Internet video, so it never fails a run), ``error`` checks a
fault in the data itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pyarrow as pa

from dynpose.domain.status import Status


@dataclass
class CheckSettings:
    max_failed_share: float = 0.5  # warn when more of a shard's videos than this failed
    orthonormal_tol: float = 1e-6  # |R R^T - I| and |det R - 1| of a registered pose


@dataclass(frozen=True)
class CheckOutcome:
    passed: bool
    description: str
    severity: str = "error"  # error | warn
    metadata: dict = field(default_factory=dict)


def schema_present(table: pa.Table | None, schema: pa.Schema | None, _settings: CheckSettings) -> CheckOutcome:
    """The stored shard exists and has every declared column with its declared type."""
    if table is None:
        return CheckOutcome(False, "no stored table for this shard")
    if schema is None:
        return CheckOutcome(True, f"{table.num_rows} rows (no declared schema)")
    missing = [f.name for f in schema if f.name not in table.column_names]
    wrong = [
        f"{f.name}: {table.schema.field(f.name).type} != {f.type}"
        for f in schema
        if f.name in table.column_names and not table.schema.field(f.name).type.equals(f.type)
    ]
    if missing or wrong:
        return CheckOutcome(
            False,
            "; ".join(
                filter(
                    None,
                    [
                        f"missing column(s): {', '.join(missing)}" if missing else "",
                        f"wrong type(s): {', '.join(wrong)}" if wrong else "",
                    ],
                )
            ),
            metadata={"missing": missing, "wrong": wrong},
        )
    return CheckOutcome(True, f"{len(schema)} declared columns present, {table.num_rows} rows")


def unique_video_ids(table: pa.Table | None, _schema, _settings: CheckSettings) -> CheckOutcome:
    """One row per video: a video id twice means a shard manifest or a write went wrong."""
    if table is None:
        return CheckOutcome(False, "no stored table for this shard")
    ids = table.column("video_id").to_pylist()
    dupes = sorted({v for v in ids if ids.count(v) > 1})
    if dupes:
        return CheckOutcome(
            False, f"{len(dupes)} video id(s) appear more than once", metadata={"duplicates": dupes[:20]}
        )
    return CheckOutcome(True, f"{len(ids)} distinct video ids")


def valid_poses(table: pa.Table | None, _schema, settings: CheckSettings) -> CheckOutcome:
    """Every registered pose is finite with an orthonormal, right-handed rotation."""
    if table is None:
        return CheckOutcome(False, "no stored table for this shard")
    bad = []
    for row in table.select(["video_id", "method", "n_frames", "registered", "pose_w2c"]).to_pylist():
        if not row["n_frames"]:
            continue
        poses = np.asarray(row["pose_w2c"], np.float64).reshape(-1, 3, 4)[np.asarray(row["registered"], bool)]
        if not len(poses):
            continue
        rot = poses[:, :, :3]
        finite = np.isfinite(poses).all()
        ortho = finite and np.abs(rot @ rot.transpose(0, 2, 1) - np.eye(3)).max() <= settings.orthonormal_tol
        right = finite and np.abs(np.linalg.det(rot) - 1).max() <= settings.orthonormal_tol
        if not (finite and ortho and right):
            bad.append(
                f"{row['video_id']}/{row['method']}: " + ("NaN or inf" if not finite else "rotation not orthonormal")
            )
    if bad:
        return CheckOutcome(
            False, f"{len(bad)} trajectory(ies) with an invalid registered pose", metadata={"videos": bad[:20]}
        )
    return CheckOutcome(True, f"every registered pose of {table.num_rows} trajectory(ies) is finite and orthonormal")


def failed_share(table: pa.Table | None, _schema, settings: CheckSettings) -> CheckOutcome:
    """A warning when more than ``max_failed_share`` of the shard's videos did not come out ``ok``."""
    if table is None or not table.num_rows:
        return CheckOutcome(True, "no videos", severity="warn")
    statuses = [s for s in table.column("status").to_pylist() if s not in (Status.not_reached, Status.filtered_out)]
    if not statuses:
        return CheckOutcome(True, "no video reached this product", severity="warn")
    failed = sum(s != Status.ok for s in statuses)
    share = failed / len(statuses)
    counts = {s: statuses.count(s) for s in sorted(set(statuses))}
    return CheckOutcome(
        share <= settings.max_failed_share,
        f"{failed}/{len(statuses)} videos not ok ({share:.0%}; bound {settings.max_failed_share:.0%})",
        severity="warn",
        metadata={"status_counts": counts, "failed_share": share},
    )


CHECKS: dict[str, Callable[[pa.Table | None, pa.Schema | None, CheckSettings], CheckOutcome]] = {
    "schema_present": schema_present,
    "unique_video_ids": unique_video_ids,
    "valid_poses": valid_poses,
    "failed_share": failed_share,
}


def checks_for(schema: pa.Schema | None, extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The checks a product gets: its schema, the failed share where it has a status, and its own."""
    names = ["schema_present"]
    if schema is not None and "status" in schema.names and "video_id" in schema.names:
        names.append("failed_share")
    return tuple(names + [n for n in extra if n not in names])


def run_checks(
    names: tuple[str, ...], table: pa.Table | None, schema: pa.Schema | None, settings: CheckSettings
) -> dict[str, CheckOutcome]:
    return {name: CHECKS[name](table, schema, settings) for name in names}
