"""Annotation assets: frames index, dynamic masks, tracklets, camera poses, pose quality."""

from dynpose.assets.factory import product_asset
from dynpose.graph.products import PRODUCTS

sampled_frames = product_asset(PRODUCTS["sampled_frames"])
dynamic_masks = product_asset(PRODUCTS["dynamic_masks"])
tracklets = product_asset(PRODUCTS["tracklets"])
camera_poses = product_asset(PRODUCTS["camera_poses"])
pose_quality = product_asset(PRODUCTS["pose_quality"])
