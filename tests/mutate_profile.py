"""pytest plugin for `make mutate` (scripts/mutate.py): fewer, fixed hypothesis examples."""

from hypothesis import settings

settings.register_profile("mutate", max_examples=30, derandomize=True)
settings.load_profile("mutate")
