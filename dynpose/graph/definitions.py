"""The Dagster code location: every asset (with its checks), resource, job, sensor and schedule.

Assets are loaded from the group folders (``assets/raw``, ``assets/filters``,
``assets/annotations``, ``assets/eval``), so a new product appears here without an edit.
"""

import dagster as dg

from dynpose import assets
from dynpose.graph.products import PRODUCTS
from dynpose.resources import default_resources
from dynpose.sensors import JOBS, SCHEDULES, SENSORS

ASSETS = dg.load_assets_from_package_module(assets)

_missing = sorted(set(PRODUCTS) - {key.to_user_string() for a in ASSETS for key in a.keys})
if _missing:  # a product defined in the library but listed in no group folder
    raise RuntimeError(f"product(s) without an asset in assets/<group>/: {', '.join(_missing)}")

defs = dg.Definitions(assets=ASSETS, resources=default_resources(), jobs=JOBS, sensors=SENSORS, schedules=SCHEDULES)
