"""The papers' experiments: sweeps, running them, one results CSV, and the figures.

Modules, each importing only those above it:

- :mod:`~fsvid.experiments.published`: the papers' published numbers, as data with their sources;
- :mod:`~fsvid.experiments.definitions`: the sweeps (:data:`SWEEPS`, ``get_sweep``) and their
  expansion into planned runs at the synthetic or the full scale;
- :mod:`~fsvid.experiments.results`: the results CSV (columns, reading, merging rows in);
- :mod:`~fsvid.experiments.running`: training and evaluating planned runs, skipping what is done;
- :mod:`~fsvid.experiments.drawing`: matplotlib set-up shared by the figures;
- :mod:`~fsvid.experiments.paper_figures`: each table and figure in the paper's form;
- :mod:`~fsvid.experiments.analysis`: the analysis figures of trained runs (``draw_analysis``);
- :mod:`~fsvid.experiments.cli`: ``fsvid sweep ...`` (also ``python -m fsvid.experiments``).
"""
