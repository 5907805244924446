"""What a person calls: the command line (`cli` parses, `commands` does the work), the suites' README files and
the book's execution cache (a pytest plugin for `make notebooks`)."""
