"""The sentences each notebook and the index print, computed from results; one module per notebook."""
