"""Running the series headlessly (papermill), rendering its pages, the command line and variant sweeps."""
