"""Analysis of finished runs and suites: statistics, seed-paired tests, the paper's claims and their verdicts,
findings, the facts the book's chapters glue, tables (`reporting`) and figures (`plots`)."""
