"""Evaluation assets: baselines, benchmarks against ground truth, the report, dataset statistics."""

from dynpose.assets.factory import product_asset

baseline_poses = product_asset("baseline_poses")
pose_benchmark = product_asset("pose_benchmark")
reprojection_benchmark = product_asset("reprojection_benchmark")
mask_benchmark = product_asset("mask_benchmark")
filter_benchmark = product_asset("filter_benchmark")
benchmark_report = product_asset("benchmark_report")
dataset_statistics = product_asset("dataset_statistics")
