"""One module or package per notebook step: env, export, convert, evaluate, board, analysis, hybrid."""
