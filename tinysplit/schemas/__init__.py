"""JSON Schemas of the bundle contract: the manifest and, under method_data/, each method's data."""
