"""Built-in workloads: each one has a naive implementation (one query per row, as such
code is usually written) and one on bulkops' verbs, run on the same data."""
