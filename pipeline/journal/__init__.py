"""The video journal: a local web app that classifies a short face clip and keeps it as a dated entry.

``settings`` (the options), ``store`` (SQLite entries and their clips, crash-safe), ``classify`` (the
bounded inference pool over ``predict_file``), ``security`` (token, origin, headers, upload limit),
``app`` (the FastAPI routes), ``server`` (locking the data folder and running uvicorn), ``cli``
(argument parsing only), ``static/`` (the page).
"""
