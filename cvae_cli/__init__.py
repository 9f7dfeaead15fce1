"""The `cvae` command line (typer). Kept outside the library on purpose."""
