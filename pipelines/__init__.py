"""Pipeline for the CGU open data on outsourced workers (Terceirizados de Órgãos Federais)."""
