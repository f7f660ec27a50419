"""Dash app that shows what the pipeline produced: tables, logs, runs and charts."""
