"""Board description files (one per board), validated by a schema."""
