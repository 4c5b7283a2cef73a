"""Make a big lake for planning benchmarks: N single-video shards as a real run leaves them.

No video work: shard manifests (the registry), each per-shard product's small table with its real
schema, one ledger record and the state per product and shard (versions chained as the ledger
computes them), and the aggregates over every shard, so a no-op materialize finds it all fresh.

    .venv/bin/python scripts/make_big_lake.py --shards 10000 --lake /tmp/big-lake
    DYNPOSE_S3_ENDPOINT=http://127.0.0.1:8333 AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... \\
        .venv/bin/python scripts/make_big_lake.py --shards 1000 --lake s3://bucket/big-lake

A lake that already holds a big lake of that size is reused. ``dynpose bench lake-scale`` makes the
same lake itself and measures status and planning on it.
"""

from __future__ import annotations

import argparse

from dynpose.benchmarks import make_big_lake


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=10_000)
    parser.add_argument("--lake", required=True, help="a local folder or s3://bucket/prefix")
    parser.add_argument("--settings", help="YAML settings the versions are computed under (default: built-in)")
    args = parser.parse_args()
    info = make_big_lake(args.lake, args.shards, settings_file=args.settings)
    print(f"{args.lake}: {info}")


if __name__ == "__main__":
    main()
