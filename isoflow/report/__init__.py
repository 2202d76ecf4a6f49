"""Tables and figures for the HTML report (``snakemake --report``).

One module per concern, each imported from where it lives (this file re-exports nothing):

- ``readers``: each run's ``metrics.json``, ``history.csv``, ``predictions.parquet``; the
  targets' table and ``stats.tsv``; sequence lengths; the transcripts table joined to
  predictions. Splits are read by ``isoflow.splits.read_splits``.
- ``tables``: every table as a pandas DataFrame (data views, one run, runs pooled over
  seeds beside the control, the baseline and the paper) and its HTML page (``write_table``).
- ``figures``: matplotlib figures (``plot_*``), the demo stamp (``DEMO_MARK``,
  ``mark_demo``), labels kept inside the figure (``fit_texts``, ``clipped_texts``),
  ``save_figure``.
- ``build``: the entry points, one per rule of ``rules/report.smk`` (``build_*``).

Paths of the workflow's files come from ``isoflow.workflow``; the headless-Chromium check
of a built report lives with the tests (``tests/browser.py``).
"""
