"""The pages of the results app, one module each: ``tables`` (Tabelas), ``logs`` (Logs),
``runs`` (Execuções) and ``charts`` (Gráficos); the "Análises" page is
``pipelines.results.analyses``.

Every page module has ``PATH`` (its URL), ``layout()`` (the page) and
``register_callbacks(app, repo, database=...)`` (its callbacks); ``common`` holds what they
share. ``pipelines.results.app`` builds the shell around them and registers them; a page
never imports the app."""
