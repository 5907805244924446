"""Many runs: the suite registry (`registry`), the pages run by papermill (`notebooks`), scheduling on one machine or
a Slurm cluster, the suite runner and the readers of a suite's files (`results`)."""
