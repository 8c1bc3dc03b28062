"""`python -m helpers run|report ...`: execute the notebook series headlessly and render its reports (see helpers.cli)."""
from helpers.cli import main

raise SystemExit(main())
