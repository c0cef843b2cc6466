"""Built-in examples that train in seconds on data that ships with a package (no download)."""
