"""One module per CLI sub-command; each is thin: parse options, call the library, report."""
