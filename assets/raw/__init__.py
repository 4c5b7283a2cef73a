"""Raw assets: the clip catalog."""

from dynpose.assets.factory import product_asset

clip_catalog = product_asset("clip_catalog")
