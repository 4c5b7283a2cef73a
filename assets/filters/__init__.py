"""Filter assets (per-filter scores) plug in here; the filter benchmark in assets/eval reads them."""
