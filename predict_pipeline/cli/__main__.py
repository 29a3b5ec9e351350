"""`python -m predict_pipeline.cli`, as the installed `predict-pipeline` script."""

from predict_pipeline.cli.main import main

raise SystemExit(main())
