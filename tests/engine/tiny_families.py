"""The tiny family builders live in the package (studio/bench/tiny_families.py), where
`studio bench` uses them too; the tests import them from here as before."""

from studio.bench.tiny_families import (  # noqa: F401
    FAMILIES,
    MODE_NOTES,
    MODES,
    PIPELINE_CLASS,
    SIZE,
    build,
    make_pipeline,
    parameter_counts,
)
