"""Annotation assets: frames index, dynamic masks, tracklets, camera poses, pose quality."""

from dynpose.assets.factory import product_asset

sampled_frames = product_asset("sampled_frames")
dynamic_masks = product_asset("dynamic_masks")
tracklets = product_asset("tracklets")
camera_poses = product_asset("camera_poses")
pose_quality = product_asset("pose_quality")
