"""``mvinvert eval``: the paper's reconstruction metrics plus an occlusion hold-out, with baselines.

holdout.py (hide / refill / score the self-occluded region), score.py (region metrics),
report.py (eval.csv, summary table, HTML + PNG), run.py (the evaluation over a folder of photos).
"""
