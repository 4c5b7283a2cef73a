from dynpose.assets.factory import product_asset
from dynpose.products import SAMPLED_FRAMES

sampled_frames = product_asset(SAMPLED_FRAMES)
