"""`predict-pipeline`: one module per command group; `main` parses and dispatches."""

from predict_pipeline.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
