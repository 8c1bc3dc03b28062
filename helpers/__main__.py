"""`python -m helpers run ...`: execute the notebook series headlessly (see helpers.cli)."""
from helpers.cli import main

raise SystemExit(main())
