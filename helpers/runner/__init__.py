"""Running the series headlessly (papermill), rendering its pages, the command line and variants runs."""
