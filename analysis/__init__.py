"""Analysis of stored kdgan results: Parquet in, DataFrames, matplotlib Figures and tables out.

Reads only Parquet (never torch, never a model): `load` opens experiments, `plots` turns
DataFrames into Figures (no I/O inside), `population` weighs effects and importances against
the seed noise of a search's members, `tables` renders Markdown and LaTeX, and
`python -m analysis.report` writes everything a set of experiments supports.
"""

from analysis.load import AnalysisError, load_experiments, load_members, load_runs

__all__ = ["AnalysisError", "load_experiments", "load_members", "load_runs"]
