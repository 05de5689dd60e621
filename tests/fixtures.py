"""Random-weight pipelines for tests (they live in the package so the bench can use them)."""

from studio.bench.random_models import build_tiny_sd, build_tiny_upscaler

__all__ = ["build_tiny_sd", "build_tiny_upscaler"]
