"""Filter assets: one score table per specialist filter, then the cascade's decision per video."""

from dynpose.assets.factory import product_asset

filter_content = product_asset("filter_content")
filter_flow = product_asset("filter_flow")
filter_focal = product_asset("filter_focal")
filter_distortion = product_asset("filter_distortion")
filter_tracking = product_asset("filter_tracking")
filter_masking = product_asset("filter_masking")
filter_vlm = product_asset("filter_vlm")
filter_decisions = product_asset("filter_decisions")
