"""Raw assets: the clip catalog."""

from dynpose.assets.factory import product_asset
from dynpose.graph.products import PRODUCTS

clip_catalog = product_asset(PRODUCTS["clip_catalog"])
