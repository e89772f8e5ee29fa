"""Data curation: `audit` (rank likely label errors) and `select` (what to label next).

One job per module: `labels` reads a data-set split, `predictions` gets out-of-sample predictions
(a model trained elsewhere, or `folds` cross-fitting), `match` computes label/prediction overlaps,
`scoring` turns them into ranked issues, `audit` runs it all and writes the run folder, `sheets` draws
contact sheets, `features` hooks the model for pooled features and uncertainties, `pool` lists
unlabelled photos and hashes them, and `select` ranks the pool.
"""
