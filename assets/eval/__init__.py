"""Evaluation assets: baselines, benchmarks against ground truth, the report, dataset statistics."""

from dynpose.assets.factory import product_asset
from dynpose.graph.products import PRODUCTS

baseline_poses = product_asset(PRODUCTS["baseline_poses"])
pose_benchmark = product_asset(PRODUCTS["pose_benchmark"])
reprojection_benchmark = product_asset(PRODUCTS["reprojection_benchmark"])
mask_benchmark = product_asset(PRODUCTS["mask_benchmark"])
filter_benchmark = product_asset(PRODUCTS["filter_benchmark"])
benchmark_report = product_asset(PRODUCTS["benchmark_report"])
dataset_statistics = product_asset(PRODUCTS["dataset_statistics"])
