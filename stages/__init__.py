"""DVC pipeline stages: thin glue that reads params and calls the `cvae` library."""
