"""The `synthfair` command line: one module per command, registered in `synthfair.cli.main`."""
