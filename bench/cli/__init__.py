"""The command line (typer): parses options, calls workflows, prints. The top layer."""
