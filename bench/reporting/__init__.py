"""The reporting layer: leaderboard tables, plots and pages built from tracked runs given as plain rows.
Imports only evaluation and the core; never MLflow."""
