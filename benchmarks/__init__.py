"""Benchmarks that reproduce the paper's tables, one script each (table1, table2, compare,
search_report), on a shared core (`benchmarks.core`: a run trained into its folder or read
back, the choice of a grid point on validation, atomic outputs); the tables are rendered by
analysis.tables. benchmarks.diagnostics holds the measurements behind docs/RESULTS.md's
explanations (teacher_fit, distill_room), which reproduce no table."""
