"""Demo support: a generated warehouse with realistic data and bad rows of every kind."""
