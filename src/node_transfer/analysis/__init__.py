"""Analysis of finished runs and suites: statistics, seed-paired tests, the declared tests and their verdicts,
findings and their sensitivity, dated declarations, tables (`reporting`) and figures (`plots`). The book's chapters
read it through `pages`."""
