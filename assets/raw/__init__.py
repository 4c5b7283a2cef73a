from dynpose.assets.factory import product_asset
from dynpose.products import CLIP_CATALOG

clip_catalog = product_asset(CLIP_CATALOG)
